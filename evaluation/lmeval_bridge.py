"""lm-eval-harness (``lm-eval`` on PyPI) beside our evaluation: its own tasks on local data files, and
our evaluation set to the same prompt and extraction, so that the two can be compared question by
question (``python -m llamafactory_minor_eval.lmeval_bridge --help``).

* lm-eval's tasks are used as lm-eval ships them (``ceval-valid_<subject>``, ``gsm8k``); only where the
  data comes from is overridden (``dataset_path: csv``/``json`` with ``data_files``), through lm-eval's
  own group syntax (a task entry with overrides). Nothing of lm-eval is copied: its task YAMLs are read
  from the installed package at run time.
* "Ours, in lm-eval's format" is our own pipeline -- our loaders (``data.load_split``), our prompt
  encoder and our backends (transformers or vLLM) -- with the prompt lm-eval's tasks document:
  - C-Eval (``ceval-valid``, 0-shot, plain text, no chat template): ``以下是中国关于<科目>的单项选择题，
    请选出其中的正确答案。\\n\\n<question>\\nA. <A>\\nB. <B>\\nC. <C>\\nD. <D>\\n答案：``; the answer is the
    letter whose continuation `` A`` .. `` D`` (lm-eval's target delimiter is one space) is most likely,
    i.e. the arg-max of one next-token distribution (our option-likelihood mode with the space-letter
    tokens only).
  - GSM8K (``gsm8k``, here 0-shot): ``Question: <question>\\nAnswer:``, greedy generation until
    ``Question:``, ``</s>``, ``<|im_end|>`` or the end token; the answer is lm-eval's ``flexible-extract``
    (the last match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)``), compared after lm-eval's exact-match clean-up
    (``,``, ``$`` and a final ``.`` removed).
* Both run on the same loaded model (transformers: lm-eval's ``HFLM`` wraps the very model object our
  backend loaded) or the same engine kind (vLLM: one engine each, same settings).

The same module runs lm-eval's tasks for the batch runner (``run_lmeval_tasks``).
"""

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .backends.base import cut_at_stop
from .errors import EvalError
from .parsing import GSM8K_FLEXIBLE_RE

CEVAL_COLUMNS = ["id", "question", "A", "B", "C", "D", "answer"]
GSM8K_STOP = ("Question:", "</s>", "<|im_end|>")
# lm-eval's gsm8k "flexible-extract" filter (the evaluation's own regex, one copy) and its exact-match clean-up
# (lm_eval/tasks/gsm8k/gsm8k.yaml; tests/unit/test_lmeval_bridge.py checks both against lm-eval's)
FLEXIBLE_RE = GSM8K_FLEXIBLE_RE
_IGNORE_RES = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))
LMEVAL_SPEC = "lm-eval>=0.4.9,<0.5"


def _lm_eval():
    try:
        import lm_eval  # noqa: F401
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise EvalError(
            f"lm-eval-harness is not installed in this environment: pip install '{LMEVAL_SPEC}' "
            f"(or pip install -e '.[lmeval]'); import failed: {exc}"
        ) from None
    return TaskManager


def task_manager(folders: Sequence[str] = ("ceval", "gsm8k")):
    """lm-eval's TaskManager over only the task folders needed (indexing all of lm-eval's ~10k task
    YAMLs takes about a minute on 2 cores)."""
    TaskManager = _lm_eval()
    import lm_eval.tasks as tasks_pkg

    base = Path(tasks_pkg.__file__).parent
    paths = [str(base / f) for f in folders if (base / f).is_dir()]
    return TaskManager(include_defaults=False, include_path=paths)


# ----------------------------------------------------------------------------------------------------
# lm-eval tasks pointed at local files


def ceval_subject_files(root: str, split: str = "val") -> list[tuple[str, Path, Path]]:
    """(subject, <root>/<split>/<subject>_<split>.csv, <root>/dev/<subject>_dev.csv) for every subject
    that has the split (and a dev file: lm-eval's few-shot split)."""
    root_p = Path(os.path.expanduser(root))
    found = []
    folder = root_p / split
    if not folder.is_dir():
        raise EvalError(f"C-Eval: no {split}/ folder in {root_p}")
    for path in sorted(folder.glob(f"*_{split}.csv")):
        subject = path.name[: -len(f"_{split}.csv")]
        dev = root_p / "dev" / f"{subject}_dev.csv"
        if not dev.is_file():
            raise EvalError(f"C-Eval: {path} has no few-shot file {dev} (lm-eval's ceval tasks need dev/)")
        found.append((subject, path, dev))
    if not found:
        raise EvalError(f"C-Eval: no <subject>_{split}.csv files in {folder}")
    return found


def ceval_task_spec(subject: str, val_file: Path, dev_file: Path) -> dict[str, object]:
    return {
        "task": f"ceval-valid_{subject}",
        "dataset_path": "csv",
        "dataset_name": None,
        # the dev files carry an extra `explanation` column; the csv builder wants one schema
        "dataset_kwargs": {"usecols": CEVAL_COLUMNS, "data_files": {"val": str(val_file), "dev": str(dev_file)}},
    }


def gsm8k_task_spec(eval_file: Path, fewshot_file: Path, num_fewshot: int, max_gen_toks: int) -> dict[str, object]:
    return {
        "task": "gsm8k",
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"train": str(fewshot_file), "test": str(eval_file)}},
        "num_fewshot": int(num_fewshot),
        "generation_kwargs": {
            "until": list(GSM8K_STOP),
            "do_sample": False,
            "temperature": 0.0,
            "max_gen_toks": int(max_gen_toks),
        },
    }


def group_spec(name: str, specs: list[dict[str, object]]) -> dict[str, object]:
    """lm-eval's group syntax: registered tasks listed with per-task overrides."""
    return {"group": name, "task": specs}


# ----------------------------------------------------------------------------------------------------
# extraction (ours, in lm-eval's definition)


def flexible_extract(text: str) -> str | None:
    """The last match of lm-eval's flexible-extract regex, cleaned like its exact match; None if none."""
    matches = FLEXIBLE_RE.findall(text or "")
    if not matches:
        return None
    last = matches[-1]
    value = next((g for g in last if g), "")
    return clean_answer(value)


def clean_answer(text: str) -> str:
    for rx in _IGNORE_RES:
        text = rx.sub("", text)
    return text.strip().lower()


def ceval_lmeval_prompt(question: str, options: dict[str, str], subject_zh: str) -> str:
    return (
        f"以下是中国关于{subject_zh}的单项选择题，请选出其中的正确答案。\n\n"
        f"{question.strip()}\nA. {options['A']}\nB. {options['B']}\nC. {options['C']}\nD. {options['D']}\n答案："
    )


def gsm8k_lmeval_prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


# ----------------------------------------------------------------------------------------------------
# our side


class Ours:
    """Our backends and encoder with plain-text prompts (no chat template), as lm-eval runs by default."""

    def __init__(self, backend):
        from .backends.base import PromptEncoder

        self.backend = backend
        self.encoder = PromptEncoder(backend.tokenizer, "off")
        tok = backend.tokenizer
        self.space_letters = []
        for letter in "ABCD":
            ids = tok(" " + letter, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise EvalError(
                    f"the tokenizer splits ' {letter}' into {len(ids)} tokens; the lm-eval format "
                    "comparison needs single-token answers"
                )
            self.space_letters.append(list(ids))

    def encode(self, text: str) -> list[int]:
        return list(self.backend.tokenizer(text, add_special_tokens=False)["input_ids"])

    def ceval(self, items: list[tuple[str, object]]) -> list[dict[str, object]]:
        """items: (prompt text, sample). The letter with the highest log p(' X' | prompt)."""
        ids = [self.encode(p) for p, _ in items]
        scores = self.backend.choice_logprobs(ids, self.space_letters)
        out = []
        for (prompt, s), sc in zip(items, scores):
            best = max(range(4), key=lambda i: (sc[i], -i))
            out.append(
                {
                    "prompt": prompt,
                    "pred": "ABCD"[best],
                    "gold": s.gold,
                    "correct": "ABCD"[best] == s.gold,
                    "scores": [round(v, 6) if math.isfinite(v) else None for v in sc],
                }
            )
        return out

    def gsm8k(self, items: list[tuple[str, object]], max_new_tokens: int) -> list[dict[str, object]]:
        ids = [self.encode(p) for p, _ in items]
        texts = self.backend.generate(ids, max_new_tokens, stop=GSM8K_STOP)
        out = []
        for (prompt, s), text in zip(items, texts):
            text = cut_at_stop(text, GSM8K_STOP)
            pred = flexible_extract(text)
            gold = clean_answer(s.solution.split("####")[-1]) if s.solution else clean_answer(s.gold)
            out.append({"prompt": prompt, "output": text, "pred": pred, "gold": gold, "correct": pred == gold})
        return out


def load_ours(backend: str, model: str, batch_size: int = 8, dtype: str = "float32", vllm_kwargs=None):
    if backend == "transformers":
        from .backends.hf import TransformersBackend

        return TransformersBackend(model, dtype=dtype, device="cpu", batch_size=batch_size)
    if backend == "vllm":
        from llamafactory_minor_core.vllm_scoring import CPU_KV_CACHE_GB

        from .backends.vllm_backend import VLLMBackend, VLLMEngine

        engine = VLLMEngine(model, dtype=dtype, kv_cache_gb=CPU_KV_CACHE_GB, **(vllm_kwargs or {}))
        return VLLMBackend(engine)
    raise EvalError(f"unknown backend {backend!r}; use transformers or vllm")


# ----------------------------------------------------------------------------------------------------
# lm-eval's side


def lmeval_model(
    backend: str, model: str, ours_backend=None, batch_size: int = 8, dtype: str = "float32", vllm_kwargs=None
):
    """lm-eval's own model class: HFLM around the model object our transformers backend loaded (same
    weights in memory), or lm-eval's vLLM wrapper with the same engine settings as ours."""
    _lm_eval()
    if backend == "transformers":
        from lm_eval.models.huggingface import HFLM

        if ours_backend is not None:
            return HFLM(
                pretrained=ours_backend.model, tokenizer=ours_backend.tokenizer, batch_size=batch_size, device="cpu"
            )
        return HFLM(pretrained=model, dtype=dtype, batch_size=batch_size, device="cpu")
    if backend == "vllm":
        from lm_eval.models.vllm_causallms import VLLM

        from .engines import lmeval_vllm_kwargs

        kwargs = lmeval_vllm_kwargs(model, dtype, cpu=True)  # the core's CPU settings, as our engine's
        kwargs.update(vllm_kwargs or {})
        return VLLM(**kwargs)
    raise EvalError(f"unknown backend {backend!r}; use transformers or vllm")


def run_lmeval(
    lm,
    task_specs: list[dict[str, object]],
    tm=None,
    samples: dict[str, list[int]] | None = None,
    name: str = "lfm_local",
    **kwargs,
) -> dict[str, object]:
    """lm-eval's simple_evaluate on its tasks with local-file overrides; returns its result dict
    (``results`` per task, ``samples`` per task with per-document responses)."""
    _lm_eval()
    from lm_eval import simple_evaluate

    tm = tm or task_manager()
    return simple_evaluate(
        model=lm,
        tasks=[group_spec(name, task_specs)],
        task_manager=tm,
        samples=samples,
        log_samples=True,
        bootstrap_iters=0,
        **kwargs,
    )


def _docs_by_filter(samples: list[dict], flt: str | None = None) -> dict[int, dict]:
    return {s["doc_id"]: s for s in samples if flt is None or s.get("filter") == flt}


# ----------------------------------------------------------------------------------------------------
# the cross-check


def crosscheck(
    model: str,
    data_dir: str,
    backend: str = "transformers",
    ceval_per_subject: int | None = None,
    ceval_subjects: Sequence[str] | None = None,
    gsm8k_n: int = 0,
    gsm8k_split: str = "train",
    gsm8k_max_new_tokens: int = 256,
    batch_size: int = 8,
    vllm_kwargs=None,
    log=lambda m: print(m, file=sys.stderr, flush=True),
    rounds: int = 2,
) -> dict[str, object]:
    """Run C-Eval val (lm-eval's ceval-valid tasks) and GSM8K (lm-eval's gsm8k, 0-shot) with lm-eval and
    with our evaluation in lm-eval's format on the same model; per-question agreement and timings."""
    from .ceval_subjects import CEVAL_SUBJECTS
    from .data import load_split

    data = Path(os.path.expanduser(data_dir))
    report: dict[str, object] = {"backend": backend, "model": model, "benchmarks": {}}

    # --- the questions (our loaders; lm-eval reads the same files through its tasks)
    ceval_items, ceval_specs = [], []
    if ceval_per_subject is None or ceval_per_subject > 0:
        files = ceval_subject_files(str(data / "ceval"), "val")
        if ceval_subjects:
            unknown = sorted(set(ceval_subjects) - {f[0] for f in files})
            if unknown:
                raise EvalError(f"C-Eval: no val file for {', '.join(unknown)} in {data / 'ceval'}")
            files = [f for f in files if f[0] in set(ceval_subjects)]
        samples = load_split("ceval", data / "ceval", "val")
        by_subject: dict[str, list] = {}
        for s in samples:
            by_subject.setdefault(s.subject, []).append(s)
        for subject, val_file, dev_file in files:
            rows = by_subject.get(subject, [])
            if ceval_per_subject:
                rows = rows[:ceval_per_subject]
            zh = CEVAL_SUBJECTS.get(subject, (subject, ""))[0]
            ceval_specs.append(ceval_task_spec(subject, val_file, dev_file))
            for i, s in enumerate(rows):
                ceval_items.append((f"ceval-valid_{subject}", i, ceval_lmeval_prompt(s.question, s.options, zh), s))
    gsm_items, gsm_specs = [], []
    if gsm8k_n:
        gsm_root = data / "gsm8k"
        eval_file = gsm_root / f"{gsm8k_split}.jsonl"
        if not eval_file.is_file():
            raise EvalError(f"GSM8K: {eval_file} does not exist")
        rows = load_split("gsm8k", gsm_root, gsm8k_split)[: int(gsm8k_n)]
        gsm_specs.append(
            gsm8k_task_spec(
                eval_file,
                gsm_root / "train.jsonl" if (gsm_root / "train.jsonl").is_file() else eval_file,
                0,
                gsm8k_max_new_tokens,
            )
        )
        gsm_items = [("gsm8k", i, gsm8k_lmeval_prompt(s.question), s) for i, s in enumerate(rows)]

    if not ceval_items and not gsm_items:
        raise EvalError("nothing to compare: give C-Eval questions (--ceval-per-subject) or --gsm8k N")
    t = time.time()
    tm = task_manager()
    report["lmeval_index_s"] = round(time.time() - t, 1)

    # --- both sides, interleaved: the questions are split into `rounds` strided slices (similar length mixes),
    # and the sides alternate which goes first (ours, lm-eval | lm-eval, ours | ...), so a change of load on the
    # shared machine falls on both alike. vLLM: one engine at a time, started per slice (start-up timed apart).
    rounds = max(1, int(rounds))
    results: dict[str, list] = {}
    theirs: dict[str, dict[str, list]] = {}
    for bench, items in (("ceval", ceval_items), ("gsm8k", gsm_items)):
        if items:
            report["benchmarks"][bench] = {"ours_s": 0.0, "lmeval_s": 0.0, "lmeval_model_s": 0.0, "rounds": rounds}
            results[bench] = [None] * len(items)
            theirs[bench] = {}
    report["ours_load_s"] = report["lmeval_load_s"] = 0.0
    ours_backend = lm = None

    def run_ours(bench: str, chunk: list[int]) -> None:
        nonlocal ours_backend
        if lm is not None:
            _release(lm, backend)  # vLLM: one engine at a time
        if ours_backend is None or getattr(ours_backend, "closed", False):
            t = time.time()
            ours_backend = load_ours(backend, model, batch_size, vllm_kwargs=vllm_kwargs)
            report["ours_load_s"] += time.time() - t
        ours = Ours(ours_backend)
        t = time.time()
        if bench == "ceval":
            got = ours.ceval([(ceval_items[k][2], ceval_items[k][3]) for k in chunk])
        else:
            got = ours.gsm8k([(gsm_items[k][2], gsm_items[k][3]) for k in chunk], gsm8k_max_new_tokens)
        report["benchmarks"][bench]["ours_s"] += time.time() - t
        for k, r in zip(chunk, got):
            results[bench][k] = r

    def run_theirs(bench: str, chunk: list[int]) -> None:
        nonlocal lm
        if backend == "vllm" and ours_backend is not None:
            ours_backend.engine.close()
            ours_backend.closed = True
        if lm is None or getattr(lm, "_lfm_closed", False):
            t = time.time()
            lm = lmeval_model(
                backend,
                model,
                ours_backend if backend == "transformers" else None,
                batch_size,
                vllm_kwargs=vllm_kwargs,
            )
            report["lmeval_load_s"] += time.time() - t
            _time_model_calls(lm, report["benchmarks"], bench)
        lm._lfm_bench = bench
        items = ceval_items if bench == "ceval" else gsm_items
        index: dict[str, list[int]] = {}
        for k in chunk:
            index.setdefault(items[k][0], []).append(items[k][1])
        specs = [sp for sp in (ceval_specs if bench == "ceval" else gsm_specs) if sp["task"] in index]
        t = time.time()
        out = run_lmeval(lm, specs, tm, samples=index, name=f"lfm_{bench}")
        report["benchmarks"][bench]["lmeval_s"] += time.time() - t
        for task, rows in out["samples"].items():
            theirs[bench].setdefault(task, []).extend(rows)

    for r in range(rounds):
        for bench, items in (("ceval", ceval_items), ("gsm8k", gsm_items)):
            if not items:
                continue
            chunk = list(range(r, len(items), rounds))
            if not chunk:
                continue
            sides = (run_ours, run_theirs) if r % 2 == 0 else (run_theirs, run_ours)
            b = report["benchmarks"][bench]
            before = {"ours": b["ours_s"], "lm-eval": b["lmeval_s"]}
            detail = {"round": r + 1, "items": len(chunk), "first": "ours" if r % 2 == 0 else "lm-eval"}
            for side in sides:
                side(bench, chunk)
                # the 1-minute load average after each side: a figure taken under load is labelled as such
                detail[f"load_after_{'ours' if side is run_ours else 'lm-eval'}"] = round(os.getloadavg()[0], 2)
            detail["ours_s"] = round(b["ours_s"] - before["ours"], 2)
            detail["lmeval_s"] = round(b["lmeval_s"] - before["lm-eval"], 2)
            b.setdefault("per_round", []).append(detail)
            log(
                f"[round {r + 1}/{rounds}] {bench}: {len(chunk)} items, ours {detail['ours_s']}s, lm-eval "
                f"{detail['lmeval_s']}s ({detail['first']} first; load after ours {detail['load_after_ours']}, "
                f"after lm-eval {detail['load_after_lm-eval']})"
            )
    if lm is not None:
        _release(lm, backend)
    for b in report["benchmarks"].values():
        for key in ("ours_s", "lmeval_s", "lmeval_model_s"):
            b[key] = round(b[key], 2)
    report["ours_load_s"] = round(report["ours_load_s"], 1)
    report["lmeval_load_s"] = round(report["lmeval_load_s"], 1)
    theirs = {bench: {"samples": rows} for bench, rows in theirs.items()}

    # --- compare
    if ceval_items:
        samples = theirs["ceval"]["samples"]
        agree = correct_o = correct_t = same_prompt = 0
        diffs = []
        for (task, i, prompt, _s), mine in zip(ceval_items, results["ceval"]):
            doc = _docs_by_filter(samples[task])[i]
            lls = [float(r[0]) for r in doc["filtered_resps"]]
            pred = "ABCD"[max(range(4), key=lambda k: (lls[k], -k))]
            ctx = doc["arguments"][0][0]
            same_prompt += ctx == prompt
            agree += pred == mine["pred"]
            correct_o += mine["correct"]
            correct_t += bool(doc["acc"])
            if pred != mine["pred"] or ctx != prompt:
                diffs.append(
                    {
                        "task": task,
                        "doc": i,
                        "ours": mine["pred"],
                        "lmeval": pred,
                        "same_prompt": ctx == prompt,
                        "ours_scores": mine["scores"],
                        "lmeval_ll": [round(v, 6) for v in lls],
                    }
                )
        n = len(ceval_items)
        report["benchmarks"]["ceval"].update(
            n=n,
            agree=agree,
            agreement=agree / n,
            same_prompt=same_prompt,
            ours_acc=correct_o / n,
            lmeval_acc=correct_t / n,
            diffs=diffs[:20],
        )
    if gsm_items:
        docs = _docs_by_filter(theirs["gsm8k"]["samples"]["gsm8k"], "flexible-extract")
        raw = _docs_by_filter(theirs["gsm8k"]["samples"]["gsm8k"], "strict-match")
        agree = same_text = correct_o = correct_t = same_prompt = 0
        diffs = []
        for (_, i, prompt, _s), mine in zip(gsm_items, results["gsm8k"]):
            doc = docs[i]
            pred = doc["filtered_resps"][0]
            pred = clean_answer(pred) if pred not in (None, "[invalid]") else None
            text = raw[i]["resps"][0][0] if i in raw else doc["resps"][0][0]
            same_prompt += doc["arguments"][0][0] == prompt
            agree += pred == mine["pred"]
            same_text += text == mine["output"]
            correct_o += mine["correct"]
            correct_t += bool(doc["exact_match"])
            if pred != mine["pred"]:
                diffs.append(
                    {
                        "doc": i,
                        "ours": mine["pred"],
                        "lmeval": pred,
                        "ours_text": mine["output"][-200:],
                        "lmeval_text": text[-200:],
                    }
                )
        n = len(gsm_items)
        report["benchmarks"]["gsm8k"].update(
            n=n,
            agree=agree,
            agreement=agree / n,
            same_text=same_text,
            same_prompt=same_prompt,
            ours_acc=correct_o / n,
            lmeval_acc=correct_t / n,
            max_new_tokens=gsm8k_max_new_tokens,
            diffs=diffs[:20],
        )
    for b in report["benchmarks"].values():
        if b.get("ours_s") and b.get("lmeval_s"):
            b["speedup"] = round(b["lmeval_s"] / b["ours_s"], 2)
    if backend == "transformers":
        ours_backend.close()
    elif ours_backend is not None and not getattr(ours_backend, "closed", False):
        ours_backend.engine.close()
    return report


def _time_model_calls(lm, benchmarks: dict, first: str) -> None:
    """Add the time lm-eval spends inside its model calls to ``benchmarks[<bench>]['lmeval_model_s']`` (the rest of
    ``lmeval_s`` is lm-eval building its tasks and requests, paid once per slice)."""
    lm._lfm_bench = first
    for name in ("loglikelihood", "generate_until"):
        method = getattr(lm, name)

        def timed(*a, _method=method, **kw):
            t = time.time()
            try:
                return _method(*a, **kw)
            finally:
                benchmarks[lm._lfm_bench]["lmeval_model_s"] += time.time() - t

        setattr(lm, name, timed)


def _release(lm, backend: str) -> None:
    """vLLM: stop lm-eval's engine (one engine at a time on this CPU); transformers: nothing to free."""
    if backend == "vllm" and not getattr(lm, "_lfm_closed", False):
        _close_lmeval_vllm(lm)
        lm._lfm_closed = True


def _close_lmeval_vllm(lm) -> None:
    from llamafactory_minor_core.vllm_scoring import shutdown_llm

    shutdown_llm(getattr(lm, "model", None))


def format_report(rep: dict[str, object]) -> str:
    lines = [f"lm-eval-harness cross-check, backend {rep['backend']}, model {rep['model']}"]
    for name, b in rep["benchmarks"].items():
        if "n" not in b:
            continue
        extra = f", identical text {b['same_text']}/{b['n']}" if "same_text" in b else ""
        lines.append(
            f"  {name}: {b['n']} questions, predictions agree {b['agree']}/{b['n']} ({100 * b['agreement']:.1f}%), "
            f"same prompt {b['same_prompt']}/{b['n']}{extra}; accuracy ours {100 * b['ours_acc']:.2f}% vs lm-eval "
            f"{100 * b['lmeval_acc']:.2f}%; time ours {b['ours_s']}s vs lm-eval {b['lmeval_s']}s "
            f"(of which in its model calls {b.get('lmeval_model_s')}s; {b.get('rounds', 1)} interleaved rounds) "
            f"(ours/theirs throughput {b.get('speedup', float('nan'))}x)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m llamafactory_minor_eval.lmeval_bridge",
        description="Cross-check our evaluation against lm-eval-harness on local data.",
    )
    p.add_argument("--model", required=True, help="HF model folder")
    p.add_argument("--data-dir", required=True, help="folder with ceval/ (val + dev) and gsm8k/")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    p.add_argument("--ceval-per-subject", type=int, default=None, help="first N val questions per subject (0: none)")
    p.add_argument("--ceval-subjects", default=None, help="comma-separated subjects (default: all with a val file)")
    p.add_argument("--gsm8k", type=int, default=0, help="first N GSM8K questions (0-shot)")
    p.add_argument("--gsm8k-split", default="train")
    p.add_argument("--gsm8k-max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--rounds", type=int, default=2, help="interleave the two sides over N slices of the questions (default 2)"
    )
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    try:
        rep = crosscheck(
            args.model,
            args.data_dir,
            args.backend,
            args.ceval_per_subject,
            args.ceval_subjects.split(",") if args.ceval_subjects else None,
            args.gsm8k,
            args.gsm8k_split,
            args.gsm8k_max_new_tokens,
            args.batch_size,
            rounds=args.rounds,
        )
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(rep), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":  # vLLM starts its engine with spawn, which re-imports the main module
    sys.exit(main())

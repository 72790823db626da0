"""lm-eval-harness tasks over the batch runner's checkpoint list (PoFT's Open LLM Leaderboard suite).

Each (checkpoint, task) pair runs through lm-eval's own model classes -- ``HFLM`` (transformers, LoRA
adapters through its ``peft`` argument) or lm-eval's vLLM wrapper (``lora_local_path``) -- and is stored
beside our own benchmarks, in the same layout (``<output>/<checkpoint>/<column>/metrics.json``,
``samples.jsonl``, ``fingerprint.json``), so the summary tables and charts show both. A pair whose
metrics.json exists with the same fingerprint is skipped; the pending tasks of one checkpoint share one
model load. Nothing of lm-eval is copied; its task YAMLs are read from the installed package.

Pairs are resumed by content, by the rules (and the functions) of our own benchmarks' store (store.py): the
fingerprint holds a digest of the checkpoint's files and of the lm-eval data files the task reads (hub data:
``hub:<task>``), the paths only as information. The same files moved are reused; other bytes at the same path
(a checkpoint retrained in place, an edited data file) are redone; a pair of the older path-keyed version is
re-keyed when provably made from these files, else refused.

The suite as the PoFT paper reports it (the Open LLM Leaderboard v1 settings)::

    arc_challenge 25-shot acc_norm | hellaswag 10-shot acc_norm | truthfulqa_mc2 0-shot acc |
    winogrande 5-shot acc | gsm8k 5-shot exact_match (flexible-extract) | mmlu 5-shot acc

Offline, every task can be pointed at local files in the hub datasets' own row format
(``local_data_overrides``): ``<dir>/<task folder>/<split>.jsonl`` (see ``LOCAL_LAYOUT``).
"""

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llamafactory_minor_core.vllm_scoring import on_cpu

from .errors import EvalError
from .io_utils import atomic_write_json, atomic_write_text, jsonl_text, read_json
from .store import PAIR_INFO, checkpoint_files, digest_lines, mtime_ns, resume_line, resume_status

COLUMN_PREFIX = "lm-"


@dataclass
class LmEvalTask:
    """One column: an lm-eval task (or a list of its sub-tasks, averaged by size), shots and metric."""

    task: str
    num_fewshot: int
    metric: str  # e.g. "acc_norm", "acc", "exact_match"
    filter: str = "none"  # lm-eval's filter name, e.g. "flexible-extract"
    subtasks: list[str] | None = None  # e.g. a few mmlu_<subject> instead of the whole mmlu group
    overrides: dict[str, object] = field(default_factory=dict)  # per-task config overrides (local data)

    @property
    def column(self) -> str:
        return f"{COLUMN_PREFIX}{self.task}"

    @property
    def title(self) -> str:
        extra = f" ({self.filter})" if self.filter != "none" else " (mc2)" if self.task == "truthfulqa_mc2" else ""
        return f"{self.task} {self.num_fewshot}-shot {self.metric}{extra} [lm-eval]"

    @property
    def chance(self) -> float | None:
        """Score of a uniform guess (the chart's chance line), when the task has a fixed number of options."""
        return CHANCE.get(self.task)


POFT_SUITE = [
    LmEvalTask("arc_challenge", 25, "acc_norm"),
    LmEvalTask("hellaswag", 10, "acc_norm"),
    LmEvalTask("truthfulqa_mc2", 0, "acc"),
    LmEvalTask("winogrande", 5, "acc"),
    LmEvalTask("gsm8k", 5, "exact_match", "flexible-extract"),
    LmEvalTask("mmlu", 5, "acc"),
]

# a uniform guess: ARC-Challenge (almost all 4 options), HellaSwag and MMLU 4, Winogrande 2; none for
# TruthfulQA mc2 (the number of answers varies) and GSM8K
CHANCE = {"arc_challenge": 0.25, "hellaswag": 0.25, "winogrande": 0.5, "mmlu": 0.25}

# task -> (folder under the local data dir, dataset format, {lm-eval split name: file stem})
LOCAL_LAYOUT = {
    "arc_challenge": ("arc_challenge", "json", {"train": "train", "validation": "validation", "test": "test"}),
    "hellaswag": ("hellaswag", "json", {"train": "train", "validation": "validation"}),
    "truthfulqa_mc2": ("truthfulqa", "json", {"validation": "validation"}),
    "winogrande": ("winogrande", "json", {"train": "train", "validation": "validation"}),
    "gsm8k": ("gsm8k", "json", {"train": "train", "test": "test"}),
    "mmlu": ("mmlu", "json", {"test": "test", "validation": "validation", "dev": "dev"}),
}
TASK_FOLDERS = {
    "arc_challenge": "arc",
    "hellaswag": "hellaswag",
    "truthfulqa_mc2": "truthfulqa",
    "winogrande": "winogrande",
    "gsm8k": "gsm8k",
    "mmlu": "mmlu",
}


def suite_from_names(names: Sequence[str]) -> list[LmEvalTask]:
    """``arc_challenge`` (PoFT's shots and metric), ``arc_challenge@2`` (other shots), ``mmlu:anatomy,virology``
    (only these MMLU subjects)."""
    known = {t.task: t for t in POFT_SUITE}
    out = []
    for raw in names:
        name, _, shots = str(raw).strip().partition("@")
        name, _, subs = name.partition(":")
        if name not in known:
            raise EvalError(
                f"unknown lm-eval task {name!r}; this runner knows {', '.join(known)} "
                "(name[@shots], mmlu:subject,subject[@shots])"
            )
        if shots and not shots.strip().isdigit():
            raise EvalError(f"lm-eval task {raw!r}: the shots after @ must be a whole number >= 0, got {shots!r}")
        base = known[name]
        task = LmEvalTask(base.task, int(shots) if shots else base.num_fewshot, base.metric, base.filter)
        if subs:
            if name != "mmlu":
                raise EvalError(f"only mmlu takes sub-tasks (mmlu:anatomy,virology), not {name}")
            task.subtasks = [f"mmlu_{s}" for s in subs.split(",") if s]
        if task.column in {t.column for t in out}:
            raise EvalError(f"lm-eval task {name} is listed twice")
        out.append(task)
    return out


def parse_task_list(value) -> list[str]:
    """``"arc_challenge,hellaswag@10,mmlu:anatomy,virology@5"`` (or a list of such strings) -> one entry per
    task: after ``mmlu:``, names that are not tasks are its subjects."""
    items = value if isinstance(value, (list, tuple)) else [value]
    known = {t.task for t in POFT_SUITE}
    out: list[str] = []
    for item in items:
        for token in str(item).split(","):
            token = token.strip()
            if not token:
                continue
            head = token.partition("@")[0].partition(":")[0]
            if head not in known and out and out[-1].startswith("mmlu:") and "@" not in out[-1]:
                out[-1] += "," + token
            else:
                out.append(token)
    return out


def local_data_overrides(task: LmEvalTask, data_dir: str) -> dict[str, dict[str, object]]:
    """Per lm-eval task name: overrides pointing it at ``<data_dir>/<folder>/<split>.jsonl`` (MMLU:
    ``<data_dir>/mmlu/<subject>/<split>.jsonl``). Missing files are an error naming them."""
    folder, fmt, splits = LOCAL_LAYOUT[task.task]
    root = Path(os.path.expanduser(data_dir)) / folder
    if not root.is_dir():
        raise EvalError(f"lm-eval task {task.task}: no local data folder {root}")
    targets = task.subtasks or [task.task]
    if task.task == "mmlu" and not task.subtasks:
        subjects = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not subjects:
            raise EvalError(f"lm-eval task mmlu: no <subject>/ folders in {root}")
        targets = [f"mmlu_{s}" for s in subjects]
        task.subtasks = targets
    out = {}
    for name in targets:
        base = root / name[len("mmlu_") :] if task.task == "mmlu" else root
        files = {
            split: str(base / f"{stem}.jsonl") for split, stem in splits.items() if (base / f"{stem}.jsonl").is_file()
        }
        if not files:
            raise EvalError(f"lm-eval task {name}: no {', '.join(s + '.jsonl' for s in splits.values())} in {base}")
        out[name] = {"dataset_path": fmt, "dataset_name": None, "dataset_kwargs": {"data_files": files}}
    return out


def _task_specs(task: LmEvalTask, data_dir: str | None) -> list[dict[str, object]]:
    names = task.subtasks or [task.task]
    local = local_data_overrides(task, data_dir) if data_dir else {}
    specs = []
    for name in local.keys() if local else names:
        spec: dict[str, object] = {"task": name, "num_fewshot": task.num_fewshot}
        spec.update(local.get(name, {}))
        spec.update(task.overrides)
        specs.append(spec)
    return specs


# ----------------------------------------------------------------------------------------------------


def _spec_files(spec: dict) -> dict[str, list[str]]:
    """{split: files} an lm-eval task spec reads (its ``dataset_kwargs.data_files``); {} for a hub dataset."""
    files = (spec.get("dataset_kwargs") or {}).get("data_files") or {}
    if not isinstance(files, dict):
        files = {"": files}
    return {split: [f] if isinstance(f, str) else list(f) for split, f in sorted(files.items())}


def _data_files(specs: list[dict]) -> list[str]:
    return [f for spec in specs for fs in _spec_files(spec).values() for f in fs]


def _data_digest(task: LmEvalTask, specs: list[dict]) -> str:
    """The data files each (sub-)task reads, by content: a digest over the sub-task names, splits and file digests
    (not the paths); a task read from the hub is ``hub:<task>``."""
    from llamafactory_minor_core.digest import file_digest

    if not _data_files(specs):
        return f"hub:{task.task}"
    lines = []
    for spec in specs:
        digests = {}
        for split, files in _spec_files(spec).items():
            try:
                digests[split] = [file_digest(os.path.expanduser(f)) for f in files]
            except OSError as e:
                raise EvalError(f"lm-eval task {spec['task']}: cannot read its {split} data file: {e}") from None
        lines.append([spec["task"], digests])
    return digest_lines(lines)


def _fingerprint(
    ckpt,
    ckpt_digest: dict,
    task: LmEvalTask,
    specs: list[dict],
    backend: str,
    data_dir: str | None,
    limit: int | None,
    dtype: str = "float32",
    gen_kwargs: dict | None = None,
) -> dict:
    """The settings and content a pair's results come from; ``checkpoint`` and ``data`` (where they were read)
    are information only (store.PAIR_INFO: ``checkpoint_digest`` and ``data_digest`` are compared instead)."""
    import lm_eval

    fp = {
        "checkpoint": ckpt.identity(),
        "checkpoint_digest": ckpt_digest,
        "lmeval_task": task.task,
        "subtasks": task.subtasks,
        "num_fewshot": task.num_fewshot,
        "metric": task.metric,
        "filter": task.filter,
        "backend": backend,
        "data": str(Path(os.path.expanduser(data_dir)).resolve()) if data_dir else "hub",
        "data_digest": _data_digest(task, specs),
        "limit": limit,
        "dtype": dtype,
        "lm_eval": lm_eval.__version__,
    }
    if task.overrides:
        fp["overrides"] = json.loads(json.dumps(task.overrides, sort_keys=True, default=str))
    if gen_kwargs and task.task == "gsm8k":  # only generation tasks take them
        fp["gen_kwargs"] = dict(sorted(gen_kwargs.items()))
    return fp


def _interval(values: list[float]) -> list[float] | None:
    """95% interval of a mean score: Wilson for 0/1 scores (acc, acc_norm, exact_match), else the normal
    approximation mean +- 1.96 sd / sqrt(n), clipped to [0, 1] (TruthfulQA mc2's per-question scores)."""
    from .metrics import Z95, wilson_interval

    n = len(values)
    if not n:
        return None
    if all(v in (0.0, 1.0) for v in values):
        return list(wilson_interval(int(sum(values)), n))
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    half = Z95 * sd / n**0.5
    return [max(0.0, mean - half), min(1.0, mean + half)]


def _lm(ckpt, backend: str, batch_size: int, dtype: str):
    if backend == "transformers":
        from lm_eval.models.huggingface import HFLM

        kwargs = dict(
            pretrained=os.path.expanduser(ckpt.model_path),
            batch_size=batch_size,
            dtype=dtype,
            device="cpu" if on_cpu() else "cuda",
        )
        if ckpt.adapter:
            kwargs["peft"] = os.path.expanduser(ckpt.adapter)
        return HFLM(**kwargs)
    if backend == "vllm":
        from lm_eval.models.vllm_causallms import VLLM

        from .engines import lmeval_vllm_kwargs

        kwargs = lmeval_vllm_kwargs(os.path.expanduser(ckpt.model_path))  # the core's CPU settings
        if ckpt.adapter:
            from .models import adapter_rank

            kwargs.update(
                lora_local_path=os.path.expanduser(ckpt.adapter), max_lora_rank=max(8, adapter_rank(ckpt.adapter))
            )
        return VLLM(**kwargs)
    raise EvalError(f"unknown backend {backend!r}")


def _metrics_from(result: dict, task: LmEvalTask, ckpt_name: str, backend: str, elapsed: float) -> tuple:
    """Our metrics.json schema from lm-eval's results: accuracy = lm-eval's metric (sub-tasks averaged by
    size, like lm-eval's groups), per sub-task as "subjects"."""
    key = f"{task.metric},{task.filter}"
    names = task.subtasks or [task.task]
    subjects, records, all_values, split = {}, [], [], None
    for name in names:
        res = result["results"].get(name)
        if res is None or key not in res:
            raise EvalError(f"lm-eval gave no {key} for {name} (it has: {', '.join(sorted(res or {}))})")
        docs = [s for s in result["samples"].get(name, []) if s.get("filter") == task.filter]
        n = len(docs)
        values = [float(s[task.metric]) for s in docs]
        all_values.extend(values)
        subjects[name] = {"n": n, "correct": sum(values), "accuracy": float(res[key]), "unparsed": 0}
        config = (result.get("configs") or {}).get(name) or {}
        split = config.get("test_split") or config.get("validation_split") or split  # lm-eval's order
        for s in docs:
            records.append(
                {
                    "key": f"{name}/{s['doc_id']}",
                    "benchmark": task.column,
                    "subject": name,
                    "id": str(s["doc_id"]),
                    "gold": json.loads(json.dumps(s.get("target"), default=str)),
                    "output": json.loads(json.dumps(s.get("filtered_resps"), default=str)),
                    "correct": float(s[task.metric]),
                    "mode": f"lm-eval {task.metric}",
                }
            )
    n = sum(s["n"] for s in subjects.values())
    correct = sum(s["correct"] for s in subjects.values())
    macro_ci = None
    if len(subjects) > 1 and all(v in (0.0, 1.0) for v in all_values):
        from .metrics import bootstrap_macro_interval

        macro_ci = list(bootstrap_macro_interval([(int(s["correct"]), s["n"]) for s in subjects.values()]))
    metrics = {
        "source": "lm-eval",
        "lmeval_task": task.task,
        "metric": task.metric,
        "filter": task.filter,
        "chance": task.chance,
        "n": n,
        "correct": int(correct) if float(correct).is_integer() else round(correct, 6),
        "accuracy": correct / n if n else 0.0,
        "ci95": _interval(all_values),
        "macro_accuracy": sum(s["accuracy"] for s in subjects.values()) / len(subjects) if subjects else 0.0,
        "macro_ci95": macro_ci if len(subjects) > 1 else _interval(all_values),
        "unparsed": 0,
        "n_subjects": len(subjects),
        "subjects": subjects,
        "categories": {},
        "checkpoint": ckpt_name,
        "benchmark": task.column,
        "title": task.title,
        "mode": f"lm-eval {task.metric}",
        "parser": f"lm-eval {task.filter}" if task.filter != "none" else f"lm-eval {task.metric}",
        "split": split or "",
        "few_shot": task.num_fewshot,
        "backend": {"backend": f"lm-eval {backend}"},
        "elapsed_s": round(elapsed, 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "lmeval_results": {k: result["results"][k] for k in names},
    }
    return metrics, records


def plan_pairs(
    ckpt,
    tasks: list[LmEvalTask],
    output_dir: str,
    backend: str = "transformers",
    data_dir: str | None = None,
    dtype: str = "float32",
    limit: int | None = None,
    gen_kwargs: dict | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple:
    """(done {column: metrics}, pending [(task, specs, pair folder, fingerprint)]) of one checkpoint, by the
    content of its files and of the data files (store.resume_status): a stale pair (content changed at the same
    path) is removed and pending; the same content at other paths is done (its fingerprint records the new
    paths). Results in the folder made with other settings are an error naming the differing keys (unless
    ``overwrite``); missing local data files too. Loads no model."""
    from .models import safe_name

    folder = Path(os.path.expanduser(output_dir)) / safe_name(ckpt.name)
    ckpt_digest = ckpt.content_identity()
    done: dict[str, dict] = {}
    pending = []
    for task in tasks:
        specs = _task_specs(task, data_dir)  # resolves mmlu's sub-tasks before the fingerprint
        pair = folder / task.column
        fp = _fingerprint(ckpt, ckpt_digest, task, specs, backend, data_dir, limit, dtype, gen_kwargs)
        status = None
        if (pair / "fingerprint.json").is_file():
            files = checkpoint_files(ckpt) + _data_files(specs)
            status, keys = resume_status(
                read_json(pair / "fingerprint.json"),
                fp,
                PAIR_INFO,
                files,
                _run_started(pair),
                overwrite,
                pair,
                "lm-eval results",
            )
            line = resume_line(status, f"{ckpt.name} | {task.column}", keys)
            if line and log:
                log(line)
            if status == "stale":
                shutil.rmtree(pair)
            elif status in ("rekey", "moved"):
                atomic_write_json(pair / "fingerprint.json", fp)
        finished = (pair / "metrics.json").is_file() and (pair / "samples.jsonl").is_file()
        if status in ("same", "moved", "rekey") and finished:
            done[task.column] = read_json(pair / "metrics.json")
            continue
        pending.append((task, specs, pair, fp))
    return done, pending


def _run_started(pair: Path) -> int | None:
    """When the lm-eval run of a stored pair started, as far as its files tell (what results of the older
    path-keyed version are checked against): its fingerprint.json is written after the run, so that file's time
    minus metrics.json's ``elapsed_s`` and a second's margin; the fingerprint's own time when the pair never
    finished (nothing of it is reused); None (not known) when metrics.json holds no ``elapsed_s``."""
    written = mtime_ns(pair / "fingerprint.json")
    if written is None or not (pair / "metrics.json").is_file():
        return written
    try:
        elapsed = float(read_json(pair / "metrics.json")["elapsed_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return written - int((elapsed + 1.0) * 1e9)


def store_pair(pair: Path, fp: dict, records: list[dict], metrics: dict) -> None:
    """A finished pair as a rerun finds it: its fingerprint, lm-eval's per-document records, then its metrics
    (never old metrics beside a new fingerprint)."""
    pair.mkdir(parents=True, exist_ok=True)
    (pair / "metrics.json").unlink(missing_ok=True)
    atomic_write_json(pair / "fingerprint.json", fp)
    atomic_write_text(pair / "samples.jsonl", jsonl_text(records))
    atomic_write_json(pair / "metrics.json", metrics)


def new_task_manager(tasks: list[LmEvalTask]):
    """lm-eval's TaskManager over the task folders of ``tasks`` only (shared by every checkpoint)."""
    from .lmeval_bridge import task_manager

    return task_manager(sorted({TASK_FOLDERS[t.task] for t in tasks}))


def run_suite(
    checkpoints,
    tasks: list[LmEvalTask],
    output_dir: str,
    backend: str = "transformers",
    data_dir: str | None = None,
    batch_size: int = 8,
    dtype: str = "float32",
    limit: int | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    gen_kwargs: dict | None = None,
    tm=None,
) -> dict[str, dict[str, dict]]:
    """Every (checkpoint, task) pair not done yet; returns {checkpoint name: {column: metrics}}.

    ``limit``: lm-eval's own (the first N documents of each task / MMLU subject); ``gen_kwargs``: lm-eval's
    override of generation tasks' settings (e.g. ``{"max_gen_toks": 64}``); ``tm``: a TaskManager to reuse."""
    from .lmeval_bridge import _lm_eval, group_spec

    _lm_eval()
    from lm_eval import simple_evaluate

    done: dict[str, dict[str, dict]] = {}
    for ckpt in checkpoints:
        finished, pending = plan_pairs(
            ckpt, tasks, output_dir, backend, data_dir, dtype, limit, gen_kwargs, overwrite, log=log
        )
        for task in tasks:
            if task.column in finished:
                done.setdefault(ckpt.name, {})[task.column] = finished[task.column]
                log(f"[skip] {ckpt.name} | {task.title}: done")
        if not pending:
            continue
        if tm is None:
            tm = new_task_manager(tasks)
        log(f"[load] {ckpt.name}: lm-eval {backend} for {', '.join(t.task for t, *_ in pending)}")
        lm = _lm(ckpt, backend, batch_size, dtype)
        try:
            for task, specs, pair, fp in pending:
                t0 = time.time()
                try:
                    result = simple_evaluate(
                        model=lm,
                        tasks=[group_spec(f"lfm_{task.task}", specs)],
                        task_manager=tm,
                        num_fewshot=None,
                        limit=limit,
                        log_samples=True,
                        bootstrap_iters=0,
                        gen_kwargs=dict(gen_kwargs) if gen_kwargs else None,
                    )
                except (KeyboardInterrupt, EvalError):
                    raise
                except Exception as exc:  # noqa: BLE001 - lm-eval's errors (missing data, hub offline) in one line
                    raise EvalError(
                        f"lm-eval failed on {ckpt.name} | {task.title}: {type(exc).__name__}: {str(exc).strip()[:400]}"
                    ) from None
                metrics, records = _metrics_from(result, task, ckpt.name, backend, time.time() - t0)
                store_pair(pair, fp, records, metrics)
                done.setdefault(ckpt.name, {})[task.column] = metrics
                log(f"[result] {ckpt.name} | {task.title}: {100 * metrics['accuracy']:.2f}% over {metrics['n']}")
        finally:
            if backend == "vllm":
                from .lmeval_bridge import _close_lmeval_vllm

                _close_lmeval_vllm(lm)
            del lm
    return done

"""lm-eval-harness tasks over the batch runner's checkpoint list (PoFT's Open LLM Leaderboard suite).

Each (checkpoint, task) pair runs through lm-eval's own model classes -- ``HFLM`` (transformers, LoRA
adapters through its ``peft`` argument) or lm-eval's vLLM wrapper (``lora_local_path``) -- and is stored
beside our own benchmarks, in the same layout (``<output>/<checkpoint>/<column>/metrics.json``,
``samples.jsonl``, ``fingerprint.json``), so the summary tables and charts show both. A pair whose
metrics.json exists with the same fingerprint is skipped; the pending tasks of one checkpoint share one
model load. Nothing of lm-eval is copied; its task YAMLs are read from the installed package.

The suite as the PoFT paper reports it (the Open LLM Leaderboard v1 settings)::

    arc_challenge 25-shot acc_norm | hellaswag 10-shot acc_norm | truthfulqa_mc2 0-shot acc |
    winogrande 5-shot acc | gsm8k 5-shot exact_match (flexible-extract) | mmlu 5-shot acc

Offline, every task can be pointed at local files in the hub datasets' own row format
(``local_data_overrides``): ``<dir>/<task folder>/<split>.jsonl`` (see ``LOCAL_LAYOUT``).
"""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .errors import EvalError
from .io_utils import atomic_write_json, atomic_write_text, jsonl_text, read_json

COLUMN_PREFIX = "lm-"


@dataclass
class LmEvalTask:
    """One column: an lm-eval task (or a list of its sub-tasks, averaged by size), shots and metric."""

    task: str
    num_fewshot: int
    metric: str  # e.g. "acc_norm", "acc", "exact_match"
    filter: str = "none"  # lm-eval's filter name, e.g. "flexible-extract"
    subtasks: Optional[List[str]] = None  # e.g. a few mmlu_<subject> instead of the whole mmlu group
    overrides: Dict[str, object] = field(default_factory=dict)  # per-task config overrides (local data)

    @property
    def column(self) -> str:
        return f"{COLUMN_PREFIX}{self.task}"

    @property
    def title(self) -> str:
        extra = f" ({self.filter})" if self.filter != "none" else ""
        return f"{self.task} {self.num_fewshot}-shot {self.metric}{extra} [lm-eval]"


POFT_SUITE = [
    LmEvalTask("arc_challenge", 25, "acc_norm"),
    LmEvalTask("hellaswag", 10, "acc_norm"),
    LmEvalTask("truthfulqa_mc2", 0, "acc"),
    LmEvalTask("winogrande", 5, "acc"),
    LmEvalTask("gsm8k", 5, "exact_match", "flexible-extract"),
    LmEvalTask("mmlu", 5, "acc"),
]

# task -> (folder under the local data dir, dataset format, {lm-eval split name: file stem})
LOCAL_LAYOUT = {
    "arc_challenge": ("arc_challenge", "json", {"train": "train", "validation": "validation", "test": "test"}),
    "hellaswag": ("hellaswag", "json", {"train": "train", "validation": "validation"}),
    "truthfulqa_mc2": ("truthfulqa", "json", {"validation": "validation"}),
    "winogrande": ("winogrande", "json", {"train": "train", "validation": "validation"}),
    "gsm8k": ("gsm8k", "json", {"train": "train", "test": "test"}),
    "mmlu": ("mmlu", "json", {"test": "test", "validation": "validation", "dev": "dev"}),
}
TASK_FOLDERS = {"arc_challenge": "arc", "hellaswag": "hellaswag", "truthfulqa_mc2": "truthfulqa",
                "winogrande": "winogrande", "gsm8k": "gsm8k", "mmlu": "mmlu"}


def suite_from_names(names: Sequence[str]) -> List[LmEvalTask]:
    """``arc_challenge`` (PoFT's shots and metric), ``arc_challenge@2`` (other shots), ``mmlu:anatomy,virology``
    (only these MMLU subjects)."""
    known = {t.task: t for t in POFT_SUITE}
    out = []
    for raw in names:
        name, _, shots = str(raw).partition("@")
        name, _, subs = name.partition(":")
        if name not in known:
            raise EvalError(f"unknown lm-eval task {name!r}; this runner knows {', '.join(known)}")
        base = known[name]
        task = LmEvalTask(base.task, int(shots) if shots else base.num_fewshot, base.metric, base.filter)
        if subs:
            if name != "mmlu":
                raise EvalError(f"only mmlu takes sub-tasks (mmlu:anatomy,virology), not {name}")
            task.subtasks = [f"mmlu_{s}" for s in subs.split(",") if s]
        out.append(task)
    return out


def local_data_overrides(task: LmEvalTask, data_dir: str) -> Dict[str, Dict[str, object]]:
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
        base = root / name[len("mmlu_"):] if task.task == "mmlu" else root
        files = {split: str(base / f"{stem}.jsonl") for split, stem in splits.items() if (base / f"{stem}.jsonl").is_file()}
        if not files:
            raise EvalError(f"lm-eval task {name}: no {', '.join(s + '.jsonl' for s in splits.values())} in {base}")
        out[name] = {"dataset_path": fmt, "dataset_name": None, "dataset_kwargs": {"data_files": files}}
    return out


def _task_specs(task: LmEvalTask, data_dir: Optional[str]) -> List[Dict[str, object]]:
    names = task.subtasks or [task.task]
    local = local_data_overrides(task, data_dir) if data_dir else {}
    specs = []
    for name in (local.keys() if local else names):
        spec: Dict[str, object] = {"task": name, "num_fewshot": task.num_fewshot}
        spec.update(local.get(name, {}))
        spec.update(task.overrides)
        specs.append(spec)
    return specs


# ----------------------------------------------------------------------------------------------------


def _fingerprint(ckpt, task: LmEvalTask, backend: str, data_dir: Optional[str], limit: Optional[int]) -> dict:
    import lm_eval

    return {"checkpoint": ckpt.identity(), "lmeval_task": task.task, "subtasks": task.subtasks,
            "num_fewshot": task.num_fewshot, "metric": task.metric, "filter": task.filter, "backend": backend,
            "data": str(Path(data_dir).resolve()) if data_dir else "hub", "limit": limit,
            "lm_eval": lm_eval.__version__}


def _lm(ckpt, backend: str, batch_size: int, dtype: str):
    if backend == "transformers":
        from lm_eval.models.huggingface import HFLM

        kwargs = dict(pretrained=os.path.expanduser(ckpt.model_path), batch_size=batch_size, dtype=dtype,
                      device="cpu" if not _cuda() else "cuda")
        if ckpt.adapter:
            kwargs["peft"] = os.path.expanduser(ckpt.adapter)
        return HFLM(**kwargs)
    if backend == "vllm":
        from lm_eval.models.vllm_causallms import VLLM

        kwargs = dict(pretrained=os.path.expanduser(ckpt.model_path), dtype="float32" if not _cuda() else "auto",
                      batch_size="auto", enforce_eager=True)
        if not _cuda():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            kwargs["kv_cache_memory_bytes"] = 1 << 30
        if ckpt.adapter:
            from .models import adapter_rank

            kwargs.update(lora_local_path=os.path.expanduser(ckpt.adapter), max_lora_rank=max(8, adapter_rank(ckpt.adapter)))
        return VLLM(**kwargs)
    raise EvalError(f"unknown backend {backend!r}")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def _metrics_from(result: dict, task: LmEvalTask, ckpt_name: str, backend: str, elapsed: float) -> tuple:
    """Our metrics.json schema from lm-eval's results: accuracy = lm-eval's metric (sub-tasks averaged by
    size, like lm-eval's groups), per sub-task as "subjects"."""
    key = f"{task.metric},{task.filter}"
    names = task.subtasks or [task.task]
    subjects, records = {}, []
    for name in names:
        res = result["results"].get(name)
        if res is None or key not in res:
            raise EvalError(f"lm-eval gave no {key} for {name} (it has: {', '.join(sorted(res or {}))})")
        docs = [s for s in result["samples"].get(name, []) if s.get("filter") == task.filter]
        n = len(docs)
        values = [float(s[task.metric]) for s in docs]
        subjects[name] = {"n": n, "correct": sum(values), "accuracy": float(res[key]), "unparsed": 0}
        for s in docs:
            records.append({"key": f"{name}/{s['doc_id']}", "benchmark": task.column, "subject": name,
                            "id": str(s["doc_id"]), "gold": json.loads(json.dumps(s.get("target"), default=str)),
                            "output": json.loads(json.dumps(s.get("filtered_resps"), default=str)),
                            "correct": float(s[task.metric]), "mode": f"lm-eval {task.metric}"})
    n = sum(s["n"] for s in subjects.values())
    correct = sum(s["correct"] for s in subjects.values())
    metrics = {
        "n": n, "correct": correct, "accuracy": correct / n if n else 0.0,
        "macro_accuracy": sum(s["accuracy"] for s in subjects.values()) / len(subjects) if subjects else 0.0,
        "unparsed": 0, "n_subjects": len(subjects), "subjects": subjects, "categories": {},
        "checkpoint": ckpt_name, "benchmark": task.column, "title": task.title, "mode": f"lm-eval {task.metric}",
        "parser": f"lm-eval {task.filter}" if task.filter != "none" else f"lm-eval {task.metric}",
        "few_shot": task.num_fewshot, "backend": {"backend": f"lm-eval {backend}"}, "elapsed_s": round(elapsed, 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "lmeval_results": {k: result["results"][k] for k in names},
    }
    return metrics, records


def run_suite(checkpoints, tasks: List[LmEvalTask], output_dir: str, backend: str = "transformers",
              data_dir: Optional[str] = None, batch_size: int = 8, dtype: str = "float32", limit: Optional[int] = None,
              overwrite: bool = False, log: Callable[[str], None] = print) -> Dict[str, Dict[str, dict]]:
    """Every (checkpoint, task) pair not done yet; returns {checkpoint name: {column: metrics}}."""
    from .lmeval_bridge import _lm_eval, group_spec
    from .models import safe_name

    _lm_eval()
    from lm_eval import simple_evaluate

    from .lmeval_bridge import task_manager

    out = Path(os.path.expanduser(output_dir))
    done: Dict[str, Dict[str, dict]] = {}
    tm = None
    for ckpt in checkpoints:
        folder = out / safe_name(ckpt.name)
        pending = []
        for task in tasks:
            specs = _task_specs(task, data_dir)  # resolves mmlu's sub-tasks before the fingerprint
            pair = folder / task.column
            fp = _fingerprint(ckpt, task, backend, data_dir, limit)
            old = read_json(pair / "fingerprint.json") if (pair / "fingerprint.json").is_file() else None
            if old is not None and old != fp and not overwrite:
                diff = sorted(k for k in set(fp) | set(old) if fp.get(k) != old.get(k))
                raise EvalError(f"{pair} holds lm-eval results made with other settings (different: {', '.join(diff)}); "
                                "use --overwrite to redo them, or another --output-dir")
            if old == fp and (pair / "metrics.json").is_file() and (pair / "samples.jsonl").is_file():
                done.setdefault(ckpt.name, {})[task.column] = read_json(pair / "metrics.json")
                log(f"[skip] {ckpt.name} | {task.title}: done")
                continue
            pending.append((task, specs, pair, fp))
        if not pending:
            continue
        if tm is None:
            tm = task_manager(sorted({TASK_FOLDERS[t.task] for t in tasks}))
        log(f"[load] {ckpt.name}: lm-eval {backend} for {', '.join(t.task for t, *_ in pending)}")
        lm = _lm(ckpt, backend, batch_size, dtype)
        try:
            for task, specs, pair, fp in pending:
                t0 = time.time()
                result = simple_evaluate(model=lm, tasks=[group_spec(f"lfm_{task.task}", specs)], task_manager=tm,
                                         num_fewshot=None, limit=limit, log_samples=True, bootstrap_iters=0)
                metrics, records = _metrics_from(result, task, ckpt.name, backend, time.time() - t0)
                pair.mkdir(parents=True, exist_ok=True)
                atomic_write_json(pair / "fingerprint.json", fp)
                atomic_write_text(pair / "samples.jsonl", jsonl_text(records))
                atomic_write_json(pair / "metrics.json", metrics)
                done.setdefault(ckpt.name, {})[task.column] = metrics
                log(f"[result] {ckpt.name} | {task.title}: {100 * metrics['accuracy']:.2f}% over {metrics['n']}")
        finally:
            if backend == "vllm":
                from .lmeval_bridge import _close_lmeval_vllm

                _close_lmeval_vllm(lm)
            del lm
    return done

"""Shared machinery of ``bench_train_speed.py`` and ``bench_precompute.py``.

Each training variant runs in its own fresh subprocess (this file with ``--worker``), which calls LF's
``run_exp`` in-process -- the exact code path of ``llamafactory-cli train`` on one device -- with a
``TrainerCallback`` that records:

* ``time.perf_counter()`` at ``on_train_begin`` and at every ``on_step_end`` (per-step times are the
  deltas, so a step includes data loading, the forward/backward passes, the optimizer step and the
  previous step's logging -- everything the trainer does per step);
* ``VmHWM`` / ``VmRSS`` (``/proc/self/status``) at ``on_train_begin`` and ``on_train_end``: the peak RSS of
  the process up to the start and up to the end of training (model loading included, the final
  ``save_model`` excluded);
* ``len(train_dataloader)`` (steps per epoch).

The parent also collects the child's whole-lifetime peak RSS with ``os.wait4`` (``ru_maxrss`` of that one
child) and greps the child's log for the plugin's scoring-pass lines (``Reference scores (...): scored N
rows in Xs``).

Stock LF baselines (``sft``, ``dpo``) run with ``LLAMAFACTORY_MINOR_DISABLE=1`` and LF's own
``llamafactory.train.tuner.run_exp``: pure LLaMA-Factory 0.9.5, the plugin not even imported. The plugin's
variants run through ``llamafactory_minor.run_exp``.

Nothing here imports torch, transformers or LF in the parent process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_DATA_DIR = os.path.join(REPO_ROOT, "tests", "fixtures", "data")
LF_TEMPLATE = "smollm2"

# the same environment the test suite gives its CLI subprocesses (offline, no wandb, quiet tokenizers)
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_DISABLED": "true",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}
# the model folders `make models` / the test suite build (not ~/.cache: no second 600 MB copy)
os.environ.setdefault("LLAMAFACTORY_MINOR_CACHE", os.path.join(REPO_ROOT, ".cache", "models"))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

SCORED_RE = re.compile(r"(Reference scores|Aligned scores)\s+(.*?):\s+scored\s+(\d+)\s+rows\s+in\s+([0-9.]+)s")
REUSED_RE = re.compile(r"(Reference scores|Aligned scores)\s+(.*?):\s+reusing cached scores")


# --------------------------------------------------------------------------------------------------
# models and configs
# --------------------------------------------------------------------------------------------------
MODEL_CHOICES = ("smollm2", "tiny", "tiny-large")


def model_path(name: str) -> str:
    from tools import cpu_models  # cheap: no torch / LF import (REPO_ROOT is on sys.path)

    if name == "smollm2":
        return cpu_models.smollm2_path()
    if name == "tiny":
        return cpu_models.tiny_model_path()
    if name == "tiny-large":
        return cpu_models.tiny_model_path("large")
    raise ValueError(f"unknown model {name!r}; choose from {MODEL_CHOICES}")


def train_config(
    model: str,
    output_dir: str,
    stage: str,
    dataset: str,
    steps: int,
    batch: int,
    cutoff: int,
    finetuning_type: str = "lora",
    **overrides: Any,
) -> dict[str, Any]:
    """A complete LF training config (the test suite's ``tiny_train_config`` shape) for one variant."""
    cfg: dict[str, Any] = {
        "model_name_or_path": model,
        "trust_remote_code": False,
        "stage": stage,
        "do_train": True,
        "finetuning_type": finetuning_type,
        "dataset": dataset,
        "dataset_dir": FIXTURE_DATA_DIR,
        "template": LF_TEMPLATE,
        "cutoff_len": cutoff,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "output_dir": output_dir,
        "overwrite_output_dir": True,
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-4,
        "lr_scheduler_type": "constant",
        "max_steps": steps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
        "bf16": False,
        "fp16": False,
    }
    if finetuning_type == "lora":
        cfg.update({"lora_rank": 8, "lora_target": "all"})
    cfg.update(overrides)
    return cfg


# --------------------------------------------------------------------------------------------------
# the worker (runs inside the fresh subprocess)
# --------------------------------------------------------------------------------------------------
def _proc_status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return -1


def _time_scoring_passes(sink: list[dict[str, Any]]) -> None:
    """Time every scoring pass (``run_pass``: cache check, model load, scoring, cache write) in wall-clock
    and process-CPU seconds. Instrumentation only: wraps the name the plugin's callers look up."""
    import llamafactory_minor.scores.aligned as aligned
    import llamafactory_minor.scores.reference as reference

    for module in (aligned, reference):
        original = module.run_pass

        def timed(*args, _original=original, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return _original(*args, **kwargs)
            finally:
                sink.append(
                    {
                        "desc": kwargs.get("desc", ""),
                        "wall": time.perf_counter() - wall,
                        "cpu": time.process_time() - cpu,
                    }
                )

        module.run_pass = timed


def _worker(cfg_path: str, result_path: str, plugin: bool) -> None:
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)

    from transformers import TrainerCallback

    record: dict[str, Any] = {"step_end": [], "cpu_step_end": [], "plugin": plugin, "passes": []}

    class Recorder(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            record["train_begin"] = time.perf_counter()
            record["cpu_train_begin"] = time.process_time()
            record["hwm_train_begin_kb"] = _proc_status_kb("VmHWM")
            record["rss_train_begin_kb"] = _proc_status_kb("VmRSS")
            loader = kwargs.get("train_dataloader")
            try:
                record["steps_per_epoch"] = len(loader) if loader is not None else None
            except TypeError:
                record["steps_per_epoch"] = None

        def on_step_end(self, args, state, control, **kwargs):
            record["step_end"].append(time.perf_counter())
            record["cpu_step_end"].append(time.process_time())

        def on_train_end(self, args, state, control, **kwargs):
            record["train_end"] = time.perf_counter()
            record["hwm_train_end_kb"] = _proc_status_kb("VmHWM")
            record["rss_train_end_kb"] = _proc_status_kb("VmRSS")
            record["losses"] = [h["loss"] for h in state.log_history if "loss" in h]

    start = time.perf_counter()
    if plugin:
        import llamafactory_minor

        run_exp = llamafactory_minor.run_exp
        _time_scoring_passes(record["passes"])
    else:
        assert os.environ.get("LLAMAFACTORY_MINOR_DISABLE") == "1", "stock runs need the plugin switched off"
        from llamafactory.train.tuner import run_exp
    record["import_s"] = time.perf_counter() - start
    run_exp(cfg, callbacks=[Recorder()])
    record["total_s"] = time.perf_counter() - start
    try:
        import torch

        record["torch_threads"] = torch.get_num_threads()
    except Exception:  # pragma: no cover
        pass
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(record, f)


# --------------------------------------------------------------------------------------------------
# the parent side
# --------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    name: str
    step_times: list[float]  # wall-clock seconds of every step, warm-up included
    cpu_step_times: list[float]  # process CPU seconds (user + system, all threads) of every step
    steps_per_epoch: int | None
    peak_rss_kb: int  # whole child lifetime (os.wait4 ru_maxrss)
    hwm_train_end_kb: int  # VmHWM at the end of training
    hwm_train_begin_kb: int
    scored: list[dict[str, Any]]  # scoring-pass log lines
    reused: list[str]
    wall_s: float
    losses: list[float] = field(default_factory=list)
    passes: list[dict[str, Any]] = field(default_factory=list)  # timed scoring passes (wall, cpu)
    log_path: str = ""

    def times(self, clock: str) -> list[float]:
        return self.cpu_step_times if clock == "cpu" else self.step_times


class VariantFailed(RuntimeError):
    pass


def _tail(path: str, n: int = 60) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return "<no log>"
    return "\n".join(lines[-n:])


def run_variant(
    name: str,
    cfg: dict[str, Any],
    plugin: bool,
    workdir: str,
    timeout: float = 1800,
    threads: int | None = None,
) -> RunResult:
    """Run one training variant in a fresh subprocess; per-step times and peak RSS."""
    os.makedirs(workdir, exist_ok=True)
    tag = f"{name}-{int(time.time() * 1000) % 10**9}"
    cfg_path = os.path.join(workdir, f"{tag}.json")
    result_path = os.path.join(workdir, f"{tag}.result.json")
    log_path = os.path.join(workdir, f"{tag}.log")
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if plugin:
        env.pop("LLAMAFACTORY_MINOR_DISABLE", None)
    else:
        env["LLAMAFACTORY_MINOR_DISABLE"] = "1"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", cfg_path, result_path, "1" if plugin else "0"]
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = start + timeout
        while True:  # os.wait4: this child's own rusage (ru_maxrss in KB on Linux)
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, rusage = os.wait4(proc.pid, 0)
                raise VariantFailed(f"{name}: timed out after {timeout:.0f}s; log {log_path}:\n{_tail(log_path)}")
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not os.path.isfile(result_path):
        raise VariantFailed(f"{name}: exit code {proc.returncode}; log {log_path}:\n{_tail(log_path)}")
    with open(result_path, encoding="utf-8") as f:
        rec = json.load(f)
    marks = [rec["train_begin"]] + rec["step_end"]
    step_times = [b - a for a, b in zip(marks, marks[1:])]
    cpu_marks = [rec["cpu_train_begin"]] + rec["cpu_step_end"]
    cpu_step_times = [b - a for a, b in zip(cpu_marks, cpu_marks[1:])]
    with open(log_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    scored = [
        {"what": m.group(1), "split": m.group(2), "rows": int(m.group(3)), "seconds": float(m.group(4))}
        for m in SCORED_RE.finditer(text)
    ]
    reused = [f"{m.group(1)} {m.group(2)}" for m in REUSED_RE.finditer(text)]
    return RunResult(
        name=name,
        step_times=step_times,
        cpu_step_times=cpu_step_times,
        steps_per_epoch=rec.get("steps_per_epoch"),
        peak_rss_kb=rusage.ru_maxrss,
        hwm_train_end_kb=rec.get("hwm_train_end_kb", -1),
        hwm_train_begin_kb=rec.get("hwm_train_begin_kb", -1),
        scored=scored,
        reused=reused,
        wall_s=wall,
        losses=rec.get("losses", []),
        passes=rec.get("passes", []),
        log_path=log_path,
    )


@dataclass
class Variant:
    name: str
    make_cfg: Callable[[str], dict[str, Any]]  # output_dir -> config
    plugin: bool
    results: list[RunResult] = field(default_factory=list)

    def step_times(self, warmup: int, clock: str = "wall") -> list[float]:
        """Pooled per-step times of every run, the first ``warmup`` steps of each run excluded."""
        out: list[float] = []
        for r in self.results:
            out += r.times(clock)[warmup:]
        return out

    def median_step(self, warmup: int, clock: str = "wall") -> float:
        times = self.step_times(warmup, clock)
        return statistics.median(times) if times else float("nan")

    def median_round_step(self, round_index: int, warmup: int, clock: str = "wall") -> float:
        return statistics.median(self.results[round_index].times(clock)[warmup:])

    def peak_kb(self, attr: str = "hwm_train_end_kb") -> float:
        return statistics.median(getattr(r, attr) for r in self.results)


def run_interleaved(
    variants: Sequence[Variant],
    rounds: int,
    workdir: str,
    timeout: float = 1800,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """Run every variant ``rounds`` times, interleaved: A B C, then C B A, then A B C ... (drift cancels)."""
    log = log or (lambda message: print(message, flush=True))
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for v in order:
            out = os.path.join(workdir, "out", f"{v.name}-r{r}")
            res = run_variant(v.name, v.make_cfg(out), v.plugin, workdir, timeout=timeout, threads=threads)
            v.results.append(res)
            shutil.rmtree(out, ignore_errors=True)  # checkpoints are not needed (and may be large)
            med = statistics.median(res.step_times[2:]) if len(res.step_times) > 2 else float("nan")
            cpu = statistics.median(res.cpu_step_times[2:]) if len(res.cpu_step_times) > 2 else float("nan")
            log(
                f"  round {r + 1}/{rounds} {v.name:20s} {len(res.step_times)} steps, median after warm-up "
                f"{med:.3f} s/step wall, {cpu:.3f} s/step CPU; peak RSS {res.hwm_train_end_kb / 1024:.0f} MB; "
                f"run {res.wall_s:.0f}s"
            )


def make_workdir(prefix: str, keep: str | None = None) -> str:
    if keep:
        os.makedirs(keep, exist_ok=True)
        return keep
    return tempfile.mkdtemp(prefix=prefix)


def verdict(ratio: float, target: float, higher_is_better: bool = False) -> str:
    if ratio != ratio:  # nan
        return "n/a"
    ok = ratio >= target if higher_is_better else ratio <= target
    return "PASS" if ok else "FAIL"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for j, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def machine_note() -> str:
    import platform

    try:
        load = os.getloadavg()
        load_s = f"load avg {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}"
    except OSError:
        load_s = "load avg n/a"
    return f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}, {load_s}"


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--worker":
    _worker(sys.argv[2], sys.argv[3], sys.argv[4] == "1")

"""``llamafactory-minor reproduce minorsft|minordpo|poft``: the papers' experiments at CPU scale, each one command
that runs through the paper scale's pipeline (``llamafactory-minor sweep GRID --evaluate``, ``pipeline.py``).

``minorsft`` (MinorSFT Fig. 1-2): SFT at lr ``a`` with ``track_m_theta`` (its loss unchanged), SFT using DPO and
MinorSFT at lr ``2a`` with beta 0.04 -- the paper's setting -- plus, with ``--grid``, MinorSFT over beta
{0.02, 0.04, 0.1} x lr {a, 2a} (its Fig. 2a); m_theta per step of all runs on one chart.

``minordpo`` (MinorDPO Fig. 2-6): DPO (with ``track_m_theta`` for its beta-free rewards), DPOP (lambda 50) and
MinorDPO on the arithmetic pairs (chosen: the correct solution; rejected: the same solution with its one
calculation corrupted), small beta (0.04) and a high lr (``--lrs`` takes several); the per-token log-ratios of
chosen and rejected answers and the margin per step; the share of degenerate (repetitive) outputs.

``poft`` (PoFT Fig. 2 and 3e): the noise tool on the task data; SFT, PoFT and bi-PoFT for ``--epochs`` epochs, a
checkpoint each; accuracy per epoch; the aligned model's score distribution on clean vs noise rows.

Steps (each a real user command, resumable: a finished run or evaluation is reused):

1. data: the arithmetic task (``llamafactory-minor make-task``; seeded, train/test disjoint by problem), and as
   the held-out set its test set or ``--eval-file`` (GSM8K-format JSONL, as the generated ``arith_test.jsonl``;
   read before anything is trained, a malformed file is one error naming the line); ``results.json`` names it
   (``eval_file``) with the number of items asked (``n_eval``);
2. the experiment written as the paper scale's files (``write_experiment``): ``configs/<run>.yaml`` (LF training
   configs, LoRA by default), ``grid.yaml`` and ``eval.yaml`` (the evaluation, reading ``grid.yaml``), then
   ``llamafactory-minor sweep grid.yaml --evaluate`` (``_run_experiment``): stock ``llamafactory-cli train`` per
   run, ``llamafactory-minor-eval`` (held-out accuracy, GSM8K-style generation with the paper's prompt and
   "So the answer is: N", for the base model and every run; drift on general data no run trained on, LF's alpaca
   demo answers: the deviation metric of each run against the base), the report folder ``report/``;
3. the paper's plots, a table, ``results.json``, and the verdicts on the paper's claims, stated as measured (a
   claim that does not hold is said so; with n_eval, only differences the 95% Wilson intervals resolve count).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import time

from . import plot as plot_mod
from . import tasks
from .sweep import console_script, tail

# the drift set: 32 answers of LF's alpaca demo (provenance: tests/fixtures/data/PROVENANCE.md, where the test
# fixture of the same name links here), package data so that a pip-installed plugin has it
DEFAULT_DEVIATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "alpaca_en_tiny.json")


class ReproduceError(ValueError):
    """A pipeline step failed: the message names the step, the command and its log."""


def _run(cmd: list[str], log_path: str, step: str) -> float:
    start = time.time()
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1")),
        )
    if proc.returncode != 0:
        raise ReproduceError(f"{step} failed (exit {proc.returncode}); log {log_path}:\n{tail(log_path)}")
    return time.time() - start


def minorsft_runs(lr: float, beta: float, grid: bool) -> list[dict]:
    runs = [
        {"name": "sft", "method": "sft", "stage": "sft", "lr": lr, "track_m_theta": True},
        {"name": "sftdpo", "method": "sftdpo", "stage": "sftdpo", "lr": 2 * lr, "beta": beta},
        {"name": "minorsft", "method": "minorsft", "stage": "minorsft", "lr": 2 * lr, "beta": beta},
    ]
    runs = [dict(r, dataset="arith_sft") for r in runs]
    if grid:
        for b in (0.02, 0.04, 0.1):
            for x in (lr, 2 * lr):
                if (b, x) != (beta, 2 * lr):
                    runs.append(
                        {
                            "name": f"minorsft_b{b}_lr{x:g}",
                            "method": "minorsft",
                            "stage": "minorsft",
                            "lr": x,
                            "beta": b,
                            "dataset": "arith_sft",
                        }
                    )
    return runs


def train_config(run: dict, args, data_dir: str, output_dir: str) -> dict:
    cfg = {
        "model_name_or_path": args.model,
        "stage": run["stage"],
        "do_train": True,
        "finetuning_type": args.finetuning_type,
        "dataset": "arith_sft",
        "dataset_dir": data_dir,
        "template": args.template,
        "cutoff_len": args.cutoff,
        "max_samples": args.train,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "output_dir": output_dir,
        "overwrite_output_dir": True,
        "per_device_train_batch_size": args.batch,
        "gradient_accumulation_steps": 1,
        "learning_rate": run["lr"],
        "lr_scheduler_type": "constant",
        "max_steps": args.steps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": args.seed,
        "bf16": False,
        "plot_loss": True,
        # 135M parameters on a CPU: memory is ample, and LF's default gradient checkpointing only recomputes
        "disable_gradient_checkpointing": True,
    }
    if args.finetuning_type == "lora":
        cfg.update(lora_rank=8, lora_target="all")
    if "beta" in run:
        cfg["pref_beta"] = run["beta"]
    if run.get("track_m_theta"):
        cfg["track_m_theta"] = True
    return cfg


EVAL_FORMAT = (
    'GSM8K-format JSONL as the generated arith_test.jsonl: one {"question": ..., "answer": "... #### N"} a line'
)


def _eval_root(out: str) -> str:
    return os.path.join(out, "eval_data")


def _eval_data(args, data_dir: str, out: str) -> int:
    """Writes ``<_eval_root(out)>/gsm8k/test.jsonl`` for the evaluation -- the generated test set or ``--eval-file``
    -- and returns how many items it holds, read by the evaluation's own GSM8K reader: a malformed ``--eval-file`` is one error
    naming the file and line, before anything is trained (``_prepare`` calls this first)."""
    from pathlib import Path

    from llamafactory_minor_eval.data import load_split
    from llamafactory_minor_eval.errors import EvalError

    root = _eval_root(out)
    os.makedirs(os.path.join(root, "gsm8k"), exist_ok=True)
    source = args.eval_file or os.path.join(data_dir, "arith_test.jsonl")
    what = f"--eval-file {source}" if args.eval_file else f"the generated test set {source}"
    if not os.path.isfile(source):
        raise ReproduceError(f"{what} does not exist (expected {EVAL_FORMAT})")
    target = os.path.join(root, "gsm8k", "test.jsonl")
    if not (os.path.isfile(target) and filecmp.cmp(source, target, shallow=False)):  # unchanged: left untouched
        shutil.copyfile(source, target)
    try:
        items = load_split("gsm8k", Path(root) / "gsm8k", "test")
    except EvalError as e:
        os.remove(target)  # never left for the evaluation
        detail = str(e).replace(target, source).removeprefix(source).lstrip(": ")  # "line 2 is not valid JSON ..."
        raise ReproduceError(f"{what}: {detail}; expected {EVAL_FORMAT}") from None
    if not items:
        os.remove(target)
        raise ReproduceError(f"{what} holds no items; expected {EVAL_FORMAT}")
    return len(items)


def _summary_rows(eval_dir: str) -> dict:
    with open(os.path.join(eval_dir, "summary.json"), encoding="utf-8") as f:
        return {r["checkpoint"]: r for r in json.load(f)["rows"]}


def _accuracy(row: dict) -> tuple[float | None, float | None]:
    """(strict, flexible) GSM8K-style accuracy of one checkpoint row of the evaluation's summary.json."""
    gsm = (row.get("benchmarks") or {}).get("gsm8k") or {}
    strict = gsm.get("accuracy")
    flexible = (gsm.get("flexible") or {}).get("accuracy")
    return (
        float(strict) if isinstance(strict, (int, float)) else None,
        float(flexible) if isinstance(flexible, (int, float)) else None,
    )


def _drift(row: dict) -> float | None:
    value = row.get("m_theta")
    if isinstance(value, dict):
        value = value.get("m_theta")
    return float(value) if isinstance(value, (int, float)) else None


def steps_in_order(steps) -> list:
    """The steps of a ``{step: value}`` series (or any steps) in numeric order. They are ints, or strings once the
    series has been through results.json, where plain ``sorted`` / ``max`` put "10" before "9" (and picked step "9"
    of 60 as the last); every ordering of steps here goes through this."""
    return sorted(steps, key=int)


def final_value(series: dict):
    """The value at the last step of a ``{step: value}`` series (ints or results.json's strings)."""
    return series[steps_in_order(series)[-1]]


def verdict(results: dict) -> list[str]:
    """The paper's claims, checked on the numbers (plain sentences; 'does not hold' where it does not)."""
    lines = []
    sft, minor = results["runs"].get("sft"), results["runs"].get("minorsft")
    if sft and minor and sft.get("m_theta") and minor.get("m_theta"):
        steps = steps_in_order(set(sft["m_theta"]) & set(minor["m_theta"]))
        below = [s for s in steps if minor["m_theta"][s] < sft["m_theta"][s]]
        not_first = [s for s in steps if s != steps[0]]
        ok = all(minor["m_theta"][s] < sft["m_theta"][s] for s in not_first) if not_first else False
        lines.append(
            f"Claim 1 (MinorSFT deviates less than SFT at every step, at twice SFT's lr): "
            f"{'HOLDS' if ok else 'DOES NOT HOLD'} here -- MinorSFT's m_theta is below SFT's at {len(below)} of "
            f"{len(steps)} logged steps (final: MinorSFT {minor['m_theta'][steps[-1]]:.4f}, SFT "
            f"{sft['m_theta'][steps[-1]]:.4f}; at step {steps[0]} both start from the reference)."
        )
    if sft and minor and sft.get("accuracy") is not None and minor.get("accuracy") is not None:
        # "at least": contradicted only by a resolved shortfall (disjoint 95% intervals); below within them is open
        if minor["accuracy"] >= sft["accuracy"]:
            word = "HOLDS"
        else:
            word = (
                "DOES NOT HOLD"
                if _compare(minor["accuracy"], sft["accuracy"], results.get("n_eval")) == "below"
                else "NOT RESOLVED"
            )
        lines.append(
            f"Claim 2 (MinorSFT's accuracy is at least SFT's): {word} here -- "
            f"held-out accuracy MinorSFT {100 * minor['accuracy']:.1f}% vs SFT {100 * sft['accuracy']:.1f}% "
            f"(n = {results.get('n_eval')}{'; below SFT within the 95% intervals' if word == 'NOT RESOLVED' else ''})."
        )
    lines += grid_lines(results)
    return lines


def grid_lines(results: dict) -> list[str]:
    """``--grid`` (the paper's Fig. 2a): each further MinorSFT setting against SFT, on the same two measures."""
    runs, lines = results["runs"], []
    sft = runs.get("sft") or {}
    for name, run in runs.items():
        if run.get("method") != "minorsft" or name == "minorsft":
            continue
        parts = []
        if sft.get("m_theta") and run.get("m_theta"):
            steps = steps_in_order(set(sft["m_theta"]) & set(run["m_theta"]))
            below = sum(run["m_theta"][s] < sft["m_theta"][s] for s in steps)
            parts.append(
                f"m_theta below SFT's at {below} of {len(steps)} steps (final {run['m_theta'][steps[-1]]:.4f} vs "
                f"{sft['m_theta'][steps[-1]]:.4f})"
            )
        if run.get("accuracy") is not None and sft.get("accuracy") is not None:
            parts.append(f"accuracy {100 * run['accuracy']:.1f}% vs SFT {100 * sft['accuracy']:.1f}%")
        if run.get("drift_m_theta") is not None and sft.get("drift_m_theta") is not None:
            parts.append(f"drift {run['drift_m_theta']:.3f} vs SFT {sft['drift_m_theta']:.3f}")
        if parts:
            lines.append(
                f"Grid (Fig. 2a), MinorSFT beta {run.get('beta')} lr {run['lr']:g}: " + "; ".join(parts) + "."
            )
    return lines


TASK_FILES = ("arith_sft.json", "arith_dpo.json", "arith_test.jsonl")


def _check_or_write_data(data_dir: str, args) -> None:
    """Generate the task data; a folder that already holds it must hold exactly what these arguments generate.

    The runs and evaluations in ``--out`` are reused by name, so data written by another ``--train`` /
    ``--test`` / ``--seed`` would silently be mixed with them: that is an error (``--overwrite`` rewrites it).
    """
    import tempfile

    if not os.path.isfile(os.path.join(data_dir, TASK_FILES[0])):
        tasks.write_task(data_dir, n_train=args.train, n_test=args.test, seed=args.seed)
        return
    os.makedirs(os.path.dirname(data_dir), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(data_dir), prefix=".data-check-") as tmp:
        tasks.write_task(tmp, n_train=args.train, n_test=args.test, seed=args.seed)
        differ = [
            name
            for name in TASK_FILES
            if not os.path.isfile(os.path.join(data_dir, name))
            or not filecmp.cmp(os.path.join(tmp, name), os.path.join(data_dir, name), shallow=False)
        ]
        if differ and not args.overwrite:
            raise ReproduceError(
                f"{data_dir} holds task data generated with other arguments ({', '.join(differ)} differ from what "
                f"--train {args.train} --test {args.test} --seed {args.seed} generate), and the runs in "
                f"{os.path.dirname(data_dir)} were trained on it: use the arguments of the first run, another --out, "
                "or --overwrite to start again"
            )
        for name in differ:  # --overwrite: the files just generated replace the old ones
            shutil.copyfile(os.path.join(tmp, name), os.path.join(data_dir, name))


def _config_differences(path: str, cfg: dict) -> list[str]:
    """Keys whose value differs between the config a finished run was trained with and ``cfg`` (all if unreadable)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            old = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return ["(its config file is missing or unreadable)"]
    moved = ("output_dir", "dataset_dir")  # follow --out: a moved folder is the same run
    return sorted(k for k in set(old) | set(cfg) if k not in moved and old.get(k) != cfg.get(k))


def _prepare(args, experiment: str) -> tuple[str, str, dict, float]:
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    data_dir = os.path.join(out, "data")
    _check_or_write_data(data_dir, args)
    n_items = _eval_data(args, data_dir, out)  # checked before anything is trained
    if not os.path.isfile(args.deviation_data):  # the drift is measured after training: checked before it
        raise ReproduceError(
            f"--deviation-data {args.deviation_data} does not exist (alpaca-format JSON: instruction, input, output)"
        )
    print(f"[reproduce] data: {data_dir}", flush=True)
    results = {
        "experiment": experiment,
        "model": args.model,
        "steps": args.steps,
        "batch": args.batch,
        "finetuning_type": args.finetuning_type,
        # the held-out set: --eval-file as given (else the generated test set) and how many of its items are asked
        "eval_file": args.eval_file or os.path.join(data_dir, "arith_test.jsonl"),
        "n_eval": min(n_items, args.eval_limit) if args.eval_limit else n_items,
        "runs": {},
        "times_s": {},
    }
    return out, data_dir, results, time.time()


def _recorded_seconds(run_dir: str, out: str, name: str) -> float | None:
    """The training time of a finished run: what it recorded (RUN_INFO), else what the last results.json in
    ``out`` says (runs older than that record), else LF's ``train_runtime`` (the training loop alone)."""
    for path, read in (
        (os.path.join(run_dir, plot_mod.RUN_INFO), lambda d: d.get("train_seconds")),
        (os.path.join(out, "results.json"), lambda d: (d.get("times_s") or {}).get(name)),
        (os.path.join(run_dir, "all_results.json"), lambda d: d.get("train_runtime")),
    ):
        try:
            with open(path, encoding="utf-8") as f:
                value = read(json.load(f))
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, (int, float)):
            return round(float(value), 1)
    return None


def _run_config(run: dict, args, data_dir: str, run_dir: str) -> dict:
    cfg = dict(train_config(run, args, data_dir, run_dir), dataset=run["dataset"], **run.get("extra", {}))
    return {k: v for k, v in cfg.items() if v is not None}


def _eval_config(args, out: str, grid_path: str, saved: bool) -> dict:
    """The evaluation of the experiment's grid (``llamafactory-minor-eval --config``): the base and every run of the
    grid (``saved``: every checkpoint each run saved, one per epoch) on the held-out set ``_eval_data`` wrote, with
    the drift against the base on the general data."""
    cfg = {
        "output_dir": os.path.join(out, "eval"),
        "checkpoints": [{"name": "base", "path": args.model}],
        "grid": {"file": grid_path, "skip_missing": False, **({"checkpoints": "saved"} if saved else {})},
        "benchmarks": ["gsm8k"],
        "data_dir": _eval_root(out),  # written and checked by _prepare (_eval_data)
        "split": {"gsm8k": "test"},
        "gsm8k_max_new_tokens": args.max_new_tokens,
        "deviation_data": args.deviation_data,
        "deviation_limit": args.deviation_limit,
        "reference": "base",
        "backend": args.backend,
        "batch_size": args.eval_batch_size,
        "progress": False,
    }
    if args.eval_limit:
        cfg.update(limit={"gsm8k": args.eval_limit}, limit_mode="first")
    return cfg


def write_experiment(runs: list[dict], args, data_dir: str, out: str, metrics, saved: bool = False) -> str:
    """The experiment as the files ``llamafactory-minor sweep GRID --evaluate`` runs, in ``out``; returns GRID.

    - ``configs/<run>.yaml``: each run's LF training config (``llamafactory-cli train`` reads it);
    - ``grid.yaml``: one grid per run (``path: runs/<run>``, the run's name, method, lr, beta as axes), its
      ``sweep.recipe`` the configs above, its ``evaluate`` section naming ``eval.yaml`` and the report folder;
    - ``eval.yaml``: the evaluation, reading ``grid.yaml`` (``grid: {file: ...}``), so every evaluated path is a
      path the sweep writes.

    A finished run (``all_results.json``) is reused only when its config is what these arguments give (else an error
    naming the keys that differ); ``--overwrite`` deletes it so that the sweep trains it again."""
    import yaml

    plans = []  # (run, its folder, its LF config, the config file, reused?): every run checked before any is written
    for run in runs:
        run_dir = os.path.join(out, "runs", run["name"])
        cfg = _run_config(run, args, data_dir, run_dir)
        config_path = os.path.join(out, "configs", f"{run['name']}.yaml")
        reuse = os.path.isfile(os.path.join(run_dir, "all_results.json")) and not args.overwrite
        if reuse:
            differ = _config_differences(config_path, cfg)
            if differ:
                raise ReproduceError(
                    f"{run_dir} was trained with another configuration than these arguments give "
                    f"({', '.join(differ)} differ; see {config_path}): use the arguments of the first run, another "
                    "--out, or --overwrite to train again"
                )
        plans.append((run, run_dir, cfg, config_path, reuse))
    grids = []
    for run, run_dir, cfg, config_path, reuse in plans:
        if not reuse:
            if os.path.isdir(run_dir):  # --overwrite, or an unfinished run: trained again from the start
                shutil.rmtree(run_dir)
            os.makedirs(os.path.dirname(config_path), exist_ok=True)
            with open(config_path, "w", encoding="utf-8") as f:
                yaml.safe_dump(cfg, f, sort_keys=False)
        axes = {"run": [run["name"]], "method": [run["method"]], "lr": [run["lr"]]}
        if run.get("beta") is not None:
            axes["beta"] = [run["beta"]]
        grids.append({"path": run_dir, "name": run["name"], **axes})
    grid_path, eval_path = os.path.join(out, "grid.yaml"), os.path.join(out, "eval.yaml")
    grid = {
        "grids": grids,
        "sweep": {"recipe": os.path.join(out, "configs", "{run}.yaml")},
        "base": {"name": "base", "path": args.model},
        "evaluate": {"config": eval_path, "metrics": list(metrics), "report": os.path.join(out, "report")},
    }
    header = (
        "# written by `llamafactory-minor reproduce`: this experiment's runs, trained, evaluated and reported by\n"
        f"#   llamafactory-minor sweep {grid_path} --evaluate\n"
    )
    with open(grid_path, "w", encoding="utf-8") as f:
        f.write(header + yaml.safe_dump(grid, sort_keys=False))
    with open(eval_path, "w", encoding="utf-8") as f:
        f.write(f"# the evaluation of {grid_path} (written by `llamafactory-minor reproduce`)\n")
        f.write(yaml.safe_dump(_eval_config(args, out, grid_path, saved), sort_keys=False))
    return grid_path


def _run_experiment(
    runs: list[dict], args, data_dir: str, out: str, results: dict, metrics, saved: bool = False
) -> None:
    """Train, evaluate and report through ``llamafactory-minor sweep GRID --evaluate`` (``pipeline.run_pipeline``) on
    the grid ``write_experiment`` writes; then record per run its logged ``metrics`` per step, training time, and the
    evaluation's accuracy, drift and share of degenerate outputs (``saved``: per saved checkpoint, ``<run>_e<k>``)."""
    from llamafactory_minor_eval import grid as grid_mod
    from llamafactory_minor_eval.models import safe_name

    from . import pipeline

    grid_path = write_experiment(runs, args, data_dir, out, metrics, saved)
    done_before = {r["name"] for r in runs if os.path.isfile(os.path.join(out, "runs", r["name"], "all_results.json"))}
    for name in done_before:
        print(f"[reproduce] {name}: done, reused ({os.path.join(out, 'runs', name)})", flush=True)
    print(f"[reproduce] $ llamafactory-minor sweep {grid_path} --evaluate", flush=True)
    log_dir = os.path.join(out, "logs")
    rc = pipeline.run_pipeline(grid_path, log_dir=log_dir)
    if rc != 0:
        raise ReproduceError(
            f"llamafactory-minor sweep {grid_path} --evaluate failed (exit {rc}); the logs are in {log_dir} (rerun the "
            "same command to resume: finished runs are reused)"
        )
    with open(os.path.join(out, "report", "report.json"), encoding="utf-8") as f:
        stage_times = json.load(f).get("times_s") or {}
    results["times_s"]["evaluation"] = stage_times.get("evaluation")
    for run in runs:
        name, run_dir = run["name"], os.path.join(out, "runs", run["name"])
        results.setdefault("reused" if name in done_before else "trained", []).append(name)
        seconds = _recorded_seconds(run_dir, out, name)
        if seconds is not None:
            results["times_s"][name] = seconds
        history = plot_mod.read_history(run_dir)
        entry = {"method": run["method"], "lr": run["lr"], "beta": run.get("beta"), "dir": run_dir}
        for metric in metrics:
            steps, values = plot_mod.series(history, metric)
            entry[metric] = dict(zip(steps, values))
        results["runs"][name] = entry
    # the checkpoints the evaluation read from the grid (grid.eval_checkpoints, as the evaluation itself expands it),
    # under the names results.json uses: the run's, or per saved checkpoint <run>_e<k>
    evaluated = {}
    found, _ = grid_mod.eval_checkpoints(grid_path, checkpoints="saved" if saved else "final")
    for ckpt in found:
        name = ckpt["run"]
        if not saved:
            evaluated[ckpt["name"]] = name
            continue
        k = ckpt["saved_index"]
        evaluated[ckpt["name"]] = f"{name}_e{k}"
        run = results["runs"][name]
        results["runs"][f"{name}_e{k}"] = {
            "method": run["method"],
            "lr": run["lr"],
            "epoch": k,
            "step": ckpt["step"],
            "dir": ckpt["path"],
            "of": name,
        }
    eval_dir = os.path.join(out, "eval")
    for checkpoint, row in _summary_rows(eval_dir).items():
        if checkpoint != "base" and checkpoint not in evaluated:  # evaluated by an earlier invocation, not run now
            continue
        entry = results.setdefault("base", {}) if checkpoint == "base" else results["runs"][evaluated[checkpoint]]
        entry["accuracy"], entry["accuracy_flexible"] = _accuracy(row)
        entry["drift_m_theta"] = _drift(row)
        entry["degenerate"] = degenerate_share(os.path.join(eval_dir, safe_name(checkpoint), "gsm8k", "samples.jsonl"))
        entry["eval"] = row


def is_degenerate(text: str) -> bool:
    """Degenerate repetition: a word 4-gram that occurs 3+ times, or a non-empty line repeated 3+ times."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(lines.count(line) >= 3 for line in set(lines)):
        return True
    words = text.split()
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return any(grams.count(g) >= 3 for g in set(grams))


def degenerate_share(samples_path: str) -> float | None:
    if not os.path.isfile(samples_path):
        return None
    with open(samples_path, encoding="utf-8") as f:
        outputs = [json.loads(line).get("output") or "" for line in f if line.strip()]
    return sum(map(is_degenerate, outputs)) / len(outputs) if outputs else None


def select_runs(runs: list[dict], wanted: str | None) -> list[dict]:
    """``--runs a,b``: only the named runs of the experiment (an unknown name is an error listing the names)."""
    if not wanted:
        return runs
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    known = [r["name"] for r in runs]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ReproduceError(
            f"--runs: no run named {', '.join(unknown)} in this experiment; its runs are {', '.join(known)}"
        )
    return [r for r in runs if r["name"] in names]


def portable(value, out: str, cwd: str | None = None):
    """A copy of ``results`` whose paths are relative to the output folder, else to the folder reproduce was started
    in (``cwd``, default the current one: where the user's relative paths resolve, as for the subprocesses), so
    results.json can be committed or moved without naming the machine's folders. (Not the package's parent: in a
    pip install that is site-packages.)"""
    cwd = os.path.abspath(cwd or os.getcwd())
    roots = [os.path.abspath(out)] + ([cwd] if os.path.dirname(cwd) != cwd else [])  # never the filesystem root
    if isinstance(value, dict):
        return {k: portable(v, out, cwd) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, out, cwd) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        for root in roots:
            if os.path.commonpath([os.path.abspath(value), root]) == root:
                return os.path.relpath(value, root)
    return value


def _finish(
    results: dict, out: str, png_runs: list[str], metrics: list[str], title: str, start: float, verdict_fn
) -> dict:
    png = os.path.join(out, "metrics.png" if results["experiment"] != "minorsft" else "m_theta.png")
    labels = []
    for name in png_runs:
        run = results["runs"][name]
        beta = f" beta={run['beta']}" if run.get("beta") is not None else ""
        what = name if name == run["method"] else f"{name}: {run['method']}"
        labels.append(f"{what} lr={run['lr']:g}{beta}")
    plot_mod.plot_runs([results["runs"][r]["dir"] for r in png_runs], metrics, out=png, title=title, labels=labels)
    results["plot"] = png
    results["verdict"] = verdict_fn(results)
    results["times_s"]["total"] = round(time.time() - start, 1)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    shown = portable(results, out)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(shown, f, indent=2, default=str)
    text = format_results(shown)
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(text.lstrip("\n") + "\n")
    print(text, flush=True)
    return results


def reproduce_minorsft(args) -> dict:
    out, data_dir, results, start = _prepare(args, "minorsft")
    results.update(lr=args.lr, beta=args.beta)
    runs = select_runs(minorsft_runs(args.lr, args.beta, args.grid), getattr(args, "runs", None))
    _run_experiment(runs, args, data_dir, out, results, ["m_theta", "loss"])
    return _finish(
        results,
        out,
        [r["name"] for r in runs],
        ["m_theta", "loss"],
        f"MinorSFT Fig. 1 at CPU scale ({os.path.basename(args.model)}, {args.steps} steps)",
        start,
        verdict,
    )


DPO_METRICS = ["normalized_rewards/chosen", "normalized_rewards/rejected", "normalized_rewards/margin"]


def minordpo_runs(lrs: list[float], beta: float, dpop_lambda: float) -> list[dict]:
    runs = []
    for lr in lrs:
        tag = f"_lr{lr:g}" if len(lrs) > 1 else ""
        runs += [
            {
                "name": f"dpo{tag}",
                "method": "dpo",
                "stage": "dpo",
                "lr": lr,
                "beta": beta,
                "dataset": "arith_dpo",
                "extra": {"pref_loss": "sigmoid", "track_m_theta": True},
            },
            {
                "name": f"dpop{tag}",
                "method": "dpop",
                "stage": "dpo",
                "lr": lr,
                "beta": beta,
                "dataset": "arith_dpo",
                "extra": {"pref_loss": "dpop", "dpop_lambda": dpop_lambda},
            },
            {
                "name": f"minordpo{tag}",
                "method": "minordpo",
                "stage": "dpo",
                "lr": lr,
                "beta": beta,
                "dataset": "arith_dpo",
                "extra": {"pref_loss": "minordpo"},
            },
        ]
    return runs


def verdict_minordpo(results: dict) -> list[str]:
    """MinorDPO paper's claims, checked per learning rate on the numbers."""
    lines = []
    runs = results["runs"]
    for name, run in runs.items():
        if run.get("method") != "minordpo":
            continue
        tag = name[len("minordpo") :]
        dpo, minor = runs.get(f"dpo{tag}"), run
        chosen_d = dpo.get("normalized_rewards/chosen") if dpo else None
        chosen_m = minor.get("normalized_rewards/chosen") or {}
        if chosen_d and chosen_m:
            last_d = final_value(chosen_d)
            later = [chosen_m[s] for s in steps_in_order(chosen_m)[1:]]
            ok = last_d < 0 and all(v >= 0 for v in later)
            lines.append(
                f"Claim 1 (lr {minor['lr']:g}: DPO's chosen log-ratio goes negative, MinorDPO's stays >= 0): "
                f"{'HOLDS' if ok else 'DOES NOT HOLD'} here -- DPO final {last_d:.4f}; MinorDPO min "
                f"{min(later) if later else float('nan'):.4f}, final {final_value(chosen_m):.4f} (per-token "
                "log pi/pi_ref of the chosen answers)."
            )
        if dpo and dpo.get("accuracy") is not None and minor.get("accuracy") is not None:
            lines.append(_minordpo_claim_2(results, dpo, minor))
    return lines


def _compare(a: float, b: float, n: int | None) -> str:
    """'above' / 'below' / 'unresolved': proportion a vs b. With n (items per evaluation) only a difference whose
    95% Wilson intervals are disjoint counts; without n, the point values decide (a tie is 'unresolved')."""
    if not n:
        return "above" if a > b else "below" if a < b else "unresolved"
    from llamafactory_minor_eval.metrics import wilson_interval

    (alo, ahi), (blo, bhi) = wilson_interval(round(a * n), n), wilson_interval(round(b * n), n)
    return "above" if alo > bhi else "below" if ahi < blo else "unresolved"


def _relation(a: float, b: float, n: int | None) -> str:
    """Proportion a against b in a verdict's words: 'resolvably above' / 'above within the 95% intervals' / 'equal'
    (and the same with 'below'); with n, 'resolvably' means disjoint 95% Wilson intervals (``_compare``); without n
    only the point values ('above' / 'below' / 'equal')."""
    if a == b:
        return "equal"
    side = "above" if a > b else "below"
    if not n:
        return side
    return f"resolvably {side}" if _compare(a, b, n) == side else f"{side} within the 95% intervals"


def _minordpo_claim_2(results: dict, dpo: dict, minor: dict) -> str:
    """MinorDPO's claim 2 at one lr, "DPO degrades at the high lr, MinorDPO does not", judged as its two halves on
    the strict held-out accuracy (with n_eval, "resolvably" = disjoint 95% Wilson intervals, ``_compare``; without
    it the point values decide):

    - "DPO degrades": established when DPO is resolvably below the base model, or below DPO at a lower lr of the
      same run (``--lrs``); otherwise contradicted when it is resolvably above the base; otherwise not resolved;
    - "MinorDPO does not degrade": contradicted when MinorDPO is resolvably below the base, or its degenerate share
      resolvably above the base's; otherwise established (not resolved without the base's accuracy).

    HOLDS when both halves are established, DOES NOT HOLD when either is contradicted, else NOT RESOLVED. How
    MinorDPO compares with DPO is stated as well, but does not decide."""
    n = results.get("n_eval")
    base = results.get("base") or {}
    base_acc, base_deg = base.get("accuracy"), base.get("degenerate")

    def pct(value: float, digits: int = 1) -> str:
        return f"{100 * value:.{digits}f}%"

    # first half: DPO against the base, and against DPO at each lower lr of this run
    lr = dpo.get("lr")
    lower = sorted(
        (
            r
            for r in results["runs"].values()
            if r.get("method") == "dpo"
            and r.get("accuracy") is not None
            and r.get("lr") is not None
            and lr is not None
            and r["lr"] < lr
        ),
        key=lambda r: r["lr"],
    )
    refs = ([("base", base_acc)] if base_acc is not None else []) + [
        (f"DPO at lr {r['lr']:g}", r["accuracy"]) for r in lower
    ]
    drops = [_compare(dpo["accuracy"], acc, n) for _, acc in refs]
    if "below" in drops:
        first = "established"
    elif base_acc is not None and drops[0] == "above":
        first = "contradicted"
    else:
        first = "not resolved"
    first_detail = (
        f"strict held-out accuracy DPO {pct(dpo['accuracy'])} vs "
        + "; vs ".join(f"{what} {pct(acc)}: {_relation(dpo['accuracy'], acc, n)}" for what, acc in refs)
        if refs
        else "no base accuracy and no lower lr to compare with"
    )
    # second half: MinorDPO against the base, on accuracy and on the share of degenerate outputs
    if base_acc is None:
        second, second_detail = "not resolved", "no base accuracy to compare with"
    else:
        fall = _compare(minor["accuracy"], base_acc, n)
        second_detail = (
            f"MinorDPO {pct(minor['accuracy'])} vs base {pct(base_acc)}: {_relation(minor['accuracy'], base_acc, n)}"
        )
        minor_deg, more = minor.get("degenerate"), None
        if minor_deg is not None and base_deg is not None:
            more = _compare(minor_deg, base_deg, n)
            second_detail += (
                f"; degenerate outputs MinorDPO {pct(minor_deg, 0)} vs base {pct(base_deg, 0)}: "
                f"{_relation(minor_deg, base_deg, n)}"
            )
        else:
            second_detail += "; degenerate shares not compared (not measured)"
        second = "contradicted" if fall == "below" or more == "above" else "established"
    if "contradicted" in (first, second):
        word = "DOES NOT HOLD"
    elif first == second == "established":
        word = "HOLDS"
    else:
        word = "NOT RESOLVED"
    deg_d, deg_m = dpo.get("degenerate") or 0, minor.get("degenerate") or 0
    return (
        f"Claim 2 (lr {minor['lr']:g}: DPO degrades, MinorDPO does not): {word} here -- first half, DPO degrades: "
        f"{first} ({first_detail}); second half, MinorDPO does not degrade: {second} ({second_detail}); MinorDPO vs "
        f"DPO: accuracy {pct(minor['accuracy'])} vs {pct(dpo['accuracy'])}: "
        f"{_relation(minor['accuracy'], dpo['accuracy'], n)}; degenerate outputs {pct(deg_m, 0)} vs {pct(deg_d, 0)}: "
        f"{_relation(deg_m, deg_d, n)}" + (f" (n = {n})." if n else ".")
    )


def reproduce_minordpo(args) -> dict:
    out, data_dir, results, start = _prepare(args, "minordpo")
    lrs = [float(x) for x in str(args.lrs or args.lr).split(",")]
    results.update(lrs=lrs, beta=args.beta, dpop_lambda=args.dpop_lambda)
    runs = select_runs(minordpo_runs(lrs, args.beta, args.dpop_lambda), getattr(args, "runs", None))
    _run_experiment(runs, args, data_dir, out, results, DPO_METRICS + ["m_theta"])
    return _finish(
        results,
        out,
        [r["name"] for r in runs],
        DPO_METRICS,
        f"MinorDPO Fig. 2-6 at CPU scale ({os.path.basename(args.model)}, beta {args.beta}, {args.steps} steps)",
        start,
        verdict_minordpo,
    )


def poft_runs(lr: float, model: str, template: str, beta: float) -> list[dict]:
    aligned = {"poft_aligned_models": model, "poft_aligned_templates": template, "poft_beta": beta}
    return [
        {"name": "sft", "method": "sft", "stage": "sft", "lr": lr, "dataset": "arith_sft_noisy"},
        {"name": "poft", "method": "poft", "stage": "poft", "lr": lr, "dataset": "arith_sft_noisy", "extra": aligned},
        {
            "name": "bipoft",
            "method": "bi-poft",
            "stage": "poft",
            "lr": lr,
            "dataset": "arith_sft_noisy",
            "extra": dict(aligned, poft_noise_column="is_noise"),
        },  # the noise tool's per-row flag
    ]


def plot_accuracy_by_epoch(results: dict, out: str) -> str | None:
    """PoFT Fig. 3e: held-out accuracy per epoch, one line per method, 95% Wilson intervals, the base as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llamafactory_minor_eval.metrics import wilson_interval

    n = results.get("n_eval")
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for name, run in results["runs"].items():
        points = [(e["epoch"], e["accuracy"]) for e in run.get("epochs", []) if e.get("accuracy") is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        if n:
            lo, hi = zip(*(wilson_interval(round(y * n), n) for y in ys))
            err = [[100 * (y - a) for y, a in zip(ys, lo)], [100 * (b - y) for y, b in zip(ys, hi)]]
        else:
            err = None
        ax.errorbar(xs, [100 * y for y in ys], yerr=err, marker="o", capsize=3, label=name)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    base = (results.get("base") or {}).get("accuracy")
    if base is not None:
        ax.axhline(100 * base, color="grey", linestyle="--", label="base")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"held-out accuracy, strict (%){f', n = {n}' if n else ''}")
    ax.set_title("Accuracy per epoch (bars: 95% Wilson intervals)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def verdict_poft(results: dict) -> list[str]:
    """PoFT paper's claims on the held-out accuracy per epoch. As for MinorSFT and MinorDPO, with n_eval known only a
    difference whose 95% Wilson intervals are disjoint counts (``_compare``); without it the point values decide."""
    lines = []
    acc = {name: [e.get("accuracy") for e in r.get("epochs", [])] for name, r in results["runs"].items()}
    sft, poft = acc.get("sft") or [], acc.get("poft") or []
    n = results.get("n_eval")
    if sft and poft and None not in sft + poft:
        pairs = list(zip(poft, sft))
        compared = [_compare(p, s, n) for p, s in pairs]
        # "at least as good" (as verdict's MinorSFT claim 2): contradicted only by a resolved shortfall at some epoch;
        # at or above SFT at every epoch holds; a shortfall within the intervals leaves it open
        if "below" in compared:
            word = "DOES NOT HOLD"
        elif all(p >= s for p, s in pairs):
            word = "HOLDS"
        else:
            word = "NOT RESOLVED"
        groups = {
            "below SFT, resolved, at": [k for k, c in enumerate(compared, 1) if c == "below"],
            "below SFT within the 95% intervals at": [
                k for k, ((p, s), c) in enumerate(zip(pairs, compared), 1) if p < s and c == "unresolved"
            ],
            "equal at": [k for k, (p, s) in enumerate(pairs, 1) if p == s],
            "above SFT within the 95% intervals at": [
                k for k, ((p, s), c) in enumerate(zip(pairs, compared), 1) if p > s and c == "unresolved"
            ],
            "above SFT, resolved, at": [k for k, c in enumerate(compared, 1) if c == "above"],
        }
        where = "; ".join(f"{what} {_epochs(ks)}" for what, ks in groups.items() if ks)
        lines.append(
            f"Claim 1 (PoFT is at least as good as SFT, on noisy data): {word} here -- held-out accuracy per epoch "
            f"PoFT {[round(100 * x, 1) for x in poft]}% vs SFT {[round(100 * x, 1) for x in sft]}%"
            + (f" (n = {n}; {where})." if n else ".")
        )
        best_p, best_s = _best_epoch(poft), _best_epoch(sft)
        drop_p, drop_s = poft[best_p] - poft[-1], sft[best_s] - sft[-1]
        drops = f"drop from the best epoch to the last: PoFT {100 * drop_p:.1f} points, SFT {100 * drop_s:.1f} points"
        if drop_s <= 0:  # nothing degraded: "degrades less" has nothing to compare
            lines.append(
                "Claim 2 (PoFT degrades less than SFT as epochs increase): NOT TESTED here -- SFT did not degrade "
                f"over these {len(sft)} epochs (its last epoch is its best), so there is no degradation to compare; "
                f"{drops}. Train more epochs to test it."
            )
        else:
            # a drop counts only when the best epoch's interval and the last epoch's are disjoint
            res_p = _compare(poft[best_p], poft[-1], n) == "above"
            res_s = _compare(sft[best_s], sft[-1], n) == "above"
            if res_s and res_p:
                word = "HOLDS" if drop_p <= drop_s else "DOES NOT HOLD"
            else:
                word = "HOLDS" if res_s else "DOES NOT HOLD" if res_p else "NOT RESOLVED"

            def drop(who, series, best, resolved):
                if best == len(series) - 1:
                    return f"{who} did not drop"
                return (
                    f"{who}'s drop, epoch {best + 1} -> {len(series)}, "
                    f"{'resolved' if resolved else 'within the 95% intervals'}"
                )

            detail = f"{drop('SFT', sft, best_s, res_s)}; {drop('PoFT', poft, best_p, res_p)}"
            if res_s and res_p:
                detail += "; both drops resolved, so their sizes decide"
            lines.append(
                f"Claim 2 (PoFT degrades less than SFT as epochs increase): {word} here -- {drops}"
                + (f" (n = {n}; {detail})." if n else ".")
            )
    return lines


def _best_epoch(series: list[float]) -> int:
    """Index of the best epoch of an accuracy series; of equal bests the latest (the drop starts after it)."""
    return max(range(len(series)), key=lambda k: (series[k], k))


def _epochs(ks: list[int]) -> str:
    return f"epoch{'s' if len(ks) > 1 else ''} {', '.join(map(str, ks))}"


def reproduce_poft(args) -> dict:
    """PoFT Fig. 2 and 3e at CPU scale: noisy data, the aligned model's score distribution, accuracy per epoch."""
    from .noise import make_noise

    out, data_dir, results, start = _prepare(args, "poft")
    noise_args = {"rate": args.noise_rate, "seed": args.seed}
    noise_record = os.path.join(data_dir, "noise_args.json")
    if os.path.isfile(os.path.join(data_dir, "arith_sft_noisy.json")) and not args.overwrite:
        if os.path.isfile(noise_record):
            with open(noise_record, encoding="utf-8") as f:
                made = json.load(f)
            if made != noise_args:
                raise ReproduceError(
                    f"{data_dir} holds noise made with {made}, not {noise_args}: use the arguments of the first run, "
                    "another --out, or --overwrite to start again"
                )
    else:
        results["noise"] = make_noise(data_dir, "arith_sft", rate=args.noise_rate, seed=args.seed)
        with open(noise_record, "w", encoding="utf-8") as f:
            json.dump(noise_args, f)
    lr = args.lr
    results.update(lr=lr, epochs=args.epochs, noise_rate=args.noise_rate, aligned=[args.model])
    runs = select_runs(poft_runs(lr, args.model, args.template, args.poft_beta), getattr(args, "runs", None))
    for run in runs:  # epochs decide (max_steps -1 overrides --steps), every epoch saved
        run["extra"] = dict(
            run.get("extra", {}), num_train_epochs=args.epochs, save_strategy="epoch", max_steps=-1, max_samples=None
        )
    # every epoch's checkpoint is evaluated (the evaluation's `checkpoints: saved`)
    _run_experiment(runs, args, data_dir, out, results, ["loss", "poft/r_theta", "poft/r_aligned"], saved=True)
    for run in runs:
        results["runs"][run["name"]]["epochs"] = [r for r in results["runs"].values() if r.get("of") == run["name"]]
    # the aligned model's score distribution, clean vs noisy rows (PoFT Fig. 2 / 3d)
    sources = []
    for dataset in ("arith_sft", "arith_sft_noisy_noise"):
        score_out = os.path.join(out, "scores", dataset)  # a score folder (scores.file_format)
        if not os.path.isfile(os.path.join(score_out, "manifest.json")):
            cfg_path = os.path.join(out, "configs", f"score_{dataset}.yaml")
            import yaml

            with open(cfg_path, "w", encoding="utf-8") as f:
                yaml.safe_dump(
                    {
                        "model_name_or_path": args.model,
                        "dataset": dataset,
                        "dataset_dir": data_dir,
                        "template": args.template,
                        "cutoff_len": args.cutoff,
                        "stage": "sft",
                        "score_models": args.model,
                        "score_templates": args.template,
                        "score_output": score_out,
                        "preprocessing_num_workers": 1,
                    },
                    f,
                )
            _run(
                [console_script("llamafactory-minor"), "score", cfg_path],
                os.path.join(out, "logs", f"score_{dataset}.log"),
                f"scoring {dataset} with the aligned model",
            )
        sources.append(score_out)
    hist = os.path.join(out, "aligned_scores.png")
    results["score_distribution"] = plot_mod.plot_score_histograms(
        sources,
        out=hist,
        labels=["clean rows", "noise rows"],
        title=f"Aligned model's r on clean vs noisy rows ({os.path.basename(args.model)})",
    )
    results["score_plot"] = hist
    results["accuracy_plot"] = plot_accuracy_by_epoch(results, os.path.join(out, "accuracy_by_epoch.png"))
    return _finish(
        results,
        out,
        [r["name"] for r in runs],
        ["loss", "poft/r_theta"],
        f"PoFT at CPU scale: {args.epochs} epochs, noise rate {args.noise_rate:g} "
        f"({100 * args.noise_rate / (1 + args.noise_rate):.0f}% of the rows noisy)",
        start,
        verdict_poft,
    )


def format_results(results: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    def num(v):
        return "-" if v is None else f"{v:.4f}"

    def last(series):
        return final_value(series) if series else None

    lines = [
        "",
        "| run | lr | beta | final m_theta (training) | final chosen log-ratio / token | held-out accuracy "
        "(strict) | degenerate outputs | drift m_theta (alpaca answers, vs base) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = results.get("base") or {}
    lines.append(f"| base | - | - | 0 | 0 | {pct(base.get('accuracy'))} | {pct(base.get('degenerate'))} | 0 |")
    for name, r in results["runs"].items():
        lines.append(
            f"| {name} | {r.get('lr', 0):g} | {r.get('beta') if r.get('beta') is not None else '-'} | "
            f"{num(last(r.get('m_theta') or {}))} | {num(last(r.get('normalized_rewards/chosen') or {}))} | "
            f"{pct(r.get('accuracy'))} | {pct(r.get('degenerate'))} | {num(r.get('drift_m_theta'))} |"
        )
    if results.get("eval_file"):
        lines += ["", f"held-out set: {results['eval_file']} ({results.get('n_eval')} items asked)"]
    lines += ["", *results.get("verdict", []), f"plot: {results.get('plot')}", f"times (s): {results.get('times_s')}"]
    return "\n".join(lines)

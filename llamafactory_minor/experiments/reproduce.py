"""``llamafactory-minor reproduce minorsft``: the MinorSFT paper's Fig. 1-2 experiment as one pipeline at CPU scale.

Steps (each a real user command, resumable: a finished run or evaluation is reused):

1. data: the arithmetic task (``llamafactory-minor make-task``; seeded, train/test disjoint by problem), or
   ``--eval-file`` (GSM8K-format JSONL) as the held-out set;
2. training through stock ``llamafactory-cli train`` (LoRA by default): SFT at lr ``a`` with ``track_m_theta``
   (its loss unchanged), SFT using DPO and MinorSFT at lr ``2a`` with beta 0.04 -- the paper's setting -- plus,
   with ``--grid``, MinorSFT over beta {0.02, 0.04, 0.1} x lr {a, 2a} (its Fig. 2a);
3. evaluation through ``llamafactory-minor-eval``: held-out accuracy (GSM8K-style generation, the paper's
   prompt and "So the answer is: N") for the base model and every run, and drift on general data no run trained
   on (LF's alpaca demo answers: the deviation metric of each run against the base);
4. a PNG of m_theta per step for all runs on one chart, a table, ``results.json``, and the verdict on the
   paper's two claims, stated as measured (a claim that does not hold is said so).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from . import plot as plot_mod
from . import tasks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DEVIATION = os.path.join(REPO, "tests", "fixtures", "data", "alpaca_en_tiny.json")


class ReproduceError(ValueError):
    """A pipeline step failed: the message names the step, the command and its log."""


def _bin(name: str) -> str:
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else name


def _run(cmd: list[str], log_path: str, step: str) -> float:
    start = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                              env=dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1")))
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            tail = "".join(f.readlines()[-15:])
        raise ReproduceError(f"{step} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return time.time() - start


def minorsft_runs(lr: float, beta: float, grid: bool) -> list[dict]:
    runs = [
        {"name": "sft", "method": "sft", "stage": "sft", "lr": lr, "track_m_theta": True},
        {"name": "sftdpo", "method": "sftdpo", "stage": "sftdpo", "lr": 2 * lr, "beta": beta},
        {"name": "minorsft", "method": "minorsft", "stage": "minorsft", "lr": 2 * lr, "beta": beta},
    ]
    if grid:
        for b in (0.02, 0.04, 0.1):
            for x in (lr, 2 * lr):
                if (b, x) != (beta, 2 * lr):
                    runs.append({"name": f"minorsft_b{b}_lr{x:g}", "method": "minorsft", "stage": "minorsft",
                                 "lr": x, "beta": b})
    return runs


def train_config(run: dict, args, data_dir: str, output_dir: str) -> dict:
    cfg = {
        "model_name_or_path": args.model, "stage": run["stage"], "do_train": True,
        "finetuning_type": args.finetuning_type, "dataset": "arith_sft", "dataset_dir": data_dir,
        "template": args.template, "cutoff_len": args.cutoff, "max_samples": args.train,
        "overwrite_cache": True, "preprocessing_num_workers": 1, "output_dir": output_dir,
        "overwrite_output_dir": True, "per_device_train_batch_size": args.batch, "gradient_accumulation_steps": 1,
        "learning_rate": run["lr"], "lr_scheduler_type": "constant", "max_steps": args.steps,
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": args.seed, "bf16": False,
        "plot_loss": True,
    }
    if args.finetuning_type == "lora":
        cfg.update(lora_rank=8, lora_target="all")
    if "beta" in run:
        cfg["pref_beta"] = run["beta"]
    if run.get("track_m_theta"):
        cfg["track_m_theta"] = True
    return cfg


def _eval_data(args, data_dir: str, out: str) -> str:
    """A folder ``<root>/gsm8k/test.jsonl`` for the evaluation: the generated test set or ``--eval-file``."""
    root = os.path.join(out, "eval_data")
    os.makedirs(os.path.join(root, "gsm8k"), exist_ok=True)
    source = args.eval_file or os.path.join(data_dir, "arith_test.jsonl")
    if not os.path.isfile(source):
        raise ReproduceError(f"--eval-file {source} does not exist (GSM8K-format JSONL: question, answer '... #### N')")
    shutil.copyfile(source, os.path.join(root, "gsm8k", "test.jsonl"))
    return root


def _summary_rows(eval_dir: str) -> dict:
    with open(os.path.join(eval_dir, "summary.json"), encoding="utf-8") as f:
        return {r["checkpoint"]: r for r in json.load(f)["rows"]}


def _accuracy(row: dict) -> tuple[float | None, float | None]:
    """(strict, flexible) GSM8K-style accuracy of one checkpoint row of the evaluation's summary.json."""
    gsm = (row.get("benchmarks") or {}).get("gsm8k") or {}
    strict = gsm.get("accuracy")
    flexible = (gsm.get("flexible") or {}).get("accuracy")
    return (float(strict) if isinstance(strict, (int, float)) else None,
            float(flexible) if isinstance(flexible, (int, float)) else None)


def _drift(row: dict) -> float | None:
    value = row.get("m_theta")
    if isinstance(value, dict):
        value = value.get("m_theta")
    return float(value) if isinstance(value, (int, float)) else None


def verdict(results: dict) -> list[str]:
    """The paper's claims, checked on the numbers (plain sentences; 'does not hold' where it does not)."""
    lines = []
    sft, minor = results["runs"].get("sft"), results["runs"].get("minorsft")
    if sft and minor and sft["m_theta"] and minor["m_theta"]:
        steps = sorted(set(sft["m_theta"]) & set(minor["m_theta"]))
        below = [s for s in steps if minor["m_theta"][s] < sft["m_theta"][s]]
        not_first = [s for s in steps if s != steps[0]]
        ok = all(minor["m_theta"][s] < sft["m_theta"][s] for s in not_first) if not_first else False
        lines.append(
            f"Claim 1 (MinorSFT deviates less than SFT at every step, at twice SFT's lr): "
            f"{'HOLDS' if ok else 'DOES NOT HOLD'} here -- MinorSFT's m_theta is below SFT's at {len(below)} of "
            f"{len(steps)} logged steps (final: MinorSFT {minor['m_theta'][steps[-1]]:.4f}, SFT "
            f"{sft['m_theta'][steps[-1]]:.4f}; at step {steps[0]} both start from the reference).")
    if sft and minor and sft.get("accuracy") is not None and minor.get("accuracy") is not None:
        ok = minor["accuracy"] >= sft["accuracy"]
        lines.append(f"Claim 2 (MinorSFT's accuracy is at least SFT's): {'HOLDS' if ok else 'DOES NOT HOLD'} here -- "
                     f"held-out accuracy MinorSFT {100 * minor['accuracy']:.1f}% vs SFT {100 * sft['accuracy']:.1f}% "
                     f"(n = {results.get('n_eval')}).")
    return lines


def reproduce_minorsft(args) -> dict:
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    start = time.time()
    data_dir = os.path.join(out, "data")
    if not os.path.isfile(os.path.join(data_dir, "arith_sft.json")):
        tasks.write_task(data_dir, n_train=args.train, n_test=args.test, seed=args.seed)
    print(f"[reproduce] data: {data_dir}", flush=True)

    results = {"experiment": "minorsft", "model": args.model, "steps": args.steps, "batch": args.batch,
               "finetuning_type": args.finetuning_type, "lr": args.lr, "beta": args.beta, "runs": {},
               "times_s": {}}
    runs = minorsft_runs(args.lr, args.beta, args.grid)
    for run in runs:
        run_dir = os.path.join(out, "runs", run["name"])
        if os.path.isfile(os.path.join(run_dir, "all_results.json")) and not args.overwrite:
            print(f"[reproduce] {run['name']}: done, reused ({run_dir})", flush=True)
        else:
            cfg = train_config(run, args, data_dir, run_dir)
            os.makedirs(os.path.join(out, "configs"), exist_ok=True)
            config_path = os.path.join(out, "configs", f"{run['name']}.yaml")
            import yaml

            with open(config_path, "w", encoding="utf-8") as f:
                yaml.safe_dump(cfg, f, sort_keys=False)
            print(f"[reproduce] $ llamafactory-cli train {config_path}", flush=True)
            seconds = _run([_bin("llamafactory-cli"), "train", config_path], os.path.join(out, f"{run['name']}.log"),
                           f"training {run['name']}")
            results["times_s"][run["name"]] = round(seconds, 1)
            with open(os.path.join(run_dir, plot_mod.RUN_INFO), "w", encoding="utf-8") as f:
                label = f"{run['method']} lr={run['lr']:g}" + (f" beta={run['beta']}" if "beta" in run else "")
                json.dump({"name": label, "values": {k: v for k, v in run.items() if k != "name"}}, f)
        history = plot_mod.read_history(run_dir)
        steps, values = plot_mod.series(history, "m_theta")
        results["runs"][run["name"]] = {"method": run["method"], "lr": run["lr"], "beta": run.get("beta"),
                                        "m_theta": dict(zip(steps, values)), "dir": run_dir}

    eval_dir = os.path.join(out, "eval")
    cmd = [_bin("llamafactory-minor-eval"), "--model", f"base={args.model}"]
    for run in runs:
        cmd += ["--model", f"{run['name']}={results['runs'][run['name']]['dir']}"]
    cmd += ["-b", "gsm8k", "--data-dir", _eval_data(args, data_dir, out), "--split", "gsm8k=test",
            "--gsm8k-max-new-tokens", str(args.max_new_tokens), "--deviation-data", args.deviation_data,
            "--deviation-limit", str(args.deviation_limit), "--reference", "base", "--output-dir", eval_dir,
            "--backend", args.backend, "--batch-size", str(args.eval_batch_size), "--no-progress"]
    if args.eval_limit:
        cmd += ["--limit", str(args.eval_limit), "--limit-mode", "first"]
    print(f"[reproduce] $ {' '.join(cmd[:1])} ... (base + {len(runs)} runs, gsm8k-format held-out set)", flush=True)
    results["times_s"]["evaluation"] = round(_run(cmd, os.path.join(out, "eval.log"), "evaluation"), 1)
    rows = _summary_rows(eval_dir)
    for name, row in rows.items():
        entry = results["runs"].setdefault(name, {}) if name != "base" else results.setdefault("base", {})
        entry["accuracy"], entry["accuracy_flexible"] = _accuracy(row)
        entry["drift_m_theta"] = _drift(row)
        entry["eval"] = row
    results["n_eval"] = args.eval_limit or args.test

    png = os.path.join(out, "m_theta.png")
    plot_mod.plot_runs([results["runs"][r["name"]]["dir"] for r in runs], ["m_theta", "loss"], out=png,
                       title=f"MinorSFT Fig. 1 at CPU scale ({os.path.basename(args.model)}, {args.steps} steps)")
    results["plot"] = png
    results["verdict"] = verdict(results)
    results["times_s"]["total"] = round(time.time() - start, 1)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=str)
    print(format_results(results), flush=True)
    return results


def format_results(results: dict) -> str:
    lines = ["", "| run | lr | beta | final m_theta (training) | held-out accuracy | drift m_theta (alpaca, vs base) |",
             "|---|---|---|---|---|---|"]
    base = results.get("base") or {}
    acc = base.get("accuracy")
    lines.append(f"| base | - | - | 0 | {'-' if acc is None else f'{100 * acc:.1f}%'} | 0 |")
    for name, r in results["runs"].items():
        m = r.get("m_theta") or {}
        final = m[max(m)] if m else None
        acc, drift = r.get("accuracy"), r.get("drift_m_theta")
        lines.append(f"| {name} | {r.get('lr', '-'):g} | {r.get('beta') if r.get('beta') is not None else '-'} | "
                     f"{'-' if final is None else f'{final:.4f}'} | {'-' if acc is None else f'{100 * acc:.1f}%'} | "
                     f"{'-' if drift is None else f'{drift:.4f}'} |")
    lines += ["", *results.get("verdict", []), f"m_theta per step: {results.get('plot')}",
              f"times (s): {results.get('times_s')}"]
    return "\n".join(lines)

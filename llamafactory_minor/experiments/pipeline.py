"""``llamafactory-minor sweep GRID --evaluate``: a paper's experiment at paper scale as one command.

Three stages, each an existing command called, not copied:

1. **train**: ``sweep()`` (``llamafactory-minor sweep GRID``): every run of the grid through stock
   ``llamafactory-cli train``; a finished run (``all_results.json``) is skipped, so a rerun resumes;
2. **evaluate**: ``llamafactory-minor-eval --config EVAL``, where EVAL is the grid's ``evaluate.config`` -- an
   evaluation config whose ``grid: {file: GRID}`` reads this same grid file (checked, with the rest of the
   evaluation config, before anything is trained). Its rules for missing checkpoints apply unchanged: a run
   without a checkpoint is an error listing every missing run, unless the config has ``skip_missing: true``;
3. **report** into one folder (``evaluate.report``, default ``<evaluation output_dir>/report``):
   ``training_metrics.png`` (``plot_runs``, as ``llamafactory-minor plot``: the grid's runs' logged metrics
   ``evaluate.metrics`` overlaid, one line per run, legends the grid's run names), ``evaluation/`` (the
   evaluation's summary.md, summary.csv, summary.json, summary.png, subjects.csv), ``report.md`` and
   ``report.json``: every run of the grid, its folder, whether it was trained now, was already done, or has no
   checkpoint (left out of the evaluation by ``skip_missing``), the metrics' first and last values and the
   evaluation's summary table.

A failed training run stops the pipeline before the evaluation (rerunning resumes). ``--dry-run`` prints the three
stages as a shell script (stage headers are ``#`` comments) and trains nothing.

The grid file's section::

    evaluate:
      config: examples/eval/minordpo_gsm8k.yaml       # reads `grid: {file: <this grid file>}`
      metrics: [normalized_rewards/chosen, normalized_rewards/rejected, normalized_rewards/margin]
      report: outputs/report/minordpo_fig6
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from llamafactory_minor_eval import grid as grid_mod

from . import plot as plot_mod
from .sweep import console_script, select, sweep, tail

SECTION = "evaluate"
SECTION_KEYS = ("config", "metrics", "report")
PLOT_PNG = "training_metrics.png"
# what the evaluation writes into its output_dir (evaluation/report.py) and the report copies
EVAL_FILES = ("summary.md", "summary.csv", "summary.json", "summary.png", "subjects.csv")


class PipelineError(ValueError):
    """A pipeline that cannot run as configured: the message names the file and the key to change."""


@dataclass
class Plan:
    grid: str
    eval_config: str
    eval_output_dir: str
    skip_missing: bool
    metrics: list[str]
    report: str
    saved: bool = False  # the evaluation reads `checkpoints: saved`: every checkpoint-<step> folder of each run

    def eval_command(self) -> list[str]:
        return ["llamafactory-minor-eval", "--config", self.eval_config]

    def plot_command(self, all_runs) -> list[str]:
        return [
            "llamafactory-minor",
            "plot",
            *[r.path for r in all_runs],
            "--metrics",
            *self.metrics,
            "--labels",
            *[r.name for r in all_runs],
            "--out",
            os.path.join(self.report, PLOT_PNG),
        ]


def _same_file(a: str, b: str) -> bool:
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


def plan(grid_path: str, eval_config: str | None = None, report: str | None = None) -> Plan:
    """The evaluation and report tied to the grid file; everything that can be checked before training is."""
    from llamafactory_minor_eval.config import RunConfig, build_config, load_yaml
    from llamafactory_minor_eval.errors import EvalError

    data = grid_mod.load(grid_path)
    section = data.get(SECTION) or {}
    if not isinstance(section, dict):
        raise PipelineError(f"{grid_path}: `{SECTION}:` must be a mapping with keys {', '.join(SECTION_KEYS)}")
    unknown = sorted(set(section) - set(SECTION_KEYS))
    if unknown:
        raise PipelineError(
            f"{grid_path}: unknown key(s) {', '.join(unknown)} in `{SECTION}:` ({', '.join(SECTION_KEYS)})"
        )
    config = eval_config or section.get("config")
    if not config:
        raise PipelineError(
            f"{grid_path} names no evaluation: add `{SECTION}: {{config: EVAL.yaml}}` (an evaluation config with "
            f"`grid: {{file: {grid_path}}}`) or pass --eval-config EVAL.yaml"
        )
    try:
        eval_data = load_yaml(str(config))
    except EvalError as e:
        raise PipelineError(f"the evaluation of {grid_path}: {e}") from None
    grids = eval_data.get("grid") or []
    grids = grids if isinstance(grids, list) else [grids]
    tied = [g for g in grids if isinstance(g, dict) and g.get("file") and _same_file(str(g["file"]), grid_path)]
    if not tied:
        read = [str(g.get("file")) for g in grids if isinstance(g, dict) and g.get("file")]
        raise PipelineError(
            f"{config} does not evaluate the runs of {grid_path} "
            f"({'it reads ' + ', '.join(read) if read else 'it has no `grid: {file: ...}`'}): set "
            f"`grid: {{file: {grid_path}}}` in it, so that the evaluated paths are the paths the sweep writes"
        )
    # the rest of the evaluation config (keys, benchmark and lm-eval task names) is checked now, not after the
    # training: the grid's runs are taken as skippable here since none needs to exist yet
    probe = dict(eval_data, grid=[dict(g, skip_missing=True) if g in tied else g for g in grids])
    try:
        build_config(probe, {}, where=str(config), report_only=True)
    except EvalError as e:
        raise PipelineError(str(e)) from None
    metrics = section.get("metrics") or ["loss"]
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not all(isinstance(m, str) and m for m in metrics):
        raise PipelineError(f"{grid_path}: `{SECTION}.metrics` must be a list of logged metric names")
    output_dir = str(eval_data.get("output_dir") or RunConfig.output_dir)
    return Plan(
        grid=grid_path,
        eval_config=str(config),
        eval_output_dir=output_dir,
        skip_missing=any(bool(g.get("skip_missing")) for g in tied),
        saved=any(g.get("checkpoints") == "saved" for g in tied),
        metrics=list(metrics),
        report=str(report or section.get("report") or os.path.join(output_dir, "report")),
    )


def run_pipeline(
    grid_path: str,
    extra=(),
    dry_run: bool = False,
    only=(),
    eval_config: str | None = None,
    report: str | None = None,
    out=sys.stdout,
    log_dir: str | None = None,
) -> int:
    """The three stages; ``log_dir``: each training run's and the evaluation's output go to files there
    (``<run>.log``, ``evaluation.log``) instead of the terminal. Returns 0, or the failed stage's exit code."""
    p = plan(grid_path, eval_config, report)
    all_runs = grid_mod.runs(grid_path)

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    if dry_run:
        say(f"# 1/3 train the runs of {grid_path} (llamafactory-minor sweep; a finished run is skipped)")
        rc = sweep(grid_path, extra=extra, dry_run=True, only=only, out=out)
        say(f"# 2/3 evaluate every run of the grid ({p.eval_config} reads {grid_path}) -> {p.eval_output_dir}")
        say(grid_mod.format_command(p.eval_command()))
        logged = ", ".join(p.metrics)
        say(f"# 3/3 report -> {p.report}: {logged} of the runs with a training log overlaid; the evaluation's tables")
        say(grid_mod.format_command(p.plot_command(all_runs)))
        say(f"# + {p.report}/evaluation/ ({', '.join(EVAL_FILES)} of {p.eval_output_dir}), report.md, report.json")
        return rc
    done_before = {r.path for r in all_runs if r.done()}
    selected = select(all_runs, only)
    say(f"[pipeline 1/3] train: llamafactory-minor sweep {grid_path} ({len(selected)} of {len(all_runs)} runs)")
    start = time.time()
    rc = sweep(grid_path, extra=extra, dry_run=False, only=only, out=out, log_dir=log_dir)
    times = {"train": round(time.time() - start, 1)}
    if rc != 0:
        say("[pipeline] training failed: the evaluation is not started (rerun the same command to resume)")
        return rc
    say(f"[pipeline 2/3] evaluate: $ {grid_mod.format_command(p.eval_command())}")
    start = time.time()
    cmd = [console_script("llamafactory-minor-eval"), *p.eval_command()[1:]]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        log = os.path.join(log_dir, "evaluation.log")
        say(f"[pipeline] the evaluation's log: {log}")
        with open(log, "w", encoding="utf-8") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    else:
        log, proc = None, subprocess.run(cmd)
    times["evaluation"] = round(time.time() - start, 1)
    if proc.returncode != 0:
        end = f"; the end of its log:\n{tail(log)}" if log else ""
        say(f"[pipeline] the evaluation failed (exit {proc.returncode}): no report written{end}")
        return proc.returncode
    say(f"[pipeline 3/3] report -> {p.report}")
    return write_report(p, all_runs, done_before, say, times=times)


def _grid_title(grid_path: str) -> str:
    """``poft/grid_noise.yaml``: the grid file with its folder (the experiment's name)."""
    full = os.path.abspath(grid_path)
    return f"{os.path.basename(os.path.dirname(full))}/{os.path.basename(full)}"


def write_report(p: Plan, all_runs, done_before: set, say=print, times: dict | None = None) -> int:
    """Plot, copy the evaluation's tables, write report.md / report.json; 1 if the plot could not be drawn."""
    os.makedirs(p.report, exist_ok=True)
    rows = []
    for r in all_runs:
        exists = os.path.exists(os.path.expanduser(r.path))
        if not exists:
            status = "no checkpoint: left out of the evaluation (skip_missing)"
        elif p.saved and not grid_mod.saved_checkpoints(r.path):
            status = "no checkpoint: no saved checkpoint-<step> folder, left out of the evaluation (skip_missing)"
        elif r.path in done_before:
            status = "already done (reused)"
        elif r.done():
            status = "trained now"
        else:
            status = "folder exists, not finished (no all_results.json)"
        rows.append({"name": r.name, "path": r.path, "values": r.values, "status": status, "plotted": False})
    logged = [(r, row) for r, row in zip(all_runs, rows) if plot_mod.has_history(os.path.expanduser(r.path))]
    png = os.path.join(p.report, PLOT_PNG)
    plot_error, summary = None, {}
    try:
        if not logged:
            raise plot_mod.PlotError("no run of the grid has a training log")
        summary = plot_mod.plot_runs(
            [os.path.expanduser(r.path) for r, _ in logged],
            p.metrics,
            out=png,
            labels=[r.name for r, _ in logged],
            title=_grid_title(p.grid) + ": " + ", ".join(p.metrics),
        )
        for _, row in logged:
            row["plotted"] = True
    except plot_mod.PlotError as e:
        plot_error = str(e)
    eval_dir = os.path.join(p.report, "evaluation")
    os.makedirs(eval_dir, exist_ok=True)
    copied = []
    for name in EVAL_FILES:
        src = os.path.join(os.path.expanduser(p.eval_output_dir), name)
        dst = os.path.join(eval_dir, name)
        if os.path.isfile(src):
            shutil.copyfile(src, dst)
            copied.append(name)
        elif os.path.isfile(dst):  # from an earlier report: not this evaluation's
            os.remove(dst)
    summary_md = ""
    if "summary.md" in copied:
        with open(os.path.join(eval_dir, "summary.md"), encoding="utf-8") as f:
            summary_md = f.read().strip()
    skipped = [row for row in rows if row["status"].startswith("no checkpoint")]
    lines = [
        f"# {p.grid}: training, evaluation, report",
        "",
        "Made by `llamafactory-minor sweep " + p.grid + " --evaluate`, which ran:",
        "",
        f"1. `llamafactory-minor sweep {p.grid}` (stock `llamafactory-cli train` per run)",
        f"2. `{grid_mod.format_command(p.eval_command())}` -> `{p.eval_output_dir}` (the tables in `evaluation/`)",
        f"3. the overlay of the runs' logged metrics: `{PLOT_PNG}` (as `llamafactory-minor plot`)",
        "",
        f"## Runs ({len(rows)})",
        "",
        "| run | output_dir | training | in the plot |",
        "|---|---|---|---|",
        *[f"| {r['name']} | `{r['path']}` | {r['status']} | {'yes' if r['plotted'] else 'no'} |" for r in rows],
        "",
    ]
    if skipped:  # the evaluation's own sentence (its summary.md says the same under its table)
        from llamafactory_minor_eval.report import skipped_markdown

        lines += [skipped_markdown([{"name": r["name"], "path": r["path"]} for r in skipped], p.eval_config), ""]
    if times:
        lines += ["Wall time: " + ", ".join(f"{stage} {sec:.0f} s" for stage, sec in times.items()) + ".", ""]
    lines += ["## Training metrics", ""]
    if plot_error:
        lines += [f"Not plotted: {plot_error}.", ""]
    else:
        lines += [f"![training metrics]({PLOT_PNG})", "", plot_mod.format_summary(summary, p.metrics), ""]
    lines += ["## Evaluation", "", summary_md or f"(no summary.md in {p.eval_output_dir})", ""]
    if "summary.png" in copied:
        lines += ["![evaluation](evaluation/summary.png)", ""]
    with open(os.path.join(p.report, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    record = {
        "grid": p.grid,
        "eval_config": p.eval_config,
        "eval_output_dir": p.eval_output_dir,
        "metrics": p.metrics,
        "runs": rows,
        "skipped": [r["name"] for r in skipped],
        "plot": None if plot_error else PLOT_PNG,
        "plot_error": plot_error,
        "metric_summary": {k: {m: list(v) for m, v in per.items()} for k, per in summary.items()},
        "evaluation_files": copied,
        "times_s": times or {},  # wall time of the stages: train (the sweep), evaluation
    }
    with open(os.path.join(p.report, "report.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, default=str)
    say(f"[pipeline] report written to {os.path.join(p.report, 'report.md')}")
    if plot_error:
        print(f"[pipeline] error: the training metrics were not plotted: {plot_error}", file=sys.stderr, flush=True)
        return 1
    return 0

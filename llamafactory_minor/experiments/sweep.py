"""``llamafactory-minor sweep GRID``: train every run of a grid file with stock ``llamafactory-cli train``.

Runs one after another; a run whose ``output_dir`` holds ``all_results.json`` is done and skipped, so an
interrupted sweep is simply restarted. ``--dry-run`` prints the commands. Extra ``key=value`` arguments are
appended to every run. ``--only method=minordpo`` (repeatable) keeps the runs with that axis value. ``--log-dir DIR``
writes each run's output to ``DIR/<run>.log`` instead of the terminal (a failed run's last lines are printed).
Each trained run's folder gets ``minor_run.json``: its name, axis values, grid, command and ``train_seconds`` (the
wall time of its ``llamafactory-cli train``, start-up included).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from llamafactory_minor_eval import grid as grid_mod

# what provides each console script the experiments run
INSTALLS = {
    "llamafactory-cli": "pip install llamafactory==0.9.5",
    "llamafactory-minor": "pip install llamafactory-minor",
    "llamafactory-minor-eval": "pip install llamafactory-minor",
}


class MissingConsoleScript(FileNotFoundError):
    """A console script the experiment runs is not installed: the message names what to install."""


def console_script(name: str) -> str:
    """The path of this environment's console script ``name`` (next to ``sys.executable``: the venv's bin), else
    the one on PATH; neither is one error naming what to install."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    found = shutil.which(name)
    if found:
        return found
    raise MissingConsoleScript(
        f"`{name}` is not installed: neither {path} nor a `{name}` on PATH exists; install it into this "
        f"environment ({INSTALLS.get(name, 'pip install ' + name)})"
    )


def select(all_runs, only=()):
    for item in only:
        if "=" not in item:
            raise grid_mod.GridError(f"--only {item}: use axis=value, e.g. --only method=minordpo")
        axis, value = item.split("=", 1)
        if all_runs and axis not in all_runs[0].values:
            raise grid_mod.GridError(
                f"--only {item}: the grid has no axis `{axis}` (axes: {', '.join(all_runs[0].values)})"
            )
        all_runs = [r for r in all_runs if str(r.values.get(axis)) == value]
    return all_runs


def log_path(log_dir: str, name: str) -> str:
    """``<log_dir>/<run name as a file name>.log`` (the evaluation's folder name for a checkpoint of that name)."""
    from llamafactory_minor_eval.models import safe_name

    return os.path.join(log_dir, safe_name(name) + ".log")


def tail(path: str, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def sweep(path: str, extra=(), dry_run: bool = False, only=(), out=sys.stdout, log_dir: str | None = None) -> int:
    all_runs = select(grid_mod.runs(path), only)
    if not all_runs:
        raise grid_mod.GridError(f"{path}: no run matches {' '.join(only)}")
    if any(r.recipe is None for r in all_runs):
        raise grid_mod.GridError(
            f"{path}: `sweep.recipe` is missing (the LF YAML each run trains, e.g. "
            "examples/minordpo/qwen1.5_7b_full_{method}_ds3.yaml)"
        )
    for r in all_runs:
        if not os.path.isfile(r.recipe):
            raise grid_mod.GridError(f"{path}: run {r.name!r} needs the recipe {r.recipe}, which does not exist")
    cli = None  # found before the first run that trains (a dry run or a finished sweep needs none)
    failed = []
    for i, r in enumerate(all_runs, 1):
        cmd = r.command(extra)
        if dry_run:
            print(grid_mod.format_command(cmd), file=out, flush=True)
            continue
        if r.done():
            print(f"[sweep {i}/{len(all_runs)}] {r.name}: {r.path} is done, skipping", file=out, flush=True)
            continue
        cli = cli or console_script(cmd[0])
        log = log_path(log_dir, r.name) if log_dir else None
        print(
            f"[sweep {i}/{len(all_runs)}] {r.name} -> {r.path}" + (f" (log: {log})" if log else ""),
            file=out,
            flush=True,
        )
        start = time.time()
        if log:
            os.makedirs(log_dir, exist_ok=True)
            with open(log, "w", encoding="utf-8") as f:
                proc = subprocess.run([cli, *cmd[1:]], stdout=f, stderr=subprocess.STDOUT)
        else:
            proc = subprocess.run([cli, *cmd[1:]])
        seconds = round(time.time() - start, 1)
        if proc.returncode != 0:
            failed.append(f"{r.name} (exit {proc.returncode})")
            if log:
                print(f"[sweep] {r.name} failed (exit {proc.returncode}); the end of {log}:\n{tail(log)}", file=out)
        elif os.path.isdir(r.path):  # names the run in plots and tables (llamafactory-minor plot)
            info = {"name": r.name, "values": r.values, "grid": path, "command": cmd, "train_seconds": seconds}
            with open(os.path.join(r.path, "minor_run.json"), "w", encoding="utf-8") as f:
                json.dump(info, f, indent=2)
            print(f"[sweep {i}/{len(all_runs)}] {r.name}: trained in {seconds:.0f} s", file=out, flush=True)
    if failed:
        print(f"[sweep] {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0

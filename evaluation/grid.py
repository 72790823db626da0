"""Experiment grids: one file that the training sweep and the evaluation both read, so their paths cannot drift.

A grid file (YAML)::

    grids:                                  # one or more cross products
      - path: saves/qwen1.5-7b/full/metamath_{method}/beta{beta}_lr{lr}   # the run's output_dir
        name: "{method} beta={beta} lr={lr}"                              # its name in tables and legends
        method: [dpo, dpop, minordpo]       # every other key is an axis: a list of values
        beta: [0.02, 0.04, 0.1, 0.2]
        lr: ["1e-6", "1e-5"]
    sweep:                                  # how `llamafactory-minor sweep` trains each run
      recipe: examples/minordpo/qwen1.5_7b_full_{method}_ds3.yaml
      keys: {beta: pref_beta, lr: learning_rate}    # axis -> LF YAML key (axes not listed only name the run)
      overrides: {precompute_ref_log_probs: true}   # key=value for every run (after the axes)
    base: {name: base, path: Qwen/Qwen1.5-7B-Chat}  # optional: the model every run started from
    evaluate:                               # optional: what `llamafactory-minor sweep GRID --evaluate` runs next
      config: examples/eval/minordpo_gsm8k.yaml     # an evaluation config with `grid: {file: <this file>}`
      metrics: [normalized_rewards/chosen]          # the runs' logged metrics overlaid in the report
      report: outputs/report/minordpo_fig6          # the report folder (llamafactory_minor.experiments.pipeline)

``llamafactory-minor sweep GRID`` (llamafactory_minor.experiments.sweep) trains every run (``llamafactory-cli train <recipe> key=value ...
output_dir=<path>``); the evaluation reads the same file with ``grid: {file: GRID}`` in its config, so every
evaluated path is a path the sweep writes. It lives in the evaluation package, which both environments
(LF's and the vLLM venv) have; it imports only PyYAML.
"""

from __future__ import annotations

import itertools
import os
import shlex
from dataclasses import dataclass, field

SWEEP_ONLY = ("sweep",)
FIXED = ("path", "name")


class GridError(ValueError):
    """A grid file that cannot be used: the message names the file and the key to change."""


@dataclass
class Run:
    name: str
    path: str  # the output_dir the sweep writes and the evaluation reads
    values: dict  # axis -> value
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)

    def command(self, extra=()) -> list[str]:
        return ["llamafactory-cli", "train", self.recipe, *self.overrides, *extra]

    def done(self) -> bool:
        return os.path.isfile(os.path.join(os.path.expanduser(self.path), "all_results.json"))


def load(path: str) -> dict:
    import yaml

    if not os.path.isfile(path):
        raise GridError(f"grid file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise GridError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("grids"), list) or not data["grids"]:
        raise GridError(f"{path}: a grid file needs `grids:`, a list of cross products with a `path` template each")
    return data


def _format(template: str, values: dict, where: str) -> str:
    try:
        return str(template).format(**values)
    except KeyError as e:
        raise GridError(
            f"{where}: the template {template!r} uses {{{e.args[0]}}}, which is not an axis of the grid"
        ) from None


def _axes(grid: dict, where: str) -> dict:
    if "path" not in grid:
        raise GridError(f"{where}: each grid needs a `path` template (the runs' output_dir)")
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items() if k not in FIXED}
    for k, v in axes.items():
        if not v:
            raise GridError(f"{where}: axis `{k}` has no values")
    return axes


def runs(path: str, data: dict | None = None) -> list[Run]:
    """Every run of the grid file at ``path``, in file order (each grid's axes in their order)."""
    data = data if data is not None else load(path)
    sweep = data.get("sweep") or {}
    keys = sweep.get("keys") or {}
    overrides = sweep.get("overrides") or {}
    out, seen = [], {}
    for i, grid in enumerate(data["grids"]):
        where = f"{path}, grids[{i}]"
        axes = _axes(grid, where)
        for combo in itertools.product(*axes.values()):
            values = dict(zip(axes, combo))
            run_path = _format(grid["path"], values, where)
            name = _format(grid.get("name") or "{path}", dict(values, path=run_path), where)
            if run_path in seen:
                raise GridError(
                    f"{where}: runs {seen[run_path]!r} and {name!r} would both write {run_path}: add the "
                    "axis that tells them apart to the path template"
                )
            seen[run_path] = name
            recipe = _format(sweep["recipe"], values, f"{path}, sweep.recipe") if sweep.get("recipe") else None
            args = [f"{keys[k]}={v}" for k, v in values.items() if k in keys]
            args += [f"{k}={_cli_value(v)}" for k, v in overrides.items()] + [f"output_dir={run_path}"]
            out.append(Run(name=name, path=run_path, values=values, recipe=recipe, overrides=args))
    return out


def _cli_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def missing(all_runs: list[Run]) -> list[Run]:
    """The runs whose output folder does not exist."""
    return [r for r in all_runs if not os.path.exists(os.path.expanduser(r.path))]


def saved_checkpoints(run_path: str) -> list[tuple[int, str]]:
    """``(step, folder)`` of every ``checkpoint-<step>`` folder LF saved in a run's output_dir, in step order."""
    folder = os.path.expanduser(run_path)
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        step = name[len("checkpoint-") :] if name.startswith("checkpoint-") else ""
        if step.isdigit() and os.path.isdir(os.path.join(folder, name)):
            found.append((int(step), os.path.join(run_path, name)))
    return sorted(found)


CHECKPOINTS = ("final", "saved")


def eval_checkpoints(
    path: str, skip_missing: bool = False, checkpoints: str = "final"
) -> tuple[list[dict], list[dict[str, str]]]:
    """(checkpoints, skipped) for the evaluation: ``{name, path, **axis values}`` per run of the grid file.

    ``checkpoints: final`` (default) evaluates each run's output_dir (the model LF saved at the end);
    ``checkpoints: saved`` each ``checkpoint-<step>`` folder it saved on the way (``save_strategy: epoch``: one per
    epoch), named ``<run name>/checkpoint-<step>`` with the axis values plus ``step`` and ``saved_index`` (1 for the
    first saved; the epoch under ``save_strategy: epoch``).

    A run whose folder does not exist (with ``saved``: that has no checkpoint-<step> folder) is an error listing
    every missing run, unless ``skip_missing``: then it is left out and listed in ``skipped`` as ``{name, path}``
    (the report prints that list)."""
    if checkpoints not in CHECKPOINTS:
        raise GridError(f"`checkpoints: {checkpoints}`: use {' or '.join(CHECKPOINTS)}")
    all_runs = runs(path)
    if checkpoints == "saved":
        absent = [r for r in all_runs if not saved_checkpoints(r.path)]
    else:
        absent = missing(all_runs)
    if absent and not skip_missing:
        shown = "\n".join(f"  - {r.name}: {r.path}" for r in absent)
        what = (
            "no saved checkpoint-<step> folder (train with save_strategy: epoch or steps)"
            if checkpoints == "saved"
            else "no checkpoint yet"
        )
        raise GridError(
            f"{len(absent)} of {len(all_runs)} runs of {path} have {what}:\n{shown}\n"
            "train them (`llamafactory-minor sweep " + path + "`) or set `skip_missing: true` to "
            "evaluate the others"
        )
    skipped = [{"name": r.name, "path": r.path} for r in absent]
    keep = []
    for r in all_runs:
        if r in absent:
            continue
        if checkpoints == "final":
            keep.append(dict(r.values, name=r.name, path=r.path))
            continue
        for k, (step, folder) in enumerate(saved_checkpoints(r.path), start=1):
            keep.append(dict(r.values, step=step, saved_index=k, name=f"{r.name}/checkpoint-{step}", path=folder))
    return keep, skipped


def format_command(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)

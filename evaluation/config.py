"""Run configuration: a YAML file and/or command-line options (the command line wins).

YAML keys are the long option names with ``_`` instead of ``-`` (``mc_mode``, ``batch_size`` ...),
plus ``checkpoints`` (a list) and ``grid`` (method x lr x beta sweeps), see evaluation/README.md.
"""

import itertools
import os
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from .benchmarks import benchmark_info
from .errors import EvalError
from .models import Checkpoint, safe_name
from .options import MC_MODES, check_settings, int_settings  # noqa: F401  (MC_MODES: kept importable from here)


@dataclass
class RunConfig:
    checkpoints: list[Checkpoint] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)
    output_dir: str = "outputs/eval"
    base: str | None = None  # base model of LoRA adapters that do not name one (overrides adapter_config)
    # data
    data_dir: str | None = None
    data: dict[str, str] = field(default_factory=dict)  # benchmark -> folder or hub dataset id
    split: dict[str, str] = field(default_factory=dict)  # benchmark -> split ("*" = all)
    subjects: dict[str, list[str]] = field(default_factory=dict)  # benchmark -> subjects ("*" = all)
    limit: dict[str, int] = field(default_factory=dict)  # benchmark -> N ("*" = all)
    limit_per_subject: int | None = None
    limit_mode: str = "random"  # "random" (seeded uniform sample) or "first" (first N in file order)
    seed: int = 42
    few_shot: int = 0
    # answering
    mc_mode: str = "generation"
    mc_max_new_tokens: int = 16
    gsm8k_max_new_tokens: int = 512
    chat_template: str = "auto"
    system_prompt: str | None = None
    # backend
    backend: str = "transformers"
    batch_size: int = 8
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    tensor_parallel_size: int = 1
    vllm_max_model_len: int | None = None
    vllm_gpu_memory_utilization: float | None = None
    vllm_kv_cache_gb: float | None = None
    vllm_enforce_eager: bool = True
    max_lora_rank: int | None = None
    # lm-eval-harness tasks beside our benchmarks (lmeval_suite.py)
    lmeval_tasks: list[str] = field(
        default_factory=list
    )  # e.g. ["arc_challenge", "hellaswag@10", "mmlu:anatomy,virology"]
    lmeval_data_dir: str | None = (
        None  # local files <dir>/<task folder>/<split>.jsonl (default: lm-eval's hub datasets)
    )
    lmeval_limit: int | None = None  # lm-eval's --limit: the first N documents of each task / MMLU subject
    lmeval_max_gen_toks: int | None = None  # generation tasks (gsm8k): token budget (default the task's, 256)
    # deviation metric m_theta
    deviation_data: str | None = None
    deviation_limit: int | None = 200
    deviation_max_length: int = 1024
    reference: str | None = None
    # run control
    overwrite: bool = False
    keep_going: bool = False
    chart: bool = True
    table_metric: str = "both"
    progress: bool = True

    def split_for(self, benchmark: str) -> str | None:
        return self.split.get(benchmark) or self.split.get("*")

    def subjects_for(self, benchmark: str) -> list[str] | None:
        return self.subjects.get(benchmark) or self.subjects.get("*")

    def limit_for(self, benchmark: str) -> int | None:
        value = self.limit.get(benchmark, self.limit.get("*"))
        return None if value is None else int(value)

    def lmeval_suite(self):
        """The lm-eval tasks as LmEvalTask objects (PoFT's shots and metric unless ``name@shots``)."""
        from .lmeval_suite import parse_task_list, suite_from_names

        return suite_from_names(parse_task_list(self.lmeval_tasks or []))

    def lmeval_gen_kwargs(self) -> dict[str, int] | None:
        return {"max_gen_toks": int(self.lmeval_max_gen_toks)} if self.lmeval_max_gen_toks else None

    def validate(self, report_only: bool = False) -> None:
        if not self.checkpoints and not report_only:
            raise EvalError("no checkpoints to evaluate: give --model PATH (or checkpoints: in the YAML)")
        if not self.benchmarks and not self.deviation_data and not self.lmeval_tasks and not report_only:
            raise EvalError(
                "no benchmarks: give --benchmarks ceval,financeiq,fineval,gsm8k (or --lmeval-tasks, --deviation-data)"
            )
        self.benchmarks = _unique([benchmark_info(b).name for b in self.benchmarks])
        self.lmeval_suite()  # unknown lm-eval task names fail here, before any model is loaded
        if self.lmeval_data_dir and not os.path.isdir(os.path.expanduser(self.lmeval_data_dir)) and not report_only:
            raise EvalError(f"lmeval_data_dir {self.lmeval_data_dir} is not a folder")
        for mapping in (self.data, self.split, self.subjects, self.limit):
            for key in list(mapping):
                if key != "*":
                    name = benchmark_info(key).name
                    if name != key:
                        mapping[name] = mapping.pop(key)
        check_settings(self)  # choices and minimums of the option table (options.py)
        for key, value in self.limit.items():
            if int(value) <= 0:
                raise EvalError(f"limit{'' if key == '*' else ' of ' + key} must be a positive number, got {value}")
        names = [c.name for c in self.checkpoints]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise EvalError(f"checkpoint names must be unique; repeated: {', '.join(dup)}")
        dirs = [safe_name(n) for n in names]
        dup = sorted({n for n in dirs if dirs.count(n) > 1})
        if dup:
            raise EvalError(f"checkpoint names map to the same output folder: {', '.join(dup)}; rename them")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "checkpoints":
                value = [
                    {
                        k: v
                        for k, v in (
                            ("name", c.name),
                            ("path", c.path),
                            ("base", c.base),
                            ("ref", c.ref),
                            ("meta", c.meta or None),
                        )
                        if v
                    }
                    for c in value
                ]
            out[f.name] = value
        return out


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _as_list(value: None | str | list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value]


def _per_benchmark(value: Any, what: str, listy: bool = False) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): (_as_list(v) if listy else str(v)) for k, v in value.items()}
    if listy:
        return {"*": _as_list(value)}
    return {"*": str(value)}


def parse_checkpoint_entry(entry: Any, index: int, where: str) -> Checkpoint:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or not entry.get("path"):
        raise EvalError(f"{where}: checkpoint #{index + 1} needs a path (got {entry!r})")
    known = {"name", "path", "base", "ref", "meta"}
    meta = dict(entry.get("meta") or {})
    for key, value in entry.items():
        if key not in known:
            meta[key] = value  # method, lr, beta ... are kept as columns
    path = str(entry["path"])
    name = str(entry.get("name") or default_name(path))
    return Checkpoint(name=name, path=path, base=entry.get("base"), ref=entry.get("ref"), meta=meta)


def default_name(path: str) -> str:
    norm = os.path.normpath(os.path.expanduser(path))
    base = os.path.basename(norm)
    if base.startswith("checkpoint-"):  # saves/run/checkpoint-400 -> run/checkpoint-400
        base = os.path.basename(os.path.dirname(norm)) + "/" + base
    return base or path


def expand_grid(grid: dict[str, Any], where: str, skipped: list[dict[str, str]] | None = None) -> list[Checkpoint]:
    """``grid: {path: "saves/{method}_lr{lr}_b{beta}", name: "...", method: [...], lr: [...], beta: [...],
    base: ..., skip_missing: false}`` -> one checkpoint per combination (in the order given). With
    ``skip_missing`` a combination whose folder does not exist is left out and appended to ``skipped`` as
    ``{"name", "path"}``.

    ``grid: {file: examples/minordpo/grid.yaml, skip_missing: false}`` reads the experiment grid file that
    ``llamafactory-minor sweep`` trains (``grid.py``), so the evaluated paths are the sweep's: a run without a
    checkpoint is an error listing every missing run, unless ``skip_missing``. ``checkpoints: saved`` evaluates
    every ``checkpoint-<step>`` folder of each run instead of its final model (accuracy per epoch)."""
    if "file" in grid:
        return _grid_file_checkpoints(grid, where, skipped)
    if "path" not in grid:
        raise EvalError(f"{where}: grid needs a path template such as saves/{{method}}_lr{{lr}}_b{{beta}}")
    fixed = {k: grid[k] for k in ("path", "name", "base", "ref", "skip_missing") if k in grid}
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items() if k not in fixed}
    keys = list(axes)
    out = []
    for combo in itertools.product(*(axes[k] for k in keys)):
        values = dict(zip(keys, combo))
        try:
            path = str(fixed["path"]).format(**values)
            name = str(fixed.get("name") or "{path}").format(path=default_name(path), **values)
        except KeyError as exc:
            raise EvalError(f"{where}: grid template uses {{{exc.args[0]}}} but the grid has no such list") from None
        if fixed.get("skip_missing") and not os.path.exists(os.path.expanduser(path)):
            if skipped is not None:
                skipped.append({"name": name, "path": path})
            continue
        out.append(Checkpoint(name=name, path=path, base=fixed.get("base"), ref=fixed.get("ref"), meta=values))
    return out


def _grid_file_checkpoints(grid: dict[str, Any], where: str, skipped: list[dict[str, str]] | None) -> list[Checkpoint]:
    from . import grid as grid_file

    extra = sorted(set(grid) - {"file", "skip_missing", "base", "ref", "checkpoints"})
    if extra:
        raise EvalError(f"{where}: `grid: {{file: ...}}` takes the runs from the file; remove {', '.join(extra)}")
    try:
        found, left_out = grid_file.eval_checkpoints(
            str(grid["file"]),
            skip_missing=bool(grid.get("skip_missing")),
            checkpoints=str(grid.get("checkpoints") or "final"),
        )
    except grid_file.GridError as e:
        raise EvalError(f"{where}: {e}") from None
    if skipped is not None:
        skipped.extend(left_out)
    out = []
    for run in found:
        meta = {k: v for k, v in run.items() if k not in ("name", "path")}
        out.append(
            Checkpoint(name=run["name"], path=run["path"], base=grid.get("base"), ref=grid.get("ref"), meta=meta)
        )
    return out


def skipped_line(run: dict[str, str]) -> str:
    """A grid run skip_missing left out, as the CLI logs it: ``NAME: PATH has no checkpoint``."""
    return f"{run['name']}: {run['path']} has no checkpoint"


def load_yaml(path: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:  # pragma: no cover
        raise EvalError("reading a YAML config needs pyyaml: pip install pyyaml") from None
    if not os.path.isfile(path):
        raise EvalError(f"config file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise EvalError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise EvalError(f"{path}: the top level must be a mapping of options")
    return data


def build_config(
    yaml_data: dict[str, Any] | None, overrides: dict[str, Any], where: str = "config", report_only: bool = False
) -> RunConfig:
    """Merge YAML values and command-line overrides (None = not given) into a RunConfig."""
    data = dict(yaml_data or {})
    cfg = RunConfig()
    known = {f.name for f in fields(RunConfig)} | {"grid", "models"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EvalError(f"{where}: unknown key(s) {', '.join(unknown)}; see llamafactory-minor-eval --help")

    checkpoints: list[Checkpoint] = []
    entries = data.get("checkpoints") or data.get("models") or []
    if not isinstance(entries, list):
        raise EvalError(f"{where}: checkpoints must be a list")
    for i, entry in enumerate(entries):
        checkpoints.append(parse_checkpoint_entry(entry, i, where))
    grids = data.get("grid") or []
    skipped: list[dict[str, str]] = []  # grid runs left out by skip_missing: {"name", "path"}
    if not overrides.get("models"):  # --model replaces the YAML's checkpoints: its grid is not expanded
        for grid in grids if isinstance(grids, list) else [grids]:
            checkpoints.extend(expand_grid(grid, where, skipped))
    for key, value in data.items():
        if key in ("checkpoints", "models", "grid"):
            continue
        setattr(cfg, key, value)

    cli_models = overrides.pop("models", None)
    if cli_models:
        checkpoints = cli_models  # the command line replaces the YAML list
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    cfg.checkpoints = checkpoints
    if not checkpoints and skipped and not cli_models and not report_only:
        raise EvalError(
            f"{where}: skip_missing left out every grid run ({len(skipped)}; the first: {skipped_line(skipped[0])}); "
            "check the grid's path template"
        )
    # grid runs left out by skip_missing, {"name", "path"}: logged by the CLI (skipped_line) and recorded for the
    # report; grid_expanded: this invocation read a grid, so its list replaces the one the output folder holds
    # (report.store_skipped)
    cfg.grid_expanded = bool(grids) and not cli_models
    cfg.skipped_checkpoints = skipped if not cli_models else []
    cfg.benchmarks = _as_list(cfg.benchmarks)
    from .lmeval_suite import parse_task_list

    cfg.lmeval_tasks = parse_task_list(cfg.lmeval_tasks or [])
    cfg.data = _per_benchmark(cfg.data, "data")
    cfg.split = _per_benchmark(cfg.split, "split")
    cfg.subjects = _per_benchmark(cfg.subjects, "subjects", listy=True)
    cfg.limit = {
        k: _int(v, "limit" if k == "*" else f"limit of {k}") for k, v in _per_benchmark(cfg.limit, "limit").items()
    }
    optional = {f.name for f in fields(RunConfig) if type(None) in typing.get_args(f.type)}
    for name in int_settings():  # whole-number settings (options.py); Optional[int] ones may stay unset
        value = getattr(cfg, name)
        if value is not None or name not in optional:
            setattr(cfg, name, _int(value, name))
    cfg.validate(report_only)
    return cfg


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EvalError(f"{name} must be a whole number, got {value!r}") from None

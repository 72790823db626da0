"""Planning a run before any model is loaded: the checkpoints resolved, the benchmark data loaded, and the
models to load (:class:`Unit`: a checkpoint, or a reference model used only for m_theta) with their pending
pairs, the reference of each checkpoint, and the pending lm-eval-harness pairs."""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .data import BenchmarkData, load_benchmark
from .models import Checkpoint, _check_model_location, resolve_checkpoint, safe_name


@dataclass
class Unit:
    """A model to load: a checkpoint, or a reference model used only for m_theta."""

    ckpt: Checkpoint
    folder: Path
    is_checkpoint: bool = True
    benchmarks: list[str] = field(default_factory=list)  # pending pairs
    needs_deviation: bool = False


def resolve_checkpoints(cfg: RunConfig) -> None:
    """Adapters without a base of their own get ``--base``; every checkpoint is checked and resolved."""
    for ckpt in cfg.checkpoints:
        if (
            not ckpt.base
            and cfg.base
            and os.path.isfile(os.path.join(os.path.expanduser(ckpt.path), "adapter_config.json"))
        ):
            ckpt.base = cfg.base
        resolve_checkpoint(ckpt)


def load_data(cfg: RunConfig, log: Callable[[str], None]) -> dict[str, BenchmarkData]:
    """Every benchmark's chosen questions (and few-shot pools), each described in one log line."""
    data: dict[str, BenchmarkData] = {}
    for name in cfg.benchmarks:
        data[name] = load_benchmark(
            name,
            split=cfg.split_for(name),
            source=cfg.data.get(name),
            data_dir=cfg.data_dir,
            subjects=cfg.subjects_for(name),
            limit=cfg.limit_for(name),
            limit_per_subject=cfg.limit_per_subject,
            seed=cfg.seed,
            few_shot=cfg.few_shot,
            limit_mode=cfg.limit_mode,
        )
        d = data[name]
        chosen = (
            ""
            if len(d.samples) == d.n_pool
            else (
                f", the first {len(d.samples)}" if cfg.limit_mode == "first" else f", seeded sample (seed {cfg.seed})"
            )
        )
        log(
            f"[data] {d.info.title}: {len(d.samples)} of {d.n_pool} questions{chosen} "
            f"(split {d.split}, {len({s.subject for s in d.samples})} subjects) from {d.root}"
        )
        for note in d.notes:
            log(f"[data] note: {note}")
    return data


class UnitPlanner:
    """The units of a run (checkpoints first, then references that are not checkpoints) and each checkpoint's
    m_theta reference. ``pair_status(unit, name)`` and ``deviation_done(unit)`` come from the resume store."""

    def __init__(self, cfg: RunConfig, out: Path):
        self.cfg = cfg
        self.out = out
        self.units: list[Unit] = []
        self.refs: dict[str, Unit] = {}  # checkpoint name -> reference unit

    def plan(self, pair_status, deviation_done, with_deviation: bool) -> tuple[list[Unit], dict[str, Unit]]:
        self.units = [Unit(c, self.out / safe_name(c.name)) for c in self.cfg.checkpoints]
        for unit in list(self.units):
            for name in self.cfg.benchmarks:
                status = pair_status(unit, name)
                if status != "done":
                    unit.benchmarks.append(name)
        if with_deviation:
            for ckpt in self.cfg.checkpoints:
                self.refs[ckpt.name] = self._reference_for(ckpt)
            needed = {id(u) for u in self.units if u.is_checkpoint} | {id(r) for r in self.refs.values()}
            for unit in self.units:
                if id(unit) in needed and not deviation_done(unit):
                    unit.needs_deviation = True
        # models with the same base next to each other (one vLLM engine serves all adapters of a base)
        first = {}
        for i, unit in enumerate(self.units):
            first.setdefault(unit.ckpt.identity()["model"], i)
        self.units.sort(key=lambda u: first[u.ckpt.identity()["model"]])
        return self.units, self.refs

    def _reference_for(self, ckpt: Checkpoint) -> Unit | None:
        by_name = {u.ckpt.name: u for u in self.units if u.is_checkpoint}
        spec = ckpt.ref or self.cfg.reference
        if spec:
            if spec in by_name:
                return by_name[spec]
            return self._path_unit(spec)
        if ckpt.adapter:
            base_id = Checkpoint(name="", path=ckpt.base).identity()
            for unit in self.units:
                if unit.is_checkpoint and not unit.ckpt.adapter and unit.ckpt.identity() == base_id:
                    return unit
            return self._path_unit(ckpt.base)
        return self.units[0]  # the first checkpoint (list the base model first)

    def _path_unit(self, path: str) -> Unit:
        identity = Checkpoint(name="", path=path).identity()
        for unit in self.units:
            if not unit.ckpt.adapter and unit.ckpt.identity() == identity:
                return unit
        _check_model_location(path, "reference model")
        name = "ref-" + os.path.basename(os.path.normpath(os.path.expanduser(path)))
        unit = Unit(Checkpoint(name=name, path=path), self.out / "_reference" / safe_name(name), is_checkpoint=False)
        self.units.append(unit)
        return unit


def plan_lmeval(cfg: RunConfig, out: Path, tasks: list, dtype: str, log: Callable[[str], None]) -> dict[str, list]:
    """Pending (checkpoint, lm-eval task) pairs by checkpoint name; other settings in the folder and missing local
    files fail here, before any model is loaded."""
    if not tasks:
        return {}
    from .lmeval_bridge import _lm_eval
    from .lmeval_suite import plan_pairs

    _lm_eval()  # installed? (one clear line if not)
    pending_by_ckpt: dict[str, list] = {}
    for ckpt in cfg.checkpoints:
        _, pending = plan_pairs(
            ckpt,
            tasks,
            str(out),
            cfg.backend,
            cfg.lmeval_data_dir,
            dtype,
            cfg.lmeval_limit,
            cfg.lmeval_gen_kwargs(),
            cfg.overwrite,
            log=log,
        )
        if pending:
            pending_by_ckpt[ckpt.name] = pending
    where = cfg.lmeval_data_dir or "lm-eval's hub datasets"
    log(
        f"[lm-eval] {', '.join(t.title.replace(' [lm-eval]', '') for t in tasks)}: lm-eval-harness's "
        f"own tasks with its {cfg.backend} backend, data from {where}"
        + (f", the first {cfg.lmeval_limit} documents of each" if cfg.lmeval_limit else "")
        + f"; {sum(len(p) for p in pending_by_ckpt.values())} of "
        f"{len(cfg.checkpoints) * len(tasks)} (checkpoint, task) pairs to run"
    )
    return pending_by_ckpt

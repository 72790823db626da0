"""Batch runs: checkpoints x benchmarks (+ the deviation metric), resumable, with atomic outputs.

Output layout under ``output_dir``::

    run_config.yaml                     the resolved settings of the last invocation
    <checkpoint>/<benchmark>/samples.jsonl   one line per question: prompt, output, parsed, gold, correct
    <checkpoint>/<benchmark>/metrics.json    accuracy (micro, macro), per subject (and C-Eval category)
    <checkpoint>/<benchmark>/fingerprint.json the settings the pair was run with
    <checkpoint>/lm-<task>/...          the same three files for an lm-eval-harness task (lmeval_suite.py)
    <checkpoint>/deviation.json         per-sample answer log-probs on the deviation dataset
    _reference/<name>/deviation.json    the same for a reference model that is not itself a checkpoint
    summary.csv, summary.md, summary.json, summary.png, subjects.csv

A (checkpoint, benchmark) pair with a metrics.json made with the same settings is skipped. An
unfinished pair keeps its answered questions in samples.partial.jsonl and continues from there.

This module is the orchestration only; the jobs are in: plan.py (checkpoints, data, units and references),
store.py (the resume store: fingerprints, partial and finished results), engines.py (the engine pool),
scoring.py (answering and scoring one pair), deviation.py (the m_theta pass), report.py (the summaries).
"""

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .config import RunConfig
from .deviation import DeviationSample, deviation_values, load_deviation_data, run_deviation
from .engines import EnginePool, lmeval_dtype, transformers_backend
from .errors import EvalError
from .io_utils import atomic_write_text
from .plan import Unit, UnitPlanner, load_data, plan_lmeval, resolve_checkpoints
from .report import collect_rows, write_reports
from .samples import BenchmarkData
from .scoring import run_pair
from .store import ResultStore


class Runner:
    def __init__(self, cfg: RunConfig, log: Callable[[str], None] = None):
        self.cfg = cfg
        self.out = Path(os.path.expanduser(cfg.output_dir))
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.data: dict[str, BenchmarkData] = {}
        self.store = ResultStore(cfg, self.data, log=self.log)
        self.pool = EnginePool(cfg)
        self.dev_samples: list[DeviationSample] = []
        self.refs: dict[str, Unit] = {}  # checkpoint name -> reference unit
        self.units: list[Unit] = []
        self._deferred: list[Unit] = []  # deviation passes to run with transformers afterwards
        self.errors: list[str] = []
        self.lmeval_tasks = cfg.lmeval_suite() if cfg.lmeval_tasks else []  # lmeval_suite.LmEvalTask
        self._lmeval_pending: dict[str, list] = {}  # checkpoint name -> pending (task, specs, folder, fingerprint)

    # ------------------------------------------------------------------------------------------ plan
    def prepare(self) -> None:
        cfg = self.cfg
        resolve_checkpoints(cfg)
        self.data.update(load_data(cfg, self.log))
        if cfg.deviation_data:
            self.dev_samples = load_deviation_data(cfg.deviation_data, cfg.deviation_limit, cfg.seed)
            self.store.dev_samples = self.dev_samples  # their digest is part of deviation.json's fingerprint
            self.log(f"[data] deviation: {len(self.dev_samples)} pairs from {cfg.deviation_data}")
        self.units, self.refs = UnitPlanner(cfg, self.out).plan(
            self.store.pair_status, self.store.deviation_done, with_deviation=bool(self.dev_samples)
        )
        if self.lmeval_tasks:
            self._lmeval_pending = plan_lmeval(cfg, self.out, self.lmeval_tasks, lmeval_dtype(cfg), self.log)

    # ------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, object]:
        self.prepare()
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_run_config()
        self._announce()
        started = time.time()
        try:
            for unit in self.units:
                if not unit.benchmarks and not unit.needs_deviation:
                    if unit.is_checkpoint and (self.cfg.benchmarks or self.dev_samples):
                        self.log(f"[skip] {unit.ckpt.name}: all pairs already done")
                    continue
                try:
                    self._run_unit(unit)
                except EvalError as exc:
                    if not self.cfg.keep_going:
                        raise
                    self.errors.append(f"{unit.ckpt.name}: {exc}")
                    self.log(f"[error] {unit.ckpt.name}: {exc} (going on: --keep-going)")
            self.pool.close()
            for unit in self._deferred:
                try:
                    self._run_deferred_deviation(unit)
                except EvalError as exc:
                    if not self.cfg.keep_going:
                        raise
                    self.errors.append(f"{unit.ckpt.name} (deviation): {exc}")
            self._run_lmeval()  # after our engines are closed: lm-eval loads its own model per checkpoint
        finally:
            self.pool.close()
            summary = self.summarize()
        self.log(f"[done] {time.time() - started:.1f}s; results in {self.out}")
        if self.errors:
            raise EvalError(f"{len(self.errors)} checkpoint(s) failed: " + " | ".join(self.errors))
        return summary

    def _announce(self) -> None:
        mc = [n for n in self.cfg.benchmarks if self.data[n].info.kind == "mc"]
        if mc:
            how = (
                "generation (parser cascade: answer statement, first letter, only letter, option text; "
                "none = wrong, counted as unparsed)"
                if self.cfg.mc_mode == "generation"
                else "option likelihood (the most likely of the letters A-D after the prompt, one forward pass)"
            )
            self.log(f"[mode] multiple choice ({', '.join(mc)}) answered by {how}")

    def _write_run_config(self) -> None:
        try:
            import yaml

            text = yaml.safe_dump(self.cfg.to_dict(), allow_unicode=True, sort_keys=False)
        except ImportError:  # pragma: no cover
            import json

            text = json.dumps(self.cfg.to_dict(), ensure_ascii=False, indent=2)
        atomic_write_text(self.out / "run_config.yaml", text)

    # ---------------------------------------------------------------------------------------- models
    def _run_unit(self, unit: Unit) -> None:
        from .backends.base import PromptEncoder

        what = ", ".join(unit.benchmarks + (["deviation"] if unit.needs_deviation else []))
        self.log(
            f"[load] {unit.ckpt.name}: {unit.ckpt.path}"
            + (f" on {unit.ckpt.base}" if unit.ckpt.adapter else "")
            + f" ({self.cfg.backend}) for {what}"
        )
        backend = self.pool.backend_for(unit, self.units)
        try:
            encoder = PromptEncoder(backend.tokenizer, self.cfg.chat_template, self.cfg.system_prompt)
            for name in unit.benchmarks:
                run_pair(self.cfg, self.store, unit, self.data[name], backend, encoder, self.log)
            if unit.needs_deviation:
                if backend.supports_sequence_logprobs:
                    run_deviation(self.cfg, self.store, unit, self.dev_samples, backend, encoder, self.log)
                else:
                    self._deferred.append(unit)
        finally:
            backend.close()

    def _run_deferred_deviation(self, unit: Unit) -> None:
        from .backends.base import PromptEncoder

        self.log(
            f"[load] {unit.ckpt.name}: deviation log-probs with transformers (this vLLM build cannot give "
            "prompt log-probs with LoRA enabled)"
        )
        backend = transformers_backend(self.cfg, unit)
        try:
            encoder = PromptEncoder(backend.tokenizer, self.cfg.chat_template, self.cfg.system_prompt)
            run_deviation(self.cfg, self.store, unit, self.dev_samples, backend, encoder, self.log)
        finally:
            backend.close()

    # ------------------------------------------------------------------------------- lm-eval tasks
    def _run_lmeval(self) -> None:
        if not self.lmeval_tasks:
            return
        from .lmeval_suite import new_task_manager, run_suite

        cfg, tm = self.cfg, None
        for ckpt in cfg.checkpoints:
            if ckpt.name not in self._lmeval_pending:
                self.log(f"[skip] {ckpt.name}: all lm-eval tasks already done")
                continue
            try:
                if tm is None:
                    tm = new_task_manager(self.lmeval_tasks)
                run_suite(
                    [ckpt],
                    self.lmeval_tasks,
                    str(self.out),
                    backend=cfg.backend,
                    data_dir=cfg.lmeval_data_dir,
                    batch_size=cfg.batch_size,
                    dtype=lmeval_dtype(cfg),
                    limit=cfg.lmeval_limit,
                    overwrite=cfg.overwrite,
                    log=self.log,
                    gen_kwargs=cfg.lmeval_gen_kwargs(),
                    tm=tm,
                )
            except EvalError as exc:
                if not cfg.keep_going:
                    raise
                self.errors.append(f"{ckpt.name} (lm-eval): {exc}")
                self.log(f"[error] {ckpt.name} (lm-eval): {exc} (going on: --keep-going)")

    # -------------------------------------------------------------------------------------- summary
    def deviation_values(self) -> dict[str, dict[str, object]]:
        return deviation_values(self.cfg, self.store, self.units, self.refs, self.errors)

    def summarize(self) -> dict[str, object]:
        deviation = self.deviation_values() if self.dev_samples else {}
        # every (checkpoint, benchmark) result in the folder: this run's checkpoints first (report.py)
        columns = list(self.cfg.benchmarks) + [t.column for t in self.lmeval_tasks]
        rows, benchmarks = collect_rows(self.out, self.cfg.checkpoints, columns, deviation)
        titles = {name: self.data[name].info.title if name in self.data else None for name in benchmarks}
        return write_reports(
            self.out,
            rows,
            benchmarks,
            titles,
            mc_mode=self.cfg.mc_mode,
            table_metric=self.cfg.table_metric,
            chart=self.cfg.chart,
            deviation_data=self.cfg.deviation_data,
            log=self.log,
        )

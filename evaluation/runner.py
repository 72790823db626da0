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
"""

import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .config import RunConfig
from .data import BenchmarkData, Sample, load_benchmark, shot_answer, shots_for
from .deviation import DeviationSample, load_deviation_data, m_theta
from .errors import EvalError
from .io_utils import append_jsonl, atomic_write_json, atomic_write_text, jsonl_text, read_json, read_jsonl
from .metrics import compute_metrics
from .models import Checkpoint, _check_model_location, resolve_checkpoint, safe_name
from .parsing import LETTERS, score_mc
from .parsing import score_gsm8k as score_gsm8k_output
from .prompts import PROMPT_VERSION, build_prompt
from .report import collect_rows, write_reports


@dataclass
class Unit:
    """A model to load: a checkpoint, or a reference model used only for m_theta."""

    ckpt: Checkpoint
    folder: Path
    is_checkpoint: bool = True
    benchmarks: list[str] = field(default_factory=list)  # pending pairs
    needs_deviation: bool = False


# ----------------------------------------------------------------------------------------------------
# metrics


def score_choice(sample: Sample, output: str) -> dict[str, object]:
    """parsed letter, correct, the parser and the rule of its cascade that answered (parsing.py)."""
    return score_mc(output, sample.gold, sample.options)


def score_gsm8k(sample: Sample, output: str) -> dict[str, object]:
    """strict and flexible answers and whether each is right (parsing.py)."""
    return score_gsm8k_output(output, sample.gold)


# ----------------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, cfg: RunConfig, log: Callable[[str], None] = None):
        self.cfg = cfg
        self.out = Path(os.path.expanduser(cfg.output_dir))
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.data: dict[str, BenchmarkData] = {}
        self.dev_samples: list[DeviationSample] = []
        self.refs: dict[str, Unit] = {}  # checkpoint name -> reference unit
        self.units: list[Unit] = []
        self._engines: dict[str, object] = {}
        self._deferred: list[Unit] = []  # deviation passes to run with transformers afterwards
        self.errors: list[str] = []
        self.lmeval_tasks = cfg.lmeval_suite() if cfg.lmeval_tasks else []  # lmeval_suite.LmEvalTask
        self._lmeval_pending: dict[str, list] = {}  # checkpoint name -> pending (task, specs, folder, fingerprint)

    # ------------------------------------------------------------------------------------------ plan
    def prepare(self) -> None:
        cfg = self.cfg
        for ckpt in cfg.checkpoints:
            if (
                not ckpt.base
                and cfg.base
                and os.path.isfile(os.path.join(os.path.expanduser(ckpt.path), "adapter_config.json"))
            ):
                ckpt.base = cfg.base
            resolve_checkpoint(ckpt)
        for name in cfg.benchmarks:
            self.data[name] = load_benchmark(
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
            d = self.data[name]
            chosen = (
                ""
                if len(d.samples) == d.n_pool
                else (
                    f", the first {len(d.samples)}"
                    if cfg.limit_mode == "first"
                    else f", seeded sample (seed {cfg.seed})"
                )
            )
            self.log(
                f"[data] {d.info.title}: {len(d.samples)} of {d.n_pool} questions{chosen} "
                f"(split {d.split}, {len({s.subject for s in d.samples})} subjects) from {d.root}"
            )
            for note in d.notes:
                self.log(f"[data] note: {note}")
        if cfg.deviation_data:
            self.dev_samples = load_deviation_data(cfg.deviation_data, cfg.deviation_limit, cfg.seed)
            self.log(f"[data] deviation: {len(self.dev_samples)} pairs from {cfg.deviation_data}")
        self._plan_units()
        self._plan_lmeval()

    # ------------------------------------------------------------------------------- lm-eval tasks
    def _lmeval_dtype(self) -> str:
        if self.cfg.dtype != "auto":
            return self.cfg.dtype
        from .lmeval_suite import _cuda

        return "auto" if _cuda() else "float32"

    def _plan_lmeval(self) -> None:
        """Pending (checkpoint, lm-eval task) pairs; other settings in the folder and missing local files fail
        here, before any model is loaded."""
        if not self.lmeval_tasks:
            return
        from .lmeval_bridge import _lm_eval
        from .lmeval_suite import plan_pairs

        _lm_eval()  # installed? (one clear line if not)
        cfg = self.cfg
        for ckpt in cfg.checkpoints:
            _, pending = plan_pairs(
                ckpt,
                self.lmeval_tasks,
                str(self.out),
                cfg.backend,
                cfg.lmeval_data_dir,
                self._lmeval_dtype(),
                cfg.lmeval_limit,
                cfg.lmeval_gen_kwargs(),
                cfg.overwrite,
            )
            if pending:
                self._lmeval_pending[ckpt.name] = pending
        where = cfg.lmeval_data_dir or "lm-eval's hub datasets"
        self.log(
            f"[lm-eval] {', '.join(t.title.replace(' [lm-eval]', '') for t in self.lmeval_tasks)}: lm-eval-harness's "
            f"own tasks with its {cfg.backend} backend, data from {where}"
            + (f", the first {cfg.lmeval_limit} documents of each" if cfg.lmeval_limit else "")
            + f"; {sum(len(p) for p in self._lmeval_pending.values())} of "
            f"{len(cfg.checkpoints) * len(self.lmeval_tasks)} (checkpoint, task) pairs to run"
        )

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
                    dtype=self._lmeval_dtype(),
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

    def _ckpt_folder(self, ckpt: Checkpoint) -> Path:
        return self.out / safe_name(ckpt.name)

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

    def _plan_units(self) -> None:
        self.units = [Unit(c, self._ckpt_folder(c)) for c in self.cfg.checkpoints]
        for unit in list(self.units):
            for name in self.cfg.benchmarks:
                status = self._pair_status(unit, name)
                if status != "done":
                    unit.benchmarks.append(name)
        if self.dev_samples:
            for ckpt in self.cfg.checkpoints:
                self.refs[ckpt.name] = self._reference_for(ckpt)
            needed = {id(u) for u in self.units if u.is_checkpoint} | {id(r) for r in self.refs.values()}
            for unit in self.units:
                if id(unit) in needed and not self._deviation_done(unit):
                    unit.needs_deviation = True
        # models with the same base next to each other (one vLLM engine serves all adapters of a base)
        first = {}
        for i, unit in enumerate(self.units):
            first.setdefault(unit.ckpt.identity()["model"], i)
        self.units.sort(key=lambda u: first[u.ckpt.identity()["model"]])

    # ------------------------------------------------------------------------------------- fingerprints
    def _pair_fingerprint(self, ckpt: Checkpoint, name: str) -> dict[str, object]:
        cfg, d = self.cfg, self.data[name]
        fp = {
            "checkpoint": ckpt.identity(),
            "benchmark": name,
            "split": d.split,
            "data": str(Path(d.root).resolve()),
            "subjects": cfg.subjects_for(name),
            "limit": cfg.limit_for(name),
            "limit_per_subject": cfg.limit_per_subject,
            "seed": cfg.seed,
            "few_shot": cfg.few_shot,
            "chat_template": cfg.chat_template,
            "system_prompt": cfg.system_prompt,
            "prompt_version": PROMPT_VERSION,
            "backend": cfg.backend,
            "dtype": cfg.dtype,
        }
        if cfg.limit_mode != "random" and (fp["limit"] or fp["limit_per_subject"]):
            fp["limit_mode"] = cfg.limit_mode
        if d.info.kind == "mc":
            fp["mc_mode"] = cfg.mc_mode
            if cfg.mc_mode == "generation":
                fp["max_new_tokens"] = cfg.mc_max_new_tokens
        else:
            fp["max_new_tokens"] = cfg.gsm8k_max_new_tokens
        return fp

    def _pair_dir(self, unit: Unit, name: str) -> Path:
        return unit.folder / name

    def _pair_status(self, unit: Unit, name: str) -> str:
        folder = self._pair_dir(unit, name)
        fp = self._pair_fingerprint(unit.ckpt, name)
        old_fp = None
        if (folder / "fingerprint.json").is_file():
            old_fp = read_json(folder / "fingerprint.json")
        if old_fp is not None and old_fp != fp:
            if self.cfg.overwrite:
                shutil.rmtree(folder)
                return "todo"
            diff = sorted(k for k in set(fp) | set(old_fp) if fp.get(k) != old_fp.get(k))
            raise EvalError(
                f"{folder} holds results made with other settings (different: {', '.join(diff)}); "
                f"use --overwrite to redo them, or another --output-dir"
            )
        if (folder / "metrics.json").is_file() and (folder / "samples.jsonl").is_file():
            return "done"
        return "todo"

    def _deviation_fingerprint(self, unit: Unit) -> dict[str, object]:
        cfg = self.cfg
        return {
            "model": unit.ckpt.identity(),
            "data": str(Path(os.path.expanduser(cfg.deviation_data)).resolve()),
            "limit": cfg.deviation_limit,
            "seed": cfg.seed,
            "max_length": cfg.deviation_max_length,
            "chat_template": cfg.chat_template,
            "system_prompt": cfg.system_prompt,
            "backend": cfg.backend,
            "dtype": cfg.dtype,
        }

    def _deviation_done(self, unit: Unit) -> bool:
        path = unit.folder / "deviation.json"
        if not path.is_file():
            return False
        try:
            return read_json(path).get("fingerprint") == self._deviation_fingerprint(unit)
        except ValueError:
            return False

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
            self._close_engines()
            for unit in self._deferred:
                try:
                    self._run_deferred_deviation(unit)
                except EvalError as exc:
                    if not self.cfg.keep_going:
                        raise
                    self.errors.append(f"{unit.ckpt.name} (deviation): {exc}")
            self._run_lmeval()  # after our engines are closed: lm-eval loads its own model per checkpoint
        finally:
            self._close_engines()
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
    def _backend_for(self, unit: Unit):
        cfg = self.cfg
        ckpt = unit.ckpt
        if cfg.backend == "transformers":
            from .backends.hf import TransformersBackend

            return TransformersBackend(
                ckpt.model_path,
                adapter=ckpt.adapter,
                dtype=cfg.dtype,
                device=cfg.device,
                batch_size=cfg.batch_size,
                trust_remote_code=cfg.trust_remote_code,
            )
        from .backends.vllm_backend import VLLMBackend, VLLMEngine
        from .models import adapter_rank

        key = ckpt.identity()["model"]
        if key not in self._engines:
            self._close_engines()
            same_base = [u for u in self.units if u.ckpt.identity()["model"] == key and u.ckpt.adapter]
            rank = cfg.max_lora_rank or max([adapter_rank(u.ckpt.adapter) for u in same_base] or [16])
            self._engines[key] = VLLMEngine(
                ckpt.model_path,
                dtype=cfg.dtype,
                tensor_parallel_size=cfg.tensor_parallel_size,
                enable_lora=bool(same_base),
                max_lora_rank=rank,
                max_model_len=cfg.vllm_max_model_len,
                gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
                kv_cache_gb=cfg.vllm_kv_cache_gb,
                enforce_eager=cfg.vllm_enforce_eager,
                seed=cfg.seed,
                trust_remote_code=cfg.trust_remote_code,
            )
        return VLLMBackend(self._engines[key], adapter=ckpt.adapter)

    def _close_engines(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    def _run_unit(self, unit: Unit) -> None:
        from .backends.base import PromptEncoder

        what = ", ".join(unit.benchmarks + (["deviation"] if unit.needs_deviation else []))
        self.log(
            f"[load] {unit.ckpt.name}: {unit.ckpt.path}"
            + (f" on {unit.ckpt.base}" if unit.ckpt.adapter else "")
            + f" ({self.cfg.backend}) for {what}"
        )
        backend = self._backend_for(unit)
        try:
            encoder = PromptEncoder(backend.tokenizer, self.cfg.chat_template, self.cfg.system_prompt)
            for name in unit.benchmarks:
                self._run_pair(unit, name, backend, encoder)
            if unit.needs_deviation:
                if backend.supports_sequence_logprobs:
                    self._run_deviation(unit, backend, encoder)
                else:
                    self._deferred.append(unit)
        finally:
            backend.close()

    def _run_deferred_deviation(self, unit: Unit) -> None:
        from .backends.base import PromptEncoder
        from .backends.hf import TransformersBackend

        self.log(
            f"[load] {unit.ckpt.name}: deviation log-probs with transformers (this vLLM build cannot give "
            "prompt log-probs with LoRA enabled)"
        )
        backend = TransformersBackend(
            unit.ckpt.model_path,
            adapter=unit.ckpt.adapter,
            dtype=self.cfg.dtype,
            device=self.cfg.device,
            batch_size=self.cfg.batch_size,
            trust_remote_code=self.cfg.trust_remote_code,
        )
        try:
            self._run_deviation(
                unit, backend, PromptEncoder(backend.tokenizer, self.cfg.chat_template, self.cfg.system_prompt)
            )
        finally:
            backend.close()

    # ----------------------------------------------------------------------------------------- pairs
    def _progress(self, total: int, desc: str):
        if not self.cfg.progress or total == 0:
            return None, None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover
            return None, None
        bar = tqdm(total=total, desc=desc, unit="q", dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
        return bar, bar.update

    def _run_pair(self, unit: Unit, name: str, backend, encoder) -> None:
        cfg, d = self.cfg, self.data[name]
        folder = self._pair_dir(unit, name)
        folder.mkdir(parents=True, exist_ok=True)
        fp = self._pair_fingerprint(unit.ckpt, name)
        atomic_write_json(folder / "fingerprint.json", fp)
        partial = folder / "samples.partial.jsonl"
        wanted = {s.key for s in d.samples}
        done = {r["key"]: r for r in read_jsonl(partial) if r.get("key") in wanted}
        todo = [s for s in d.samples if s.key not in done]
        if done:
            self.log(f"[resume] {unit.ckpt.name} | {name}: {len(done)} answered before, {len(todo)} to go")
        mode = cfg.mc_mode if d.info.kind == "mc" else "generation"
        t0 = time.time()
        bar, tick = self._progress(len(todo), f"{unit.ckpt.name} | {d.info.title}")
        chunk = max(cfg.batch_size * 4, 32)
        try:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                records = self._answer(part, d, mode, backend, encoder, tick)
                append_jsonl(partial, records)
                for rec in records:
                    done[rec["key"]] = rec
        finally:
            if bar is not None:
                bar.close()
        records = [done[s.key] for s in d.samples]
        metrics = compute_metrics(records)
        metrics.update(
            checkpoint=unit.ckpt.name,
            benchmark=name,
            title=d.info.title,
            split=d.split,
            pool=d.n_pool,
            mode=mode,
            few_shot=cfg.few_shot,
            backend=backend.describe(),
            elapsed_s=round(time.time() - t0, 2),
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
            version=__version__,
        )
        atomic_write_text(folder / "samples.jsonl", jsonl_text(records))
        atomic_write_json(folder / "metrics.json", metrics)
        partial.unlink(missing_ok=True)
        self.log(
            f"[result] {unit.ckpt.name} | {d.info.title}: {100 * metrics['accuracy']:.2f}% micro, "
            f"{100 * metrics['macro_accuracy']:.2f}% macro over {metrics['n']} ({mode}"
            + (f", {metrics['unparsed']} unparsed" if mode == "generation" else "")
            + ")"
        )

    def _answer(self, samples: list[Sample], d: BenchmarkData, mode: str, backend, encoder, tick) -> list[dict]:
        cfg = self.cfg
        prompts, inputs, ids = [], [], []
        for s in samples:
            prompt = build_prompt(d.info.name, s.question, s.options)
            shots = [
                (build_prompt(d.info.name, x.question, x.options), shot_answer(x))
                for x in shots_for(s, d, cfg.few_shot)
            ]
            text, tok = encoder.encode(prompt, shots)
            prompts.append(prompt)
            inputs.append(text)
            ids.append(tok)
        records = []
        if d.info.kind == "mc" and mode == "likelihood":
            scores = backend.choice_logprobs(ids, encoder.letter_token_ids(), progress=tick)
            for s, prompt, text, sc in zip(samples, prompts, inputs, scores):
                best = max(range(len(LETTERS)), key=lambda i: (sc[i], -i))
                parsed = LETTERS[best]
                records.append(
                    self._record(
                        s,
                        prompt,
                        text,
                        parsed,
                        parsed,
                        parsed == s.gold,
                        mode,
                        {k: round(v, 6) if math.isfinite(v) else None for k, v in zip(LETTERS, sc)},
                    )
                )
            return records
        max_new = cfg.mc_max_new_tokens if d.info.kind == "mc" else cfg.gsm8k_max_new_tokens
        outputs = backend.generate(ids, max_new, progress=tick)
        for s, prompt, text, output in zip(samples, prompts, inputs, outputs):
            scored = score_choice(s, output) if d.info.kind == "mc" else score_gsm8k(s, output)
            rec = self._record(s, prompt, text, output, scored.pop("parsed"), scored.pop("correct"), mode)
            rec.update(scored)  # parser, parse_rule; GSM8K: parsed_flexible, correct_flexible
            records.append(rec)
        return records

    def _record(self, s: Sample, prompt, text, output, parsed, correct, mode, scores=None) -> dict:
        rec = {
            "key": s.key,
            "benchmark": s.benchmark,
            "subject": s.subject,
            "id": s.id,
            "prompt": prompt,
            "input": text,
            "output": output,
            "parsed": parsed,
            "gold": s.gold,
            "correct": bool(correct),
            "mode": mode,
        }
        if s.category:
            rec["category"] = s.category
        if scores is not None:
            rec["scores"] = scores
        if self.cfg.few_shot:
            rec["few_shot"] = self.cfg.few_shot
        return rec

    # ------------------------------------------------------------------------------------- deviation
    def _run_deviation(self, unit: Unit, backend, encoder) -> None:
        cfg = self.cfg
        pairs, lengths = [], []
        for s in self.dev_samples:
            x, y = encoder.encode_pair(s.prompt, s.answer, s.system)
            y = y[: cfg.deviation_max_length]
            x = x[-max(1, cfg.deviation_max_length - len(y)) :] if len(x) + len(y) > cfg.deviation_max_length else x
            pairs.append((x, y))
            lengths.append(len(y))
        bar, tick = self._progress(len(pairs), f"{unit.ckpt.name} | deviation")
        t0 = time.time()
        try:
            logps = backend.sequence_logprobs(pairs, progress=tick)
        finally:
            if bar is not None:
                bar.close()
        atomic_write_json(
            unit.folder / "deviation.json",
            {
                "fingerprint": self._deviation_fingerprint(unit),
                "model": unit.ckpt.name,
                "n": len(pairs),
                "logprobs": [round(v, 6) for v in logps],
                "lengths": lengths,
                "mean_logprob_per_token": sum(v / m for v, m in zip(logps, lengths)) / len(lengths),
                "elapsed_s": round(time.time() - t0, 2),
            },
        )
        self.log(f"[deviation] {unit.ckpt.name}: answer log-probs of {len(pairs)} pairs written")

    def deviation_values(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for ckpt in self.cfg.checkpoints:
            ref = self.refs.get(ckpt.name)
            unit = next(u for u in self.units if u.is_checkpoint and u.ckpt.name == ckpt.name)
            if ref is None or not self._deviation_done(unit) or not self._deviation_done(ref):
                continue
            mine, theirs = read_json(unit.folder / "deviation.json"), read_json(ref.folder / "deviation.json")
            if mine["lengths"] != theirs["lengths"]:
                self.errors.append(
                    f"{ckpt.name}: m_theta needs the same tokenizer as its reference {ref.ckpt.name} "
                    "(answer lengths differ)"
                )
                continue
            value = 0.0 if ref is unit else m_theta(mine["logprobs"], theirs["logprobs"], mine["lengths"])
            out[ckpt.name] = {"m_theta": value, "reference": ref.ckpt.name, "n": mine["n"]}
        return out

    # -------------------------------------------------------------------------------------- summary
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

"""The resume store: what is already in the output folder, and writing results so that a rerun resumes.

Per (checkpoint, benchmark) pair, under ``<checkpoint>/<benchmark>/``: ``fingerprint.json`` (the settings the
pair was run with; other settings in the folder are an error unless ``--overwrite``), ``samples.partial.jsonl``
(answered questions of an unfinished pair, appended chunk by chunk), then ``samples.jsonl`` and
``metrics.json`` (a finished pair: skipped on a rerun). Per model, ``deviation.json`` carries its own
fingerprint. Every file is written atomically (io_utils.py).
"""

import os
import shutil
from pathlib import Path

from .config import RunConfig
from .errors import EvalError
from .io_utils import append_jsonl, atomic_write_json, atomic_write_text, jsonl_text, read_json, read_jsonl
from .models import Checkpoint
from .plan import Unit
from .prompts import PROMPT_VERSION
from .samples import BenchmarkData, Sample


class ResultStore:
    def __init__(self, cfg: RunConfig, data: dict[str, BenchmarkData]):
        self.cfg = cfg
        self.data = data

    # ------------------------------------------------------------------------------------- fingerprints
    def pair_fingerprint(self, ckpt: Checkpoint, name: str) -> dict[str, object]:
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
            fp["max_new_tokens"] = getattr(cfg, d.info.max_new_tokens_setting)
        return fp

    def deviation_fingerprint(self, unit: Unit) -> dict[str, object]:
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

    # ------------------------------------------------------------------------------------------ pairs
    @staticmethod
    def pair_dir(unit: Unit, name: str) -> Path:
        return unit.folder / name

    def pair_status(self, unit: Unit, name: str) -> str:
        """ "done" (a finished pair made with these settings) or "todo"; other settings are an error (or, with
        ``--overwrite``, removed)."""
        folder = self.pair_dir(unit, name)
        fp = self.pair_fingerprint(unit.ckpt, name)
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

    def start_pair(self, unit: Unit, name: str, samples: list[Sample]) -> tuple[Path, dict[str, dict]]:
        """The pair's folder with its fingerprint written, and the records answered before (by key)."""
        folder = self.pair_dir(unit, name)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / "fingerprint.json", self.pair_fingerprint(unit.ckpt, name))
        wanted = {s.key for s in samples}
        return folder, {r["key"]: r for r in read_jsonl(folder / "samples.partial.jsonl") if r.get("key") in wanted}

    @staticmethod
    def append_answered(folder: Path, records: list[dict]) -> None:
        append_jsonl(folder / "samples.partial.jsonl", records)

    @staticmethod
    def finish_pair(folder: Path, records: list[dict], metrics: dict[str, object]) -> None:
        atomic_write_text(folder / "samples.jsonl", jsonl_text(records))
        atomic_write_json(folder / "metrics.json", metrics)
        (folder / "samples.partial.jsonl").unlink(missing_ok=True)

    # -------------------------------------------------------------------------------------- deviation
    def deviation_done(self, unit: Unit) -> bool:
        path = unit.folder / "deviation.json"
        if not path.is_file():
            return False
        try:
            return read_json(path).get("fingerprint") == self.deviation_fingerprint(unit)
        except ValueError:
            return False

    def write_deviation(self, unit: Unit, result: dict[str, object]) -> None:
        atomic_write_json(unit.folder / "deviation.json", {"fingerprint": self.deviation_fingerprint(unit), **result})

    @staticmethod
    def read_deviation(unit: Unit) -> dict[str, object]:
        return read_json(unit.folder / "deviation.json")

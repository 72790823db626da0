"""The resume store: what is already in the output folder, and writing results so that a rerun resumes.

Per (checkpoint, benchmark) pair, under ``<checkpoint>/<benchmark>/``: ``fingerprint.json`` (the settings the
pair was run with; other settings in the folder are an error unless ``--overwrite``), ``samples.partial.jsonl``
(answered questions of an unfinished pair, appended chunk by chunk), then ``samples.jsonl`` and
``metrics.json`` (a finished pair: skipped on a rerun). Per model, ``deviation.json`` carries its own
fingerprint. Every file is written atomically (io_utils.py).

Results are keyed by content: the fingerprint holds a digest of every byte of the checkpoint's files (model
folder and adapter, :meth:`Checkpoint.content_identity`), of the questions and few-shot examples actually asked,
and of the deviation pairs used. The paths they were read from are kept beside the digests as information
(``checkpoint``, ``data``: where the pair was read last), not compared: the same files moved elsewhere are
reused; other bytes at the same path (a checkpoint retrained or re-exported in place, edited data files) make
the results stale, and they are redone without ``--overwrite``. Other bytes at another path (another model
under the same name) or any other setting is an error. A fingerprint of an older version (paths, no digests)
is re-keyed when the settings and paths are the same and no file there was modified after it was written;
otherwise it is an error too (those results were identified by path only). The lm-eval pairs
(lmeval_suite.py) are resumed by the same rules, with this module's functions.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from .config import RunConfig
from .errors import EvalError
from .io_utils import append_jsonl, atomic_write_json, atomic_write_text, jsonl_text, read_json, read_jsonl
from .models import Checkpoint
from .plan import Unit
from .prompts import PROMPT_VERSION
from .samples import BenchmarkData, Sample
from .selection import shots_for

# information keys of a fingerprint (where the content was read) -> the digest key that is compared instead
PAIR_INFO = {"checkpoint": "checkpoint_digest", "data": "data_digest"}
DEVIATION_INFO = {"model": "model_digest", "data": "data_digest"}
_WHAT = {"checkpoint_digest": "the checkpoint's files", "model_digest": "the model's files", "data_digest": "the data"}


def compare_fingerprints(old: dict, new: dict, info: dict[str, str]) -> tuple[list[str], list[str], bool]:
    """(differing compared keys, the stale ones among them, legacy). A digest key is stale when its content
    changed at the same path (the information key is equal); ``legacy`` when ``old`` holds no digest at all."""
    keys = (set(old) | set(new)) - set(info)
    diff = sorted(k for k in keys if old.get(k) != new.get(k))
    legacy = all(old.get(d) is None for d in info.values())
    stale = [] if legacy else [d for i, d in info.items() if d in diff and old.get(i) == new.get(i)]
    return diff, stale, legacy


def resume_status(
    old: dict,
    fp: dict,
    info: dict[str, str],
    files: list[str],
    written_ns: int | None,
    overwrite: bool,
    folder: Path,
    what: str = "results",
) -> tuple[str, list[str]]:
    """What a pair folder holding fingerprint ``old`` is worth when ``fp`` is asked for: ``("rekey", [])`` an older
    version's fingerprint of these very files (:func:`adopt_legacy`), ``("same", [])`` / ``("moved", [])`` the same
    content and settings read from the same / other paths (the caller records ``fp``), ``("stale", keys)`` the
    content of ``keys`` changed at the same path (redo), ``("overwrite", keys)`` other settings with
    ``overwrite``. Other settings without it raise the EvalError naming the differing keys."""
    if adopt_legacy(old, fp, info, files, written_ns):
        return "rekey", []
    diff, stale, legacy = compare_fingerprints(old, fp, info)
    if diff and diff == stale:
        return "stale", stale
    if diff and overwrite:
        return "overwrite", diff
    if diff:
        why = (
            " -- they were written by an older version that identified checkpoints and data by path only, "
            "and these are not provably the files they were made from (other paths, or modified since)"
            if legacy
            else ""
        )
        raise EvalError(
            f"{folder} holds {what} made with other settings (different: {', '.join(diff)}){why}; "
            f"use --overwrite to redo them, or another --output-dir"
        )
    return ("moved" if old != fp else "same"), []


def resume_line(status: str, pair: str, keys: list[str]) -> str | None:
    """The log line of a :func:`resume_status` worth telling (``pair``: "CHECKPOINT | BENCHMARK")."""
    if status == "rekey":
        return f"[rekey] {pair}: results of an older version kept (files unchanged since)"
    if status == "stale":
        what = " and ".join(_WHAT[k] for k in keys)
        return f"[redo] {pair}: {what} changed at the same path since these results were made: evaluated again"
    return None


def adopt_legacy(old: dict, fp: dict, info: dict[str, str], files: list[str], written_ns: int | None) -> bool:
    """Whether ``old``, a fingerprint of an older version (paths, no digests), describes ``fp``: the same settings
    and paths, and none of ``files`` (what those paths hold) modified after ``written_ns``, the time the results
    were started (None: unknown). Then its results are kept."""
    if written_ns is None or any(old.get(d) is not None for d in info.values()):
        return False
    if old != {k: v for k, v in fp.items() if k not in info.values()}:
        return False
    try:
        return all(os.stat(f).st_mtime_ns <= written_ns for f in files)
    except OSError:
        return False


def mtime_ns(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def checkpoint_files(ckpt: Checkpoint) -> list[str]:
    """The files :meth:`Checkpoint.content_identity` reads (top-level files of the model and adapter folders)."""
    return [f for p in (ckpt.model_path, ckpt.adapter) if p for f in _files_under(p, top_level=True)]


def _files_under(path: str | Path, top_level: bool = False) -> list[str]:
    """The files a folder holds (only its top-level ones with ``top_level``, as the checkpoint digest reads);
    nothing for a hub id."""
    folder = os.path.expanduser(str(path))
    if not os.path.isdir(folder):
        return [folder] if os.path.isfile(folder) else []
    if top_level:
        return [os.path.join(folder, n) for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))]
    return [os.path.join(root, n) for root, _, names in os.walk(folder) for n in names]


def digest_lines(lines: Iterable[object]) -> str:
    """A digest of JSON-serialisable items, in order."""
    h = hashlib.sha256()
    for item in lines:
        h.update(json.dumps(item, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
    return h.hexdigest()[:32]


def _sample_content(s: Sample) -> dict[str, object]:
    """What a question contributes to a result (its ``source``, file:row, is where it was read: not content)."""
    return {
        "benchmark": s.benchmark,
        "subject": s.subject,
        "id": s.id,
        "question": s.question,
        "gold": s.gold,
        "options": s.options,
        "solution": s.solution,
        "category": s.category,
    }


class ResultStore:
    def __init__(
        self,
        cfg: RunConfig,
        data: dict[str, BenchmarkData],
        dev_samples: list | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.cfg = cfg
        self.data = data
        self.dev_samples = dev_samples  # the deviation pairs used (loaded from cfg.deviation_data when None)
        self.log = log or (lambda msg: None)
        self._digests: dict[tuple, object] = {}  # per run: each folder and data set is digested once

    # ------------------------------------------------------------------------------------- digests
    def _checkpoint_digest(self, ckpt: Checkpoint) -> dict[str, str | None]:
        key = ("ckpt", ckpt.model_path, ckpt.adapter)
        if key not in self._digests:
            self._digests[key] = ckpt.content_identity()
        return self._digests[key]

    def _data_digest(self, name: str) -> str:
        """The questions asked and the few-shot examples of each, in order."""
        key = ("data", name)
        if key not in self._digests:
            d, k = self.data[name], self.cfg.few_shot
            self._digests[key] = digest_lines(
                [_sample_content(s), [_sample_content(x) for x in shots_for(s, d, k)]] for s in d.samples
            )
        return self._digests[key]

    def _deviation_digest(self) -> str:
        """The (system, prompt, answer) pairs used for m_theta (after --deviation-limit)."""
        key = ("deviation",)
        if key not in self._digests:
            if self.dev_samples is None:
                from .deviation import load_deviation_data

                self.dev_samples = load_deviation_data(
                    self.cfg.deviation_data, self.cfg.deviation_limit, self.cfg.seed
                )
            self._digests[key] = digest_lines([s.system, s.prompt, s.answer] for s in self.dev_samples)
        return self._digests[key]

    # ------------------------------------------------------------------------------------- fingerprints
    def pair_fingerprint(self, ckpt: Checkpoint, name: str) -> dict[str, object]:
        cfg, d = self.cfg, self.data[name]
        fp = {
            "checkpoint": ckpt.identity(),  # information: where it was read (not compared)
            "checkpoint_digest": self._checkpoint_digest(ckpt),
            "benchmark": name,
            "split": d.split,
            "data": str(Path(d.root).resolve()),  # information: where it was read (not compared)
            "data_digest": self._data_digest(name),
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
            "model": unit.ckpt.identity(),  # information (not compared)
            "model_digest": self._checkpoint_digest(unit.ckpt),
            "data": str(Path(os.path.expanduser(cfg.deviation_data)).resolve()),  # information (not compared)
            "data_digest": self._deviation_digest(),
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
        """ "done" (a finished pair made with these settings and this content) or "todo". Content changed at the
        same path makes the pair stale: removed and redone; other settings are an error (or, with
        ``--overwrite``, removed)."""
        folder = self.pair_dir(unit, name)
        fp = self.pair_fingerprint(unit.ckpt, name)
        stamp = folder / "fingerprint.json"  # written before the pair's first question
        if stamp.is_file():
            files = checkpoint_files(unit.ckpt) + _files_under(self.data[name].root)
            status, keys = resume_status(
                read_json(stamp), fp, PAIR_INFO, files, mtime_ns(stamp), self.cfg.overwrite, folder
            )
            line = resume_line(status, f"{unit.ckpt.name} | {name}", keys)
            if line:
                self.log(line)
            if status in ("stale", "overwrite"):
                shutil.rmtree(folder)
                return "todo"
            if status in ("rekey", "moved"):  # the same content (read from another path: record where it is now)
                atomic_write_json(stamp, fp)
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
        """A stored pass made with these settings from the same model and pairs (paths are not compared)."""
        path = unit.folder / "deviation.json"
        if not path.is_file():
            return False
        try:
            old = read_json(path).get("fingerprint")
        except ValueError:
            return False
        if not isinstance(old, dict):
            return False
        fp = self.deviation_fingerprint(unit)
        files = checkpoint_files(unit.ckpt) + [os.path.expanduser(self.cfg.deviation_data)]
        if adopt_legacy(old, fp, DEVIATION_INFO, files, mtime_ns(path)):
            atomic_write_json(path, {**read_json(path), "fingerprint": fp})
            return True
        diff, _, _ = compare_fingerprints(old, fp, DEVIATION_INFO)
        return not diff

    def write_deviation(self, unit: Unit, result: dict[str, object]) -> None:
        atomic_write_json(unit.folder / "deviation.json", {"fingerprint": self.deviation_fingerprint(unit), **result})

    @staticmethod
    def read_deviation(unit: Unit) -> dict[str, object]:
        return read_json(unit.folder / "deviation.json")

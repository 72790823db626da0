"""On-disk score cache: one folder per cache key, JSONL rows, atomic and resumable.

The key is made of what determines the scores: the model by a digest of all its files' bytes
(:func:`weights_digest`), adapters likewise, dtype and quantization, and the rows by the digest of every
row's token ids and labels (``token_key``, see ``integration.data``). Template, cutoff and masking are
recorded too, for people reading the meta.

Layout of ``<cache_dir>/<key>/``:
- ``meta.json``: what the key was made of and ``complete: true``, ``num_rows`` and ``rows_digest`` (sha256 of
  the canonical ``scores.jsonl``, verified on every read: an edited or damaged file is recomputed);
- ``scores.jsonl``: one row per distinct ``token_key``: ``{"key", "sum_logp", "num_tokens"}`` plus, for pairs,
  ``"rejected_sum_logp", "rejected_num_tokens"``. While a pass runs, rows are appended and flushed to
  ``scores.partial.jsonl``; an interrupted pass resumes from it; the finished file is renamed into place.
"""

import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from typing import Any

from llamafactory_minor_core.digest import DIGEST_MEMO_ENV, HubIdentityError, file_digest  # noqa: F401 (re-exported)
from llamafactory_minor_core.digest import weights_digest as _core_weights_digest
from llamafactory_minor_core.io import append_jsonl, atomic_write_text, iter_jsonl_lines

from ..errors import PluginError


def weights_digest(path: str, revision: str | None = None) -> str:
    """Identity of a model by content (``llamafactory_minor_core.digest.weights_digest``: a digest over the names
    and digests of all files of its folder -- weights, config, tokenizer files; hidden files and sub-folders such
    as checkpoints excluded). A hub id is identified by the commit it resolves to (``hf:<id>@<commit>``); one that
    cannot be resolved is a :class:`PluginError`."""
    try:
        return _core_weights_digest(path, revision)
    except HubIdentityError as e:
        raise PluginError(str(e)) from None


def adapters_digest(adapters: str | list[str] | None) -> list | None:
    """``weights_digest`` of each adapter folder (``adapter_name_or_path`` / ``ref_model_adapters``)."""
    if not adapters:
        return None
    if isinstance(adapters, str):
        adapters = [a.strip() for a in adapters.split(",") if a.strip()]
    return [weights_digest(a) for a in adapters]


def make_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _check_row(row: dict) -> bool:
    if not isinstance(row, dict) or not isinstance(row.get("key"), str):
        return False
    for k in ("sum_logp", "rejected_sum_logp"):
        if k in row and not (isinstance(row[k], (int, float)) and math.isfinite(row[k])):
            return False
    for k in ("num_tokens", "rejected_num_tokens"):
        if k in row and not (isinstance(row[k], int) and not isinstance(row[k], bool) and row[k] >= 0):
            return False
    return "sum_logp" in row and "num_tokens" in row


def render_rows(rows: dict) -> str:
    """The canonical text of score rows (sorted by key, one JSON object a line): what ``rows_digest`` covers."""
    return "".join(json.dumps(rows[k], sort_keys=True, allow_nan=False) + "\n" for k in sorted(rows))


def rows_digest(rows: dict) -> str:
    """sha256 of :func:`render_rows`: recorded with every finished score set and verified on every read."""
    return hashlib.sha256(render_rows(rows).encode("utf-8")).hexdigest()


# fields of meta.json that are not components of the cache key: what a finished entry adds ...
ENTRY_FIELDS = ("cache_key", "complete", "num_rows", "rows_digest")
# ... and what an import adds (where the scores came from)
PROVENANCE_FIELDS = ("imported_from", "scored_backend", "scored_at", "scored_model_path")


def key_parts(meta: dict) -> dict:
    """The components of the cache key in a ``meta.json``: ``make_key(key_parts(meta)) == meta["cache_key"]``."""
    return {k: v for k, v in meta.items() if k not in ENTRY_FIELDS + PROVENANCE_FIELDS}


def entry_meta_text(meta: dict, rows: dict) -> str:
    """The text of a finished entry's ``meta.json`` (``meta`` holds ``cache_key``)."""
    return json.dumps(dict(meta, complete=True, num_rows=len(rows), rows_digest=rows_digest(rows)), indent=2)


def write_entry(folder: str, meta: dict, rows: dict) -> None:
    """Write one finished cache entry (``scores.jsonl``, then its completion marker ``meta.json``), each file
    atomically: the training cache (:meth:`ScoreCache.finish`) and the score folder of ``llamafactory-minor
    score`` write entries with this one function, hence with the same bytes."""
    os.makedirs(folder, exist_ok=True)
    atomic_write_text(os.path.join(folder, "scores.jsonl"), render_rows(rows))
    atomic_write_text(os.path.join(folder, "meta.json"), entry_meta_text(meta, rows))


def replace_dir(staged: str, target: str) -> None:
    """Move the finished folder ``staged`` to ``target`` (same file system); an existing ``target`` is renamed
    aside first and removed after, so ``target`` is at every moment either the old or the new folder (or
    briefly absent), never a mix."""
    old = None
    if os.path.lexists(target):
        old = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    try:
        os.rename(staged, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class ScoreCache:
    """One cache folder. Nothing is created on disk before the first scored rows are written."""

    def __init__(self, cache_dir: str, key: str, meta: dict, logger: Any = None):
        self.root = cache_dir
        self.dir = os.path.join(cache_dir, key)
        self.meta = dict(meta, cache_key=key)
        self.logger = logger
        self._check_writable()

    def _check_writable(self) -> None:
        """Fail before a long pass when the cache cannot be written (probing the root, not creating the folder)."""
        probe_dir = self.root
        try:
            os.makedirs(probe_dir, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".write-test-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise PluginError(
                f"Cannot write the score cache at {self.root} ({e}); set `minor_cache_dir` to a writable folder."
            ) from None

    @property
    def final_path(self) -> str:
        return os.path.join(self.dir, "scores.jsonl")

    @property
    def partial_path(self) -> str:
        return os.path.join(self.dir, "scores.partial.jsonl")

    @property
    def meta_path(self) -> str:
        return os.path.join(self.dir, "meta.json")

    def _warn(self, msg):
        if self.logger is not None:
            self.logger.warning_rank0(msg)

    def load_complete(self) -> dict | None:
        """The finished scores, or None (missing, mismatched, edited or corrupt: then they are recomputed)."""
        if not (os.path.exists(self.meta_path) and os.path.exists(self.final_path)):
            return None
        try:
            with open(self.meta_path, encoding="utf-8") as f:
                meta = json.load(f)
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
            self._warn(f"Score cache {self.dir}: unreadable meta.json, recomputing.")
            return None
        if not meta.get("complete") or meta.get("cache_key") != self.meta["cache_key"]:
            self._warn(f"Score cache {self.dir}: meta does not match this run, recomputing.")
            return None
        rows = self._read(self.final_path, strict=True)
        if rows is None or len(rows) != meta.get("num_rows"):
            self._warn(f"Score cache {self.dir}: corrupt or truncated scores.jsonl, recomputing.")
            return None
        if rows_digest(rows) != meta.get("rows_digest"):
            self._warn(
                f"Score cache {self.dir}: scores.jsonl does not match its recorded digest (edited or "
                "damaged), recomputing."
            )
            return None
        return rows

    def load_partial(self) -> dict:
        return self._read(self.partial_path, strict=False) or {}

    def _read(self, path: str, strict: bool) -> dict | None:
        """The valid rows of ``path``; a garbled, non-UTF-8 or invalid line (e.g. the torn last line of an
        interrupted pass) is skipped, or with ``strict`` makes the whole file unusable (None)."""
        rows = {}
        if not os.path.exists(path):
            return rows
        for _, row in iter_jsonl_lines(path):
            if row is None or not _check_row(row):
                if strict:
                    return None
                continue
            rows[row["key"]] = row
        return rows

    def append(self, rows: list[dict]) -> None:
        """Append finished rows to the partial file (whole lines, fsync'ed: a crash loses at most one line)."""
        append_jsonl(self.partial_path, rows)

    def finish(self, rows: dict) -> None:
        write_entry(self.dir, self.meta, rows)
        if os.path.exists(self.partial_path):
            os.unlink(self.partial_path)

    def discard_if_empty(self) -> None:
        """Remove the folder when a pass failed before scoring anything (nothing half-made left behind)."""
        try:
            if os.path.isdir(self.dir) and not os.listdir(self.dir):
                os.rmdir(self.dir)
        except OSError:
            pass

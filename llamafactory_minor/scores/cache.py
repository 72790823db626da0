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
import threading
import uuid
from typing import Any

from llamafactory_minor_core.io import append_jsonl, atomic_write_text, iter_jsonl_lines

from ..errors import PluginError

DIGEST_MEMO_ENV = "LLAMAFACTORY_MINOR_DIGEST_MEMO"
_memo_lock = threading.Lock()
_memo: dict | None = None


def _memo_path() -> str:
    return os.environ.get(DIGEST_MEMO_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "llamafactory_minor", "weights-digests.json"
    )


def _load_memo() -> dict:
    global _memo
    if _memo is None:
        try:
            with open(_memo_path(), encoding="utf-8") as f:
                _memo = json.load(f)
            if not isinstance(_memo, dict):
                _memo = {}
        except (OSError, ValueError):  # missing or unreadable memo: digests are recomputed
            _memo = {}
    return _memo


def _save_memo() -> None:
    path = _memo_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_text(path, json.dumps(_memo, indent=0, sort_keys=True))
    except OSError:  # a read-only home: the memo only saves time
        pass


def _hasher():
    try:
        import xxhash  # a dependency of `datasets`, hence always there with LF

        return xxhash.xxh3_128()
    except ImportError:  # pragma: no cover
        return hashlib.blake2b(digest_size=16)


def file_digest(path: str) -> str:
    """Digest of every byte of ``path`` (xxh3-128), memoised by (real path, size, mtime): each version of a
    file is read once, however often it is looked up."""
    st = os.stat(path)
    memo_key = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    with _memo_lock:
        found = _load_memo().get(memo_key)
    if found:
        return found
    h = _hasher()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 23), b""):
            h.update(block)
    digest = h.hexdigest()
    with _memo_lock:
        _load_memo()[memo_key] = digest
        _save_memo()
    return digest


def _hub_snapshot(name: str, revision: str | None) -> str:
    """The commit a hub id resolves to: a content address of every file of the repository."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(name, revision=revision or "main", local_files_only=True)
        return os.path.basename(os.path.normpath(folder))
    except Exception as local_error:  # not in the local hub cache: ask the hub for the commit
        try:
            from huggingface_hub import model_info

            return model_info(name, revision=revision or "main").sha
        except Exception as e:
            raise PluginError(
                f"Cannot identify the weights of `{name}`: it is not a local folder, not in the Hugging Face "
                f"cache ({type(local_error).__name__}), and the hub did not answer ({type(e).__name__}: {e}). "
                "Give a local model folder, or download it once with the hub reachable."
            ) from None


def weights_digest(path: str, revision: str | None = None) -> str:
    """Identity of a model by content: a digest over the names and digests of all files of its folder
    (weights, config, tokenizer files; hidden files and sub-folders such as checkpoints excluded). A hub
    id is identified by the commit it resolves to (``hf:<id>@<commit>``)."""
    if path is None:
        return None
    if not os.path.isdir(path):
        return f"hf:{path}@{_hub_snapshot(path, revision)}"
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith(".") or not os.path.isfile(full):
            continue
        h.update(f"{name}:{file_digest(full)}\n".encode())
    return h.hexdigest()[:32]


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

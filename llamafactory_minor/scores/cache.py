"""On-disk score cache: one folder per cache key, JSONL rows, atomic and resumable.

Layout of ``<cache_dir>/<key>/``:
- ``meta.json``: what the key was made of (model, weights fingerprint, adapter, template, cutoff, dataset
  fingerprint, dtype, plugin version) and ``complete: true`` once every row is scored;
- ``scores.jsonl``: one row per sample: ``{"key", "sum_logp", "num_tokens"}`` plus, for pairs,
  ``"rejected_sum_logp", "rejected_num_tokens"``. While a pass runs, rows are appended and flushed to
  ``scores.partial.jsonl``; an interrupted pass resumes from it; the finished file is renamed into place.
"""

import hashlib
import json
import math
import os
import tempfile

from ..integration import PluginError


def file_fingerprint(path: str) -> str:
    """Cheap identity of a model folder: names, sizes and the first/last 64 KiB of each weight file."""
    if not os.path.isdir(path):
        return f"hub:{path}"
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            continue
        size = os.path.getsize(full)
        h.update(f"{name}:{size}".encode())
        if name.endswith((".safetensors", ".bin", ".json", ".gguf", ".pt")):
            with open(full, "rb") as f:
                h.update(f.read(65536))
                if size > 131072:
                    f.seek(size - 65536)
                    h.update(f.read(65536))
    return h.hexdigest()[:16]


def make_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def atomic_write_text(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a shared cache must be readable like any file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_row(row: dict) -> bool:
    for k in ("sum_logp", "rejected_sum_logp"):
        if k in row and not (isinstance(row[k], (int, float)) and math.isfinite(row[k])):
            return False
    return "key" in row and "sum_logp" in row and "num_tokens" in row


class ScoreCache:
    def __init__(self, cache_dir: str, key: str, meta: dict, logger=None):
        self.dir = os.path.join(cache_dir, key)
        self.meta = dict(meta, cache_key=key)
        self.logger = logger
        try:
            os.makedirs(self.dir, exist_ok=True)
            probe = os.path.join(self.dir, ".write-test")
            with open(probe, "w") as f:
                f.write("ok")
            os.unlink(probe)
        except OSError as e:
            raise PluginError(
                f"Cannot write the score cache at {self.dir} ({e}); set `minor_cache_dir` to a writable folder."
            ) from None

    @property
    def final_path(self):
        return os.path.join(self.dir, "scores.jsonl")

    @property
    def partial_path(self):
        return os.path.join(self.dir, "scores.partial.jsonl")

    @property
    def meta_path(self):
        return os.path.join(self.dir, "meta.json")

    def _warn(self, msg):
        if self.logger is not None:
            self.logger.warning_rank0(msg)

    def load_complete(self) -> dict | None:
        """The finished scores, or None (missing, mismatched or corrupt: then they are recomputed)."""
        if not (os.path.exists(self.meta_path) and os.path.exists(self.final_path)):
            return None
        try:
            with open(self.meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            self._warn(f"Score cache {self.dir}: unreadable meta.json, recomputing.")
            return None
        if not meta.get("complete") or meta.get("cache_key") != self.meta["cache_key"]:
            self._warn(f"Score cache {self.dir}: meta does not match this run, recomputing.")
            return None
        rows = self._read(self.final_path, strict=True)
        if rows is None or len(rows) != meta.get("num_rows"):
            self._warn(f"Score cache {self.dir}: corrupt or truncated scores.jsonl, recomputing.")
            return None
        return rows

    def load_partial(self) -> dict:
        return self._read(self.partial_path, strict=False) or {}

    def _read(self, path, strict: bool) -> dict | None:
        rows = {}
        if not os.path.exists(path):
            return rows
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    if strict:
                        return None
                    continue  # a torn last line of an interrupted pass
                if not _check_row(row):
                    if strict:
                        return None
                    continue
                rows[row["key"]] = row
        return rows

    def append(self, rows: list[dict]) -> None:
        with open(self.partial_path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finish(self, rows: dict) -> None:
        text = "".join(json.dumps(rows[k]) + "\n" for k in sorted(rows))
        atomic_write_text(self.final_path, text)
        atomic_write_text(self.meta_path, json.dumps(dict(self.meta, complete=True, num_rows=len(rows)), indent=2))
        if os.path.exists(self.partial_path):
            os.unlink(self.partial_path)

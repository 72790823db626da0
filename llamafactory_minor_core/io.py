"""Atomic file writes and JSONL files that survive a crash while appending.

- :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json`: a temporary file in the
  target's folder, fsync, ``os.replace``: readers see the old file or the new one, never half of one. The
  file gets the mode a plain ``open(path, "w")`` would (``0o666 & ~umask``, not mkstemp's 0600).
- :func:`append_jsonl`: whole lines, flushed and fsync'ed: a crash loses at most the line being written.
- :func:`read_jsonl`: the records of a JSONL file; a broken *last* line (a torn append) is dropped.
- :func:`iter_jsonl_lines`: ``(line number, record or None)`` per non-blank line (None: not decodable), for
  readers with their own policy (skip, or refuse the whole file).
- :class:`JsonlTail`: the complete lines another process appended since the last call (a torn last line waits
  in the buffer until it is complete).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "JsonlTail",
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "iter_jsonl_lines",
    "jsonl_text",
    "read_json",
    "read_jsonl",
]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (creating the parent folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))  # no newline translation, as with newline=""


def atomic_write_json(path, obj, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def jsonl_text(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def append_jsonl(path, records: Iterable[dict]) -> None:
    """Append whole lines and fsync: a crash loses at most the line being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(jsonl_text(records))
        f.flush()
        os.fsync(f.fileno())


def read_rows(path) -> list:
    """The rows of a dataset file: a JSON list (``.json``) or one record a line (``.jsonl``, every line must parse)."""
    if str(path).endswith(".jsonl"):
        return read_jsonl(path, tolerate_partial_last_line=False)
    return read_json(path)


def iter_jsonl_lines(path) -> Iterator[tuple[int, object]]:
    """``(line number, record)`` per non-blank line; ``record`` is None where the line is not valid UTF-8 JSON
    (garbled, or the torn last line of an interrupted append)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError is a ValueError
                yield lineno, None


def read_jsonl(path, tolerate_partial_last_line: bool = True) -> list[dict]:
    """Records of a JSONL file (``[]`` when it does not exist); a broken last line (a crash while appending)
    is dropped, a broken line elsewhere raises ``json.JSONDecodeError``."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if tolerate_partial_last_line and i >= len(lines) - 2:
                break
            raise
    return out


class JsonlTail:
    """Follows a JSONL file another process appends to: :meth:`read` returns the records of the lines completed
    since the last call; a torn last line stays in the buffer until its newline arrives."""

    def __init__(self, handle):
        self.handle = handle
        self.buffer = ""

    def read(self) -> list:
        self.buffer += self.handle.read()
        *lines, self.buffer = self.buffer.split("\n")
        return [json.loads(line) for line in lines if line.strip()]

"""Atomic file writes (temporary file in the same folder, fsync, rename) and JSONL helpers of the evaluation
suite: the implementation is ``llamafactory_minor_core.io``, shared with the training plugin's score cache."""

from llamafactory_minor_core.io import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    jsonl_text,
    read_json,
    read_jsonl,
)

__all__ = [
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "jsonl_text",
    "read_json",
    "read_jsonl",
]

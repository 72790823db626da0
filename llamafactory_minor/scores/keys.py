"""Keys per tokenized row for joining and caching scores, and the state of the dataset glue.

``integration.data`` wraps LF's ``_get_dataset_processor`` with :class:`_KeyedProcessor` while
``plugin_dataset(..., keyed=True)`` is active (and names ``stage`` in LF's dataset-kind error). Pure python:
no LF, no torch.

While keyed, each row LF keeps also gets:

- ``sample_key``: a hash of its converted *content* (messages, system, tools). It joins rows tokenized by
  different tokenizers and templates (PoFT's aligned LLMs score the same examples in their own format).
- ``token_key``: a digest of what the model actually sees -- the token ids and the labels of every
  sequence of the row (chosen and rejected for pairs). Scores are cached and looked up by it, so any
  change that changes a single token or label (template, ``default_system``, tokenizer options, cutoff,
  masking) can never be served another row's score.
- ``answer_tokens``: the number of scored positions of each sequence (``labels[1:] != -100``, the count
  :func:`~llamafactory_minor.objectives.sequence_log_probs` uses): ``[n]`` or ``[n_chosen, n_rejected]``;
  a joined score must carry the same count.
"""

import contextlib
import hashlib
import json
import threading
from array import array
from collections.abc import Iterable, Iterator

_state = threading.local()
IGNORE_INDEX = -100
KEY_COLUMNS = ("sample_key", "token_key", "answer_tokens")


def current_stage_for_errors() -> str | None:
    return getattr(_state, "stage", None)


@contextlib.contextmanager
def plugin_dataset(stage: str, keyed: bool = False) -> Iterator[None]:
    """While active, dataset errors name the plugin ``stage`` and rows carry the key columns if ``keyed``."""
    prev = (getattr(_state, "stage", None), getattr(_state, "keyed", False))
    _state.stage, _state.keyed = stage, keyed
    try:
        yield
    finally:
        _state.stage, _state.keyed = prev


def sample_key(prompt: list, response: list, system: str | None, tools: str | None) -> str:
    """Content key of one converted LF example (messages, system, tools): 16 hex chars of sha256."""
    payload = json.dumps([prompt, response, system or "", tools or ""], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def sequences_of(row: dict) -> list[tuple[str, list[int], list[int]]]:
    """(part, input_ids, labels) for a supervised row or the chosen/rejected halves of a pairwise row."""
    if "chosen_input_ids" in row:
        return [
            ("chosen", row["chosen_input_ids"], row["chosen_labels"]),
            ("rejected", row["rejected_input_ids"], row["rejected_labels"]),
        ]
    return [("chosen", row["input_ids"], row["labels"])]


def token_key(sequences: Iterable[tuple[str, list[int], list[int]]]) -> str:
    """Digest (32 hex, blake2b) of the token ids and labels of ``sequences`` = [(part, ids, labels)]."""
    h = hashlib.blake2b(digest_size=16)
    for part, ids, labels in sequences:
        h.update(f"{part}:{len(ids)}:{len(labels)};".encode())
        h.update(array("q", ids).tobytes())
        h.update(array("q", labels).tobytes())
    return h.hexdigest()


def answer_token_counts(sequences: Iterable[tuple[str, list[int], list[int]]]) -> list[int]:
    """Scored positions per sequence: labels after the first that are not IGNORE_INDEX (list.count runs in C)."""
    return [max(0, len(labels) - 1 - labels[1:].count(IGNORE_INDEX)) for _, _, labels in sequences]


def _sequences_at(columns: dict, i: int):
    if "chosen_input_ids" in columns:
        return [
            ("chosen", columns["chosen_input_ids"][i], columns["chosen_labels"][i]),
            ("rejected", columns["rejected_input_ids"][i], columns["rejected_labels"][i]),
        ]
    return [("chosen", columns["input_ids"][i], columns["labels"][i])]


class _KeyedProcessor:
    """Wraps an LF dataset processor: same rows, plus the key columns for each row LF keeps.

    Plain attributes only (no ``__getattr__`` forwarding): ``datasets.map`` pickles the bound method into
    its worker processes (``preprocessing_num_workers > 1``), and forwarding would recurse while unpickling.
    """

    def __init__(self, processor):
        self.processor = processor

    def print_data_example(self, example):
        return self.processor.print_data_example(example)

    def preprocess_dataset(self, examples):
        n_in = len(examples["_prompt"])
        keys = [
            sample_key(examples["_prompt"][i], examples["_response"][i], examples["_system"][i], examples["_tools"][i])
            for i in range(n_in)
        ]
        out = self.processor.preprocess_dataset(examples)
        n_out = len(next(iter(out.values()))) if out else 0
        if n_out != n_in:
            # LF dropped (or split) rows of this batch: find out which row gave which, one row at a time
            out, keys = self._row_by_row(examples, keys)
        out = dict(out) if out else {}
        sequences = [_sequences_at(out, i) for i in range(len(keys))]
        out["sample_key"] = keys
        out["token_key"] = [token_key(seqs) for seqs in sequences]
        out["answer_tokens"] = [answer_token_counts(seqs) for seqs in sequences]
        return out

    def _row_by_row(self, examples, keys):
        out, kept = {}, []
        columns = list(examples.keys())
        for i, key in enumerate(keys):
            rows = self.processor.preprocess_dataset({k: [examples[k][i]] for k in columns})
            n = len(next(iter(rows.values()))) if rows else 0
            for k, values in rows.items():
                out.setdefault(k, []).extend(values)
            kept.extend([key] * n)
        return out, kept


def keyed() -> bool:
    """True while ``plugin_dataset(..., keyed=True)`` is active (the loader then adds the key columns)."""
    return getattr(_state, "keyed", False)

"""The score file written by ``llamafactory-minor score``: JSONL, one header line, then one line per row.

Line 1 (header)::

    {"format": "llamafactory-minor-scores", "format_version": 1, "created": "2026-01-01T00:00:00Z",
     "plugin_version": "0.1.0", "llamafactory_version": "0.9.5", "backend": "transformers" | "vllm",
     "backend_dtype": "float32" | null, "stage": "sft" | "rm", "dataset": "...", "dataset_dir": "...",
     "sections": [
       {"role": "reference" | "aligned", "model": "<path or hub id>", "template": "<LF template>",
        "split": "train" | "eval" | "eval/<name>", "pairwise": false, "num_rows": 32,
        "weights": "<scores.cache.weights_digest of the model>", "dataset_fingerprint": "<16 hex>",
        "cutoff_len": 128, "dtype": "<LF compute dtype>", "adapter": null,
        "cache_key": "<20 hex>", "cache_meta": {<every component of the cache key>},
        "rows_digest": "<sha256 of the section's rows in the score cache's canonical form>"}, ...]}

Every other line (a row; the same fields as the score cache's ``scores.jsonl`` plus where it comes from)::

    {"key": "<token_key: 32 hex digest of the row's token ids and labels>", "sum_logp": -41.2, "num_tokens": 17,
     "model": "<path>", "template": "<template>", "split": "train"}

plus ``"rejected_sum_logp"`` and ``"rejected_num_tokens"`` for pairwise rows (``sum_logp`` /
``num_tokens`` are then the chosen answer's). ``sum_logp`` is the sum of the answer tokens' log-probs
(the tokens whose LF label is not -100, shifted as in training: log p(token t | tokens < t)),
``num_tokens`` their number. A row belongs to the section with the same (model, template, split).
Each section holds exactly the distinct token keys of that split: ``dataset_fingerprint`` is the
sha256 (16 hex) of the sorted keys joined by newlines, ``cache_key`` is ``scores.cache.make_key(cache_meta)``
-- the folder name training uses in its score cache -- and ``rows_digest`` is
``scores.cache.rows_digest`` of the rows: a file whose scores were edited is refused.

Reading it elsewhere: skip the first line (``pandas.read_json(path, lines=True).iloc[1:]``).

This module imports neither torch nor LLaMA-Factory.
"""

import datetime
import hashlib
import json
import math
import os
from collections.abc import Iterable

from .cache import atomic_write_text, make_key, rows_digest

FORMAT = "llamafactory-minor-scores"
FORMAT_VERSION = 2  # 2: rows keyed by token digests, sections carry rows_digest
ROW_FIELDS = ("key", "sum_logp", "num_tokens")
PAIR_FIELDS = ("rejected_sum_logp", "rejected_num_tokens")
SOURCE_FIELDS = ("model", "template", "split")


class ScoreFileError(ValueError):
    """A score file that is not usable (wrong format, corrupt, incomplete, non-finite scores, mismatched)."""


def keys_fingerprint(keys: Iterable[str]) -> str:
    """Same value as ``scores.passes.dataset_fingerprint`` for rows holding these token keys."""
    return hashlib.sha256("\n".join(sorted(set(keys))).encode()).hexdigest()[:16]


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def section_id(model: str, template: str, split: str) -> tuple:
    return (model, template, split)


def cache_row(row: dict) -> dict:
    """The score-cache form of a file row (``key``, ``sum_logp``, ``num_tokens`` [+ rejected])."""
    return {k: row[k] for k in ROW_FIELDS + PAIR_FIELDS if k in row}


def _is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_row(row: object, pairwise: bool) -> str | None:
    """Why ``row`` is not a valid score row, or None."""
    if not isinstance(row, dict):
        return "not a JSON object"
    for field in ROW_FIELDS + SOURCE_FIELDS + (PAIR_FIELDS if pairwise else ()):
        if field not in row:
            return f"no `{field}`"
    if not isinstance(row["key"], str) or not row["key"]:
        return "`key` is not a sample key string"
    for field in ("sum_logp",) + (("rejected_sum_logp",) if pairwise else ()):
        if not _is_finite_number(row[field]):
            return f"`{field}` is not a finite number ({row[field]!r})"
    for field in ("num_tokens",) + (("rejected_num_tokens",) if pairwise else ()):
        if not _is_count(row[field]):
            return f"`{field}` is not a token count ({row[field]!r})"
    return None


def render(header: dict, sections_rows: list[list[dict]]) -> str:
    """The file's text; ``sections_rows[i]`` are the rows of ``header["sections"][i]``."""
    lines = [json.dumps(header, ensure_ascii=False)]
    for section, rows in zip(header["sections"], sections_rows):
        for row in rows:
            problem = check_row(row, section["pairwise"])
            if problem:
                raise ScoreFileError(f"refusing to write a bad row for {section['model']} ({problem}): {row}")
            lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False))
    return "\n".join(lines) + "\n"


def write_score_file(path: str, header: dict, sections_rows: list[list[dict]]) -> str:
    """Write atomically (temp file + rename): the old file stays intact if anything fails."""
    text = render(header, sections_rows)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    atomic_write_text(path, text)
    return path


def read_score_file(path: str) -> tuple[dict, list[dict]]:
    """Parse and fully validate a score file: (header, [{sample_key: row} per section]).

    Raises :class:`ScoreFileError` naming the line for a garbled line, a missing field, a NaN/inf score,
    a row of no section, a duplicate key; and naming the section for a wrong row count, rows that do
    not match the recorded dataset fingerprint, or a cache key that does not match its components.
    """
    if not os.path.isfile(path):
        raise ScoreFileError(f"score file {path} does not exist")
    try:
        return _read_score_file(path)
    except UnicodeDecodeError as e:
        raise ScoreFileError(
            f"{path}: not UTF-8 text (byte {e.start} of a line cannot be decoded): a damaged "
            "or non-score file; rescore it"
        ) from None


def _read_score_file(path: str) -> tuple[dict, list[dict]]:
    with open(path, encoding="utf-8") as f:
        first = f.readline()
        try:
            header = json.loads(first)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ScoreFileError(
                f"{path} is not a llamafactory-minor score file (its first line is not a "
                f'header with "format": "{FORMAT}")'
            )
        if header.get("format_version") != FORMAT_VERSION:
            raise ScoreFileError(
                f"{path}: format_version {header.get('format_version')} is not supported "
                f"(this plugin reads {FORMAT_VERSION})"
            )
        sections = header.get("sections")
        if not isinstance(sections, list) or not sections:
            raise ScoreFileError(f"{path}: the header lists no sections")
        index = {}
        for i, sec in enumerate(sections):
            for field in ("model", "template", "split", "pairwise", "num_rows", "cache_key", "cache_meta"):
                if field not in sec:
                    raise ScoreFileError(f"{path}: section {i} of the header has no `{field}`")
            index[section_id(sec["model"], sec["template"], sec["split"])] = i
        rows = [{} for _ in sections]
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            if not line.endswith("\n"):
                raise ScoreFileError(f"{path}, line {lineno}: the file ends in the middle of a line (truncated)")
            try:
                row = json.loads(line)
            except ValueError:
                raise ScoreFileError(f"{path}, line {lineno}: not valid JSON (garbled or truncated file)") from None
            sid = section_id(*(row.get(k) for k in SOURCE_FIELDS)) if isinstance(row, dict) else None
            if sid not in index:
                raise ScoreFileError(
                    f"{path}, line {lineno}: the row names no section of the header (model/template/split {sid})"
                )
            i = index[sid]
            problem = check_row(row, sections[i]["pairwise"])
            if problem:
                raise ScoreFileError(f"{path}, line {lineno}: {problem}; the file cannot be used (rescore it)")
            if row["key"] in rows[i]:
                raise ScoreFileError(f"{path}, line {lineno}: sample key {row['key']} appears twice in section {sid}")
            rows[i][row["key"]] = row
    for i, sec in enumerate(sections):
        where = f"{path}: section {sec['model']} / {sec['template']} / {sec['split']}"
        if len(rows[i]) != sec["num_rows"]:
            raise ScoreFileError(
                f"{where} has {len(rows[i])} rows, its header says {sec['num_rows']} (truncated file?)"
            )
        meta = sec["cache_meta"]
        if keys_fingerprint(rows[i]) != meta.get("dataset"):
            raise ScoreFileError(f"{where}: its rows do not match its recorded dataset fingerprint (edited file?)")
        if make_key(meta) != sec["cache_key"]:
            raise ScoreFileError(f"{where}: cache_key does not match cache_meta (edited header?)")
        if rows_digest({k: cache_row(r) for k, r in rows[i].items()}) != sec.get("rows_digest"):
            raise ScoreFileError(
                f"{where}: its scores do not match the section's rows_digest (edited or damaged file); rescore it"
            )
    return header, rows

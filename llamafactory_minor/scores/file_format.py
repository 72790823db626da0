"""The score folder written by ``llamafactory-minor score``: score-cache entries exactly as training stores them.

Layout of ``<score_output>/``::

    manifest.json          which entry holds which section (and how the folder was made)
    <cache_key>/meta.json  one sub-folder per section = one score-cache entry, written by
    <cache_key>/scores.jsonl   scores.cache.write_entry, the function the training cache writes with

``manifest.json``::

    {"format": "llamafactory-minor-scores", "format_version": 3, "created": "2026-01-01T00:00:00Z",
     "plugin_version": "0.1.0", "llamafactory_version": "0.9.5", "backend": "transformers" | "vllm",
     "backend_dtype": "float32" | null, "stage": "sft" | "rm", "dataset": "...", "eval_dataset": null,
     "dataset_dir": "...",
     "sections": [{"role": "reference" | "aligned", "model": "<path or hub id>", "template": "<LF template>",
                   "split": "train" | "eval" | "eval/<name>", "pairwise": false, "entry": "<cache_key>"}, ...]}

Each entry is what training's score cache holds under that key (``scores.cache``): ``meta.json`` = every
component of the cache key (``kind``, ``model``, ``weights`` -- digest of all weight bytes --, ``template``,
``cutoff_len``, ``dtype``, ``dataset`` -- fingerprint of the token keys --, ...) plus ``cache_key``,
``complete``, ``num_rows``, ``rows_digest``; ``scores.jsonl`` = one line per distinct tokenized row, sorted by
key::

    {"key": "<token_key: 32 hex digest of the row's token ids and labels>", "num_tokens": 17, "sum_logp": -41.2}

plus ``"rejected_sum_logp"`` and ``"rejected_num_tokens"`` for pairwise rows (``sum_logp`` / ``num_tokens`` are
then the chosen answer's). ``sum_logp`` is the sum of the answer tokens' log-probs (the tokens whose LF label
is not -100, shifted as in training: log p(token t | tokens < t)), ``num_tokens`` their number. Scores from
the vLLM backend are filed under the key training computes too (the manifest's ``backend`` says where they
came from; on the scoring machine they stay staged apart from training's cache).

Reading an entry (:func:`read_entry`) verifies it completely: the folder name is ``meta.json``'s
``cache_key`` and ``scores.cache.make_key`` of its components, every line of ``scores.jsonl`` is a valid row
with finite scores, the number of rows is ``num_rows``, their keys give the ``dataset`` fingerprint, and the
sha256 of the file's bytes is ``rows_digest``: an edited, truncated or damaged folder is refused naming the
file. The single-file format of earlier versions (format_version 2) is not read: re-run ``llamafactory-minor
score``.

Reading it elsewhere: ``pandas.read_json("<score_output>/<entry>/scores.jsonl", lines=True)``.

This module imports neither torch nor LLaMA-Factory.
"""

import datetime
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable

from .cache import key_parts, make_key, replace_dir, write_entry

FORMAT = "llamafactory-minor-scores"
FORMAT_VERSION = 3  # 3: a folder of score-cache entries; 2: one JSONL file (not read any more)
MANIFEST = "manifest.json"
ROW_FIELDS = ("key", "sum_logp", "num_tokens")
PAIR_FIELDS = ("rejected_sum_logp", "rejected_num_tokens")
SECTION_FIELDS = ("role", "model", "template", "split", "pairwise", "entry")
# manifest field -> meta.json field that must agree with it
_AGREE = (("role", "kind"), ("model", "model"), ("template", "template"))
RERUN = "re-run `llamafactory-minor score` with the same config (score_output: a folder path)"


class ScoreFileError(ValueError):
    """A score folder that is not usable (wrong format, corrupt, incomplete, non-finite scores, mismatched)."""


def keys_fingerprint(keys: Iterable[str]) -> str:
    """Same value as ``scores.passes.dataset_fingerprint`` for rows holding these token keys."""
    return hashlib.sha256("\n".join(sorted(set(keys))).encode()).hexdigest()[:16]


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cache_row(row: dict) -> dict:
    """The score-cache form of a row (``key``, ``sum_logp``, ``num_tokens`` [+ rejected])."""
    return {k: row[k] for k in ROW_FIELDS + PAIR_FIELDS if k in row}


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_row(row: object, pairwise: bool) -> str | None:
    """Why ``row`` is not a valid score row of a single-answer (``pairwise=False``) or pair section, or None."""
    if not isinstance(row, dict):
        return "not a JSON object"
    for field in ROW_FIELDS + (PAIR_FIELDS if pairwise else ()):
        if field not in row:
            return f"no `{field}`"
    if not pairwise and any(f in row for f in PAIR_FIELDS):
        return "a pair's row (`rejected_*`) in a single-answer section"
    extra = sorted(set(row) - set(ROW_FIELDS + PAIR_FIELDS))
    if extra:
        return f"unknown field(s) {', '.join(extra)}"
    if not isinstance(row["key"], str) or not row["key"]:
        return "`key` is not a sample key string"
    for field in ("sum_logp",) + (("rejected_sum_logp",) if pairwise else ()):
        if not _is_finite_number(row[field]):
            return f"`{field}` is not a finite number ({row[field]!r})"
    for field in ("num_tokens",) + (("rejected_num_tokens",) if pairwise else ()):
        if not _is_count(row[field]):
            return f"`{field}` is not a token count ({row[field]!r})"
    return None


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
def check_output(path: str) -> None:
    """Refuse, before a long pass, a ``score_output`` that would overwrite anything but an earlier score folder."""
    if os.path.isfile(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        raise ScoreFileError(
            f"`score_output: {path}` is a file (a single-file score export of an older version?); "
            "score_output is now a folder: choose a new path"
        )
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, MANIFEST)):
        raise ScoreFileError(
            f"`score_output: {path}` is a folder that is not a score folder (no {MANIFEST}); "
            "choose a new path (an earlier score folder is replaced, anything else is left alone)"
        )


def write_score_folder(path: str, manifest: dict, entries: list[dict]) -> str:
    """Write the folder: ``manifest`` (its ``sections`` are filled in) and one cache entry per ``entries[i]``
    (``{"role", "model", "template", "split", "pairwise", "meta": <cache meta with cache_key>, "rows":
    {key: row}}``). Every row is checked first; the folder is built under a temporary name next to ``path``
    and renamed into place: an earlier folder at ``path`` stays intact if anything fails."""
    for e in entries:
        for row in e["rows"].values():
            problem = check_row(row, e["pairwise"])
            if problem:
                raise ScoreFileError(f"refusing to write a bad row for {e['model']} ({problem}): {row}")
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staged = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        sections = []
        for e in entries:
            key = e["meta"]["cache_key"]
            if not os.path.isdir(os.path.join(staged, key)):  # sections with one key share one entry
                write_entry(os.path.join(staged, key), e["meta"], e["rows"])
            sections.append(dict({k: e[k] for k in SECTION_FIELDS if k != "entry"}, entry=key))
        with open(os.path.join(staged, MANIFEST), "w", encoding="utf-8") as f:
            f.write(json.dumps(dict(manifest, sections=sections), indent=2, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        replace_dir(staged, path)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return path


# --------------------------------------------------------------------------------------------------
# reading and verifying
# --------------------------------------------------------------------------------------------------
def _read_json(path: str, what: str) -> object:
    if not os.path.isfile(path):
        raise ScoreFileError(f"{path} does not exist ({what})")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise ScoreFileError(f"{path}: not UTF-8 text (byte {e.start} cannot be decoded): damaged; {RERUN}") from None
    except ValueError:
        raise ScoreFileError(f"{path}: not valid JSON (edited or damaged); {RERUN}") from None


def read_entry(folder: str, pairwise: bool) -> tuple[dict, dict]:
    """Verify one score-cache entry completely and return (meta, {key: row}); :class:`ScoreFileError` naming the
    file (and line) for anything that is not exactly what a finished pass wrote."""
    meta_path, rows_path = os.path.join(folder, "meta.json"), os.path.join(folder, "scores.jsonl")
    if not os.path.isdir(folder):
        raise ScoreFileError(f"{folder} does not exist (an entry the manifest lists); {RERUN}")
    meta = _read_json(meta_path, "the entry's cache meta")
    if not isinstance(meta, dict) or meta.get("complete") is not True:
        raise ScoreFileError(f"{meta_path}: not the meta of a finished score set; {RERUN}")
    key = os.path.basename(os.path.normpath(folder))
    if meta.get("cache_key") != key:
        raise ScoreFileError(f"{meta_path}: its cache_key {meta.get('cache_key')!r} is not its folder's name {key}")
    if make_key(key_parts(meta)) != key:
        raise ScoreFileError(f"{meta_path}: its components do not give its cache key (edited meta.json?); {RERUN}")
    if not os.path.isfile(rows_path):
        raise ScoreFileError(f"{rows_path} does not exist; {RERUN}")
    with open(rows_path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScoreFileError(
            f"{rows_path}: not UTF-8 text (byte {e.start} cannot be decoded): damaged; {RERUN}"
        ) from None
    rows = {}
    for lineno, line in enumerate(text.splitlines(True), start=1):
        if not line.endswith("\n"):
            raise ScoreFileError(f"{rows_path}, line {lineno}: the file ends in the middle of a line (truncated)")
        try:
            row = json.loads(line)
        except ValueError:
            raise ScoreFileError(f"{rows_path}, line {lineno}: not valid JSON (garbled or truncated file)") from None
        problem = check_row(row, pairwise)
        if problem:
            raise ScoreFileError(f"{rows_path}, line {lineno}: {problem}; the folder cannot be used ({RERUN})")
        if row["key"] in rows:
            raise ScoreFileError(f"{rows_path}, line {lineno}: sample key {row['key']} appears twice")
        rows[row["key"]] = row
    if len(rows) != meta.get("num_rows"):
        raise ScoreFileError(f"{rows_path} has {len(rows)} rows, meta.json says {meta.get('num_rows')} (truncated?)")
    if keys_fingerprint(rows) != meta.get("dataset"):
        raise ScoreFileError(f"{rows_path}: its rows do not match the recorded dataset fingerprint (edited file?)")
    if hashlib.sha256(data).hexdigest() != meta.get("rows_digest"):
        raise ScoreFileError(
            f"{rows_path}: its scores do not match meta.json's rows_digest (edited or damaged file); {RERUN}"
        )
    return meta, rows


def _not_a_folder(path: str) -> ScoreFileError:
    try:
        with open(path, encoding="utf-8") as f:
            header = json.loads(f.readline())
    except (OSError, ValueError):
        header = None
    if isinstance(header, dict) and header.get("format") == FORMAT:
        return ScoreFileError(
            f"{path} is a single-file score export (format_version {header.get('format_version')}) of an "
            f"earlier llamafactory-minor; this version reads score folders only: {RERUN}"
        )
    return ScoreFileError(f"{path} is a file, not a score folder written by `llamafactory-minor score`")


def read_score_folder(path: str) -> tuple[dict, list[dict]]:
    """Read and fully verify a score folder: (manifest, sections), each section the manifest's fields plus
    ``meta`` and ``rows`` ({key: row}) of its entry and ``dir`` (the entry's folder)."""
    if not os.path.exists(path):
        raise ScoreFileError(f"score folder {path} does not exist")
    if not os.path.isdir(path):
        raise _not_a_folder(path)
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.isfile(manifest_path):
        raise ScoreFileError(f"{path} is not a llamafactory-minor score folder (no {MANIFEST})")
    manifest = _read_json(manifest_path, "the score folder's manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ScoreFileError(f'{manifest_path} is not a llamafactory-minor score manifest (no "format": "{FORMAT}")')
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ScoreFileError(
            f"{manifest_path}: format_version {manifest.get('format_version')} is not supported "
            f"(this plugin reads {FORMAT_VERSION}); {RERUN}"
        )
    sections = manifest.get("sections")
    if not isinstance(sections, list) or not sections:
        raise ScoreFileError(f"{manifest_path} lists no sections")
    names = []
    for i, sec in enumerate(sections):
        for field in SECTION_FIELDS:
            if not isinstance(sec, dict) or field not in sec:
                raise ScoreFileError(f"{manifest_path}: section {i} has no `{field}`")
        name = sec["entry"]
        if not isinstance(name, str) or not name or name.startswith(".") or os.path.basename(name) != name:
            raise ScoreFileError(f"{manifest_path}: section {i} names no entry folder ({name!r})")
        names.append(name)  # two sections may share an entry (same key: the same model, template and rows)
    stray = sorted(n for n in os.listdir(path) if not n.startswith(".") and n != MANIFEST and n not in names)
    if stray:
        raise ScoreFileError(f"{path} holds {', '.join(stray)}, which {MANIFEST} does not list (edited folder?)")
    out, verified = [], {}
    for i, sec in enumerate(sections):
        folder = os.path.join(path, sec["entry"])
        if (folder, bool(sec["pairwise"])) not in verified:
            verified[folder, bool(sec["pairwise"])] = read_entry(folder, bool(sec["pairwise"]))
        meta, rows = verified[folder, bool(sec["pairwise"])]
        for field, meta_field in _AGREE:
            if meta.get(meta_field) != sec[field]:
                raise ScoreFileError(
                    f"{manifest_path}: section {i} says {field} {sec[field]!r}, its entry's meta.json "
                    f"{meta_field} {meta.get(meta_field)!r} (edited manifest?)"
                )
        out.append(dict(sec, meta=meta, rows=rows, dir=folder))
    return manifest, out


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "ScoreFileError",
    "cache_row",
    "check_output",
    "check_row",
    "keys_fingerprint",
    "read_entry",
    "read_score_folder",
    "write_score_folder",
]

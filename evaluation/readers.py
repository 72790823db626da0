"""Readers of the benchmark formats: the rows of a csv / parquet / jsonl file become :class:`Sample` s.

One reader per format, named by a benchmark's declaration (``BenchmarkInfo.read``, benchmarks.py): it gets
the benchmark's name, its folder and the (subject, file) pairs of one split (locate.py) and returns every
question of them. Column names are matched without regard to case, surrounding spaces or a BOM.
"""

import io
import json
from collections.abc import Iterable
from pathlib import Path

from .ceval_subjects import CEVAL_SUBJECTS
from .errors import EvalError
from .parsing import LETTERS, format_number, gsm8k_gold, normalize_choice
from .samples import Sample


def _clean_col(name: object) -> str:
    return str(name).replace("\ufeff", "").strip().lower()


def _read_table(path: Path):
    """Rows of a csv / parquet / jsonl file as a list of dicts with cleaned, lower-case column names."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover
        raise EvalError(f"reading {path} needs pandas: pip install pandas") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".jsonl":
            rows = []
            with open(path, encoding="utf-8-sig") as f:
                for lineno, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise EvalError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from None
            frame = pd.DataFrame(rows)
        else:  # pragma: no cover
            raise EvalError(f"{path}: unsupported file type {suffix}")
    except EvalError:
        raise
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except Exception as exc:  # pandas parser errors, broken parquet
        if "EOF inside string" in str(exc):
            raise EvalError(
                f"{path}: the file ends inside a quoted field (cut off mid-row? get the complete file)"
            ) from None
        raise EvalError(f"{path}: cannot be read ({type(exc).__name__}: {str(exc).strip()})") from None
    columns = {}
    for col in frame.columns:
        clean = _clean_col(col)
        if clean == "" or clean.startswith("unnamed:"):
            clean = "__index__"
        columns[col] = clean
    original = [str(c).replace("\ufeff", "") for c in frame.columns if columns[c] != "__index__"]
    frame = frame.rename(columns=columns)
    return frame.to_dict(orient="records"), list(frame.columns), original


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    return str(value).replace("\r\n", "\n").replace("\r", "\n").strip()


def _require(path: Path, columns: list[str], required: Iterable[str], benchmark: str, original: list[str]) -> None:
    for col in required:
        if col not in columns:
            shown = original
            expected = ", ".join(c.upper() if len(c) == 1 else c for c in required)
            raise EvalError(
                f"{path}: missing column '{col if len(col) > 1 else col.upper()}' "
                f"(columns found: {', '.join(shown)}; {benchmark} needs: {expected})"
            )


def _ceval_mapping(root: Path) -> dict[str, tuple[str, str]]:
    mapping = dict(CEVAL_SUBJECTS)
    candidates = [root / "mapping.json"] + sorted(root.glob("*/mapping.json"))
    for path in candidates:
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8-sig"))
                for subject, entry in data.items():
                    mapping[subject] = (entry.get("name", subject), entry.get("category", ""))
            except (ValueError, AttributeError) as exc:
                raise EvalError(f"{path}: not a C-Eval subject map ({exc})") from None
            break
    return mapping


def _check_csv_rows(path: Path) -> list[int]:
    """Every row of a CSV file must have as many fields as its header: a file cut off mid-row (or a
    broken row) is reported as such, not as an empty answer. Returns the first line of each row."""
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path}: not UTF-8 text ({exc.reason})") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return []
    starts, start = [], reader.line_num + 1
    rows = []
    for row in reader:
        if row:
            rows.append((start, row))
        start = reader.line_num + 1
    for n, (line, row) in enumerate(rows):
        if len(row) < len(header):
            last = n == len(rows) - 1
            raise EvalError(
                f"{path}: line {line} has {len(row)} of the header's {len(header)} fields "
                + (
                    "(the file ends in the middle of this row: cut off while copying or downloading? "
                    "get the complete file)"
                    if last
                    else "(a broken row: an unquoted line break or a missing comma)"
                )
            )
        starts.append(line)
    return starts


def _read_mc(benchmark: str, subject: str, path: Path, category: str | None) -> list[Sample]:
    lines = _check_csv_rows(path) if path.suffix.lower() == ".csv" else []
    rows, columns, original = _read_table(path)
    required = ["question", "a", "b", "c", "d", "answer"]
    _require(path, columns, required, benchmark, original)
    samples = []
    answers = [_text(row.get("answer")) for row in rows]
    seen_ids: dict[str, str] = {}
    for i, row in enumerate(rows):
        if path.suffix.lower() == ".csv":
            where = f"{path}:line {lines[i] if i < len(lines) else i + 2}"
        else:
            where = f"{path}:{'line' if path.suffix.lower() != '.parquet' else 'row'} {i + 1}"
        raw_answer = answers[i]
        gold = normalize_choice(raw_answer)
        if gold is None:
            if raw_answer == "" and not any(answers):
                raise EvalError(
                    f"{path}: every answer is empty (a split without public answers? C-Eval and FinEval test "
                    f"splits have none; use --split val or dev)"
                )
            if raw_answer == "":
                raise EvalError(f"{where}: empty answer (the other rows of this file have one; fix this row)")
            raise EvalError(f"{where}: answer {raw_answer!r} is not one of A, B, C, D")
        if "id" in row and _text(row["id"]) != "":
            sample_id = _text(row["id"])
        elif "__index__" in row and _text(row["__index__"]) != "":
            sample_id = _text(row["__index__"])
        else:
            sample_id = str(i)
        if sample_id in seen_ids:
            raise EvalError(
                f"{benchmark}: question id {sample_id!r} appears twice in {path} ({seen_ids[sample_id]} and {where}); "
                f"each question needs its own id"
            )
        seen_ids[sample_id] = where
        samples.append(
            Sample(
                benchmark=benchmark,
                subject=subject,
                id=sample_id,
                question=_text(row["question"]),
                gold=gold,
                options={letter: _text(row[letter.lower()]) for letter in LETTERS},
                category=category,
                source=where,
            )
        )
    return samples


def _read_gsm8k(path: Path, benchmark: str = "gsm8k") -> list[Sample]:
    rows, columns, original = _read_table(path)
    _require(path, columns, ["question", "answer"], benchmark, original)
    samples = []
    for i, row in enumerate(rows):
        where = f"{path}:{'line' if path.suffix.lower() == '.jsonl' else 'row'} {i + 1}"
        solution = _text(row["answer"])
        gold = gsm8k_gold(solution, where)
        samples.append(
            Sample(
                benchmark=benchmark,
                subject=benchmark,
                id=_text(row["id"]) if "id" in row and _text(row.get("id")) else str(i),
                question=_text(row["question"]),
                gold=format_number(gold),
                solution=solution,
                source=where,
            )
        )
    return samples


# ----------------------------------------------------------------------------------------------------
# one split: (subject, file) pairs -> samples (the ``read`` of a benchmark's declaration)


def read_choice_split(benchmark: str, root: Path, files: list[tuple[str, Path]]) -> list[Sample]:
    """Four-option multiple choice, one file per subject (FinanceIQ, FinEval)."""
    samples: list[Sample] = []
    for subject, path in files:
        samples.extend(_read_mc(benchmark, subject, path, None))
    return samples


def read_ceval_split(benchmark: str, root: Path, files: list[tuple[str, Path]]) -> list[Sample]:
    """C-Eval: multiple choice, each subject's category from ``<root>/mapping.json`` (else the built-in map)."""
    mapping = _ceval_mapping(root)
    samples: list[Sample] = []
    for subject, path in files:
        samples.extend(_read_mc(benchmark, subject, path, mapping.get(subject, (None, None))[1]))
    return samples


def read_gsm8k_split(benchmark: str, root: Path, files: list[tuple[str, Path]]) -> list[Sample]:
    """GSM8K: ``question`` and ``answer`` (the worked solution ending in ``#### <number>``) per row."""
    samples: list[Sample] = []
    for n, (_, path) in enumerate(files):
        part = _read_gsm8k(path, benchmark)
        if len(files) > 1:  # keep ids unique across shards
            for sample in part:
                sample.id = f"{n}-{sample.id}"
        samples.extend(part)
    return samples

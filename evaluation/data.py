"""Benchmark registry and loaders for the real formats (local folder, or a hub dataset when online).

Local layouts understood (the ones in the project's shared data, and the hub repositories' own):

* C-Eval (ceval-exam): ``<root>/<split>/<subject>_<split>.csv`` with ``id,question,A,B,C,D,answer[,explanation]``
  (CRLF), optional ``<root>/mapping.json`` (subject -> {name, category}); hub parquet shards
  ``<root>/<subject>/<split>-00000-of-00001.parquet`` work too.
* FinanceIQ: ``<root>/<split>/<subject>.csv`` with an unnamed index column, ``Question,A,B,C,D,Answer``.
* FinEval: ``<root>/<split>/<subject>_<split>.csv`` with ``id,question,A,B,C,D,answer,explanation``;
  a UTF-8 BOM and answers with spaces around them are accepted.
* GSM8K: ``<root>/<split>.jsonl`` (``question``, ``answer`` ending in ``#### <number>``), or parquet
  shards ``<root>/main/<split>-*.parquet``.

Column names are matched without regard to case, surrounding spaces or a BOM.
"""

import io
import json
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .ceval_subjects import CEVAL_SUBJECTS
from .errors import EvalError
from .parsing import LETTERS, format_number, gsm8k_gold, normalize_choice


@dataclass(frozen=True)
class BenchmarkInfo:
    name: str
    title: str
    kind: str  # "mc" (four options) or "math" (GSM8K)
    hub: str  # dataset repository on the Hugging Face hub
    folder: str  # sub-folder name under --data-dir
    default_split: str  # the split the papers report (one with public answers)
    shots_split: str  # where few-shot examples come from


BENCHMARKS: dict[str, BenchmarkInfo] = {
    "ceval": BenchmarkInfo("ceval", "C-Eval", "mc", "ceval/ceval-exam", "ceval", "val", "dev"),
    "financeiq": BenchmarkInfo("financeiq", "FinanceIQ", "mc", "Duxiaoman-DI/FinanceIQ", "financeiq", "test", "dev"),
    "fineval": BenchmarkInfo("fineval", "FinEval", "mc", "djdropthebit/fineval", "fineval", "val", "dev"),
    "gsm8k": BenchmarkInfo("gsm8k", "GSM8K", "math", "openai/gsm8k", "gsm8k", "test", "train"),
}
ALIASES = {
    "c-eval": "ceval",
    "ceval-exam": "ceval",
    "c_eval": "ceval",
    "finance-iq": "financeiq",
    "finance_iq": "financeiq",
    "fin-eval": "fineval",
    "fin_eval": "fineval",
    "gsm-8k": "gsm8k",
    "gsm_8k": "gsm8k",
}
SPLIT_ALIASES = {
    "val": ("val", "validation", "valid"),
    "validation": ("val", "validation", "valid"),
    "valid": ("val", "validation", "valid"),
    "dev": ("dev",),
    "test": ("test",),
    "train": ("train",),
}
DATA_EXTS = (".csv", ".parquet", ".jsonl")


def benchmark_info(name: str) -> BenchmarkInfo:
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in BENCHMARKS:
        raise EvalError(f"unknown benchmark {name!r}; valid benchmarks: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


@dataclass
class Sample:
    benchmark: str
    subject: str
    id: str
    question: str
    gold: str  # "A".."D" for multiple choice, the number (as text) for GSM8K
    options: dict[str, str] | None = None
    solution: str | None = None  # GSM8K worked solution (used for few-shot answers)
    category: str | None = None  # C-Eval category (STEM, Social Sciences, Humanities, Other)
    source: str = ""  # file:row, for error messages

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.id}"


# ----------------------------------------------------------------------------------------------------
# locating files


def _split_names(split: str) -> tuple[str, ...]:
    return SPLIT_ALIASES.get(split.lower(), (split.lower(),))


def _subject_of(stem: str, names: Sequence[str]) -> str:
    """``accountant_val`` -> ``accountant``; a file without a ``_<split>`` suffix is its own subject."""
    low = stem.lower()
    for name in names:
        if low.endswith("_" + name):
            return stem[: -len(name) - 1]
    return stem


def _files_in(folder: Path) -> list[Path]:
    """Data files directly in ``folder`` (no sub-folders), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.lower().endswith(DATA_EXTS) and not p.name.startswith(".")
    )


def _child_dirs(folder: Path, names: Sequence[str]) -> list[Path]:
    """Sub-folders of ``folder`` whose name is one of ``names`` (any case), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() in names)


def _split_layouts(root: Path, names: Sequence[str], benchmark: str) -> list[tuple[str, list[tuple[str, Path]]]]:
    """Every documented place of one split under ``root``, in priority order: (where, [(subject, file)])."""
    found: list[tuple[str, list[tuple[str, Path]]]] = []
    if benchmark == "gsm8k":
        # <root>/<split>.jsonl ; <root>/data/<split>.jsonl ; hub parquet <root>/main/<split>-*.parquet
        for folder in [root] + _child_dirs(root, ("data",)):
            files = [p for p in _files_in(folder) if p.stem.lower() in names]
            if files:
                found.append((str(folder), [("gsm8k", p) for p in files]))
        for main in _child_dirs(root, ("main",)):
            files = [
                p
                for p in _files_in(main)
                if p.suffix.lower() == ".parquet"
                and re.fullmatch(
                    r"({})(-\d+(-of-\d+)?)?".format("|".join(re.escape(n) for n in names)), p.stem.lower()
                )
            ]
            if files:
                found.append((str(main), [("gsm8k", p) for p in files]))
        return found
    # <root>/<split>/ ; <root>/data/<split>/ (FinanceIQ's repository) ; <root>/*_unzipped/<split>/ (a hub zip)
    parents = (
        [root]
        + _child_dirs(root, ("data",))
        + sorted(p for p in (root.iterdir() if root.is_dir() else []) if p.is_dir() and p.name.endswith("_unzipped"))
    )
    for parent in parents:
        for folder in _child_dirs(parent, names):
            files = _files_in(folder)
            if files:
                found.append((str(folder), [(_subject_of(p.stem, names), p) for p in files]))
    # hub parquet shards: <root>/<subject>/<split>-00000-of-00001.parquet
    pattern = re.compile(r"({})-\d+(-of-\d+)?".format("|".join(re.escape(n) for n in names)))
    shards = []
    for folder in sorted(p for p in (root.iterdir() if root.is_dir() else []) if p.is_dir()):
        if folder.name.lower() in names:
            continue
        shards += [
            (folder.name, p)
            for p in _files_in(folder)
            if p.suffix.lower() == ".parquet" and pattern.fullmatch(p.stem.lower())
        ]
    if shards:
        found.append((f"{root}/<subject>/<split>-*.parquet", shards))
    return found


def _split_dirs_anywhere(root: Path, names: Sequence[str]) -> list[Path]:
    """Folders named like the split at any depth (for the 'not read' note and the error message)."""
    out = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in dirnames:
            if d.lower() in names and _files_in(Path(dirpath) / d):
                out.append(Path(dirpath) / d)
    return out


def _all_splits(root: Path, benchmark: str) -> list[str]:
    return [s for s in ("dev", "val", "test", "train") if _split_layouts(root, _split_names(s), benchmark)]


def locate_split(root: Path, split: str, benchmark: str) -> tuple[list[tuple[str, Path]], list[str]]:
    """(subject, file) pairs of one split under ``root`` and notes on what was not read.

    Only the documented places are searched (see the module doc); the first that holds files is read.
    Other documented places holding the same split, and folders of that name elsewhere under ``root``
    (e.g. FinEval's ``sufe_data1/val/`` beside ``val/``), are never merged in: they are named in the
    notes. Two files of the same subject in the place read are an error naming both."""
    root = Path(root)
    names = _split_names(split)
    layouts = _split_layouts(root, names, benchmark)
    if not layouts:
        available = _all_splits(root, benchmark)
        elsewhere = [str(p.relative_to(root)) for p in _split_dirs_anywhere(root, names)]
        hint = (
            (
                f"; folders named '{split}' deeper down: {', '.join(elsewhere[:5])} "
                f"(point --data {benchmark}=FOLDER at the folder above one of them)"
            )
            if elsewhere
            else ""
        )
        where = (
            f"{root}/{split}.jsonl or {root}/main/{split}-*.parquet" if benchmark == "gsm8k" else f"{root}/{split}/"
        )
        raise EvalError(
            f"{benchmark}: no '{split}' split under {root} (looked for {where}; splits found there: "
            f"{', '.join(available) if available else 'none'}){hint}; choose one with --split"
        )
    where, pairs = layouts[0]
    notes = [
        f"{benchmark}: split '{split}' is also in {w} ({len(p)} files), not read (only {where} is)"
        for w, p in layouts[1:]
    ]
    used = {Path(w) for w, _ in layouts}
    if benchmark != "gsm8k":
        for folder in _split_dirs_anywhere(root, names):
            if folder not in used:
                notes.append(
                    f"{benchmark}: {folder} ({len(_files_in(folder))} files) is not read: only {where} "
                    f"is; to evaluate it give --data {benchmark}={folder.parent}"
                )
    seen: dict[str, Path] = {}
    for subject, path in pairs:
        if (
            benchmark != "gsm8k"
            and subject in seen
            and not (where.endswith(".parquet") and seen[subject].parent == path.parent)
        ):
            raise EvalError(
                f"{benchmark}: subject {subject!r} of split '{split}' is in two files, {seen[subject]} and {path}; "
                f"remove or move one of them"
            )
        seen[subject] = path
    pairs = sorted(pairs, key=lambda p: (p[0], str(p[1])))
    return pairs, notes


def find_split_files(root: Path, split: str, benchmark: str) -> list[tuple[str, Path]]:
    """(subject, file) pairs of one split under ``root``, sorted by subject then file name."""
    return locate_split(root, split, benchmark)[0]


# ----------------------------------------------------------------------------------------------------
# reading tables


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


def _read_gsm8k(path: Path) -> list[Sample]:
    rows, columns, original = _read_table(path)
    _require(path, columns, ["question", "answer"], "gsm8k", original)
    samples = []
    for i, row in enumerate(rows):
        where = f"{path}:{'line' if path.suffix.lower() == '.jsonl' else 'row'} {i + 1}"
        solution = _text(row["answer"])
        gold = gsm8k_gold(solution, where)
        samples.append(
            Sample(
                benchmark="gsm8k",
                subject="gsm8k",
                id=_text(row["id"]) if "id" in row and _text(row.get("id")) else str(i),
                question=_text(row["question"]),
                gold=format_number(gold),
                solution=solution,
                source=where,
            )
        )
    return samples


def load_split(benchmark: str, root: Path, split: str, notes: list[str] | None = None) -> list[Sample]:
    """Every sample of one split of a benchmark stored under ``root`` (see :func:`locate_split`); what
    was found but not read is appended to ``notes``. Two questions with the same key (subject/id) are
    an error naming both files and lines: nothing is merged or dropped silently."""
    info = benchmark_info(benchmark)
    root = Path(root)
    if not root.is_dir():
        raise EvalError(f"{info.name}: data folder {root} does not exist")
    files, found_notes = locate_split(root, split, info.name)
    if notes is not None:
        notes.extend(found_notes)
    samples: list[Sample] = []
    if info.kind == "math":
        for n, (_, path) in enumerate(files):
            part = _read_gsm8k(path)
            if len(files) > 1:  # keep ids unique across shards
                for sample in part:
                    sample.id = f"{n}-{sample.id}"
            samples.extend(part)
    else:
        mapping = _ceval_mapping(root) if info.name == "ceval" else {}
        for subject, path in files:
            category = mapping.get(subject, (None, None))[1] if mapping else None
            samples.extend(_read_mc(info.name, subject, path, category))
    seen: dict[str, str] = {}
    for s in samples:
        if s.key in seen:
            raise EvalError(
                f"{info.name}: question {s.key!r} appears twice, at {seen[s.key]} and at {s.source}; "
                f"each question needs its own subject/id"
            )
        seen[s.key] = s.source
    return samples


# ----------------------------------------------------------------------------------------------------
# where the data comes from


def resolve_source(benchmark: str, source: str | None = None, data_dir: str | None = None) -> Path:
    """Local folder of a benchmark: ``source`` (a folder, or a hub dataset id), else ``data_dir/<name>``,
    else the benchmark's hub dataset (downloaded with huggingface_hub; needs network access)."""
    info = benchmark_info(benchmark)
    if source:
        path = Path(os.path.expanduser(str(source)))
        if path.exists():
            if not path.is_dir():
                raise EvalError(f"{info.name}: data source {path} is a file; give the folder that holds the splits")
            return path
        if _looks_like_repo_id(str(source)):
            return download_hub_dataset(str(source), info.name)
        raise EvalError(f"{info.name}: data folder {path} does not exist")
    if data_dir:
        path = Path(os.path.expanduser(str(data_dir))) / info.folder
        if not path.is_dir():
            raise EvalError(
                f"{info.name}: no folder '{info.folder}' in data dir {data_dir} "
                f"(expected {path}; or give --data {info.name}=FOLDER)"
            )
        return path
    return download_hub_dataset(info.hub, info.name)


def _looks_like_repo_id(text: str) -> bool:
    text = text.removeprefix("hf://").removeprefix("hub:")
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text)) and not text.startswith((".", "/", "~"))


def download_hub_dataset(repo_id: str, benchmark: str) -> Path:  # pragma: no cover - needs the hub
    """Snapshot of a dataset repository (data files only) in the Hugging Face cache; the same local
    loaders then read it. Not testable offline."""
    repo_id = repo_id.removeprefix("hf://").removeprefix("hub:")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise EvalError(f"{benchmark}: loading {repo_id} from the hub needs huggingface_hub") from exc
    try:
        path = snapshot_download(
            repo_id,
            repo_type="dataset",
            allow_patterns=["*.csv", "*.parquet", "*.jsonl", "*.json", "*.zip"],
        )
    except Exception as exc:
        raise EvalError(
            f"{benchmark}: could not fetch dataset {repo_id} from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"download it and pass --data-dir or --data {benchmark}=FOLDER"
        ) from None
    _unzip_if_needed(Path(path))
    return Path(path)


def _unzip_if_needed(root: Path) -> None:  # pragma: no cover - needs the hub
    """ceval-exam ships a zip of the csv files; unpack it next to itself once."""
    import zipfile

    for archive in root.glob("*.zip"):
        target = root / (archive.stem + "_unzipped")
        if not target.exists():
            tmp = root / (archive.stem + "_unzipping")
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
            os.replace(tmp, target)


# ----------------------------------------------------------------------------------------------------
# selection, down-sampling, few-shot


@dataclass
class BenchmarkData:
    info: BenchmarkInfo
    split: str
    root: Path
    samples: list[Sample]
    shots: dict[str, list[Sample]] = field(default_factory=dict)  # subject -> candidate few-shot examples
    n_before_sampling: int = 0  # questions in the split
    n_pool: int = 0  # questions left after --subjects, before --limit / --limit-per-subject
    notes: list[str] = field(default_factory=list)  # what was found under the root but not read


LIMIT_MODES = ("random", "first")


def select(
    samples: list[Sample],
    benchmark: str,
    subjects: Sequence[str] | None = None,
    limit: int | None = None,
    limit_per_subject: int | None = None,
    seed: int = 42,
    limit_mode: str = "random",
) -> list[Sample]:
    """Filter by subject, then keep ``limit_per_subject`` per subject and ``limit`` in all: a seeded
    uniform sample (``limit_mode="random"``) or the first ones in file order (``"first"``). The chosen
    samples keep file order either way."""
    if limit_mode not in LIMIT_MODES:
        raise EvalError(f"limit_mode must be one of {', '.join(LIMIT_MODES)}, got {limit_mode!r}")
    if subjects:
        available = sorted({s.subject for s in samples})
        wanted = []
        for subject in subjects:
            if subject not in available:
                raise EvalError(
                    f"{benchmark}: unknown subject {subject!r}; subjects in this split: {', '.join(available)}"
                )
            wanted.append(subject)
        samples = [s for s in samples if s.subject in set(wanted)]
    if limit_per_subject is not None:
        by_subject: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            by_subject.setdefault(s.subject, []).append(i)
        keep = []
        for subject in sorted(by_subject):
            idx = by_subject[subject]
            if len(idx) <= limit_per_subject:
                keep.extend(idx)
            elif limit_mode == "first":
                keep.extend(idx[:limit_per_subject])
            else:
                keep.extend(random.Random(f"{seed}/{subject}").sample(idx, limit_per_subject))
        samples = [samples[i] for i in sorted(keep)]
    if limit is not None and len(samples) > limit:
        if limit_mode == "first":
            samples = samples[:limit]
        else:
            keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
            samples = [samples[i] for i in keep]
    if not samples:
        raise EvalError(f"{benchmark}: no questions left after filtering (subjects={subjects}, limit={limit})")
    return samples


def load_benchmark(
    benchmark: str,
    split: str | None = None,
    source: str | None = None,
    data_dir: str | None = None,
    subjects: Sequence[str] | None = None,
    limit: int | None = None,
    limit_per_subject: int | None = None,
    seed: int = 42,
    few_shot: int = 0,
    limit_mode: str = "random",
) -> BenchmarkData:
    info = benchmark_info(benchmark)
    split = split or info.default_split
    root = resolve_source(info.name, source, data_dir)
    notes: list[str] = []
    all_samples = load_split(info.name, root, split, notes)
    if not all_samples:
        raise EvalError(f"{info.name}: split '{split}' under {root} has no rows")
    pool_n = len(select(all_samples, info.name, subjects)) if subjects else len(all_samples)
    chosen = select(all_samples, info.name, subjects, limit, limit_per_subject, seed, limit_mode)
    data = BenchmarkData(info, split, root, chosen, n_before_sampling=len(all_samples), n_pool=pool_n, notes=notes)
    if few_shot > 0:
        if _split_names(info.shots_split) == _split_names(split):
            pool = all_samples
        else:
            try:
                pool = load_split(info.name, root, info.shots_split)
            except EvalError:
                available = _all_splits(root, info.name)
                raise EvalError(
                    f"{info.name}: --few-shot {few_shot} takes its examples from the '{info.shots_split}' split, "
                    f"which is not under {root} (splits there: {', '.join(available) or 'none'}); add the "
                    f"{info.shots_split} files there, or use --few-shot 0 (--split chooses the evaluated split, "
                    f"not the few-shot pool)"
                ) from None
        for s in pool:
            data.shots.setdefault(s.subject, []).append(s)
    return data


def shots_for(sample: Sample, data: BenchmarkData, k: int) -> list[Sample]:
    """Up to ``k`` few-shot examples of the sample's subject, in file order, never the sample itself."""
    if k <= 0:
        return []
    pool = data.shots.get(sample.subject) or (data.shots.get("gsm8k", []) if data.info.kind == "math" else [])
    return [s for s in pool if s.question != sample.question][:k]


_CALC_RE = re.compile(r"<<[^<>]*>>")


def shot_answer(sample: Sample) -> str:
    """The assistant turn of a few-shot example: the letter, or the GSM8K solution in the prompt's format."""
    if sample.options is not None:
        return sample.gold
    body = _CALC_RE.sub("", sample.solution or "").rsplit("####", 1)[0].strip()
    return f"{body}\nSo the answer is: {sample.gold}"

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

import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

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


BENCHMARKS: Dict[str, BenchmarkInfo] = {
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
    options: Optional[Dict[str, str]] = None
    solution: Optional[str] = None  # GSM8K worked solution (used for few-shot answers)
    category: Optional[str] = None  # C-Eval category (STEM, Social Sciences, Humanities, Other)
    source: str = ""  # file:row, for error messages

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.id}"


# ----------------------------------------------------------------------------------------------------
# locating files


def _split_names(split: str) -> Tuple[str, ...]:
    return SPLIT_ALIASES.get(split.lower(), (split.lower(),))


def _file_split_subject(rel: Path, names: Sequence[str]) -> Optional[str]:
    """The subject a data file holds if it belongs to one of the split ``names``, else None."""
    stem = rel.stem
    low = stem.lower()
    dirs = [p.lower() for p in rel.parts[:-1]]
    for name in names:
        if low.endswith("_" + name):
            return stem[: -len(name) - 1]
        if low == name or re.match(re.escape(name) + r"-\d+(-of-\d+)?$", low):
            parents = [p for p in rel.parts[:-1] if p.lower() not in names]
            return parents[-1] if parents else ""
        if name in dirs:
            return stem
    return None


def _all_splits(root: Path) -> List[str]:
    found = set()
    for path in _data_files(root):
        rel = path.relative_to(root)
        for split in ("dev", "val", "validation", "test", "train"):
            if _file_split_subject(rel, (split,)) is not None:
                found.add(split)
    return sorted(found)


def _data_files(root: Path) -> List[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.lower().endswith(DATA_EXTS) and not filename.startswith("."):
                files.append(Path(dirpath) / filename)
    return files


def find_split_files(root: Path, split: str, benchmark: str) -> List[Tuple[str, Path]]:
    """(subject, file) pairs of one split under ``root``, sorted by subject then file name."""
    names = _split_names(split)
    pairs = []
    for path in _data_files(root):
        rel = path.relative_to(root)
        if benchmark == "gsm8k" and "socratic" in str(rel).lower():
            continue  # the hub repository's second config; the papers use "main"
        subject = _file_split_subject(rel, names)
        if subject is not None:
            pairs.append((subject or benchmark, path))
    if not pairs:
        available = _all_splits(root)
        raise EvalError(
            f"{benchmark}: no '{split}' split under {root} "
            f"(splits found there: {', '.join(available) if available else 'none'}); choose one with --split"
        )
    pairs.sort(key=lambda p: (p[0], str(p[1])))
    if benchmark != "gsm8k":
        # a hub snapshot may hold the same subject twice (csv from a zip and parquet): keep one format
        rank = {".csv": 0, ".parquet": 1, ".jsonl": 2}
        best: Dict[str, int] = {}
        for subject, path in pairs:
            best[subject] = min(best.get(subject, 9), rank[path.suffix.lower()])
        pairs = [(s, p) for s, p in pairs if rank[p.suffix.lower()] == best[s]]
    return pairs


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
        raise EvalError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
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


def _require(path: Path, columns: List[str], required: Iterable[str], benchmark: str, original: List[str]) -> None:
    for col in required:
        if col not in columns:
            shown = original
            expected = ", ".join(c.upper() if len(c) == 1 else c for c in required)
            raise EvalError(
                f"{path}: missing column '{col if len(col) > 1 else col.upper()}' "
                f"(columns found: {', '.join(shown)}; {benchmark} needs: {expected})"
            )


def _ceval_mapping(root: Path) -> Dict[str, Tuple[str, str]]:
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


def _read_mc(benchmark: str, subject: str, path: Path, category: Optional[str]) -> List[Sample]:
    rows, columns, original = _read_table(path)
    required = ["question", "a", "b", "c", "d", "answer"]
    _require(path, columns, required, benchmark, original)
    samples = []
    line_offset = 2 if path.suffix.lower() == ".csv" else 1  # header line
    for i, row in enumerate(rows):
        where = f"{path}:{'line' if path.suffix.lower() != '.parquet' else 'row'} {i + line_offset}"
        raw_answer = _text(row.get("answer"))
        gold = normalize_choice(raw_answer)
        if gold is None:
            if raw_answer == "":
                raise EvalError(
                    f"{where}: empty answer (this split has no public answers? C-Eval and FinEval test "
                    f"splits have none; use --split val or dev)"
                )
            raise EvalError(f"{where}: answer {raw_answer!r} is not one of A, B, C, D")
        if "id" in row and _text(row["id"]) != "":
            sample_id = _text(row["id"])
        elif "__index__" in row and _text(row["__index__"]) != "":
            sample_id = _text(row["__index__"])
        else:
            sample_id = str(i)
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


def _read_gsm8k(path: Path) -> List[Sample]:
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


def load_split(benchmark: str, root: Path, split: str) -> List[Sample]:
    """Every sample of one split of a benchmark stored under ``root``."""
    info = benchmark_info(benchmark)
    root = Path(root)
    if not root.is_dir():
        raise EvalError(f"{info.name}: data folder {root} does not exist")
    samples: List[Sample] = []
    if info.kind == "math":
        files = find_split_files(root, split, info.name)
        for n, (_, path) in enumerate(files):
            part = _read_gsm8k(path)
            if len(files) > 1:  # keep ids unique across shards
                for sample in part:
                    sample.id = f"{n}-{sample.id}"
            samples.extend(part)
        return samples
    mapping = _ceval_mapping(root) if info.name == "ceval" else {}
    for subject, path in find_split_files(root, split, info.name):
        category = mapping.get(subject, (None, None))[1] if mapping else None
        samples.extend(_read_mc(info.name, subject, path, category))
    return samples


# ----------------------------------------------------------------------------------------------------
# where the data comes from


def resolve_source(benchmark: str, source: Optional[str] = None, data_dir: Optional[str] = None) -> Path:
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
    samples: List[Sample]
    shots: Dict[str, List[Sample]] = field(default_factory=dict)  # subject -> candidate few-shot examples
    n_before_sampling: int = 0


def select(
    samples: List[Sample],
    benchmark: str,
    subjects: Optional[Sequence[str]] = None,
    limit: Optional[int] = None,
    limit_per_subject: Optional[int] = None,
    seed: int = 42,
) -> List[Sample]:
    """Filter by subject, then down-sample with a seeded RNG (the chosen samples keep file order)."""
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
        by_subject: Dict[str, List[int]] = {}
        for i, s in enumerate(samples):
            by_subject.setdefault(s.subject, []).append(i)
        keep = []
        for subject in sorted(by_subject):
            idx = by_subject[subject]
            rng = random.Random(f"{seed}/{subject}")
            keep.extend(idx if len(idx) <= limit_per_subject else rng.sample(idx, limit_per_subject))
        samples = [samples[i] for i in sorted(keep)]
    if limit is not None and len(samples) > limit:
        rng = random.Random(seed)
        keep = sorted(rng.sample(range(len(samples)), limit))
        samples = [samples[i] for i in keep]
    if not samples:
        raise EvalError(f"{benchmark}: no questions left after filtering (subjects={subjects}, limit={limit})")
    return samples


def load_benchmark(
    benchmark: str,
    split: Optional[str] = None,
    source: Optional[str] = None,
    data_dir: Optional[str] = None,
    subjects: Optional[Sequence[str]] = None,
    limit: Optional[int] = None,
    limit_per_subject: Optional[int] = None,
    seed: int = 42,
    few_shot: int = 0,
) -> BenchmarkData:
    info = benchmark_info(benchmark)
    split = split or info.default_split
    root = resolve_source(info.name, source, data_dir)
    all_samples = load_split(info.name, root, split)
    if not all_samples:
        raise EvalError(f"{info.name}: split '{split}' under {root} has no rows")
    chosen = select(all_samples, info.name, subjects, limit, limit_per_subject, seed)
    data = BenchmarkData(info, split, root, chosen, n_before_sampling=len(all_samples))
    if few_shot > 0:
        pool = all_samples if _split_names(info.shots_split) == _split_names(split) else load_split(
            info.name, root, info.shots_split
        )
        for s in pool:
            data.shots.setdefault(s.subject, []).append(s)
    return data


def shots_for(sample: Sample, data: BenchmarkData, k: int) -> List[Sample]:
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

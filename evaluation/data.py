"""Loading a benchmark: its folder (hub.py), the files of a split (locate.py), their rows (readers.py), the
chosen questions and few-shot examples (selection.py); each benchmark's parts are declared in benchmarks.py.
The names used elsewhere (``load_benchmark``, ``load_split``, ``Sample`` ...) are importable from here.

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

from collections.abc import Sequence
from pathlib import Path

from .benchmarks import ALIASES, BENCHMARKS, BenchmarkInfo, benchmark_info  # noqa: F401  (importable from here)
from .errors import EvalError
from .hub import download_hub_dataset, resolve_source  # noqa: F401
from .locate import DATA_EXTS, SPLIT_ALIASES, all_splits, find_split_files, locate_split, split_names  # noqa: F401
from .samples import BenchmarkData, Sample
from .selection import LIMIT_MODES, select, shots_for  # noqa: F401


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
    samples = info.read(info.name, root, files)
    seen: dict[str, str] = {}
    for s in samples:
        if s.key in seen:
            raise EvalError(
                f"{info.name}: question {s.key!r} appears twice, at {seen[s.key]} and at {s.source}; "
                f"each question needs its own subject/id"
            )
        seen[s.key] = s.source
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
        if split_names(info.shots_split) == split_names(split):
            pool = all_samples
        else:
            try:
                pool = load_split(info.name, root, info.shots_split)
            except EvalError:
                available = all_splits(root, info.name)
                raise EvalError(
                    f"{info.name}: --few-shot {few_shot} takes its examples from the '{info.shots_split}' split, "
                    f"which is not under {root} (splits there: {', '.join(available) or 'none'}); add the "
                    f"{info.shots_split} files there, or use --few-shot 0 (--split chooses the evaluated split, "
                    f"not the few-shot pool)"
                ) from None
        for s in pool:
            data.shots.setdefault(s.subject, []).append(s)
    return data


def shot_answer(sample: Sample) -> str:
    """The assistant turn of a few-shot example: the letter, or the GSM8K solution in the prompt's format."""
    return benchmark_info(sample.benchmark).shot_answer(sample)

"""Where the files of one split are under a benchmark's folder (the layouts of evaluation/data.py's doc).

Two layouts (``BenchmarkInfo.layout``, benchmarks.py): ``"subjects"`` -- one file per subject in
``<root>/<split>/`` (also ``<root>/data/<split>/``, ``<root>/*_unzipped/<split>/`` and hub parquet shards
``<root>/<subject>/<split>-*.parquet``); ``"single"`` -- the whole split in ``<root>/<split>.jsonl`` (or
``<root>/data/``, or hub parquet ``<root>/main/<split>-*.parquet``), one subject named after the benchmark.
Only these places are searched; what else is found is named in notes, never merged in.
"""

import os
import re
from collections.abc import Sequence
from pathlib import Path

from .errors import EvalError

SPLIT_ALIASES = {
    "val": ("val", "validation", "valid"),
    "validation": ("val", "validation", "valid"),
    "valid": ("val", "validation", "valid"),
    "dev": ("dev",),
    "test": ("test",),
    "train": ("train",),
}
DATA_EXTS = (".csv", ".parquet", ".jsonl")


def _layout(benchmark: str) -> str:
    from .benchmarks import benchmark_info

    return benchmark_info(benchmark).layout


def split_names(split: str) -> tuple[str, ...]:
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
    if _layout(benchmark) == "single":
        # <root>/<split>.jsonl ; <root>/data/<split>.jsonl ; hub parquet <root>/main/<split>-*.parquet
        for folder in [root] + _child_dirs(root, ("data",)):
            files = [p for p in _files_in(folder) if p.stem.lower() in names]
            if files:
                found.append((str(folder), [(benchmark, p) for p in files]))
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
                found.append((str(main), [(benchmark, p) for p in files]))
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


def all_splits(root: Path, benchmark: str) -> list[str]:
    return [s for s in ("dev", "val", "test", "train") if _split_layouts(root, split_names(s), benchmark)]


def locate_split(root: Path, split: str, benchmark: str) -> tuple[list[tuple[str, Path]], list[str]]:
    """(subject, file) pairs of one split under ``root`` and notes on what was not read.

    Only the documented places are searched (see the module doc); the first that holds files is read.
    Other documented places holding the same split, and folders of that name elsewhere under ``root``
    (e.g. FinEval's ``sufe_data1/val/`` beside ``val/``), are never merged in: they are named in the
    notes. Two files of the same subject in the place read are an error naming both."""
    root = Path(root)
    names = split_names(split)
    layouts = _split_layouts(root, names, benchmark)
    if not layouts:
        available = all_splits(root, benchmark)
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
            f"{root}/{split}.jsonl or {root}/main/{split}-*.parquet"
            if _layout(benchmark) == "single"
            else f"{root}/{split}/"
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
    if _layout(benchmark) != "single":
        for folder in _split_dirs_anywhere(root, names):
            if folder not in used:
                notes.append(
                    f"{benchmark}: {folder} ({len(_files_in(folder))} files) is not read: only {where} "
                    f"is; to evaluate it give --data {benchmark}={folder.parent}"
                )
    seen: dict[str, Path] = {}
    for subject, path in pairs:
        if (
            _layout(benchmark) != "single"
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

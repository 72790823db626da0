"""Where a benchmark's data comes from: a local folder (``--data``, ``--data-dir``) or its hub dataset,
downloaded with huggingface_hub into its cache (the same local readers then read it)."""

import os
import re
from pathlib import Path

from .errors import EvalError


def resolve_source(benchmark: str, source: str | None = None, data_dir: str | None = None) -> Path:
    """Local folder of a benchmark: ``source`` (a folder, or a hub dataset id), else ``data_dir/<name>``,
    else the benchmark's hub dataset (downloaded with huggingface_hub; needs network access)."""
    from .benchmarks import benchmark_info

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

"""PoFT's aligned-LLM scores: each aligned model scores the data with its own template, one model in
memory at a time; scores are cached and joined to the training rows by content (``sample_key``).

r_j = log p_j(y|x) / T_j(y) needs each model's own tokenization, so every aligned model gets LF's
dataset built with its tokenizer and template (LF symbols, from ``lf``: ``get_dataset``,
``get_template_and_fix_tokenizer``, ``ModelArguments.copyfrom``, ``load_tokenizer``).
"""

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from llamafactory_minor_core.io import read_rows

from .. import lf
from ..errors import PluginError
from .cache import weights_digest
from .keys import plugin_dataset
from .passes import datasets_of, join, load_scoring_model, replace_dataset, run_pass


def _aligned_rows(model_args, data_args, training_args, name_or_path, template_name):
    get_dataset, get_template_and_fix_tokenizer = lf.get_dataset, lf.get_template_and_fix_tokenizer
    args = lf.ModelArguments.copyfrom(model_args, model_name_or_path=name_or_path, adapter_name_or_path=None)
    try:
        tokenizer_module = lf.load_tokenizer(args)
    except Exception as e:
        raise PluginError(
            f"`poft_aligned_models`: cannot load the tokenizer of `{name_or_path}` "
            f"({type(e).__name__}: {e}); check the path or hub id."
        ) from None
    aligned_data_args = dataclasses.replace(data_args, template=template_name, tokenized_path=None)
    try:
        template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], aligned_data_args)
    except ValueError as e:
        if lf.error_text("template_missing") in str(e):
            raise PluginError(
                f"`poft_aligned_templates`: unknown LF template `{template_name}` for `{name_or_path}`."
            ) from None
        raise
    with plugin_dataset("stage: poft", keyed=True):
        module = get_dataset(template, args, aligned_data_args, training_args, stage="sft", **tokenizer_module)
    return module


def _noise_keys(model_args, data_args, training_args, finetuning_args, template, tokenizer_module):
    """The content keys of the bi-PoFT noise rows: every row of ``poft_noise_dataset`` and every row flagged true
    in ``poft_noise_column``, each built by LF exactly as the training rows are (so the keys match)."""
    keys = set()
    names = finetuning_args.poft_noise_dataset
    if names:
        keys |= _keys_of(
            names, data_args, data_args.dataset_dir, model_args, training_args, template, tokenizer_module
        )
    column = getattr(finetuning_args, "poft_noise_column", None)
    if column:
        with tempfile.TemporaryDirectory(prefix="lfm-noise-rows-") as folder:
            flagged = write_flagged_rows(data_args.dataset_dir, data_args.dataset or [], column, folder)
            if flagged:
                keys |= _keys_of(flagged, data_args, folder, model_args, training_args, template, tokenizer_module)
    return keys


def _keys_of(names, data_args, dataset_dir, model_args, training_args, template, tokenizer_module) -> set:
    noise_args = dataclasses.replace(
        data_args,
        dataset=list(names),
        dataset_dir=dataset_dir,
        eval_dataset=None,
        val_size=0.0,
        tokenized_path=None,
        max_samples=None,
    )
    with plugin_dataset("stage: poft", keyed=True):
        module = lf.get_dataset(template, model_args, noise_args, training_args, stage="sft", **tokenizer_module)
    return set(module["train_dataset"]["sample_key"])


def write_flagged_rows(dataset_dir: str, datasets: list[str], column: str, folder: str) -> list[str]:
    """bi-PoFT's per-row flag: the rows of each local training dataset whose ``column`` is true, written with a
    copy of their ``dataset_info.json`` entry into ``folder``; returns the names written (datasets with no flagged
    row are left out). Refused, with the reason: a dataset that is not a local json/jsonl file, a flag that is not
    true/false, and a column that no dataset has."""
    info_path = os.path.join(dataset_dir or ".", "dataset_info.json")
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise PluginError(
            f"`poft_noise_column: {column}` reads the datasets' files, but {info_path} cannot be read ({e})."
        ) from None
    written, has_column, out_info = [], [], {}
    for name in datasets:
        entry = info.get(name) or {}
        path = os.path.join(dataset_dir, entry.get("file_name", ""))
        if "file_name" not in entry or not os.path.isfile(path) or not path.endswith((".json", ".jsonl")):
            raise PluginError(
                f"`poft_noise_column: {column}` needs local json/jsonl datasets; `{name}` is not one "
                f"(in {info_path}). Use `poft_noise_dataset` for it, or download it to a file."
            )
        rows = read_rows(path)
        flagged = []
        for i, row in enumerate(rows):
            if isinstance(row, dict) and column in row:
                if not isinstance(row[column], bool):
                    raise PluginError(
                        f"`poft_noise_column: {column}` must be true or false in every row; row {i} "
                        f"of {path} has {row[column]!r}."
                    )
                has_column.append(name)
                if row[column]:
                    flagged.append(row)
        if flagged:
            with open(os.path.join(folder, f"{name}.json"), "w", encoding="utf-8") as f:
                json.dump(flagged, f, ensure_ascii=False)
            out_info[name] = {k: v for k, v in entry.items() if k != "file_sha1"} | {"file_name": f"{name}.json"}
            written.append(name)
    if not has_column:
        raise PluginError(
            f"`poft_noise_column: {column}`: none of the training datasets ({', '.join(datasets)}) "
            f"has a `{column}` column; `llamafactory-minor noise` writes `is_noise`."
        )
    with open(os.path.join(folder, "dataset_info.json"), "w", encoding="utf-8") as f:
        json.dump(out_info, f, ensure_ascii=False)
    return written


def aligned_meta(model_args: Any, data_args: Any, path: str, template_name: str) -> dict:
    """What an aligned model's scores depend on (besides the rows): the cache key's components."""
    return {
        "kind": "aligned",
        "model": path,
        "weights": weights_digest(path, model_args.model_revision),
        "template": template_name,
        "cutoff_len": data_args.cutoff_len,
        "dtype": str(model_args.compute_dtype),
    }


def _by_content(rows, scores: dict, path: str) -> list[dict]:
    """The aligned model's score of each training row, matched by content (the tokens differ by design)."""
    keys = rows["sample_key"]
    missing = [k for k in keys if k not in scores]
    if missing:
        raise PluginError(
            f"{len(missing)} of {len(keys)} training rows have no score from aligned model `{path}` "
            f"(sample keys {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): LF kept "
            "them in the training format but dropped them in the aligned model's (cutoff or "
            "template); check `poft_aligned_templates` and `cutoff_len`."
        )
    return [scores[k] for k in keys]


def aligned_score_attacher(
    model_args: Any, data_args: Any, training_args: Any, finetuning_args: Any
) -> Callable[[dict, Any, dict], dict]:
    fa = finetuning_args

    def attach(dataset_module, template, tokenizer_module):
        per_model = []
        for path, template_name in zip(fa.poft_aligned_models, fa.poft_aligned_templates):
            aligned_module = _aligned_rows(model_args, data_args, training_args, path, template_name)
            meta = aligned_meta(model_args, data_args, path, template_name)
            by_content = {}  # sample_key -> this model's score of the row in its own format
            for name, rows in datasets_of(aligned_module):
                scores = run_pass(
                    rows,
                    meta,
                    lambda p=path: load_scoring_model(model_args, p),
                    training_args,
                    fa,
                    desc=f"Aligned scores {path} ({name})",
                )
                joined = join(rows, scores, f"score from aligned model `{path}`")
                by_content.update(zip(rows["sample_key"], joined))
            per_model.append((path, by_content))

        noise = (
            _noise_keys(model_args, data_args, training_args, fa, template, tokenizer_module)
            if fa.poft_noise_dataset or getattr(fa, "poft_noise_column", None)
            else None
        )
        for name, rows in datasets_of(dataset_module):
            logps, counts = [], []
            columns = [_by_content(rows, scores, path) for path, scores in per_model]
            for row_scores in zip(*columns):
                logps.append([s["sum_logp"] for s in row_scores])
                counts.append([s["num_tokens"] for s in row_scores])
            rows = rows.add_column("aligned_logps", logps).add_column("aligned_num_tokens", counts)
            if noise is not None:
                rows = rows.add_column("poft_noise", [k in noise for k in rows["sample_key"]])
            replace_dataset(dataset_module, name, rows)
        return dataset_module

    return attach

"""``llamafactory-minor score``: the training-time scoring pass as a standalone command and Python API.

``score(args) -> path`` takes the same LF keys as ``llamafactory-cli train`` (model_name_or_path,
template, dataset, dataset_dir, cutoff_len, max_samples, val_size, bf16, ref_model, stage, ...) plus:

- ``score_output`` (required): the folder to write: score-cache entries as training stores them plus a
  ``manifest.json`` (format: ``scores.file_format``);
- ``score_backend``: ``transformers`` (default; batched, sorted by length, no grad, progress bar) or
  ``vllm`` (``prompt_logprobs`` over the same token ids, see ``scores.vllm_backend``);
- ``score_batch_size`` (default 8, transformers backend);
- ``score_models: a,b`` + ``score_templates: t1,t2``: score with these models, each with its own LF
  template (PoFT's aligned LLMs). Without them a config of a stage with aligned-model scores (the registry's
  ``aligned_model_keys``: ``stage: poft`` scores its ``poft_aligned_models`` / ``poft_aligned_templates``)
  scores those, and any other config scores the model that
  training uses as its reference (``ref_model`` [+ ``ref_model_adapters``] if set, else
  ``model_name_or_path`` [+ ``adapter_name_or_path``]);
- ``score_backend_python``: python of the environment that has vLLM (default: the current one, or
  ``$LLAMAFACTORY_MINOR_VLLM_PYTHON``);
- ``score_vllm_args``: dict of extra ``vllm.LLM`` keyword arguments (e.g. ``tensor_parallel_size``).

The rows are LF's own tokenized rows, built exactly as training builds them (``get_dataset`` inside
``plugin_dataset(..., keyed=True)``; stage ``rm`` for pairwise data -- a ``stage: dpo`` / ``rm`` config
or, without ``stage``, a dataset marked ``"ranking": true`` -- else ``sft``), each with its content key
``sample_key``. Scores go through the same :class:`~.cache.ScoreCache` as training, under the same cache
key (so an interrupted pass resumes, and a later ``llamafactory-cli train`` on this machine with the same
config reuses them). vLLM scores are staged under a separate key (they agree with transformers to ~1e-3
per token, not 1e-5) and reach training's cache only through an explicit :func:`import_scores`.

``import_scores(path, cache_dir=None, config=None)`` verifies the score folder's entries
(``file_format.read_score_folder``) and copies them into the score cache. With a training ``config`` (dict
or YAML path) it checks them against what that training run will look up -- same model weights
(fingerprint; the path may differ between machines), template, cutoff, masking, dtype and dataset
(fingerprint of the token keys) -- refuses a mismatch with an error naming it, and files each entry under
the key training computes (``scores.jsonl`` copied byte for byte, ``meta.json`` = training's key components
plus where the scores came from). Without a config the entries keep their keys (the model path must then be
the same on the training machine).
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from .. import lf, registry
from ..errors import PluginError
from ..version import __version__
from . import cache as cache_mod
from .cache import ScoreCache, entry_meta_text, key_parts, make_key, replace_dir, weights_digest
from .file_format import (
    FORMAT,
    FORMAT_VERSION,
    ScoreFileError,
    cache_row,
    check_output,
    keys_fingerprint,
    now_utc,
    read_score_folder,
    write_score_folder,
)

SCORE_DEFAULTS = {
    "score_output": None,
    "score_backend": "transformers",
    "score_batch_size": 8,
    "score_models": None,
    "score_templates": None,
    "score_backend_python": None,
    "score_vllm_args": None,
}
PAIRWISE_STAGES = ("dpo", "rm")
# single-answer stages: LF's sft and the registry's single-answer stages (external objectives included)
SINGLE_STAGES = ("sft",) + registry.single_answer_stages()
# LF keys that only concern training and would get in the way of a single scoring process
_DROPPED_KEYS = ("deepspeed", "output_dir", "report_to", "tokenized_path", "resume_from_checkpoint")


def _logger():
    from ..log import get_logger

    return get_logger(__name__)


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------
def load_config(config: dict | str, overrides: Sequence[str] = ()) -> dict:
    """A config dict from a dict or a YAML/JSON path, with LF-style ``key=value`` overrides (OmegaConf)."""
    from omegaconf import OmegaConf

    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if not os.path.isfile(path):
            raise PluginError(f"config file {path} does not exist")
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                base = OmegaConf.create(json.load(f))
        else:
            base = OmegaConf.load(os.path.abspath(path))
    elif isinstance(config, dict):
        base = OmegaConf.create(config)
    else:
        raise PluginError(f"config must be a dict or a YAML path, got {type(config).__name__}")
    overrides = list(overrides or ())
    for item in overrides:
        if "=" not in item:
            raise PluginError(f"override `{item}` is not of the form key=value")
    merged = OmegaConf.merge(base, OmegaConf.from_cli(overrides)) if overrides else base
    cfg = OmegaConf.to_container(merged, resolve=True)
    if not isinstance(cfg, dict):
        raise PluginError("the config must be a mapping of LF keys")
    return cfg


def split_score_options(cfg: dict) -> tuple[dict, dict]:
    """(LF keys, score_* options with defaults); unknown ``score_*`` keys are an error."""
    lf_cfg = {k: v for k, v in cfg.items() if not k.startswith("score_")}
    unknown = sorted(k for k in cfg if k.startswith("score_") and k not in SCORE_DEFAULTS)
    if unknown:
        raise PluginError(f"unknown key(s) {', '.join(unknown)}; the score keys are {', '.join(SCORE_DEFAULTS)}")
    opts = {k: cfg.get(k, v) for k, v in SCORE_DEFAULTS.items()}
    for k in ("score_models", "score_templates"):
        if isinstance(opts[k], str):
            opts[k] = [x.strip() for x in opts[k].split(",") if x.strip()]
    if opts["score_backend"] not in ("transformers", "vllm"):
        raise PluginError(f"`score_backend: {opts['score_backend']}`: use transformers or vllm")
    try:
        opts["score_batch_size"] = int(opts["score_batch_size"])
    except (TypeError, ValueError):
        raise PluginError(f"`score_batch_size` must be an integer, got {opts['score_batch_size']!r}") from None
    if opts["score_batch_size"] < 1:
        raise PluginError(f"`score_batch_size` must be >= 1, got {opts['score_batch_size']}")
    if opts["score_models"] and len(opts["score_templates"] or []) != len(opts["score_models"]):
        raise PluginError(
            f"`score_templates` must list one LF template per model of `score_models` "
            f"({len(opts['score_models'])} models, {len(opts['score_templates'] or [])} templates)"
        )
    if opts["score_templates"] and not opts["score_models"]:
        raise PluginError("`score_templates` needs `score_models`")
    if opts["score_vllm_args"] is not None and not isinstance(opts["score_vllm_args"], dict):
        raise PluginError("`score_vllm_args` must be a mapping of vllm.LLM keyword arguments")
    return lf_cfg, opts


def parse_training_args(lf_cfg: dict) -> tuple[Any, Any, Any, Any]:
    """LF's own parsing (``get_train_args``, plugin keys included) of a training config, minus what only a
    training run needs: returns (model_args, data_args, training_args, finetuning_args)."""
    lf.activate()
    get_train_args = lf.get_train_args

    if not lf_cfg.get("dataset"):
        raise PluginError("`dataset` is required: the rows to score are LF's tokenized rows of that dataset")
    if not lf_cfg.get("model_name_or_path"):
        raise PluginError("`model_name_or_path` is required (its tokenizer tokenizes the data)")
    if lf_cfg.get("streaming"):
        raise PluginError("`streaming: true` is not supported for scoring: every row must be scored once")
    cfg = {k: v for k, v in lf_cfg.items() if k not in _DROPPED_KEYS}
    with tempfile.TemporaryDirectory(prefix="lfm-score-") as tmp:
        cfg.update(output_dir=os.path.join(tmp, "unused"), report_to="none")
        model_args, data_args, training_args, finetuning_args, _ = get_train_args(cfg)
    data_args.tokenized_path = None
    return model_args, data_args, training_args, finetuning_args


def data_stage(lf_cfg: dict, finetuning_args: Any, data_args: Any) -> str:
    """``rm`` for pairwise data, ``sft`` for single answers (as training tokenizes them)."""
    if "stage" in lf_cfg:
        stage = finetuning_args.stage
        if stage in PAIRWISE_STAGES:
            return "rm"
        if stage in SINGLE_STAGES:
            return "sft"
        raise PluginError(
            f"`stage: {stage}` has no per-sample answer log-prob to score; scoring supports single "
            f"answers ({', '.join(SINGLE_STAGES)}) and pairs ({', '.join(PAIRWISE_STAGES)})"
        )
    get_dataset_list = lf.get_dataset_list
    names = list(data_args.dataset or []) + list(data_args.eval_dataset or [])
    ranking = {attr.ranking for attr in get_dataset_list(names, data_args.dataset_dir)}
    if len(ranking) > 1:
        raise PluginError(
            f"`dataset: {','.join(names)}` mixes pairwise and single-answer datasets; score them in separate runs"
        )
    return "rm" if True in ranking else "sft"


# --------------------------------------------------------------------------------------------------
# sections: (model, template, split) -> LF rows + the cache meta training computes for them
# --------------------------------------------------------------------------------------------------
def _split_name(name: str) -> str:
    if name == "train_dataset":
        return "train"
    return "eval" + name[len("eval_dataset") :]


def _keyed_rows(model_args, data_args, training_args, stage, label):
    from .keys import plugin_dataset

    get_dataset, get_template_and_fix_tokenizer, load_tokenizer = (
        lf.get_dataset,
        lf.get_template_and_fix_tokenizer,
        lf.load_tokenizer,
    )

    try:
        tokenizer_module = load_tokenizer(model_args)
    except Exception as e:
        raise PluginError(
            f"cannot load the tokenizer of `{model_args.model_name_or_path}` "
            f"({type(e).__name__}: {e}); check `model_name_or_path`."
        ) from None
    try:
        template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    except ValueError as e:
        if lf.error_text("template_missing") in str(e):
            raise PluginError(f"unknown LF template `{data_args.template}`") from None
        raise
    with plugin_dataset(label, keyed=True):
        return get_dataset(template, model_args, data_args, training_args, stage=stage, **tokenizer_module)


def _model_rows(model_args, data_args, training_args, path, template_name, stage):
    """LF rows tokenized with ``path``'s tokenizer and ``template_name`` (PoFT's aligned-model rows)."""
    import dataclasses

    from .aligned import _aligned_rows

    if stage == "sft":  # exactly what `stage: poft` does in training
        return _aligned_rows(model_args, data_args, training_args, path, template_name)
    args = lf.ModelArguments.copyfrom(model_args, model_name_or_path=path, adapter_name_or_path=None)
    data = dataclasses.replace(data_args, template=template_name, tokenized_path=None)
    return _keyed_rows(args, data, training_args, stage, f"score_models: {path}")


def plan_sections(
    model_args: Any,
    data_args: Any,
    training_args: Any,
    finetuning_args: Any,
    stage: str,
    score_models: str | list[str] | None = None,
    score_templates: str | list[str] | None = None,
) -> list[dict]:
    """What to score: one section per (model, template, split) with its rows, cache meta and key."""
    from .aligned import aligned_meta
    from .passes import datasets_of, load_scoring_model, pass_key
    from .reference import _reference_meta

    fa = finetuning_args
    if not score_models and fa.stage in registry.aligned_score_stages():
        models_key, templates_key = registry.get(fa.stage, "stage").aligned_model_keys
        score_models, score_templates = getattr(fa, models_key), getattr(fa, templates_key)
    sections = []
    if score_models:
        for path, template_name in zip(score_models, score_templates):
            module = _model_rows(model_args, data_args, training_args, path, template_name, stage)
            meta = aligned_meta(model_args, data_args, path, template_name)
            for name, rows in datasets_of(module):
                full, key = pass_key(rows, meta)
                sections.append(
                    dict(
                        role="aligned",
                        model=path,
                        template=template_name,
                        split=_split_name(name),
                        rows=rows,
                        meta=full,
                        key=key,
                        adapter=None,
                        quantization_bit=None,
                        load=lambda p=path: load_scoring_model(model_args, p),
                    )
                )
        return sections

    if fa.ref_model:
        model, adapter, qbit = fa.ref_model, fa.ref_model_adapters, fa.ref_model_quantization_bit
    else:
        model, adapter, qbit = (
            model_args.model_name_or_path,
            model_args.adapter_name_or_path,
            model_args.quantization_bit,
        )
    module = _keyed_rows(model_args, data_args, training_args, stage, f"stage: {fa.stage}")
    meta = _reference_meta(model_args, data_args, fa)  # after the rows, in training's order
    for name, rows in datasets_of(module):
        full, key = pass_key(rows, meta)
        sections.append(
            dict(
                role="reference",
                model=meta["model"],
                template=data_args.template,
                split=_split_name(name),
                rows=rows,
                meta=full,
                key=key,
                adapter=adapter,
                quantization_bit=qbit,
                load=lambda: load_scoring_model(model_args, model, adapter, qbit),
            )
        )
    return sections


def _unique_keys(rows) -> list[str]:
    return list(dict.fromkeys(rows["token_key"]))


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------
def _vllm_dtype(model_args) -> str:
    import torch

    return {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}.get(
        model_args.compute_dtype, "auto"
    )


def _score_section(sec, opts, model_args, finetuning_args, desc) -> dict:
    from .passes import cache_root, cached_or_scored, score_with_model

    logger = _logger()
    rows = sec["rows"]
    if opts["score_backend"] == "vllm":
        if sec["adapter"]:
            raise PluginError(
                f"`score_backend: vllm` does not load adapters ({sec['adapter']}); merge the adapter "
                "into the model first or use `score_backend: transformers`"
            )
        if sec["quantization_bit"]:
            raise PluginError("`score_backend: vllm` does not support `quantization_bit`; use transformers")
        # vLLM numbers are staged apart from training's cache; only import_scores files them there
        meta = dict(sec["meta"], backend="vllm")
        cache = ScoreCache(cache_root(finetuning_args), make_key(meta), meta, logger=logger)
    else:
        cache = ScoreCache(cache_root(finetuning_args), sec["key"], sec["meta"], logger=logger)

    def score():
        if opts["score_backend"] != "vllm":
            return score_with_model(sec["load"], rows, cache, opts["score_batch_size"], desc)
        from .vllm_backend import VLLMScoringError, score_rows_vllm

        try:
            return score_rows_vllm(
                rows,
                cache,
                sec["model"],
                python=opts["score_backend_python"],
                dtype=_vllm_dtype(model_args),
                engine_args=opts["score_vllm_args"],
                trust_remote_code=model_args.trust_remote_code,
                desc=desc,
            )
        except VLLMScoringError as e:
            raise PluginError(f"{desc}: {e}") from None

    return cached_or_scored(cache, desc, score)


def _entry(sec: dict, scores: dict) -> dict:
    """The score folder's entry of a section: the cache entry training stores under the section's key."""
    from .passes import join

    counts = dict(zip(sec["rows"]["token_key"], sec["rows"]["answer_tokens"]))
    keys = list(counts)
    joined = join(sec["rows"], scores, f"score from `{sec['model']}`", keys=keys, counts=[counts[k] for k in keys])
    return {
        "role": sec["role"],
        "model": sec["model"],
        "template": sec["template"],
        "split": sec["split"],
        "pairwise": "chosen_input_ids" in sec["rows"].column_names,
        "meta": dict(sec["meta"], cache_key=sec["key"]),
        "rows": {key: cache_row(dict(s, key=key)) for key, s in zip(keys, joined)},
    }


def _lf_version() -> str | None:
    try:
        return metadata.version("llamafactory")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return None


def score(args: dict | str, overrides: Sequence[str] = ()) -> str:
    """Score a dataset as training would and write the score folder; returns its path.

    ``args``: a dict of LF training keys plus the ``score_*`` keys (or a YAML path); ``overrides``:
    ``key=value`` strings applied on top.
    """
    cfg = load_config(args, overrides)
    lf_cfg, opts = split_score_options(cfg)
    output = opts["score_output"]
    if not output:
        raise PluginError("set `score_output: path/to/scores` (the folder to write)")
    output = os.path.abspath(os.path.expanduser(str(output)))
    try:  # fail before a long pass, not after it
        os.makedirs(os.path.dirname(output), exist_ok=True)
    except OSError as e:
        raise PluginError(f"cannot create the folder of `score_output: {output}` ({e})") from None
    if not os.access(os.path.dirname(output), os.W_OK):
        raise PluginError(f"cannot write `score_output: {output}`; choose a writable folder path")
    check_output(output)
    model_args, data_args, training_args, finetuning_args = parse_training_args(lf_cfg)
    stage = data_stage(lf_cfg, finetuning_args, data_args)
    sections = plan_sections(
        model_args, data_args, training_args, finetuning_args, stage, opts["score_models"], opts["score_templates"]
    )
    logger = _logger()
    entries = []
    for i, sec in enumerate(sections):
        desc = f"Scores {i + 1}/{len(sections)}: {sec['role']} {sec['model']} ({sec['template']}, {sec['split']})"
        scores = _score_section(sec, opts, model_args, finetuning_args, desc)
        entries.append(_entry(sec, scores))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": now_utc(),
        "plugin_version": __version__,
        "llamafactory_version": _lf_version(),
        "backend": opts["score_backend"],
        "backend_dtype": (
            {"auto": "auto (float32 on CPU, the model's dtype on GPU)"}.get(
                _vllm_dtype(model_args), _vllm_dtype(model_args)
            )
            if opts["score_backend"] == "vllm"
            else None
        ),
        "stage": stage,
        "dataset": ",".join(data_args.dataset or []),
        "eval_dataset": ",".join(data_args.eval_dataset or []) or None,
        "dataset_dir": data_args.dataset_dir,
    }
    write_score_folder(output, manifest, entries)
    total = sum(len(e["rows"]) for e in entries)
    logger.info_rank0(
        f"Wrote {total} score rows ({len(sections)} section(s), backend {opts['score_backend']}) to {output}."
    )
    return output


# --------------------------------------------------------------------------------------------------
# import into the score cache
# --------------------------------------------------------------------------------------------------
def expected_sections(config: dict | str, overrides: Sequence[str] = ()) -> tuple[list[dict], Any]:
    """The score sections a training run with ``config`` will look up in its cache, and its finetuning args."""
    cfg = load_config(config, overrides)
    lf_cfg, _ = split_score_options(cfg)
    model_args, data_args, training_args, finetuning_args = parse_training_args(lf_cfg)
    fa = finetuning_args
    aligned_stages = registry.aligned_score_stages()
    if fa.stage not in aligned_stages and not fa.precompute_ref_log_probs:
        raise PluginError(
            "this training config uses no precomputed scores: set `precompute_ref_log_probs: true` "
            f"(reference scores) or use {' / '.join(f'`stage: {s}`' for s in aligned_stages)} (aligned-model scores)"
        )
    stage = data_stage(lf_cfg, fa, data_args)
    return plan_sections(model_args, data_args, training_args, fa, stage), fa


# every component of the cache key except the model path (it may differ between machines: the weights
# fingerprint identifies the model), the dataset (checked last, for a precise error) and the plugin version
_COMPARED = (
    "kind",
    "key_scheme",
    "weights",
    "adapter_weights",
    "quantization_bit",
    "template",
    "cutoff_len",
    "train_on_prompt",
    "mask_history",
    "dtype",
)


def _match(expected: dict, sections: list[dict], path: str) -> dict:
    """The score folder's section whose entry holds exactly the scores ``expected`` needs, or a clear error."""
    want = expected["meta"]
    where = f"{expected['role']} scores of `{expected['model']}` ({expected['template']}, {expected['split']})"
    candidates = [s for s in sections if s["meta"].get("kind") == want["kind"]]
    if not candidates:
        raise ScoreFileError(f"{path} holds no {want['kind']} scores; the training config needs the {where}")
    by_model = [s for s in candidates if s["meta"].get("weights") == want["weights"]]
    if not by_model:
        made = ", ".join(sorted({f"{s['model']} (weights {s['meta'].get('weights')})" for s in candidates}))
        raise ScoreFileError(
            f"{path} was made for another model: it scores {made}, the training config needs "
            f"`{expected['model']}` (weights {want['weights']})."
        )
    by_settings = [s for s in by_model if all(s["meta"].get(k) == want.get(k) for k in _COMPARED)]
    if not by_settings:
        meta = by_model[0]["meta"]
        diff = ", ".join(
            f"{k}: score folder {meta.get(k)!r} vs config {want.get(k)!r}"
            for k in _COMPARED
            if meta.get(k) != want.get(k)
        )
        raise ScoreFileError(f"{path} was scored with other settings than the training config's {where}: {diff}")
    for s in by_settings:
        if s["meta"].get("dataset") == want["dataset"]:
            return s
    keys = _unique_keys(expected["rows"])
    best = min(by_settings, key=lambda s: sum(k not in s["rows"] for k in keys))
    missing = [k for k in keys if k not in best["rows"]]
    extra = len(set(best["rows"]) - set(keys))
    raise ScoreFileError(
        f"{path} was made for another dataset: the training config's {expected['split']} split has {len(keys)} "
        f"rows (fingerprint {want['dataset']}), the score folder's section has {len(best['rows'])} (fingerprint "
        f"{best['meta'].get('dataset')}); {len(missing)} of the config's rows have no score"
        f"{' (sample keys ' + ', '.join(missing[:5]) + (', ...' if len(missing) > 5 else '') + ')' if missing else ''}"
        f", {extra} scored rows are not in the config's data. Score this config's data instead."
    )


def default_cache_root(minor_cache_dir: str | None = None) -> str:
    """``scores.passes.cache_root`` without importing LF (a config-less import stays light)."""
    return (
        minor_cache_dir
        or os.environ.get("LLAMAFACTORY_MINOR_SCORE_CACHE")
        or os.path.join(os.path.expanduser("~"), ".cache", "llamafactory_minor", "scores")
    )


def _copy_entries(root: str, plan: list[tuple[str, dict, dict]]) -> list[str]:
    """Copy verified entries into the cache at ``root``: all are staged in one temporary folder there (each
    ``scores.jsonl`` copied and its bytes checked against ``rows_digest`` again, then ``meta.json``), then each
    is renamed into place. A failure before the renames leaves the cache as it was."""
    created = not os.path.isdir(root)
    try:
        os.makedirs(root, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=".import-", dir=root)
    except OSError as e:
        raise PluginError(
            f"Cannot write the score cache at {root} ({e}); set `minor_cache_dir` or --cache-dir."
        ) from None
    written = []
    plan = list({key: (key, meta, sec) for key, meta, sec in plan}.values())  # one copy of a shared entry
    try:
        for key, meta, sec in plan:
            folder = os.path.join(stage, key)
            os.makedirs(folder)
            target = os.path.join(folder, "scores.jsonl")
            shutil.copyfile(os.path.join(sec["dir"], "scores.jsonl"), target)
            with open(target, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != sec["meta"]["rows_digest"]:
                    raise ScoreFileError(f"{sec['dir']}: scores.jsonl changed while it was imported; import again")
            cache_mod.atomic_write_text(os.path.join(folder, "meta.json"), entry_meta_text(meta, sec["rows"]))
        for key, _, _ in plan:
            replace_dir(os.path.join(stage, key), os.path.join(root, key))
            written.append(os.path.join(root, key))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not os.listdir(root):
            os.rmdir(root)
    return written


def import_scores(
    path: str, cache_dir: str | None = None, config: dict | str | None = None, overrides: Sequence[str] = ()
) -> list[str]:
    """Verify a score folder and copy its entries into the score cache so that training finds them; returns
    the cache folders written.

    Everything is verified before anything is written: a corrupt or edited folder, NaN/inf scores, missing
    rows, a folder for another model or dataset, or a changed model are refused with a :class:`ScoreFileError`.
    """
    manifest, sections = read_score_folder(path)
    provenance = {
        "imported_from": os.path.abspath(path),
        "scored_backend": manifest.get("backend"),
        "scored_at": manifest.get("created"),
    }
    plan = []
    if config is not None:
        expected, fa = expected_sections(config, overrides)
        for exp in expected:
            sec = _match(exp, sections, path)
            moved = {"scored_model_path": sec["model"]} if sec["model"] != exp["model"] else {}
            plan.append((exp["key"], dict(exp["meta"], cache_key=exp["key"], **provenance, **moved), sec))
        root = cache_dir or default_cache_root(fa.minor_cache_dir)
    else:
        for sec in sections:
            model = sec["model"]
            if os.path.isdir(model):
                current = weights_digest(model)
                if current != sec["meta"].get("weights"):
                    raise ScoreFileError(
                        f"{path}: the model at {model} is not the one that was scored (weights "
                        f"fingerprint {current}, score folder {sec['meta'].get('weights')}); rescore."
                    )
            plan.append((sec["entry"], dict(sec["meta"], **provenance), sec))
        root = cache_dir or default_cache_root()
    for key, meta, sec in plan:  # a consistency guard on what is about to be filed
        if make_key(key_parts(meta)) != key or keys_fingerprint(sec["rows"]) != meta["dataset"]:
            raise ScoreFileError(f"internal: inconsistent cache entry for {key}")
    written = _copy_entries(root, plan)
    if written and config is not None:  # LF is imported then; a config-less import stays light
        _logger().info_rank0(f"Imported {path} into {len(written)} score cache folder(s): {', '.join(written)}.")
    return written


__all__ = ["import_scores", "load_config", "read_score_folder", "score"]

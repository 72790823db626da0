"""One validation entry point for a training configuration: the CLI and LlamaBoard run the same checks.

Contract of ``validate_train_args(args: dict) -> None``:

- ``args`` is the dict a training job would get (what ``llamafactory-cli train x.yaml k=v`` reads: the
  YAML merged with the overrides; LlamaBoard's launch dict). Nothing is loaded: no model, no tokenizer,
  no dataset rows (only ``dataset_info.json`` is read), nothing is written.
- It returns ``None`` when the configuration passes, and raises ``PluginError`` (a ``ValueError``) with
  one line naming the key to change otherwise. It never calls ``sys.exit``.
- It runs the checks ``llamafactory-cli train`` runs before loading anything, through the same
  functions (one code path): unknown keys (with the nearest valid key), LF's argument parser with the
  plugin's arguments (the plugin's value checks and LF's dataclass checks), the plugin's cross-option
  checks (``check_parsed``), and the cheap data checks (``check_data``: the templates exist, the dataset
  kind -- pairwise ``ranking`` or not in ``dataset_info.json`` -- matches the stage).
- Not run here (launch-time only): LF's process-level checks in ``get_train_args`` (distributed launch,
  an existing ``output_dir``, devices) and loading the models.
- With ``LLAMAFACTORY_MINOR_DISABLE=1`` a configuration naming a plugin-only stage, loss or key is
  refused with a message saying the plugin is disabled; any other configuration passes unchecked.

This module imports nothing heavy at import time (LF is imported inside the functions), so the
start-up guard of a disabled plugin can use ``plugin_names_in`` without loading LF.
"""

from __future__ import annotations

import difflib
import os

from .. import registry
from ..errors import PluginError


def plugin_keys() -> tuple:
    """The keys llamafactory-minor adds to LF's FinetuningArguments (the registry's; tests check the dataclass)."""
    return registry.plugin_keys()


def __getattr__(name):  # PLUGIN_KEYS / SFT_SIDE_STAGES: read from the registry when asked (external objectives)
    if name == "PLUGIN_KEYS":
        return plugin_keys()
    if name == "SFT_SIDE_STAGES":
        return registry.single_answer_stages()
    raise AttributeError(name)


# --------------------------------------------------------------------------------------------------
# raw configuration (no LF needed)
# --------------------------------------------------------------------------------------------------
def _env_on(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("true", "y", "1")  # LF's is_env_enabled


def raw_keys(args) -> dict:
    """The keys of a raw config: a dict as is; LF's list form (``--key value``, ``--key=value``) parsed."""
    if isinstance(args, dict):
        return args
    out, items = {}, list(args or [])
    i = 0
    while i < len(items):
        item = str(items[i])
        if item.startswith("--"):
            key, eq, value = item[2:].partition("=")
            if not eq:
                nxt = items[i + 1] if i + 1 < len(items) else None
                if nxt is not None and not str(nxt).startswith("--"):
                    value, i = nxt, i + 1
                else:
                    value = True
            out[key.replace("-", "_")] = value
        i += 1
    return out


def plugin_names_in(args) -> list[str]:
    """What a raw config names that only the plugin knows: ``stage: minorsft``, ``pref_loss: dpop``, keys."""
    raw = raw_keys(args)
    found = []
    if str(raw.get("stage", "")) in registry.new_stages():
        found.append(f"`stage: {raw['stage']}`")
    if str(raw.get("pref_loss", "")) in registry.new_pref_losses():
        found.append(f"`pref_loss: {raw['pref_loss']}`")
    found += [f"`{key}`" for key in plugin_keys() if key in raw]
    return found


def is_plugin_config(args) -> bool:
    """True when the plugin trains (or checks) this config: it names plugin things or a loss the plugin fixes."""
    raw = raw_keys(args)
    if plugin_names_in(raw):
        return True
    return str(raw.get("stage", "sft")) == "dpo" and str(raw.get("pref_loss", "")) in registry.fixed_pref_losses()


def check_disabled(args) -> None:
    """With the plugin switched off, refuse a config that needs it (else LF would train something else)."""
    names = plugin_names_in(args)
    if names:
        raise PluginError(
            f"llamafactory-minor is disabled (LLAMAFACTORY_MINOR_DISABLE=1), but the config uses {', '.join(names)}, "
            "which only the plugin provides: unset LLAMAFACTORY_MINOR_DISABLE, or remove them."
        )


def nearest(name: str, choices, n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)


def _known_train_keys() -> set:
    from dataclasses import fields

    from .. import lf

    parser = lf.module("llamafactory.hparams.parser")
    arg_lists = parser._TRAIN_MCA_ARGS if (_env_on("USE_MCA") and parser._TRAIN_MCA_ARGS) else parser._TRAIN_ARGS
    return {f.name for cls in arg_lists for f in fields(cls) if f.init}


def check_unknown_keys(args) -> None:
    """A key LF's parser does not know: name it and the nearest valid key (plugin configs, or plugin-like typos)."""
    if _env_on("ALLOW_EXTRA_ARGS"):
        return
    raw = raw_keys(args)
    known = _known_train_keys()
    unknown = [k for k in raw if k not in known and not (k.startswith("no_") and k[3:] in known)]  # --no_<bool>
    if not unknown:
        return
    suggestions = {k: nearest(k, known, n=1) for k in unknown}
    plugin_typo = any(s and s[0] in plugin_keys() for s in suggestions.values())
    if not (plugin_typo or is_plugin_config(raw)):
        return  # a stock config with a stock typo: LF's own error, unchanged
    parts = []
    for key in unknown:
        hint = f" (did you mean `{suggestions[key][0]}`?)" if suggestions[key] else ""
        parts.append(f"`{key}`{hint}")
    raise PluginError(
        f"Unknown key{'s' if len(unknown) > 1 else ''} {', '.join(parts)}: "
        "not an LLaMA-Factory or llamafactory-minor option; fix or remove it."
    )


# --------------------------------------------------------------------------------------------------
# parsed arguments (cross-option checks) and cheap data checks
# --------------------------------------------------------------------------------------------------
def _what(fa) -> str:
    return f"`pref_loss: {fa.pref_loss}`" if fa.stage == "dpo" else f"`stage: {fa.stage}`"


def check_parsed(model_args, data_args, training_args, finetuning_args) -> None:
    """Combinations the plugin cannot honour; stock configurations (plugin not training) pass untouched."""
    fa = finetuning_args
    if not getattr(fa, "plugin_trains", False):
        return
    what = _what(fa)
    stage = fa.stage

    # LF modes that bypass the plugin's workflows (README "LF modes")
    if _env_on("USE_MCA") or getattr(fa, "use_mca", False):
        raise PluginError(
            f"{what} does not run with Megatron-Core (USE_MCA=1 / `use_mca`): LF then trains pt/sft/dpo with its own "
            "mcore_adapter workflows, which bypass the plugin. Unset USE_MCA and remove `use_mca` "
            "(use DeepSpeed for large models)."
        )
    if getattr(training_args, "use_ray", False) or _env_on("USE_RAY"):
        raise PluginError(
            f"{what} does not run under USE_RAY=1 (LF's Ray launcher is not supported by llamafactory-minor); "
            "unset USE_RAY and launch with FORCE_TORCHRUN=1 / torchrun."
        )
    if getattr(fa, "use_hyper_parallel", False):
        raise PluginError(
            f"`use_hyper_parallel` is not supported with {what}: LF's HyperParallel backend runs its own SFT "
            "workflow, bypassing the plugin. Remove it."
        )
    if getattr(model_args, "use_kt", False) or _env_on("USE_KT"):
        raise PluginError(f"`use_kt` (KTransformers) is not supported with {what}; remove it.")
    if _env_on("USE_V1"):
        raise PluginError(f"{what} does not run under USE_V1=1 (LF's v1 trainers are not patched); unset USE_V1.")

    # options the plugin's trainers would silently ignore
    if stage in registry.single_answer_stages():
        if data_args.train_on_prompt or data_args.mask_history:
            key = "train_on_prompt" if data_args.train_on_prompt else "mask_history"
            why = (
                "PoFT compares the target's log-likelihood of the answer with the aligned LLMs' scores of the "
                "same answer (each under its own template), so prompt tokens cannot enter r_theta"
                if stage == "poft"
                else "as LF for every stage but sft, the objective is on the answer tokens (the reference too)"
            )
            raise PluginError(f"`{key}: true` cannot be used with `stage: {stage}`: {why}. Remove `{key}`.")
        if data_args.packing or data_args.neat_packing:
            key = "neat_packing" if data_args.neat_packing else "packing"
            raise PluginError(
                f"`stage: {stage}` needs one sample per row (per-sequence log-probs): remove `{key}` "
                "(or set `packing: false`)."
            )
        if fa.dpo_label_smoothing > 1e-6:
            raise PluginError(
                f"`dpo_label_smoothing` (cDPO) is not supported with `stage: {stage}`: it flips the preference "
                "between a chosen and a rejected answer, and this stage has one answer per row. Remove it."
            )
        if fa.ld_alpha is not None:
            raise PluginError(
                f"`ld_alpha` (LD-DPO) is not supported with `stage: {stage}`: it down-weights the tokens beyond "
                "the shorter of a chosen/rejected pair, and this stage has one answer per row. Remove it."
            )
        if fa.pref_bco_weight > 1e-6:
            raise PluginError(f"`pref_bco_weight` (BCO) is not supported with `stage: {stage}`; set it to 0.")
        for key in ("use_dft_loss", "use_asft_loss", "use_eaft_loss"):
            if getattr(fa, key, False):
                raise PluginError(
                    f"`{key}` (an LF SFT loss) cannot be combined with `stage: {stage}`, whose "
                    f"objective replaces the loss; remove `{key}` or use `stage: sft`."
                )
        if getattr(training_args, "predict_with_generate", False) or getattr(training_args, "do_predict", False):
            raise PluginError(
                f"`do_predict` / `predict_with_generate` are not supported with `stage: {stage}` "
                "(as with LF's dpo); evaluate with `do_eval` or llamafactory-minor-eval."
            )
    if fa.track_m_theta and (data_args.packing or data_args.neat_packing):
        key = "neat_packing" if data_args.neat_packing else "packing"
        raise PluginError(
            f"`track_m_theta` cannot be used with `{key}`: m_theta is per sample and would be "
            f"computed per pack. Remove `{key}` or `track_m_theta`."
        )
    if fa.track_m_theta and stage == "sft" and getattr(model_args, "enable_liger_kernel", False):
        raise PluginError(
            "`track_m_theta` with `stage: sft` cannot be used with `enable_liger_kernel` (its fused "
            "cross-entropy returns no logits to compute m_theta from); remove one of them."
        )


def _template_error(key: str, name: str, templates) -> PluginError:
    close = nearest(name, templates)
    hint = f" Nearest LF templates: {', '.join(close)}." if close else ""
    return PluginError(
        f"Unknown `{key}: {name}`: LLaMA-Factory has no such template.{hint} "
        "(`llamafactory.data.template.TEMPLATES` lists them all.)"
    )


def _dataset_names(data_args) -> list[str]:
    return list(data_args.dataset or []) + list(data_args.eval_dataset or [])


def check_data(model_args, data_args, training_args, finetuning_args) -> None:
    """Cheap data-level checks before anything is loaded: templates exist, dataset kind matches the stage."""
    fa = finetuning_args
    if not getattr(fa, "plugin_trains", False):
        return
    from .. import lf

    TEMPLATES = lf.TEMPLATES
    if data_args.template is not None and data_args.template not in TEMPLATES:
        raise _template_error("template", data_args.template, TEMPLATES)
    for name in getattr(fa, "poft_aligned_templates", None) or []:
        if name not in TEMPLATES:
            raise _template_error("poft_aligned_templates", name, TEMPLATES)
    for name in getattr(fa, "poft_noise_dataset", None) or []:
        if name not in (data_args.dataset or []):
            raise PluginError(
                f"`poft_noise_dataset: {name}` must also be listed in `dataset` "
                f"(got `dataset: {','.join(data_args.dataset or [])}`)."
            )
    column = getattr(fa, "poft_noise_column", None)
    if column:  # before LF loads the files (a flag column of mixed types would stop its json loader)
        import tempfile

        from ..scores.aligned import write_flagged_rows

        with tempfile.TemporaryDirectory(prefix="lfm-noise-check-") as folder:
            write_flagged_rows(data_args.dataset_dir, data_args.dataset or [], column, folder)

    pairwise_needed = None
    objective = registry.get(fa.stage, "stage")
    if objective is not None:
        pairwise_needed = objective.pairwise
    elif fa.stage == "dpo":
        pairwise_needed = True
    dataset_dir = data_args.dataset_dir
    names = _dataset_names(data_args)
    if pairwise_needed is None or not names or not isinstance(dataset_dir, str):
        return
    if dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:"):
        return  # the kind is known only after download; LF's own check (with the plugin's message) runs then
    try:
        attrs = lf.get_dataset_list(names, dataset_dir)
    except ValueError as e:
        raise PluginError(f"{e} (`dataset` / `eval_dataset` with `dataset_dir: {dataset_dir}`)") from None
    for shown, attr in zip(names, attrs):
        if pairwise_needed and not attr.ranking:
            raise PluginError(
                f"`{_what(fa)[1:-1]}` trains on preference pairs, but dataset `{shown}` is not pairwise: choose a "
                'dataset whose dataset_info.json entry has `"ranking": true` (chosen/rejected columns).'
            )
        if not pairwise_needed and attr.ranking:
            raise PluginError(
                f"`stage: {fa.stage}` trains on single answers, but dataset `{shown}` is a pairwise (ranking) "
                "dataset: choose an SFT dataset (instruction/output), or use `stage: dpo` for pairs."
            )


# --------------------------------------------------------------------------------------------------
# the entry points
# --------------------------------------------------------------------------------------------------
def parse_checked(parse, args=None):
    """LF's argument parse (``parse`` = LF's ``_parse_train_args``) wrapped in the plugin's checks.

    Installed in place of ``llamafactory.hparams.parser._parse_train_args`` (see ``arguments.patch_parser``),
    so ``llamafactory-cli train`` (via LF's ``get_train_args``) and ``validate_train_args`` run it alike.
    For plugin configurations LF's own ``ValueError``s become one-line ``PluginError``s.
    """
    from .. import lf

    raw = lf.read_args(args)
    check_unknown_keys(raw)
    try:
        parsed = parse(raw)
    except PluginError:
        raise
    except ValueError as e:
        if not is_plugin_config(raw):
            raise
        raise PluginError(str(e)) from None
    check_parsed(*parsed[:4])
    return parsed


def validate_train_args(args: dict) -> None:
    """Validate a training configuration without loading anything; raise ``PluginError`` naming the key.

    See the module docstring for the full contract.
    """
    from .. import lf
    from ..env import disabled

    if disabled():
        check_disabled(args)
        return
    lf.activate()

    parser = lf.module("llamafactory.hparams.parser")
    environ = dict(os.environ)  # building TrainingArguments may set ACCELERATE_* / FSDP_* variables: keep none
    try:
        parsed = parser._parse_train_args(dict(args))  # the plugin-wrapped parse (parse_checked)
        check_data(*parsed[:4])
    finally:
        parsed = None  # drops TrainingArguments' DeepSpeed config (transformers keeps only a weak reference)
        if os.environ != environ:
            os.environ.clear()
            os.environ.update(environ)


def guard_disabled_parser(parser_module) -> None:
    """``LLAMAFACTORY_MINOR_DISABLE=1``: LF's train-argument parse first refuses configs that need the plugin."""
    for name in ("_parse_train_args", "_parse_train_mca_args"):
        original = getattr(parser_module, name, None)
        if original is None:
            continue

        def guarded(args=None, _original=original):
            raw = parser_module.read_args(args)
            check_disabled(raw)
            return _original(raw)

        setattr(parser_module, name, guarded)

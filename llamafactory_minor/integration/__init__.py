"""The only code that touches LLaMA-Factory internals.

Every LF symbol the plugin reads or patches is named here, so the next LF release is one folder to
update (``SUPPORTED_LF`` below, then the modules listed in ``llamafactory_minor._hook.PATCHES``):

- ``llamafactory.hparams.parser``: ``_TRAIN_ARGS``, ``_INFER_ARGS``, ``_EVAL_ARGS`` (argument dataclasses);
  ``llamafactory.hparams.finetuning_args.FinetuningArguments`` (subclassed)  -> ``arguments.py``
- ``llamafactory.data.loader``: ``_get_merged_dataset`` (clearer pairwise/single error),
  ``_get_dataset_processor`` (sample keys for score joins)                   -> ``data.py``
- ``llamafactory.train.tuner``: ``_training_function``, ``get_train_args``, ``run_dpo``, ``run_sft``
                                                                             -> ``dispatch.py``
- ``llamafactory.train.dpo.trainer.CustomDPOTrainer`` (subclassed by every plugin trainer),
  ``llamafactory.train.trainer_utils.create_ref_model``, ``llamafactory.data.get_dataset``,
  ``get_template_and_fix_tokenizer``, ``SFTDataCollatorWith4DAttentionMask``,
  ``PairwiseDataCollatorWithPadding``, ``llamafactory.model.load_model/load_tokenizer``,
  ``llamafactory.extras.ploting.plot_loss``, ``llamafactory.train.trainer_utils.create_modelcard_and_push``
                                                                             -> ``llamafactory_minor/train/``
- web UI: ``llamafactory.extras.constants.TRAINING_STAGES/STAGES_USE_PAIR_DATA``,
  ``llamafactory.webui.components.train``, ``llamafactory.webui.runner.Runner``,
  ``llamafactory.webui.locales.LOCALES``                                     -> ``webui.py``
"""

from importlib import metadata

SUPPORTED_LF = ("0.9.5",)
SUPPORTED_LF_TEXT = "llamafactory==0.9.5"

NEW_STAGES = ("minorsft", "sftdpo", "poft")
STOCK_STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")
NEW_PREF_LOSSES = ("minordpo", "dpop")
STOCK_PREF_LOSSES = ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo")
# stock losses the plugin computes itself: LF 0.9.5 calls TRL's dpo_loss without a loss type, so under
# TRL >= 0.20 these silently train as sigmoid.
FIXED_PREF_LOSSES = ("hinge", "ipo")


class PluginError(ValueError):
    """A bad configuration: the message says which key to change."""


def check_lf_version() -> None:
    try:
        found = metadata.version("llamafactory")
    except metadata.PackageNotFoundError:  # pragma: no cover
        raise PluginError(f"llamafactory-minor needs {SUPPORTED_LF_TEXT}, which is not installed.") from None
    if found not in SUPPORTED_LF:
        raise PluginError(
            f"llamafactory-minor supports {SUPPORTED_LF_TEXT} only, found llamafactory=={found}. "
            f"Install it with `pip install {SUPPORTED_LF_TEXT}`, or set LLAMAFACTORY_MINOR_DISABLE=1 "
            "to run LLaMA-Factory without the plugin."
        )


def activate() -> None:
    """Import LF's patched modules now (the hook patches them as they load)."""
    from .. import _hook

    _hook.install()
    if _hook.disabled():
        raise PluginError("llamafactory-minor is disabled by LLAMAFACTORY_MINOR_DISABLE=1.")
    check_lf_version()
    import llamafactory.hparams.parser  # noqa: F401
    import llamafactory.train.tuner  # noqa: F401


def get_logger(module_name: str):
    """LF's logger (``llamafactory.extras.logging``), named under LF's root so LF's handler and format apply."""
    from llamafactory.extras import logging

    return logging.get_logger("llamafactory.minor." + module_name.split("llamafactory_minor.", 1)[-1])

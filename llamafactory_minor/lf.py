"""The LF boundary: every LLaMA-Factory / TRL / transformers internal the plugin relies on, in one place.

Nothing else in ``llamafactory_minor`` imports ``llamafactory`` (or TRL / transformers internals): it reads
the names below (``from .. import lf``; ``lf.CustomDPOTrainer``), which are imported lazily on first use, so
importing this module costs nothing (the start-up hook and the raw-config checks need no LF).
``tests/unit/test_lf_boundary.py`` checks that each symbol exists with the signature relied on
(``SIGNATURES``), that each patched attribute exists (``PATCH_POINTS``), that LF's error texts the plugin
recognises are still in LF's source (``ERROR_TEXTS``), and that no other module imports these packages.
Upgrading LF = this module + its test (and ``SUPPORTED_LF`` in ``integration``).

Public LF API (``llamafactory.train.tuner.run_exp``, ``llamafactory-cli``) is used as any user would.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from importlib import metadata

from .env import disabled
from .errors import PluginError

SUPPORTED_LF = ("0.9.5",)
SUPPORTED_LF_TEXT = "llamafactory==0.9.5"

# name -> "module:attribute"
SYMBOLS = {
    # arguments
    "FinetuningArguments": "llamafactory.hparams.finetuning_args:FinetuningArguments",
    "ModelArguments": "llamafactory.hparams:ModelArguments",
    "get_train_args": "llamafactory.hparams:get_train_args",
    "read_args": "llamafactory.hparams.parser:read_args",
    # data
    "get_dataset": "llamafactory.data:get_dataset",
    "get_template_and_fix_tokenizer": "llamafactory.data:get_template_and_fix_tokenizer",
    "SFTDataCollatorWith4DAttentionMask": "llamafactory.data:SFTDataCollatorWith4DAttentionMask",
    "PairwiseDataCollatorWithPadding": "llamafactory.data:PairwiseDataCollatorWithPadding",
    "get_dataset_list": "llamafactory.data.parser:get_dataset_list",
    "TEMPLATES": "llamafactory.data.template:TEMPLATES",
    # model
    "load_model": "llamafactory.model:load_model",
    "load_tokenizer": "llamafactory.model:load_tokenizer",
    # extras
    "IGNORE_INDEX": "llamafactory.extras.constants:IGNORE_INDEX",
    "TRAINING_STAGES": "llamafactory.extras.constants:TRAINING_STAGES",
    "lf_logging": "llamafactory.extras.logging:get_logger",
    "plot_loss": "llamafactory.extras.ploting:plot_loss",
    "get_device_count": "llamafactory.extras.misc:get_device_count",
    "is_env_enabled": "llamafactory.extras.misc:is_env_enabled",
    "use_kt": "llamafactory.extras.misc:use_kt",
    "use_ray": "llamafactory.extras.misc:use_ray",
    # training
    "CustomDPOTrainer": "llamafactory.train.dpo.trainer:CustomDPOTrainer",
    "CustomSeq2SeqTrainer": "llamafactory.train.sft.trainer:CustomSeq2SeqTrainer",
    "create_ref_model": "llamafactory.train.trainer_utils:create_ref_model",
    "create_modelcard_and_push": "llamafactory.train.trainer_utils:create_modelcard_and_push",
    "run_exp": "llamafactory.train.tuner:run_exp",
    "LogCallback": "llamafactory.train.callbacks:LogCallback",
    # web UI
    "get_save_dir": "llamafactory.webui.common:get_save_dir",
    "LOCALES": "llamafactory.webui.locales:LOCALES",
    "ALERTS": "llamafactory.webui.locales:ALERTS",
    "TrainerCallback": "transformers:TrainerCallback",
    # TRL / transformers internals
    "prepare_deepspeed": "trl.models.utils:prepare_deepspeed",
    "hf_deepspeed": "transformers.integrations.deepspeed:",  # the module (its _hf_deepspeed_config_weak_ref)
}

# callables: the leading parameters the plugin passes (by position or name), checked by the unit test
SIGNATURES = {
    "get_dataset": ("template", "model_args", "data_args", "training_args", "stage", "tokenizer", "processor"),
    "get_template_and_fix_tokenizer": ("tokenizer", "data_args"),
    "get_dataset_list": ("dataset_names", "dataset_dir"),
    "load_model": ("tokenizer", "model_args", "finetuning_args", "is_trainable"),
    "load_tokenizer": ("model_args",),
    "plot_loss": ("save_dictionary", "keys"),
    "create_ref_model": ("model_args", "finetuning_args"),
    "create_modelcard_and_push": ("trainer", "model_args", "data_args", "training_args", "finetuning_args"),
    "get_save_dir": ("paths",),
    "prepare_deepspeed": ("model", "accelerator"),
    "ModelArguments.copyfrom": ("source",),
    "read_args": ("args",),
    "get_train_args": ("args",),
    "CustomDPOTrainer.__init__": ("self", "model", "ref_model", "finetuning_args", "processor"),
    "CustomDPOTrainer.concatenated_forward": ("self", "model", "batch", "is_ref_model"),
    "CustomDPOTrainer.compute_reference_log_probs": ("self", "model", "batch"),
    "CustomDPOTrainer.compute_preference_loss": (
        "self",
        "policy_chosen_logps",
        "policy_rejected_logps",
        "reference_chosen_logps",
        "reference_rejected_logps",
    ),
    "CustomDPOTrainer.get_batch_loss_metrics": ("self", "model", "batch", "train_eval"),
    "CustomDPOTrainer.store_metrics": ("self", "metrics", "train_eval"),
    "CustomSeq2SeqTrainer.compute_loss": ("self", "model", "inputs"),
    "CustomSeq2SeqTrainer.log": ("self", "logs"),
    "LogCallback.on_log": ("self", "args", "state", "control"),
}

# LF module -> the attributes the plugin's patch functions (``_hook.PATCHES``) read or replace
PATCH_POINTS = {
    "llamafactory.hparams.parser": (
        "_TRAIN_ARGS",
        "_INFER_ARGS",
        "_EVAL_ARGS",
        "_TRAIN_MCA_ARGS",
        "_parse_train_args",
        "_parse_train_mca_args",
        "read_args",
    ),
    "llamafactory.data.loader": ("_get_merged_dataset", "_get_dataset_processor"),
    "llamafactory.train.tuner": ("get_train_args", "run_sft", "run_dpo", "_training_function"),
    "llamafactory.train.sft.workflow": (
        "run_sft",
        "CustomSeq2SeqTrainer",
        "plot_loss",
        "SFTDataCollatorWith4DAttentionMask",
        "get_dataset",
    ),
    "llamafactory.train.dpo.workflow": (
        "run_dpo",
        "create_ref_model",
        "plot_loss",
        "PairwiseDataCollatorWithPadding",
        "get_dataset",
    ),
    "llamafactory.train.dpo.trainer": ("CustomDPOTrainer",),
    "llamafactory.extras.constants": ("TRAINING_STAGES", "STAGES_USE_PAIR_DATA"),
    "llamafactory.webui.components.train": ("create_train_tab",),
    "llamafactory.webui.runner": ("Runner", "get_trainer_info"),
    "llamafactory.webui.locales": ("LOCALES", "ALERTS"),
    "llamafactory.train.callbacks": ("LogCallback",),
    "llamafactory.launcher": ("launch",),
    "llamafactory.v1.launcher": ("launch",),
    "transformers.integrations.deepspeed": ("_hf_deepspeed_config_weak_ref",),
}

# where LF's workflows look up the trainer class the plugin swaps in (LF 0.9.5: ``run_dpo`` imports
# CustomDPOTrainer from its trainer module inside the function; ``run_sft`` binds CustomSeq2SeqTrainer in
# its workflow module). If LF moves these, the swap misses and ``train.witness`` stops the run.
TRAINER_SLOTS = {
    "dpo": ("llamafactory.train.dpo.trainer", "CustomDPOTrainer"),
    "sft": ("llamafactory.train.sft.workflow", "CustomSeq2SeqTrainer"),
}
WORKFLOWS = {"dpo": "llamafactory.train.dpo.workflow", "sft": "llamafactory.train.sft.workflow"}

# LF's error texts the plugin recognises, and the module whose source holds each
ERROR_TEXTS = {
    "not_applicable": ("The dataset is not applicable in the current training stage.", "llamafactory.data.loader"),
    "template_missing": ("does not exist", "llamafactory.data.template"),
}


def error_text(name: str) -> str:
    return ERROR_TEXTS[name][0]


def module(name: str):
    """An LF (or TRL / transformers) module the plugin patches or swaps into."""
    return importlib.import_module(name)


def symbol(name: str):
    target = SYMBOLS[name]
    mod, _, attr = target.partition(":")
    imported = importlib.import_module(mod)
    return getattr(imported, attr) if attr else imported


def __getattr__(name: str):  # PEP 562: lf.CustomDPOTrainer imports LF on first use
    if name in SYMBOLS:
        value = symbol(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextmanager
def swapped(target_module, name: str, value):
    """Set ``target_module.name = value`` for the duration (LF's workflows look their classes up there)."""
    if not hasattr(target_module, name):
        raise AttributeError(
            f"{target_module.__name__} has no attribute {name!r}: LLaMA-Factory changed; "
            "llamafactory_minor.lf needs updating"
        )
    saved = getattr(target_module, name)
    setattr(target_module, name, value)
    try:
        yield
    finally:
        setattr(target_module, name, saved)


@contextmanager
def trainer_swapped(carrier: str, trainer_cls):
    """LF's ``run_sft`` / ``run_dpo`` build ``trainer_cls`` instead of their stock trainer while active."""
    mod, attr = TRAINER_SLOTS[carrier]
    with swapped(module(mod), attr, trainer_cls):
        yield


def workflow(carrier: str):
    """LF's workflow module of a carrier stage (``run_sft`` / ``run_dpo`` and the names they look up)."""
    return module(WORKFLOWS[carrier])


@contextmanager
def no_zero3_init():
    """Load a scoring model whole under a ZeRO-3 ``TrainingArguments``: transformers partitions every model
    loaded while its DeepSpeed config is alive (``_hf_deepspeed_config_weak_ref``)."""
    try:
        hf_ds = symbol("hf_deepspeed")
    except ImportError:  # pragma: no cover
        yield
        return
    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


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
    """Import LF's patched modules now (the start-up hook, installed by ``import llamafactory_minor``, patches
    them as they load)."""
    if disabled():
        raise PluginError("llamafactory-minor is disabled by LLAMAFACTORY_MINOR_DISABLE=1.")
    check_lf_version()
    module("llamafactory.hparams.parser")
    module("llamafactory.train.tuner")

"""New YAML keys and widened choices for ``stage`` and ``pref_loss``.

LF symbols: ``llamafactory.hparams.finetuning_args.FinetuningArguments`` (subclassed) and the lists
``_TRAIN_ARGS``, ``_INFER_ARGS``, ``_EVAL_ARGS`` of ``llamafactory.hparams.parser`` (their
FinetuningArguments entry is replaced in place, so ``get_train_args`` parses the new keys).
"""

from dataclasses import dataclass, field
from typing import Literal

_PENDING = []


def patch_parser(parser_module) -> None:
    """Replace FinetuningArguments in LF's argument lists by the subclass (in place).

    Defined before this module imports LF: when this module is the first to import LF, LF's parser loads
    (and the hook calls this) before the subclass exists; the replacement then happens at the end of the module.
    """
    from . import check_lf_version

    check_lf_version()
    cls = globals().get("MinorFinetuningArguments")
    if cls is None:
        _PENDING.append(parser_module)
    else:
        _replace_in_lists(parser_module)


from llamafactory.hparams.finetuning_args import FinetuningArguments  # noqa: E402

from . import (  # noqa: E402
    FIXED_PREF_LOSSES,
    NEW_PREF_LOSSES,
    NEW_STAGES,
    STOCK_PREF_LOSSES,
    STOCK_STAGES,
    PluginError,
    check_lf_version,
)

ALL_STAGES = STOCK_STAGES + NEW_STAGES
ALL_PREF_LOSSES = STOCK_PREF_LOSSES + NEW_PREF_LOSSES


def _split(value):
    if value is None or isinstance(value, list):
        return value
    return [item.strip() for item in str(value).split(",") if item.strip()]


@dataclass
class MinorFinetuningArguments(FinetuningArguments):
    r"""LF's FinetuningArguments plus the llamafactory-minor keys (defaults = the papers' values)."""

    stage: Literal["pt", "sft", "rm", "ppo", "dpo", "kto", "minorsft", "sftdpo", "poft"] = field(
        default="sft",
        metadata={"help": "Which stage will be performed in training (llamafactory-minor adds minorsft, sftdpo, poft)."},
    )
    pref_loss: Literal["sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo", "minordpo", "dpop"] = field(
        default="sigmoid",
        metadata={"help": "The type of DPO loss to use (llamafactory-minor adds minordpo, dpop)."},
    )
    pref_ftx: float = field(
        default=0.0,
        metadata={"help": "The supervised fine-tuning loss coefficient in DPO training (LF's). llamafactory-minor: also "
                  "for minorsft, sftdpo and poft, adding pref_ftx * (-log pi_theta(y|x) / m) per sample "
                  "(LF's SFT term: the answer's mean token NLL)."},
    )
    dpop_lambda: float = field(
        default=50.0,
        metadata={"help": "DPOP (Smaug) lambda: weight of beta*lambda*max(0, log(pi_ref/pi)(y_w|x))."},
    )
    poft_beta: float = field(default=1.0, metadata={"help": "PoFT beta: scale of r_theta - r_aligned."})
    poft_gamma: float = field(default=0.0, metadata={"help": "PoFT gamma: margin added inside the sigmoid."})
    poft_aggregation: Literal["mean", "max", "min"] = field(
        default="mean", metadata={"help": "How the aligned LLMs' rewards are combined (paper: mean)."}
    )
    poft_aligned_models: str | None = field(
        default=None, metadata={"help": "Comma-separated aligned LLMs (paths or hub ids) that score the data."}
    )
    poft_aligned_templates: str | None = field(
        default=None, metadata={"help": "Comma-separated LF templates, one per aligned LLM."}
    )
    poft_noise_dataset: str | None = field(
        default=None,
        metadata={"help": "bi-PoFT (Eq. 12): dataset name(s), also listed in `dataset`, whose rows are noise."},
    )
    track_m_theta: bool = field(
        default=False,
        metadata={"help": "stage sft / dpo: also log m_theta (MinorSFT Eq. 8) and the beta-free normalised rewards; "
                  "loss unchanged."},
    )
    precompute_ref_log_probs: bool = field(
        default=False,
        metadata={"help": "Score the reference once before training (cached) and train without a reference model."},
    )
    minor_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where precomputed reference and aligned-LLM scores are cached."},
    )

    def __post_init__(self):
        check_lf_version()
        if self.stage not in ALL_STAGES:
            raise PluginError(
                f"Unknown `stage: {self.stage}`. Valid stages: stock {', '.join(STOCK_STAGES)}; "
                f"llamafactory-minor {', '.join(NEW_STAGES)}."
            )
        if self.pref_loss not in ALL_PREF_LOSSES:
            raise PluginError(
                f"Unknown `pref_loss: {self.pref_loss}`. Valid losses: stock {', '.join(STOCK_PREF_LOSSES)}; "
                f"llamafactory-minor {', '.join(NEW_PREF_LOSSES)}."
            )
        if self.pref_loss in NEW_PREF_LOSSES and self.stage != "dpo":
            raise PluginError(f"`pref_loss: {self.pref_loss}` needs `stage: dpo` (got `stage: {self.stage}`).")

        if self.pissa_init and self.finetuning_type == "lora" and self.plugin_trains and self.stage != "poft":
            raise PluginError(
                f"`pissa_init` cannot be used with {self.objective_name}: with LoRA the reference is the base model "
                "with the adapters disabled, which after PiSSA's initialisation is the residual model, not the "
                "initial one (LF refuses PiSSA for DPO for the same reason). Remove `pissa_init`."
            )

        super().__post_init__()
        self.poft_aligned_models = _split(self.poft_aligned_models)
        self.poft_aligned_templates = _split(self.poft_aligned_templates)
        self.poft_noise_dataset = _split(self.poft_noise_dataset)

        if self.uses_new_objective and self.pref_beta <= 0:
            raise PluginError(
                f"`pref_beta` must be > 0 for {self.objective_name} (got {self.pref_beta}); "
                "the MinorSFT paper's best is 0.04."
            )
        if self.stage == "dpo" and self.plugin_trains:
            what = f"`pref_loss: {self.pref_loss}`" + (
                "" if self.pref_loss in NEW_PREF_LOSSES + FIXED_PREF_LOSSES
                else " with track_m_theta / precompute_ref_log_probs")
            if self.ld_alpha is not None:
                raise PluginError(f"`ld_alpha` (LD-DPO) is not supported with {what}; remove it.")
            if self.pref_bco_weight > 1e-6:
                raise PluginError(f"`pref_bco_weight` is not supported with {what}; set it to 0.")
        if self.pref_loss == "dpop" and self.dpop_lambda < 0:
            raise PluginError(f"`dpop_lambda` must be >= 0 (got {self.dpop_lambda}); the Smaug paper uses 50.")
        if self.stage == "poft":
            if not self.poft_aligned_models:
                raise PluginError(
                    "`stage: poft` needs aligned-LLM scores: set `poft_aligned_models: a,b,c` and "
                    "`poft_aligned_templates: t1,t2,t3` (one LF template per aligned model)."
                )
            if not self.poft_aligned_templates or len(self.poft_aligned_templates) != len(self.poft_aligned_models):
                raise PluginError(
                    f"`poft_aligned_templates` must list one template per aligned model: "
                    f"{len(self.poft_aligned_models)} models ({', '.join(self.poft_aligned_models)}), "
                    f"got {len(self.poft_aligned_templates or [])} templates."
                )
            if self.poft_beta <= 0:
                raise PluginError(f"`poft_beta` must be > 0 (got {self.poft_beta}).")
        if self.track_m_theta and self.stage not in ("sft", "dpo"):
            raise PluginError("`track_m_theta` is for `stage: sft` and `stage: dpo`; the plugin's stages log m_theta anyway.")
        if self.poft_aggregation not in ("mean", "max", "min"):
            raise PluginError(f"Unknown `poft_aggregation: {self.poft_aggregation}`; use mean (the paper's), max or min.")

        # the reference model: the new SFT-side stages use one as LF's DPO does; PoFT compares to aligned LLMs.
        if self.stage in ("minorsft", "sftdpo") or (self.stage == "sft" and self.track_m_theta):
            self.use_ref_model = True
        if self.precompute_ref_log_probs and not self.use_ref_model:
            raise PluginError(
                f"`precompute_ref_log_probs` needs a reference model; `stage: {self.stage}` "
                f"with `pref_loss: {self.pref_loss}` has none."
            )

    @property
    def uses_new_objective(self) -> bool:
        return self.stage in NEW_STAGES or (self.stage == "dpo" and self.pref_loss in NEW_PREF_LOSSES)

    @property
    def objective_name(self) -> str:
        return f"`pref_loss: {self.pref_loss}`" if self.stage == "dpo" else f"`stage: {self.stage}`"

    @property
    def plugin_trains(self) -> bool:
        """True when a plugin workflow (not LF's own) runs this job."""
        return (
            self.stage in NEW_STAGES
            or (self.stage == "dpo" and self.pref_loss in NEW_PREF_LOSSES + FIXED_PREF_LOSSES)
            or (self.stage == "sft" and self.track_m_theta)
            or (self.stage == "dpo" and (self.precompute_ref_log_probs or self.track_m_theta))
        )


def _replace_in_lists(parser_module) -> None:
    _wrap_parse(parser_module)
    for name in ("_TRAIN_ARGS", "_INFER_ARGS", "_EVAL_ARGS", "_TRAIN_MCA_ARGS"):
        arg_list = getattr(parser_module, name, None)
        if not arg_list:
            continue
        for i, cls in enumerate(arg_list):
            if cls is FinetuningArguments:
                arg_list[i] = MinorFinetuningArguments


def _wrap_parse(parser_module) -> None:
    """LF's ``_parse_train_args`` (and the MCA variant) run inside the plugin's checks (``validate.parse_checked``);
    LF's ``get_train_args`` looks them up in the module, so the CLI and ``validate_train_args`` share them."""
    from functools import partial

    from .validate import parse_checked

    for name in ("_parse_train_args", "_parse_train_mca_args"):
        original = getattr(parser_module, name, None)
        if original is None or getattr(original, "_minor_wrapped", False):
            continue
        wrapped = partial(parse_checked, original)
        wrapped._minor_wrapped = True
        setattr(parser_module, name, wrapped)


for _module in _PENDING:  # LF's parser finished loading while this module was importing LF
    _replace_in_lists(_module)
_PENDING.clear()

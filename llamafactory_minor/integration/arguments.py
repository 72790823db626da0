"""New YAML keys and widened choices for ``stage`` and ``pref_loss``, all from ``llamafactory_minor.registry``.

LF symbols (``lf``): ``FinetuningArguments`` (subclassed) and the lists ``_TRAIN_ARGS``, ``_INFER_ARGS``,
``_EVAL_ARGS`` of ``llamafactory.hparams.parser`` (their FinetuningArguments entry is replaced in place, so
``get_train_args`` parses the new keys). External objectives (``$LLAMAFACTORY_MINOR_OBJECTIVES``) are
registered before the class is built: the registry loads them on first read.
"""

from dataclasses import field, make_dataclass
from typing import Literal, Optional

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


from .. import lf, registry  # noqa: E402
from . import PluginError, check_lf_version  # noqa: E402

FinetuningArguments = lf.FinetuningArguments


def _split(value):
    if value is None or isinstance(value, list):
        return value
    return [item.strip() for item in str(value).split(",") if item.strip()]


# LF parses these dataclass fields with HfArgumentParser: keep typing.Optional, which every version reads
_ANNOTATIONS = {"float": float, "bool": bool, "list": Optional[str], "text": Optional[str]}  # noqa: UP045


def _param_field(param):
    """A dataclass field for a registry parameter (``list`` keys: comma text, split after parsing)."""
    kind = Literal[param.choices] if param.kind == "choice" else _ANNOTATIONS[param.kind]
    return (param.name, kind, field(default=param.default, metadata={"help": param.arg_help}))


class _MinorChecks:
    """The plugin's checks and properties of :class:`MinorFinetuningArguments` (its fields come from the registry)."""

    def __post_init__(self):
        check_lf_version()
        if self.stage not in registry.all_stages():
            raise PluginError(
                f"Unknown `stage: {self.stage}`. Valid stages: stock {', '.join(registry.STOCK_STAGES)}; "
                f"llamafactory-minor {', '.join(registry.new_stages())}."
            )
        if self.pref_loss not in registry.all_pref_losses():
            raise PluginError(
                f"Unknown `pref_loss: {self.pref_loss}`. Valid losses: stock {', '.join(registry.STOCK_PREF_LOSSES)}; "
                f"llamafactory-minor {', '.join(registry.new_pref_losses())}."
            )
        if self.pref_loss in registry.new_pref_losses() and self.stage != "dpo":
            raise PluginError(f"`pref_loss: {self.pref_loss}` needs `stage: dpo` (got `stage: {self.stage}`).")

        if self.pissa_init and self.finetuning_type == "lora" and self.plugin_trains and self.stage != "poft":
            raise PluginError(
                f"`pissa_init` cannot be used with {self.objective_name}: with LoRA the reference is the base model "
                "with the adapters disabled, which after PiSSA's initialisation is the residual model, not the "
                "initial one (LF refuses PiSSA for DPO for the same reason). Remove `pissa_init`."
            )

        super().__post_init__()
        for param in registry.params():
            if param.kind == "list":
                setattr(self, param.name, _split(getattr(self, param.name)))

        objective = self.objective
        if self.uses_new_objective and self.pref_beta <= 0:
            raise PluginError(
                f"`pref_beta` must be > 0 for {self.objective_name} (got {self.pref_beta}); "
                "the MinorSFT paper's best is 0.04."
            )
        if self.stage == "dpo" and self.plugin_trains:
            what = f"`pref_loss: {self.pref_loss}`" + (
                "" if objective is not None else " with track_m_theta / precompute_ref_log_probs"
            )
            if self.ld_alpha is not None:
                raise PluginError(f"`ld_alpha` (LD-DPO) is not supported with {what}; remove it.")
            if self.pref_bco_weight > 1e-6:
                raise PluginError(f"`pref_bco_weight` is not supported with {what}; set it to 0.")
        if objective is not None:  # the parameters of the objective that trains: bounds, then its own checks
            for param in objective.params:
                error = param.check(getattr(self, param.name))
                if error:
                    raise PluginError(error)
            if objective.check:
                registry.resolve(objective.check)(self)
        if self.track_m_theta and self.stage not in registry.CARRIERS:
            raise PluginError(
                "`track_m_theta` is for `stage: sft` and `stage: dpo`; the plugin's stages log m_theta anyway."
            )

        # the reference model: the new single-answer stages that need one use it as LF's DPO does
        if (objective is not None and objective.kind == "stage" and objective.needs_reference) or (
            self.stage == "sft" and self.track_m_theta
        ):
            self.use_ref_model = True
        if self.precompute_ref_log_probs and not self.use_ref_model:
            raise PluginError(
                f"`precompute_ref_log_probs` needs a reference model; `stage: {self.stage}` "
                f"with `pref_loss: {self.pref_loss}` has none."
            )

    @property
    def objective(self):
        """The registry entry this configuration trains (None: LF's own objective)."""
        # while LF dispatches, a registered stage is on its carrier (``minor_stage`` keeps its name: dispatch)
        return registry.of_config(getattr(self, "minor_stage", None) or self.stage, self.pref_loss)

    @property
    def uses_new_objective(self) -> bool:
        obj = self.objective
        return obj is not None and not obj.fixes_stock

    @property
    def objective_name(self) -> str:
        return f"`pref_loss: {self.pref_loss}`" if self.stage == "dpo" else f"`stage: {self.stage}`"

    @property
    def plugin_trains(self) -> bool:
        """True when a plugin workflow (not LF's own) runs this job."""
        return (
            self.objective is not None
            or (self.stage == "sft" and self.track_m_theta)
            or (self.stage == "dpo" and (self.precompute_ref_log_probs or self.track_m_theta))
        )


def _build_class():
    stages, losses = registry.all_stages(), registry.all_pref_losses()
    fields_ = [
        (
            "stage",
            Literal[stages],
            field(
                default="sft",
                metadata={
                    "help": f"Which stage will be performed in training (llamafactory-minor adds {', '.join(registry.new_stages())})."
                },
            ),
        ),
        (
            "pref_loss",
            Literal[losses],
            field(
                default="sigmoid",
                metadata={
                    "help": f"The type of DPO loss to use (llamafactory-minor adds {', '.join(registry.new_pref_losses())})."
                },
            ),
        ),
        (
            "pref_ftx",
            float,
            field(
                default=0.0,
                metadata={
                    "help": "The supervised fine-tuning loss coefficient in DPO training (LF's). llamafactory-minor: also for "
                    f"{', '.join(registry.single_answer_stages())}, adding pref_ftx * (-log pi_theta(y|x) / m) per "
                    "sample (LF's SFT term: the answer's mean token NLL)."
                },
            ),
        ),
    ] + [_param_field(p) for p in registry.params()]
    cls = make_dataclass("MinorFinetuningArguments", fields_, bases=(_MinorChecks, FinetuningArguments))
    cls.__module__ = __name__
    cls.__doc__ = "LF's FinetuningArguments plus the llamafactory-minor keys (from ``llamafactory_minor.registry``)."
    return cls


MinorFinetuningArguments = _build_class()


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

"""The objective registry: every objective of the plugin declared once.

Each :class:`Objective` says what it is (``kind``: a new ``stage`` or a new ``pref_loss``), which stock LF
stage carries it (``sft`` for single-answer stages, ``dpo`` for pair losses), whether it needs a reference
model, which function computes it (``"module:function"``, resolved only when training), its parameters
(:class:`Param`: name, default, bounds, help in English and Chinese) and the metrics / plot keys it logs.

Derived from it (nothing below names an objective again):

- the YAML keys and the ``stage`` / ``pref_loss`` choices (``integration.arguments``), their bounds checks
  and LF's ``use_ref_model``;
- validation (``integration.validate``: plugin keys, single-answer vs pairwise data);
- dispatch (``integration.dispatch``: the objective runs where LF calls ``run_sft`` / ``run_dpo``);
- LlamaBoard (``integration.webui``: stage labels, loss choices, one input per parameter, what is shown
  for which stage / loss, the default plot, the locale rows);
- the ``score`` command's stage kinds (``scores.standalone``) and the README's option table (checked by
  ``tests/unit/test_registry.py``).

Adding an objective = one module in ``llamafactory_minor/objectives/`` (the function) + one entry in
``BUILTIN`` below (with its en/zh texts; a unit test fails when one is missing). Objectives outside this
package register themselves with :func:`register` from a module named in ``$LLAMAFACTORY_MINOR_OBJECTIVES``
(comma-separated module names) or in the entry-point group ``llamafactory_minor.objectives``; those modules
are imported once, the first time the registry is read (at plugin activation, before LF's argument
dataclass is built).

This module is the base layer: it imports neither torch nor LF nor any other plugin module.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OBJECTIVES_ENV = "LLAMAFACTORY_MINOR_OBJECTIVES"
ENTRY_POINT_GROUP = "llamafactory_minor.objectives"

STOCK_STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")
STOCK_PREF_LOSSES = ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo")
# stock DPO losses with a reference model in LF's DPO trainer (orpo / simpo are reference-free)
STOCK_REF_PREF_LOSSES = ("sigmoid", "hinge", "ipo", "kto_pair")
CARRIERS = ("sft", "dpo")  # the stock stages a plugin objective runs on
LANGS = ("en", "zh")  # every text of an entry exists in these languages


@dataclass(frozen=True)
class Param:
    """One YAML key of an objective (or of the plugin as a whole).

    ``kind``: ``float`` (slider), ``choice`` (dropdown of ``choices``), ``bool`` (checkbox), ``list``
    (comma-separated text, parsed into a list) or ``text``. ``minimum`` (with ``exclusive``) is checked at
    parse time, the message ending in ``bound_hint``. ``label`` / ``info`` are the web UI's texts and
    ``arg_help`` LF's ``-h`` text. ``ui``: shown in LlamaBoard (False: YAML only). ``ui_range``:
    ``(min, max, step)`` of the slider.
    """

    name: str
    kind: str
    default: Any
    arg_help: str
    label: dict
    info: dict
    minimum: float | None = None
    exclusive: bool = False
    bound_hint: str = ""
    choices: tuple = ()
    ui: bool = True
    ui_range: tuple | None = None
    placeholder: dict | None = None
    doc_default: str | None = None  # the README's default cell when ``default`` is None but something applies

    def check(self, value) -> str | None:
        """The bounds error for ``value`` (``None`` when it is fine)."""
        if self.kind == "choice" and value not in self.choices:
            return f"Unknown `{self.name}: {value}`; use {', '.join(self.choices)}{self.bound_hint}."
        if self.minimum is not None and value is not None:
            bad = value <= self.minimum if self.exclusive else value < self.minimum
            if bad:
                op = ">" if self.exclusive else ">="
                return f"`{self.name}` must be {op} {self.minimum:g} (got {value}){self.bound_hint}."
        return None


@dataclass(frozen=True)
class Objective:
    """One objective: a new ``stage`` (single answer, carried by ``sft``) or ``pref_loss`` (pairs, by ``dpo``).

    ``fn`` is ``"module:function"``: for a stage ``fn(SingleAnswerInputs) -> (losses [B], metrics dict)``,
    for a pair loss ``fn(PairInputs) -> (losses, chosen_rewards, rejected_rewards)``
    (``llamafactory_minor.objectives.interface``). ``scores``: ``"module:function"`` returning an attacher of
    extra score columns (PoFT's aligned-LLM scores), or None; ``aligned_model_keys``: its
    (models, templates) keys, the models ``llamafactory-minor score`` scores for it. ``check``: ``"module:function(finetuning_args)"``
    for cross-option checks beyond the parameters' bounds. ``label``: the stage's name in LlamaBoard's stage
    dropdown (en / zh; LF's stage labels are not translated, the English one is used there).
    """

    name: str
    kind: str
    fn: str
    label: dict
    needs_reference: bool = True
    params: tuple = ()
    metrics: tuple = ()
    plot_keys: tuple = ("loss",)
    ui_plot: tuple = ()
    ui_defaults: dict = field(default_factory=dict)
    uses_beta: bool = True
    fixes_stock: bool = False
    averaged_log_probs: bool = False
    scores: str | None = None
    aligned_model_keys: tuple = ()
    check: str | None = None
    paper: str = ""

    @property
    def carrier(self) -> str:
        return "sft" if self.kind == "stage" else "dpo"

    @property
    def pairwise(self) -> bool:
        return self.kind == "pref_loss"

    @property
    def yaml(self) -> str:
        return f"`stage: {self.name}`" if self.kind == "stage" else f"`pref_loss: {self.name}`"

    def function(self) -> Callable:
        return resolve(self.fn)


def resolve(target: str):
    """``"package.module:attribute"`` -> the attribute (imports the module)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _t(en: str, zh: str) -> dict:
    return {"en": en, "zh": zh}


# --------------------------------------------------------------------------------------------------
# the built-in objectives
# --------------------------------------------------------------------------------------------------
_POFT_PARAMS = (
    Param(
        "poft_beta",
        "float",
        1.0,
        "PoFT beta: scale of r_theta - r_aligned.",
        _t("PoFT beta", "PoFT beta"),
        _t("PoFT: scale of the reward gap to the aligned LLMs.", "PoFT：与对齐模型奖励差的缩放系数。"),
        minimum=0.0,
        exclusive=True,
        ui_range=(0.01, 10, 0.01),
    ),
    Param(
        "poft_gamma",
        "float",
        0.0,
        "PoFT gamma: margin added inside the sigmoid.",
        _t("PoFT gamma", "PoFT gamma"),
        _t("PoFT: margin inside the sigmoid.", "PoFT：sigmoid 内的间隔项。"),
        ui_range=(-10, 10, 0.01),
    ),
    Param(
        "poft_aggregation",
        "choice",
        "mean",
        "How the aligned LLMs' rewards are combined (paper: mean).",
        _t("PoFT aggregation", "PoFT 聚合方式"),
        _t(
            "PoFT: how the aligned LLMs' rewards are combined (paper: mean).",
            "PoFT：多个对齐模型奖励的合并方式（论文：mean）。",
        ),
        choices=("mean", "max", "min"),
        bound_hint=" (mean is the paper's)",
    ),
    Param(
        "poft_aligned_models",
        "list",
        None,
        "Comma-separated aligned LLMs (paths or hub ids) that score the data.",
        _t("PoFT aligned LLMs", "PoFT 对齐模型"),
        _t(
            "PoFT (required): comma-separated paths or hub ids of the aligned LLMs that score the data.",
            "PoFT（必填）：用于给数据打分的对齐模型路径或模型 ID，以逗号分隔。",
        ),
        placeholder=_t("path/to/aligned_a, path/to/aligned_b", "path/to/aligned_a, path/to/aligned_b"),
    ),
    Param(
        "poft_aligned_templates",
        "list",
        None,
        "Comma-separated LF templates, one per aligned LLM.",
        _t("PoFT aligned templates", "PoFT 对齐模型模板"),
        _t(
            "PoFT (required): comma-separated LLaMA-Factory templates, one per aligned LLM, in the same order.",
            "PoFT（必填）：LLaMA-Factory 对话模板，以逗号分隔，与对齐模型一一对应、顺序相同。",
        ),
        placeholder=_t("qwen, llama3", "qwen, llama3"),
    ),
    Param(
        "poft_noise_dataset",
        "list",
        None,
        "bi-PoFT (Eq. 12): dataset name(s), also listed in `dataset`, whose rows are noise.",
        _t("bi-PoFT noise datasets", "bi-PoFT 噪声数据集"),
        _t(
            "Optional (bi-PoFT): dataset name(s), also selected above, whose rows are treated as noise.",
            "可选（bi-PoFT）：被视为噪声的数据集名称（也需在上方数据集中选中）。",
        ),
    ),
    Param(
        "poft_noise_column",
        "text",
        None,
        "bi-PoFT (Eq. 12): a boolean column of the (local) training datasets marking noise rows per row, "
        "e.g. is_noise as `llamafactory-minor noise` writes it.",
        _t("bi-PoFT noise column", "bi-PoFT 噪声标记列"),
        _t(
            "Optional (bi-PoFT): a true/false column of the selected local datasets marking the noise rows, "
            "e.g. is_noise (written by `llamafactory-minor noise`).",
            "可选（bi-PoFT）：所选本地数据集中标记噪声行的布尔列，例如 is_noise（由 `llamafactory-minor noise` 生成）。",
        ),
        placeholder=_t("is_noise", "is_noise"),
    ),
)

BUILTIN = (
    Objective(
        "minorsft",
        "stage",
        "llamafactory_minor.objectives.minorsft:objective",
        _t("MinorSFT", "MinorSFT"),
        metrics=("minorsft/coef",),
        plot_keys=("loss", "m_theta", "minorsft/coef", "normalized_rewards/chosen"),
        ui_plot=("m_theta", "minorsft/coef"),
        ui_defaults={"pref_beta": 0.04},
        paper="MinorSFT Eq. 7",
    ),
    Objective(
        "sftdpo",
        "stage",
        "llamafactory_minor.objectives.sftdpo:objective",
        _t("SFT using DPO", "SFT using DPO"),
        plot_keys=("loss", "m_theta", "rewards/chosen", "normalized_rewards/chosen"),
        ui_plot=("m_theta", "normalized_rewards/chosen"),
        ui_defaults={"pref_beta": 0.04},
        paper="MinorSFT Eq. 3",
    ),
    Objective(
        "minordpo",
        "pref_loss",
        "llamafactory_minor.objectives.minordpo:objective",
        _t("MinorDPO", "MinorDPO"),
        paper="MinorDPO Eq. 6",
    ),
    Objective(
        "dpop",
        "pref_loss",
        "llamafactory_minor.objectives.dpop:objective",
        _t("DPOP", "DPOP"),
        params=(
            Param(
                "dpop_lambda",
                "float",
                50.0,
                "DPOP (Smaug) lambda: weight of beta*lambda*max(0, log(pi_ref/pi)(y_w|x)).",
                _t("DPOP lambda", "DPOP lambda"),
                _t(
                    "DPOP: penalty weight when the chosen answer drops below the reference (paper: 50).",
                    "DPOP：选中回答低于参考模型时的惩罚权重（论文：50）。",
                ),
                minimum=0.0,
                bound_hint="; the Smaug paper uses 50",
                ui_range=(0, 200, 0.5),
            ),
        ),
        paper="MinorDPO Eq. 5 (DPOP)",
    ),
    # stock LF names the plugin computes itself: LF 0.9.5 calls TRL's dpo_loss without a loss type, so under
    # TRL >= 0.20 these silently train as sigmoid
    Objective(
        "hinge",
        "pref_loss",
        "llamafactory_minor.objectives.dpo:hinge_objective",
        _t("hinge", "hinge"),
        fixes_stock=True,
        paper="fixed stock losses",
    ),
    Objective(
        "ipo",
        "pref_loss",
        "llamafactory_minor.objectives.dpo:ipo_objective",
        _t("ipo", "ipo"),
        fixes_stock=True,
        averaged_log_probs=True,
        paper="fixed stock losses",
    ),
    Objective(
        "poft",
        "stage",
        "llamafactory_minor.objectives.poft:objective",
        _t("PoFT", "PoFT"),
        needs_reference=False,
        uses_beta=False,
        params=_POFT_PARAMS,
        metrics=("poft/r_theta", "poft/r_aligned"),
        plot_keys=("loss", "poft/r_theta", "poft/r_aligned"),
        ui_plot=("poft/r_theta", "poft/r_aligned"),
        scores="llamafactory_minor.scores.aligned:aligned_score_attacher",
        aligned_model_keys=("poft_aligned_models", "poft_aligned_templates"),
        check="llamafactory_minor.objectives.poft:check_config",
        paper="PoFT Eq. 6",
    ),
)

# keys of the plugin as a whole (not of one objective); what they apply to is a rule of the web UI
SHARED_PARAMS = (
    Param(
        "track_m_theta",
        "bool",
        False,
        "stage sft / dpo: also log m_theta (MinorSFT Eq. 8) and the beta-free normalised rewards; loss unchanged.",
        _t("Log m_theta", "记录 m_theta"),
        _t(
            "Also log m_theta and normalized rewards against the reference (loss unchanged).",
            "额外记录相对参考模型的 m_theta 与归一化奖励（损失不变）。",
        ),
    ),
    Param(
        "precompute_ref_log_probs",
        "bool",
        False,
        "Score the reference once before training (cached) and train without a reference model.",
        _t("Precompute reference scores", "预先计算参考模型分数"),
        _t(
            "Score the reference model once before training (cached) and train without it in memory.",
            "训练前先用参考模型打分一次（带缓存），训练时不再加载参考模型。",
        ),
    ),
    Param(
        "minor_cache_dir",
        "text",
        None,
        "Where precomputed reference and aligned-LLM scores are cached.",
        _t("Score cache folder", "分数缓存目录"),
        _t(
            "Where precomputed reference and aligned-LLM scores are cached.",
            "预计算的参考模型与对齐模型分数的缓存目录。",
        ),
        ui=False,
        doc_default="`$LLAMAFACTORY_MINOR_SCORE_CACHE` or `~/.cache/llamafactory_minor/scores`",
    ),
)
# metrics every plugin trainer of a family logs (besides the objective's own ``metrics``)
COMMON_METRICS = {
    "stage": ("loss", "rewards/chosen", "normalized_rewards/chosen", "m_theta", "logps/chosen"),
    "pref_loss": (
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "normalized_rewards/chosen",
        "normalized_rewards/rejected",
        "m_theta",
        "logps/chosen",
        "logps/rejected",
    ),
}
# what LF's plot_loss draws for the DPO family (every pair loss and stage dpo with tracking)
DPO_PLOT_KEYS = (
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "normalized_rewards/chosen",
    "normalized_rewards/rejected",
    "m_theta",
)
# the web UI's default plot for the carrier stages with the plugin's tracking
CARRIER_UI_PLOT = {
    "sft": ("m_theta",),
    "dpo": ("normalized_rewards/chosen", "normalized_rewards/rejected", "rewards/margins"),
}

_REGISTRY: dict[str, Objective] = {}
_EXTERNAL_LOADED = False


def _validate_entry(obj: Objective) -> None:
    if obj.kind not in ("stage", "pref_loss"):
        raise ValueError(f"objective {obj.name}: kind must be 'stage' or 'pref_loss', got {obj.kind!r}")
    if ":" not in obj.fn:
        raise ValueError(f"objective {obj.name}: fn must be 'module:function', got {obj.fn!r}")
    if obj.kind == "stage" and obj.name in STOCK_STAGES:
        raise ValueError(f"objective {obj.name}: a stock LF stage name")
    if obj.kind == "pref_loss" and obj.name in STOCK_PREF_LOSSES and not obj.fixes_stock:
        raise ValueError(f"objective {obj.name}: a stock LF pref_loss name (set fixes_stock=True to compute it)")
    taken = {p.name for o in _REGISTRY.values() if o.name != obj.name for p in o.params}
    taken |= {p.name for p in SHARED_PARAMS}
    for p in obj.params:
        if p.name in taken:
            raise ValueError(f"objective {obj.name}: parameter {p.name} is already declared")
        if p.kind not in ("float", "choice", "bool", "list", "text"):
            raise ValueError(f"parameter {p.name}: unknown kind {p.kind!r}")


def register(obj: Objective) -> Objective:
    """Add (or replace, by name) an objective. Call it at import of a module named in ``$LLAMAFACTORY_MINOR_OBJECTIVES``
    or in the entry-point group ``llamafactory_minor.objectives``; the registry must be complete before LF's
    argument parser is patched (the plugin reads it then)."""
    _validate_entry(obj)
    _REGISTRY[obj.name] = obj
    return obj


for _obj in BUILTIN:
    register(_obj)


def load_external() -> None:
    """Import the modules that register objectives from outside the package (once)."""
    global _EXTERNAL_LOADED
    if _EXTERNAL_LOADED:
        return
    _EXTERNAL_LOADED = True
    names = [n.strip() for n in os.environ.get(OBJECTIVES_ENV, "").split(",") if n.strip()]
    for name in names:
        importlib.import_module(name)
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()
    except Exception as e:  # a broken third-party entry point must not stop LF
        import sys

        print(f"[llamafactory-minor] warning: objective entry points not loaded: {e}", file=sys.stderr)


def objectives(kind: str | None = None) -> list[Objective]:
    load_external()
    return [o for o in _REGISTRY.values() if kind is None or o.kind == kind]


def get(name: str, kind: str | None = None) -> Objective | None:
    load_external()
    obj = _REGISTRY.get(name)
    return obj if obj is not None and (kind is None or obj.kind == kind) else None


def new_stages() -> tuple:
    return tuple(o.name for o in objectives("stage"))


def new_pref_losses() -> tuple:
    """The pair losses only the plugin provides (not the stock names it fixes)."""
    return tuple(o.name for o in objectives("pref_loss") if not o.fixes_stock)


def fixed_pref_losses() -> tuple:
    return tuple(o.name for o in objectives("pref_loss") if o.fixes_stock)


def all_stages() -> tuple:
    return STOCK_STAGES + new_stages()


def all_pref_losses() -> tuple:
    return STOCK_PREF_LOSSES + new_pref_losses()


def single_answer_stages() -> tuple:
    return tuple(o.name for o in objectives("stage") if not o.pairwise)


def aligned_score_stages() -> tuple:
    """Stages whose training attaches scores of other (aligned) models, named by ``aligned_model_keys``."""
    return tuple(o.name for o in objectives("stage") if o.aligned_model_keys)


def ref_pref_losses() -> tuple:
    """Pair losses with a reference model: LF's stock ones and the plugin's that need one."""
    return tuple(
        dict.fromkeys(STOCK_REF_PREF_LOSSES + tuple(o.name for o in objectives("pref_loss") if o.needs_reference))
    )


def params() -> list[Param]:
    """Every plugin key: the objectives' parameters (registry order), then the shared ones."""
    return [p for o in objectives() for p in o.params] + list(SHARED_PARAMS)


def plugin_keys() -> tuple:
    return tuple(p.name for p in params())


def param_owner(name: str) -> Objective | None:
    for o in objectives():
        if any(p.name == name for p in o.params):
            return o
    return None


def of_config(stage: str, pref_loss: str) -> Objective | None:
    """The registered objective a (stage, pref_loss) pair trains, or None (LF's own)."""
    obj = get(stage, "stage")
    if obj is not None:
        return obj
    if stage == "dpo":
        return get(pref_loss, "pref_loss")
    return None


def readme_default(param: Param) -> str:
    """The README option table's default cell of ``param`` (``tests/unit/test_registry.py`` compares them)."""
    if param.doc_default is not None:
        return param.doc_default
    if param.default is None:
        return "-"
    if isinstance(param.default, bool):
        return str(param.default).lower()
    if isinstance(param.default, str):
        return f"`{param.default}`"
    return repr(param.default)


def missing_texts(obj: Objective) -> list[str]:
    """What an entry lacks of its en/zh texts (a test fails on any)."""
    missing = [f"{obj.name}.label.{lang}" for lang in LANGS if not (obj.label or {}).get(lang)]
    for p in obj.params:
        for what in ("label", "info"):
            missing += [f"{p.name}.{what}.{lang}" for lang in LANGS if not (getattr(p, what) or {}).get(lang)]
        if not p.arg_help:
            missing.append(f"{p.name}.arg_help")
    return missing


def locale_rows() -> dict:
    """LF ``LOCALES`` rows for every parameter shown in LlamaBoard: ``{name: {lang: {label, info[, placeholder]}}}``."""
    rows = {}
    for p in params():
        if not p.ui:
            continue
        rows[p.name] = {}
        for lang in LANGS:
            entry = {"label": p.label[lang], "info": p.info[lang]}
            if p.placeholder:
                entry["placeholder"] = p.placeholder[lang]
            rows[p.name][lang] = entry
    return rows

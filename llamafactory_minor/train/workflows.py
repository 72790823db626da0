"""The plugin's workflows, chosen where LF calls ``run_sft`` / ``run_dpo`` (``integration.dispatch``).

``run_plugin`` picks one by the registry: a single-answer stage -> :func:`run_stage` (the plugin's SFT-shaped
workflow with the stage's trainer); ``stage: dpo`` -> LF's ``run_dpo`` with the DPO-family trainer
(``train.dpo``); ``stage: sft`` with ``track_m_theta`` -> LF's ``run_sft`` with the tracking trainer
(``train.sft``). Each runs under ``witness.expect_plugin_loss``.
"""

from __future__ import annotations

from typing import Any

from .. import registry
from . import witness
from .common import ScoreAttacher, run_single_answer, score_attacher, trainer_class


def _chain(*attachers: ScoreAttacher | None) -> ScoreAttacher | None:
    attachers = [a for a in attachers if a is not None]
    if not attachers:
        return None

    def attach(dataset_module, template, tokenizer_module):
        for a in attachers:
            dataset_module = a(dataset_module, template, tokenizer_module)
        return dataset_module

    return attach


def run_stage(
    objective: registry.Objective,
    model_args: Any,
    data_args: Any,
    training_args: Any,
    finetuning_args: Any,
    callbacks: list | None = None,
) -> None:
    """A registry single-answer stage: its scores attached (``objective.scores``; precomputed reference scores)."""
    own = (
        registry.resolve(objective.scores)(model_args, data_args, training_args, finetuning_args)
        if objective.scores
        else None
    )
    attach = _chain(own, score_attacher(model_args, data_args, training_args, finetuning_args))
    run_single_answer(
        trainer_class(objective),
        model_args,
        data_args,
        training_args,
        finetuning_args,
        callbacks,
        attach_scores=attach,
    )


def describe(finetuning_args: Any) -> str:
    obj = finetuning_args.objective
    if obj is not None:
        return obj.yaml
    keys = [k for k in ("track_m_theta", "precompute_ref_log_probs") if getattr(finetuning_args, k, False)]
    return f"`stage: {finetuning_args.stage}` with " + " / ".join(f"`{k}`" for k in keys)


def run_plugin(
    model_args: Any,
    data_args: Any,
    training_args: Any,
    finetuning_args: Any,
    generating_args: Any = None,
    callbacks: list | None = None,
) -> None:
    """The plugin workflow of a configuration the plugin trains (``finetuning_args.plugin_trains``)."""
    obj = finetuning_args.objective
    with witness.expect_plugin_loss(describe(finetuning_args), callbacks, training_args):
        if obj is not None and obj.kind == "stage":
            run_stage(obj, model_args, data_args, training_args, finetuning_args, callbacks)
        elif finetuning_args.stage == "dpo":
            from .dpo.workflow import run_dpo

            run_dpo(model_args, data_args, training_args, finetuning_args, callbacks)
        elif finetuning_args.stage == "sft":
            from .sft.workflow import run_sft

            run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)
        else:  # pragma: no cover  (plugin_trains covers only these)
            from ..errors import PluginError

            raise PluginError(f"no plugin workflow for `stage: {finetuning_args.stage}`")

"""``stage: dpo`` with a registry pair loss (minordpo / dpop / hinge / ipo), or with ``track_m_theta`` /
``precompute_ref_log_probs``: LF's DPO workflow, the plugin's trainer.

Runs LF's own ``run_dpo`` (dataset, collator, reference, training, eval, plots) with its trainer class swapped
for ``MinorDPOFamilyTrainer`` for the duration of the call (``lf.trainer_swapped``); with
``precompute_ref_log_probs: true`` the reference is scored once (cached) and not loaded for training.
LF symbols: ``lf.PATCH_POINTS["llamafactory.train.dpo.workflow"]``, ``lf.TRAINER_SLOTS["dpo"]``.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from ... import lf, registry
from ...scores.keys import plugin_dataset
from ..common import load_reference
from .trainer import MinorDPOFamilyTrainer

PLOT_KEYS = list(registry.DPO_PLOT_KEYS)


def run_dpo(
    model_args: Any, data_args: Any, training_args: Any, finetuning_args: Any, callbacks: list | None = None
) -> None:
    lf_dpo = lf.workflow("dpo")
    original_plot = lf_dpo.plot_loss

    def plot_loss(save_dictionary, keys=("loss",)):
        return original_plot(save_dictionary, keys=list(dict.fromkeys(list(keys) + PLOT_KEYS)))

    def create_ref_model(model_args_, finetuning_args_, *args, **kwargs):
        if finetuning_args_.precompute_ref_log_probs:
            return None
        return load_reference(model_args_, finetuning_args_)

    with ExitStack() as stack:
        stack.enter_context(
            plugin_dataset(f"pref_loss: {finetuning_args.pref_loss}", keyed=finetuning_args.precompute_ref_log_probs)
        )
        stack.enter_context(lf.trainer_swapped("dpo", MinorDPOFamilyTrainer))
        stack.enter_context(lf.swapped(lf_dpo, "create_ref_model", create_ref_model))
        stack.enter_context(lf.swapped(lf_dpo, "plot_loss", plot_loss))
        if finetuning_args.precompute_ref_log_probs:
            from ...scores.reference import patch_workflow_with_reference

            stack.enter_context(
                patch_workflow_with_reference(
                    lf_dpo, "PairwiseDataCollatorWithPadding", model_args, data_args, training_args, finetuning_args
                )
            )
        lf_dpo.run_dpo(model_args, data_args, training_args, finetuning_args, callbacks)

"""``stage: sft`` with ``track_m_theta: true``: LF's own SFT workflow and loss, plus m_theta logging.

Runs LF's ``run_sft`` with its trainer class (``lf.TRAINER_SLOTS["sft"]``) swapped for
``DeviationTrackingTrainer`` during the call, and adds ``m_theta`` to the plotted keys.
"""

from __future__ import annotations

from contextlib import ExitStack
from functools import partial
from typing import Any

from ... import lf
from ...scores.keys import plugin_dataset
from ..common import load_reference
from .trainer import DeviationTrackingTrainer


def run_sft(
    model_args: Any,
    data_args: Any,
    training_args: Any,
    finetuning_args: Any,
    generating_args: Any,
    callbacks: list | None = None,
) -> None:
    lf_sft = lf.workflow("sft")

    ref_model = None
    if not finetuning_args.precompute_ref_log_probs:
        ref_model = load_reference(model_args, finetuning_args)
    original_plot = lf_sft.plot_loss

    def plot_loss(save_dictionary, keys=("loss",)):
        return original_plot(save_dictionary, keys=list(keys) + ["m_theta"])

    trainer_cls = partial(DeviationTrackingTrainer, m_theta_ref_model=ref_model)
    with ExitStack() as stack:
        stack.enter_context(plugin_dataset("stage: sft", keyed=finetuning_args.precompute_ref_log_probs))
        stack.enter_context(lf.trainer_swapped("sft", trainer_cls))
        stack.enter_context(lf.swapped(lf_sft, "plot_loss", plot_loss))
        if finetuning_args.precompute_ref_log_probs:
            from ...scores.reference import patch_workflow_with_reference

            stack.enter_context(
                patch_workflow_with_reference(
                    lf_sft, "SFTDataCollatorWith4DAttentionMask", model_args, data_args, training_args, finetuning_args
                )
            )
        lf_sft.run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)

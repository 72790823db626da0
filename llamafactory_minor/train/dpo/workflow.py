"""``stage: dpo`` with ``pref_loss`` minordpo / dpop / hinge / ipo: LF's DPO workflow, the plugin's trainer.

Runs LF's own ``run_dpo`` (dataset, collator, reference, training, eval, plots) with its trainer class
swapped for ``MinorDPOFamilyTrainer`` for the duration of the call; with
``precompute_ref_log_probs: true`` the reference is scored once (cached) and not loaded for training.
LF symbols: ``llamafactory.train.dpo.workflow.{run_dpo, create_ref_model, get_dataset, plot_loss}`` and
``llamafactory.train.dpo.trainer.CustomDPOTrainer``.
"""

from contextlib import ExitStack
from unittest import mock

from ...integration.data import plugin_dataset
from ..common import load_reference
from .trainer import MinorDPOFamilyTrainer

PLOT_KEYS = ["loss", "rewards/accuracies", "rewards/margins", "normalized_rewards/chosen",
             "normalized_rewards/rejected", "m_theta"]


def run_dpo(model_args, data_args, training_args, finetuning_args, callbacks=None):
    import llamafactory.train.dpo.trainer as lf_dpo_trainer
    import llamafactory.train.dpo.workflow as lf_dpo

    original_plot = lf_dpo.plot_loss

    def plot_loss(save_dictionary, keys=("loss",)):
        return original_plot(save_dictionary, keys=list(dict.fromkeys(list(keys) + PLOT_KEYS)))

    def create_ref_model(model_args_, finetuning_args_, *args, **kwargs):
        if finetuning_args_.precompute_ref_log_probs:
            return None
        return load_reference(model_args_, finetuning_args_)

    with ExitStack() as stack:
        stack.enter_context(plugin_dataset(f"pref_loss: {finetuning_args.pref_loss}",
                                           keyed=finetuning_args.precompute_ref_log_probs))
        stack.enter_context(mock.patch.object(lf_dpo_trainer, "CustomDPOTrainer", MinorDPOFamilyTrainer))
        stack.enter_context(mock.patch.object(lf_dpo, "create_ref_model", create_ref_model))
        stack.enter_context(mock.patch.object(lf_dpo, "plot_loss", plot_loss))
        if finetuning_args.precompute_ref_log_probs:
            from ...scores.reference import patch_workflow_with_reference

            stack.enter_context(patch_workflow_with_reference(lf_dpo, "PairwiseDataCollatorWithPadding", model_args,
                                                              data_args, training_args, finetuning_args))
        lf_dpo.run_dpo(model_args, data_args, training_args, finetuning_args, callbacks)

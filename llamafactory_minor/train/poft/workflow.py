from ..common import run_single_answer
from .trainer import PoFTTrainer


def run_poft(model_args, data_args, training_args, finetuning_args, callbacks=None):
    from ...scores.aligned import aligned_score_attacher

    run_single_answer(PoFTTrainer, model_args, data_args, training_args, finetuning_args, callbacks,
                      attach_scores=aligned_score_attacher(model_args, data_args, training_args, finetuning_args))

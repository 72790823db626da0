from ..common import run_single_answer, score_attacher
from .trainer import SFTDPOTrainer


def run_sftdpo(model_args, data_args, training_args, finetuning_args, callbacks=None):
    run_single_answer(SFTDPOTrainer, model_args, data_args, training_args, finetuning_args, callbacks,
                      attach_scores=score_attacher(model_args, data_args, training_args, finetuning_args))

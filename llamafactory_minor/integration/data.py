"""Dataset glue: clearer errors, and the key columns per tokenized row (``scores.keys``) for score joins.

LF symbols: ``llamafactory.data.loader._get_merged_dataset`` (wrapped: LF's "The dataset is not
applicable in the current training stage." -- ``lf.error_text("not_applicable")`` -- becomes an error
naming the stage and the dataset kind) and ``llamafactory.data.loader._get_dataset_processor`` (wrapped:
rows carry the key columns while ``scores.keys.plugin_dataset(..., keyed=True)`` is active).
"""

import functools

from ..scores.keys import (  # noqa: F401  (re-exported: the keys live with the scores that use them)
    IGNORE_INDEX,
    KEY_COLUMNS,
    _KeyedProcessor,
    answer_token_counts,
    current_stage_for_errors,
    keyed,
    plugin_dataset,
    sample_key,
    sequences_of,
    token_key,
)
from . import PluginError


def patch_loader(loader_module) -> None:
    original_merged = loader_module._get_merged_dataset
    original_processor = loader_module._get_dataset_processor

    from .. import lf

    not_applicable = lf.error_text("not_applicable").rstrip(".").split("The dataset is ", 1)[-1]

    @functools.wraps(original_merged)
    def _get_merged_dataset(dataset_names, model_args, data_args, training_args, stage, *args, **kwargs):
        try:
            return original_merged(dataset_names, model_args, data_args, training_args, stage, *args, **kwargs)
        except ValueError as e:
            if not_applicable not in str(e):
                raise
            shown = current_stage_for_errors() or stage
            if stage == "rm":
                raise PluginError(
                    f"`{shown}` trains on preference pairs, but `dataset: {','.join(dataset_names)}` is not "
                    'pairwise: choose a dataset whose dataset_info.json entry has `"ranking": true` '
                    "(chosen/rejected columns)."
                ) from None
            raise PluginError(
                f"`{shown}` trains on single answers, but `dataset: {','.join(dataset_names)}` is a pairwise "
                "(ranking) dataset: choose an SFT dataset (instruction/output), or use `stage: dpo` for pairs."
            ) from None

    @functools.wraps(original_processor)
    def _get_dataset_processor(*args, **kwargs):
        processor = original_processor(*args, **kwargs)
        return _KeyedProcessor(processor) if keyed() else processor

    loader_module._get_merged_dataset = _get_merged_dataset
    loader_module._get_dataset_processor = _get_dataset_processor

"""``precompute_ref_log_probs: true``: score the reference once (cached), train without a reference model.

The rows scored are exactly LF's tokenized training rows (same template, cutoff, masking), so the numbers
equal the online reference's. LF symbols: ``get_dataset`` and the collator class of ``llamafactory.train.dpo.workflow``
(``PairwiseDataCollatorWithPadding``) and ``llamafactory.train.sft.workflow`` (``SFTDataCollatorWith4DAttentionMask``),
wrapped during the plugin's runs of LF's workflows.
"""

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from .. import lf
from .cache import adapters_digest, weights_digest
from .collator import ScoredCollator
from .passes import datasets_of, join, load_scoring_model, replace_dataset, run_pass


def _reference_meta(model_args, data_args, finetuning_args) -> dict:
    name = finetuning_args.ref_model or model_args.model_name_or_path
    adapter = finetuning_args.ref_model_adapters if finetuning_args.ref_model else model_args.adapter_name_or_path
    qbit = finetuning_args.ref_model_quantization_bit if finetuning_args.ref_model else model_args.quantization_bit
    return {
        "kind": "reference",
        "model": name,
        "weights": weights_digest(name, model_args.model_revision),
        "adapter": adapter,
        "adapter_weights": adapters_digest(adapter),
        "quantization_bit": qbit,
        "template": data_args.template,
        "cutoff_len": data_args.cutoff_len,
        "train_on_prompt": data_args.train_on_prompt,
        "mask_history": data_args.mask_history,
        "dtype": str(model_args.compute_dtype),
    }


def _attach(dataset_module, model_args, data_args, training_args, finetuning_args):
    def load():
        if finetuning_args.ref_model:
            return load_scoring_model(
                model_args,
                finetuning_args.ref_model,
                finetuning_args.ref_model_adapters,
                finetuning_args.ref_model_quantization_bit,
            )
        return load_scoring_model(
            model_args, model_args.model_name_or_path, model_args.adapter_name_or_path, model_args.quantization_bit
        )

    meta = _reference_meta(model_args, data_args, finetuning_args)
    for name, rows in datasets_of(dataset_module):
        scores = run_pass(rows, meta, load, training_args, finetuning_args, desc=f"Reference scores ({name})")
        joined = join(rows, scores, "reference score")
        if "chosen_input_ids" in rows.column_names:
            values = [[s["sum_logp"], s["rejected_sum_logp"]] for s in joined]
        else:
            values = [s["sum_logp"] for s in joined]
        replace_dataset(dataset_module, name, rows.add_column("ref_logps", values))
    return dataset_module


def reference_score_attacher(
    model_args: Any, data_args: Any, training_args: Any, finetuning_args: Any
) -> Callable[[dict, Any, dict], dict]:
    def attach(dataset_module, template, tokenizer_module):
        return _attach(dataset_module, model_args, data_args, training_args, finetuning_args)

    return attach


@contextlib.contextmanager
def patch_workflow_with_reference(
    lf_workflow: Any, collator_name: str, model_args: Any, data_args: Any, training_args: Any, finetuning_args: Any
) -> Iterator[None]:
    """Inside LF's ``run_dpo`` / ``run_sft``: join the reference scores to its dataset (``get_dataset``) and let
    its collator (``collator_name``) carry them to the trainer."""
    original_get_dataset = lf_workflow.get_dataset
    original_collator = getattr(lf_workflow, collator_name)
    pairwise = collator_name == "PairwiseDataCollatorWithPadding"

    def get_dataset(*args, **kwargs):
        return _attach(original_get_dataset(*args, **kwargs), model_args, data_args, training_args, finetuning_args)

    def collator(*args, **kwargs):
        return ScoredCollator(original_collator(*args, **kwargs), pairwise=pairwise)

    with lf.swapped(lf_workflow, "get_dataset", get_dataset), lf.swapped(lf_workflow, collator_name, collator):
        yield

"""Dataset glue: clearer errors, and a content key per tokenized row for joining scores.

LF symbols: ``llamafactory.data.loader._get_merged_dataset`` (wrapped: LF's "The dataset is not
applicable in the current training stage." becomes an error naming the stage and the dataset kind) and
``llamafactory.data.loader._get_dataset_processor`` (wrapped while ``keyed_rows()`` is active: each kept
row also gets ``sample_key``, a hash of its converted content, so scores join by content, not position).
"""

import contextlib
import hashlib
import json
import threading

from . import PluginError

_state = threading.local()


def current_stage_for_errors():
    return getattr(_state, "stage", None)


@contextlib.contextmanager
def plugin_dataset(stage: str, keyed: bool = False):
    """While active, dataset errors name the plugin ``stage`` and rows carry ``sample_key`` if ``keyed``."""
    prev = (getattr(_state, "stage", None), getattr(_state, "keyed", False))
    _state.stage, _state.keyed = stage, keyed
    try:
        yield
    finally:
        _state.stage, _state.keyed = prev


def sample_key(prompt, response, system, tools) -> str:
    """Content key of one converted LF example (messages, system, tools): 16 hex chars of sha256."""
    payload = json.dumps([prompt, response, system or "", tools or ""], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class _KeyedProcessor:
    """Wraps an LF dataset processor: same rows, plus ``sample_key`` for each row LF keeps."""

    def __init__(self, processor):
        self._processor = processor

    def __getattr__(self, item):
        return getattr(self._processor, item)

    def preprocess_dataset(self, examples):
        out = None
        columns = list(examples.keys())
        for i in range(len(examples["_prompt"])):
            single = {k: [examples[k][i]] for k in columns}
            rows = self._processor.preprocess_dataset(single)
            if out is None:
                out = {k: [] for k in rows}
                out["sample_key"] = []
            n = len(next(iter(rows.values()))) if rows else 0
            for k in rows:
                out.setdefault(k, []).extend(rows[k])
            key = sample_key(examples["_prompt"][i], examples["_response"][i], examples["_system"][i], examples["_tools"][i])
            out["sample_key"].extend([key] * n)
        return out or {"sample_key": []}


def patch_loader(loader_module) -> None:
    original_merged = loader_module._get_merged_dataset
    original_processor = loader_module._get_dataset_processor

    def _get_merged_dataset(dataset_names, model_args, data_args, training_args, stage, *args, **kwargs):
        try:
            return original_merged(dataset_names, model_args, data_args, training_args, stage, *args, **kwargs)
        except ValueError as e:
            if "not applicable in the current training stage" not in str(e):
                raise
            shown = current_stage_for_errors() or stage
            if stage == "rm":
                raise PluginError(
                    f"`{shown}` trains on preference pairs, but `dataset: {','.join(dataset_names)}` is not "
                    "pairwise: choose a dataset whose dataset_info.json entry has `\"ranking\": true` "
                    "(chosen/rejected columns)."
                ) from None
            raise PluginError(
                f"`{shown}` trains on single answers, but `dataset: {','.join(dataset_names)}` is a pairwise "
                "(ranking) dataset: choose an SFT dataset (instruction/output), or use `stage: dpo` for pairs."
            ) from None

    def _get_dataset_processor(*args, **kwargs):
        processor = original_processor(*args, **kwargs)
        return _KeyedProcessor(processor) if getattr(_state, "keyed", False) else processor

    loader_module._get_merged_dataset = _get_merged_dataset
    loader_module._get_dataset_processor = _get_dataset_processor

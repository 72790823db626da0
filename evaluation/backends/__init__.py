"""Inference backends: transformers (default) and vLLM. Both get the same token ids (built by
:class:`~.base.PromptEncoder` with the model's own tokenizer and chat template) and return text or
log-probs; parsing is shared (``parsing.py``)."""

from .base import Backend, PromptEncoder

BACKENDS = ("transformers", "vllm")

__all__ = ["Backend", "PromptEncoder", "BACKENDS"]

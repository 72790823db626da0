"""Per-token and per-sequence label log-probs: the one implementation is ``llamafactory_minor_core.logprobs``
(shared with the evaluation suite); the objectives use it from here."""

from llamafactory_minor_core.logprobs import sequence_log_probs, token_log_probs

__all__ = ["sequence_log_probs", "token_log_probs"]

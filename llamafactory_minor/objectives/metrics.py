"""Beta-free normalised rewards and the MinorSFT deviation metric m_theta (arXiv:2408.10642, Eq. 8): the one
implementation is ``llamafactory_minor_core.metrics`` (the evaluation suite's m_theta uses it too)."""

from llamafactory_minor_core.metrics import deviation_metric, normalized_rewards

__all__ = ["deviation_metric", "normalized_rewards"]

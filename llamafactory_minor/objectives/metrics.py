"""Beta-free, length-normalised rewards and the MinorSFT deviation metric.

Xie et al. 2024, "Minor SFT loss for LLM fine-tune to increase performance and reduce model
deviation", arXiv:2408.10642, Eq. 8::

    m_theta(x, y) = (1/N) * sum (1/m) * log(pi_theta(y|x) / pi_ref(y|x))

(N = batch size, m = answer length). The per-sample term (1/m) log(pi_theta / pi_ref) is the
"normalized_rewards" of Xie et al. 2024, "Minor DPO reject penalty to increase training robustness",
arXiv:2408.09834 (footnote 2): the DPO reward divided by beta and by the answer length, so values are
comparable across beta and answer lengths. Both functions return detached tensors (metrics only).
"""

from __future__ import annotations

import torch

from ._common import safe_length

__all__ = ["deviation_metric", "normalized_rewards"]


def normalized_rewards(
    policy_logps: torch.Tensor, ref_logps: torch.Tensor, num_tokens: torch.Tensor
) -> torch.Tensor:
    """Per-sample ``(policy_logps - ref_logps) / m`` (detached); 0 where ``m == 0``."""
    policy_logps = policy_logps.detach()
    valid, m = safe_length(num_tokens, policy_logps)
    r = (policy_logps - ref_logps.detach().to(policy_logps.dtype)) / m
    return torch.where(valid, r, torch.zeros_like(r))


def deviation_metric(
    policy_logps: torch.Tensor, ref_logps: torch.Tensor, num_tokens: torch.Tensor
) -> torch.Tensor:
    """MinorSFT Eq. 8: batch mean of ``(1/m) * log(pi_theta / pi_ref)`` (detached scalar).

    Rows with ``m == 0`` (no answer token, e.g. fully truncated) have no defined value and are left
    out of the mean (N counts the rows with ``m > 0``); a batch without any such row gives 0.
    """
    r = normalized_rewards(policy_logps, ref_logps, num_tokens)
    valid, _ = safe_length(num_tokens, r)
    n = valid.sum()
    return torch.where(
        n > 0,
        r.sum() / n.clamp(min=1).to(r.dtype),
        torch.zeros((), dtype=r.dtype, device=r.device),
    )

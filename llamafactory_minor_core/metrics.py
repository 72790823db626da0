"""Beta-free, length-normalised rewards and the MinorSFT deviation metric.

Xie et al. 2024, "Minor SFT loss for LLM fine-tune to increase performance and reduce model
deviation", arXiv:2408.10642, Eq. 8::

    m_theta(x, y) = (1/N) * sum (1/m) * log(pi_theta(y|x) / pi_ref(y|x))

(N = batch size, m = answer length). The per-sample term (1/m) log(pi_theta / pi_ref) is the
"normalized_rewards" of Xie et al. 2024, "Minor DPO reject penalty to increase training robustness",
arXiv:2408.09834 (footnote 2): the DPO reward divided by beta and by the answer length, so values are
comparable across beta and answer lengths. Both functions return detached tensors (metrics only);
:func:`m_theta` is the same value over a whole dataset given as plain lists (the evaluation suite).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["deviation_metric", "m_theta", "normalized_rewards", "safe_length"]


def safe_length(num_tokens, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(valid, m_safe)``: ``valid = m > 0`` and ``m`` (as ``ref``'s dtype and device) with zeros replaced
    by 1 (no 0-division)."""
    m = torch.as_tensor(num_tokens, device=ref.device).to(ref.dtype)
    valid = m > 0
    return valid, torch.where(valid, m, torch.ones_like(m))


def normalized_rewards(policy_logps: torch.Tensor, ref_logps: torch.Tensor, num_tokens: torch.Tensor) -> torch.Tensor:
    """Per-sample ``(policy_logps - ref_logps) / m`` (detached); 0 where ``m == 0``."""
    policy_logps = policy_logps.detach()
    valid, m = safe_length(num_tokens, policy_logps)
    r = (policy_logps - ref_logps.detach().to(policy_logps.dtype)) / m
    return torch.where(valid, r, torch.zeros_like(r))


def deviation_metric(policy_logps: torch.Tensor, ref_logps: torch.Tensor, num_tokens: torch.Tensor) -> torch.Tensor:
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


def m_theta(policy: Sequence[float], reference: Sequence[float], lengths: Sequence[int]) -> float:
    """Eq. 8 over a dataset: the mean over samples of ``(log pi_theta(y|x) - log pi_ref(y|x)) / m``, computed by
    :func:`deviation_metric` in float64 (samples with ``m == 0`` left out, as in training)."""
    if not (len(policy) == len(reference) == len(lengths)) or not lengths:
        raise ValueError("policy, reference and lengths must be non-empty and of the same length")
    as64 = lambda xs: torch.tensor([float(x) for x in xs], dtype=torch.float64)  # noqa: E731
    return float(deviation_metric(as64(policy), as64(reference), as64(lengths)))

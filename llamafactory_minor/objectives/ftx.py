"""``pref_ftx``: LF's supervised term, added to the plugin's single-answer objectives.

LF's DPO trainer (``CustomDPOTrainer.get_batch_loss_metrics``) adds, with ``pref_ftx = gamma > 0``, per sample::

    loss_i += gamma * sft_i,    sft_i = -log pi_theta(y_i|x_i) / m_i

(the answer's mean token negative log-likelihood, ``m_i`` its answer tokens). The plugin adds the same
term to ``stage: minorsft``, ``sftdpo`` and ``poft``; its gradient is ``-(gamma/m_i) * grad log pi_theta(y_i|x_i)``,
so for MinorSFT the per-sample coefficient of ``grad log pi`` becomes ``(2*sigmoid(-beta*logratio) + gamma) / m``
(plain SFT's ``1/m`` scaled by ``gamma`` when the MinorSFT coefficient has vanished).
"""

from __future__ import annotations

import torch

__all__ = ["sft_term", "with_sft_term"]


def sft_term(policy_logps: torch.Tensor, num_tokens: torch.Tensor) -> torch.Tensor:
    """``[B]`` LF's SFT term ``-policy_logps / m`` (summed answer log-probs over answer lengths, ``m >= 1``)."""
    return -policy_logps / num_tokens.to(policy_logps.dtype).clamp(min=1)


def with_sft_term(losses: torch.Tensor, policy_logps: torch.Tensor, num_tokens: torch.Tensor, gamma: float):
    """``losses + gamma * sft_term`` when ``gamma > 1e-6`` (LF's threshold), else ``losses`` unchanged.

    Returns ``(losses, sft)`` with ``sft`` the detached ``[B]`` term, or ``None`` when not added.
    """
    if gamma is None or gamma <= 1e-6:
        return losses, None
    sft = sft_term(policy_logps, num_tokens)
    return losses + gamma * sft, sft.detach()

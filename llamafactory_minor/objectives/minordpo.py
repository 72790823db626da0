"""MinorDPO: DPO with a reduced ("minor") penalty on the rejected answer.

Xie et al. 2024, "Minor DPO reject penalty to increase training robustness", arXiv:2408.09834, Eq. 6::

    L_MinorDPO(pi_theta; pi_ref) = -E_(x,y_w,y_l)~D log sigma( beta log(pi_theta(y_w|x)/pi_ref(y_w|x))
                                                               - beta max(0, log(pi_theta(y_l|x)/pi_ref(y_l|x))) )

The rejected answer is only pushed down while the policy still prefers it more than the reference
does (log-ratio_l > 0); once log-ratio_l <= 0 its gradient is exactly zero (``relu``, whose
derivative at 0 is 0) and the loss reduces to "SFT using DPO" on y_w (MinorSFT paper Eq. 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_beta

__all__ = ["minordpo_loss"]


def minordpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair MinorDPO loss ``-logsigmoid(beta*lr_w - beta*relu(lr_l))`` and detached rewards.

    Returns:
        ``(losses [B], chosen_rewards [B], rejected_rewards [B])`` with the rewards the usual
        ``beta * logratio`` (un-clipped, detached), so they are comparable to DPO's.
    """
    beta = check_beta(beta)
    dtype = policy_chosen_logps.dtype
    chosen_logratios = policy_chosen_logps - ref_chosen_logps.to(dtype)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps.to(dtype)
    losses = -F.logsigmoid(beta * chosen_logratios - beta * torch.relu(rejected_logratios))
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def objective(x):
    """Registry entry ``minordpo`` (:class:`~.interface.PairInputs` -> losses, chosen / rejected rewards)."""
    return minordpo_loss(
        x.policy_chosen_logps, x.policy_rejected_logps, x.ref_chosen_logps, x.ref_rejected_logps, x.beta
    )

"""DPO-Positive (DPOP).

Pal et al. 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with DPO-Positive",
arXiv:2402.13228, as quoted in Xie et al. 2024 (MinorDPO, arXiv:2408.09834) Eq. 5::

    L_DPOP(pi_theta; pi_ref) = -E_(x,y_w,y_l)~D [ log sigma( beta log(pi_theta(y_w|x)/pi_ref(y_w|x))
                                                             - beta log(pi_theta(y_l|x)/pi_ref(y_l|x))
                                                             - beta lambda max(0, log(pi_ref(y_w|x)/pi_theta(y_w|x))) ) ]

The extra term penalises the policy only while it assigns the chosen answer *less* probability than
the reference (log-ratio_w < 0); lambda = 50 is the Smaug paper's (and the MinorDPO paper's) value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_beta

__all__ = ["dpop_loss"]


def dpop_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    lam: float = 50.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPOP loss ``-logsigmoid(beta*(lr_w - lr_l) - beta*lam*relu(-lr_w))`` and detached rewards.

    Returns:
        ``(losses [B], chosen_rewards [B], rejected_rewards [B])``, rewards = ``beta * logratio``.
    """
    beta = check_beta(beta)
    lam = float(lam)
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    dtype = policy_chosen_logps.dtype
    chosen_logratios = policy_chosen_logps - ref_chosen_logps.to(dtype)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps.to(dtype)
    logits = beta * (chosen_logratios - rejected_logratios) - beta * lam * torch.relu(-chosen_logratios)
    losses = -F.logsigmoid(logits)
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def objective(x):
    """Registry entry ``dpop`` (:class:`~.interface.PairInputs` -> losses, chosen / rejected rewards)."""
    return dpop_loss(
        x.policy_chosen_logps,
        x.policy_rejected_logps,
        x.ref_chosen_logps,
        x.ref_rejected_logps,
        x.beta,
        lam=x.params["dpop_lambda"],
    )

"""DPO with an explicit loss type: sigmoid (with cDPO label smoothing), hinge and IPO.

Why this exists: LLaMA-Factory 0.9.5 calls TRL's ``DPOTrainer.dpo_loss`` without passing its
``pref_loss``, and TRL >= 0.20 takes the loss type as an argument that defaults to "sigmoid", so
``pref_loss: hinge`` / ``ipo`` silently train plain sigmoid DPO. These formulas reproduce TRL 0.24's
``DPOTrainer.dpo_loss`` for the three types exactly (same association of the subtractions).

With ``logits = (pi_c - pi_r) - (ref_c - ref_r)`` (differences of log-probs):

* ``sigmoid`` -- DPO, Rafailov et al. 2023, arXiv:2305.18290, Eq. 7::

      L_DPO = -E [ log sigma( beta log(pi_theta(y_w|x)/pi_ref(y_w|x)) - beta log(pi_theta(y_l|x)/pi_ref(y_l|x)) ) ]

  with conservative-DPO label smoothing eps (Mitchell 2023, "A note on DPO with noisy preferences",
  TRL's form)::

      loss = -(1 - eps) * logsigmoid(beta * logits) - eps * logsigmoid(-beta * logits)

  Its gradient is MinorDPO paper (arXiv:2408.09834) Eq. 3:
  ``-beta * sigma(-beta * logits) * [grad log pi(y_w|x) - grad log pi(y_l|x)]`` (eps = 0).
* ``hinge`` -- SLiC, Zhao et al. 2023, arXiv:2305.10425: ``relu(1 - beta * logits)``.
* ``ipo`` -- IPO, Azar et al. 2023, arXiv:2310.12036, Eq. 17: ``(logits - 1/(2*beta))**2``; as in
  TRL and LF the caller passes length-averaged log-probs (LF divides by ``valid_length`` for ipo).

``label_smoothing`` only affects ``sigmoid`` (TRL ignores it for hinge/ipo too).
Rewards are ``beta * (pi - ref)`` per answer, detached, as in TRL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_beta

__all__ = ["DPO_LOSS_TYPES", "dpo_loss"]

DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO-family loss and the (detached) implicit rewards.

    Returns:
        ``(losses [B], chosen_rewards [B], rejected_rewards [B])``.
    """
    beta = check_beta(beta)
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"Unknown DPO loss_type {loss_type!r}; expected one of {DPO_LOSS_TYPES}.")
    label_smoothing = float(label_smoothing)
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5], got {label_smoothing}")

    dtype = policy_chosen_logps.dtype
    ref_chosen_logps = ref_chosen_logps.to(dtype)
    ref_rejected_logps = ref_rejected_logps.to(dtype)

    logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = ref_chosen_logps - ref_rejected_logps
    logits = logratios - ref_logratios

    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:  # ipo
        losses = (logits - 1 / (2 * beta)) ** 2

    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def hinge_objective(x):
    """Registry entry ``hinge`` (LF's name, computed with an explicit loss type)."""
    return dpo_loss(
        x.policy_chosen_logps,
        x.policy_rejected_logps,
        x.ref_chosen_logps,
        x.ref_rejected_logps,
        x.beta,
        loss_type="hinge",
    )


def ipo_objective(x):
    """Registry entry ``ipo`` (on length-averaged log-probs: the registry entry sets ``averaged_log_probs``)."""
    return dpo_loss(
        x.policy_chosen_logps,
        x.policy_rejected_logps,
        x.ref_chosen_logps,
        x.ref_rejected_logps,
        x.beta,
        loss_type="ipo",
    )

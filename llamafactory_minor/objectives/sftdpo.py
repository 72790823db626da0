"""SFT using DPO: the DPO loss restricted to the preferred answer.

Xie et al. 2024, "Minor SFT loss for LLM fine-tune to increase performance and reduce model
deviation", arXiv:2408.10642, Eq. 3 ("SFT using DPO")::

    L_Preferred(pi_theta; pi_ref) = -E_(x,y)~D [ log sigma( beta * log(pi_theta(y|x) / pi_ref(y|x)) ) ]

with gradient (Eq. 4)::

    grad L_Preferred = -E [ beta * sigma(-beta * log(pi_theta(y|x) / pi_ref(y|x))) * grad log pi_theta(y|x) ]

It is MinorDPO's loss (Eq. 2 / MinorDPO Eq. 6) when the rejected term is inactive. The log-probs are
*sums* over the answer tokens (DPO convention), so no 1/m length factor appears.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_beta

__all__ = ["sftdpo_loss"]


def sftdpo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sample SFT-using-DPO loss ``-logsigmoid(beta * (policy_logps - ref_logps))``.

    Args:
        policy_logps: ``[B]`` summed log-probs of the answer under the trained policy.
        ref_logps: ``[B]`` summed log-probs under the frozen reference model (no gradient is taken).
        beta: the DPO temperature (> 0).

    Returns:
        ``[B]`` losses (reduce them yourself). d loss / d policy_logps = ``-beta * sigmoid(-beta * logratio)``.
    """
    beta = check_beta(beta)
    logratio = policy_logps - ref_logps.to(policy_logps.dtype)
    return -F.logsigmoid(beta * logratio)


def objective(x):
    """Registry entry ``sftdpo`` (:class:`~.interface.SingleAnswerInputs` -> losses, metrics)."""
    return sftdpo_loss(x.policy_logps, x.ref_logps, x.beta), {}

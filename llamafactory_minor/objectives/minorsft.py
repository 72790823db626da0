"""MinorSFT: SFT with DPO's sample-level dynamic coefficient.

Xie et al. 2024, "Minor SFT loss for LLM fine-tune to increase performance and reduce model
deviation", arXiv:2408.10642. The paper defines MinorSFT by its gradient, Eq. 7::

    grad L_MinorSFT(pi_theta; pi_ref) =
        -E_(x,y)~D [ (2/m) * sigma(-beta * log(pi_theta(y|x) / pi_ref(y|x))) * grad log pi_theta(y|x) ]

(m = number of answer tokens; the factor 2 makes the coefficient 1 at the start, when
pi_theta = pi_ref and sigma(0) = 0.5, i.e. MinorSFT starts as plain length-averaged SFT, Eq. 5).
A loss with exactly this gradient (the paper gives none) is::

    L_MinorSFT = -(2 / (beta * m)) * log sigma(beta * log(pi_theta(y|x) / pi_ref(y|x)))

since d/dx [-(2/(beta m)) log sigma(beta x)] = -(2/m) sigma(-beta x). Its value is therefore *not*
comparable to a cross-entropy value (at pi_theta = pi_ref it is (2/(beta m)) log 2); only its gradient
is the paper's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_beta, safe_length

__all__ = ["minorsft_coef", "minorsft_loss"]


def minorsft_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    num_tokens: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-sample MinorSFT loss ``-(2/(beta*m)) * logsigmoid(beta * (policy_logps - ref_logps))``.

    Args:
        policy_logps: ``[B]`` summed answer log-probs under the policy.
        ref_logps: ``[B]`` summed answer log-probs under the reference model (no gradient is taken).
        num_tokens: ``[B]`` answer lengths m (the ``valid_length`` of :func:`sequence_log_probs`).
        beta: temperature of the coefficient (> 0; the paper's best setting is 0.04).

    Returns:
        ``[B]`` losses; rows with ``m == 0`` give 0 and a zero gradient. Gradient w.r.t.
        ``policy_logps`` is ``-(2/m) * sigmoid(-beta * logratio)`` (Eq. 7).
    """
    beta = check_beta(beta)
    valid, m = safe_length(num_tokens, policy_logps)
    logratio = policy_logps - ref_logps.to(policy_logps.dtype)
    losses = -(2.0 / (beta * m)) * F.logsigmoid(beta * logratio)
    return torch.where(valid, losses, torch.zeros_like(losses))


def minorsft_coef(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """The MinorSFT sample coefficient ``2 * sigmoid(-beta * logratio)`` (detached, for logging).

    1 when the policy equals the reference, -> 0 as the policy's log-ratio grows (easy samples),
    -> 2 as it falls (hard samples).
    """
    beta = check_beta(beta)
    logratio = policy_logps.detach() - ref_logps.detach().to(policy_logps.dtype)
    return 2.0 * torch.sigmoid(-beta * logratio)


def objective(x):
    """Registry entry ``minorsft`` (:class:`~.interface.SingleAnswerInputs` -> losses, metrics)."""
    losses = minorsft_loss(x.policy_logps, x.ref_logps, x.num_tokens, x.beta)
    coef = minorsft_coef(x.policy_logps, x.ref_logps, x.beta)
    return losses, {"minorsft/coef": coef.mean().item()}

"""PoFT: preference-oriented SFT, favouring the target model over aligned LLMs (plus bi-PoFT).

Fan et al. 2024, "Preference-Oriented Supervised Fine-Tuning: Favoring Target Model Over Aligned
Large Language Models", arXiv:2412.12865 (AAAI 2025). With length-normalised rewards::

    r_theta(x, y) = (1/T_0(y)) log p_theta(y|x),      r_j(x, y) = (1/T_j(y)) log p_j(y|x)

(each model normalises by its *own* token count of y), Eq. 6 is::

    L_PoFT(theta) = -E_(x,y)~D_SFT [ log sigma( (1/M) sum_j (r_theta(x,y) - r_j(x,y)) ) ]

whose gradient (Eq. 7-8) is::

    grad L_PoFT = -(1/T_0(y)) (1/p_theta(y|x)) tau grad p_theta(y|x),
    tau = G / (G + p_theta(y|x)^(1/T_0(y))),   G = ( prod_j p_j(y|x)^(1/T_j(y)) )^(1/M)

i.e. tau = sigma(r_aligned - r_theta) with r_aligned = mean_j r_j (G = exp(r_aligned)).
Appendix C.2 replaces the mean over the M aligned LLMs by max or min (``aggregation``).
Appendix C.3, Eq. 12 (bi-PoFT) flips the preference for rows known to be noise::

    L_bi-PoFT = -E_D_SFT+ [ log sigma(r_theta - r_LLMs) ] - E_D_SFT- [ log sigma(r_LLMs - r_theta) ]

Generalisation used here (the paper has neither): a temperature ``beta`` and a margin ``gamma``
(SimPO-style), applied the same way to both kinds of rows::

    clean rows: -logsigmoid(beta * (r_theta - r_aligned) + gamma)
    noise rows: -logsigmoid(beta * (r_aligned - r_theta) + gamma)

beta = 1, gamma = 0 (the defaults) is exactly the paper. r_aligned is a constant (no gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import as_like, check_beta

__all__ = ["POFT_AGGREGATIONS", "poft_loss"]

POFT_AGGREGATIONS = ("mean", "max", "min")


def poft_loss(
    policy_logps: torch.Tensor,
    policy_num_tokens: torch.Tensor,
    aligned_logps: torch.Tensor,
    aligned_num_tokens: torch.Tensor,
    beta: float = 1.0,
    gamma: float = 0.0,
    aggregation: str = "mean",
    noise_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample PoFT / bi-PoFT loss.

    Args:
        policy_logps: ``[B]`` summed log-probs of y under the target model.
        policy_num_tokens: ``[B]`` T_0(y), answer tokens under the target model's tokenizer.
        aligned_logps: ``[B, M]`` summed log-probs of y under each aligned LLM (``[B]`` is read as M = 1).
        aligned_num_tokens: ``[B, M]`` T_j(y) under each aligned LLM's tokenizer.
        beta: scale of the reward difference (> 0; paper: 1).
        gamma: margin added inside the sigmoid (paper: 0).
        aggregation: ``"mean"`` (paper's main setting), ``"max"`` or ``"min"`` over the aligned LLMs.
        noise_mask: optional ``[B]`` bool, True for rows of D_SFT- (bi-PoFT, Eq. 12).

    Returns:
        ``(losses [B], r_theta [B], r_aligned [B])``; ``r_theta`` and ``r_aligned`` are detached (for
        logging). An aligned model with T_j = 0 for a row is left out of that row's aggregation; a row
        with T_0 = 0 or no aligned model with T_j > 0 gives loss 0, zero gradient, r_theta = r_aligned = 0.
    """
    beta = check_beta(beta)
    gamma = float(gamma)
    if aggregation not in POFT_AGGREGATIONS:
        raise ValueError(f"Unknown PoFT aggregation {aggregation!r}; expected one of {POFT_AGGREGATIONS}.")

    dtype = policy_logps.dtype
    aligned_logps = aligned_logps.detach().to(device=policy_logps.device, dtype=dtype)
    aligned_num_tokens = as_like(aligned_num_tokens, aligned_logps)
    if aligned_logps.dim() == 1:
        aligned_logps = aligned_logps[:, None]
    if aligned_num_tokens.dim() == 1:
        aligned_num_tokens = aligned_num_tokens[:, None]
    if aligned_logps.shape != aligned_num_tokens.shape or aligned_logps.size(0) != policy_logps.size(0):
        raise ValueError(
            f"shape mismatch: policy_logps {tuple(policy_logps.shape)}, aligned_logps {tuple(aligned_logps.shape)}, "
            f"aligned_num_tokens {tuple(aligned_num_tokens.shape)}"
        )

    # Target model reward r_theta = log p_theta / T_0.
    t0 = as_like(policy_num_tokens, policy_logps)
    t0_valid = t0 > 0
    r_theta = policy_logps / torch.where(t0_valid, t0, torch.ones_like(t0))

    # Aligned rewards r_j = log p_j / T_j, aggregated over the models with T_j > 0.
    tj_valid = aligned_num_tokens > 0
    r_j = aligned_logps / torch.where(tj_valid, aligned_num_tokens, torch.ones_like(aligned_num_tokens))
    count = tj_valid.sum(-1)
    if aggregation == "mean":
        r_aligned = torch.where(tj_valid, r_j, torch.zeros_like(r_j)).sum(-1) / count.clamp(min=1).to(dtype)
    elif aggregation == "max":
        r_aligned = torch.where(tj_valid, r_j, torch.full_like(r_j, float("-inf"))).amax(-1)
    else:
        r_aligned = torch.where(tj_valid, r_j, torch.full_like(r_j, float("inf"))).amin(-1)
    valid = t0_valid & (count > 0)
    r_aligned = torch.where(valid, r_aligned, torch.zeros_like(r_aligned))

    diff = r_theta - r_aligned
    if noise_mask is not None:
        noise_mask = torch.as_tensor(noise_mask, device=policy_logps.device).bool()
        diff = torch.where(noise_mask, -diff, diff)
    losses = -F.logsigmoid(beta * diff + gamma)
    losses = torch.where(valid, losses, torch.zeros_like(losses))

    r_theta_out = torch.where(valid, r_theta.detach(), torch.zeros_like(r_aligned))
    return losses, r_theta_out, r_aligned


def objective(x):
    """Registry entry ``poft``: the aligned scores arrive as columns ``aligned_logps`` / ``aligned_num_tokens``
    [B, M] (and ``poft_noise`` [B] for bi-PoFT rows)."""
    device = x.policy_logps.device
    noise = x.columns.get("poft_noise")
    losses, r_theta, r_aligned = poft_loss(
        x.policy_logps,
        x.num_tokens,
        x.columns["aligned_logps"].to(device),
        x.columns["aligned_num_tokens"].to(device),
        beta=x.params["poft_beta"],
        gamma=x.params["poft_gamma"],
        aggregation=x.params["poft_aggregation"],
        noise_mask=noise.to(device) if noise is not None else None,
    )
    return losses, {"poft/r_theta": r_theta.mean().item(), "poft/r_aligned": r_aligned.mean().item()}


def check_config(fa) -> None:
    """Registry ``check`` of ``stage: poft``: the aligned LLMs and one template each."""
    from ..errors import PluginError

    if not fa.poft_aligned_models:
        raise PluginError(
            "`stage: poft` needs aligned-LLM scores: set `poft_aligned_models: a,b,c` and "
            "`poft_aligned_templates: t1,t2,t3` (one LF template per aligned model)."
        )
    if not fa.poft_aligned_templates or len(fa.poft_aligned_templates) != len(fa.poft_aligned_models):
        raise PluginError(
            f"`poft_aligned_templates` must list one template per aligned model: "
            f"{len(fa.poft_aligned_models)} models ({', '.join(fa.poft_aligned_models)}), "
            f"got {len(fa.poft_aligned_templates or [])} templates."
        )

"""Small helpers shared by the objective modules (pure torch)."""

from __future__ import annotations

import torch

from llamafactory_minor_core.metrics import safe_length as safe_length  # one definition, shared with m_theta


def check_beta(beta: float, name: str = "beta") -> float:
    beta = float(beta)
    if not beta > 0.0:
        raise ValueError(f"{name} must be > 0, got {beta}")
    return beta


def as_like(x, ref: torch.Tensor) -> torch.Tensor:
    """``x`` as a tensor with ``ref``'s float dtype and device (token counts, masks, ...)."""
    return torch.as_tensor(x, device=ref.device).to(ref.dtype)

"""Small helpers shared by the objective modules (pure torch)."""

from __future__ import annotations

import torch


def check_beta(beta: float, name: str = "beta") -> float:
    beta = float(beta)
    if not beta > 0.0:
        raise ValueError(f"{name} must be > 0, got {beta}")
    return beta


def as_like(x, ref: torch.Tensor) -> torch.Tensor:
    """``x`` as a tensor with ``ref``'s float dtype and device (token counts, masks, ...)."""
    return torch.as_tensor(x, device=ref.device).to(ref.dtype)


def safe_length(num_tokens, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(valid, m_safe)``: ``valid = m > 0`` and ``m`` with zeros replaced by 1 (no 0-division)."""
    m = as_like(num_tokens, ref)
    valid = m > 0
    return valid, torch.where(valid, m, torch.ones_like(m))

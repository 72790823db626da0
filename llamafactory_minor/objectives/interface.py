"""What the trainers hand an objective function (the registry's ``fn``): per-sequence tensors, no LF types.

A single-answer stage's function takes :class:`SingleAnswerInputs` and returns ``(losses [B], metrics)``
(metrics: a dict of python floats, logged beside the trainer's common ones); a pair loss's function takes
:class:`PairInputs` and returns ``(losses [B], chosen_rewards [B], rejected_rewards [B])``. ``params`` holds
the objective's registry parameters by name (values as parsed from the YAML).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class SingleAnswerInputs:
    policy_logps: torch.Tensor  # [B] summed answer log-probs under the policy (with grad)
    num_tokens: torch.Tensor  # [B] answer lengths m
    ref_logps: torch.Tensor | None  # [B] under the reference (None if the objective needs none)
    beta: float  # LF's pref_beta
    params: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, torch.Tensor] = field(default_factory=dict)  # extra batch columns (e.g. aligned scores)


@dataclass
class PairInputs:
    policy_chosen_logps: torch.Tensor
    policy_rejected_logps: torch.Tensor
    ref_chosen_logps: torch.Tensor
    ref_rejected_logps: torch.Tensor
    beta: float
    params: dict[str, Any] = field(default_factory=dict)

from __future__ import annotations

from collections import defaultdict
from contextlib import nullcontext
from typing import Any

import torch

from ... import lf
from ...objectives import deviation_metric, sequence_log_probs
from ...scores.collator import SCORE_COLUMNS
from .. import witness


class DeviationTrackingTrainer(lf.CustomSeq2SeqTrainer):
    r"""LF's SFT trainer, loss untouched, that also logs m_theta (MinorSFT Eq. 8) against a reference:
    m_theta = (1/N) sum_i (1/m_i) log(pi_theta(y_i|x_i) / pi_ref(y_i|x_i)); needed to compare SFT with
    MinorSFT as in the paper's Fig. 1. The policy's log-probs are read from the logits of the training
    forward (no extra policy pass); the reference costs one no-grad forward (none if precomputed)."""

    def __init__(self, *args: Any, m_theta_ref_model: torch.nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._m_theta = defaultdict(list)
        self._m_theta_ref = m_theta_ref_model
        if m_theta_ref_model is not None:
            if getattr(self.accelerator.state, "deepspeed_plugin", None) is not None:
                self._m_theta_ref = lf.prepare_deepspeed(m_theta_ref_model, self.accelerator)
            else:
                self._m_theta_ref = self.accelerator.prepare_model(m_theta_ref_model, evaluation_mode=True)
                self._m_theta_ref.eval()

    def _reference_logps(self, model, inputs):
        if "ref_logps" in inputs:
            return inputs["ref_logps"].to(self.accelerator.device)
        if self._m_theta_ref is None:
            ref_model, ctx = model, self.accelerator.unwrap_model(model).disable_adapter()
        else:
            ref_model, ctx = self._m_theta_ref, nullcontext()
        forward_inputs = {k: v for k, v in inputs.items() if k != "labels" and k not in SCORE_COLUMNS}
        with torch.no_grad(), ctx:
            logits = ref_model(**forward_inputs, return_dict=True, use_cache=False).logits
            return sequence_log_probs(logits, inputs["labels"], ignore_index=lf.IGNORE_INDEX)[0]

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        ref_logps_given = inputs.pop("ref_logps", None)
        loss, outputs = super().compute_loss(model, inputs, True, *args, **kwargs)
        witness.loss_computed()
        with torch.no_grad():
            policy_logps, num_tokens = sequence_log_probs(
                outputs.logits.detach(), inputs["labels"], ignore_index=lf.IGNORE_INDEX
            )
            if ref_logps_given is not None:
                inputs = dict(inputs, ref_logps=ref_logps_given)
            ref_logps = self._reference_logps(model, inputs)
            split = "train" if model.training else "eval"
            self._m_theta[split].append(deviation_metric(policy_logps, ref_logps, num_tokens).item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        split = "train" if "loss" in logs else "eval"
        values = self._m_theta.pop(split, None)
        # every rank takes part in the reduce, with or without values (a NaN placeholder stays NaN-free below)
        stat = torch.tensor(
            [sum(values or []), len(values or [])], dtype=torch.float64, device=self.accelerator.device
        )
        stat = self.accelerator.reduce(stat, "sum")
        if stat[1] > 0:
            logs["m_theta" if split == "train" else "eval_m_theta"] = (stat[0] / stat[1]).item()
        return super().log(logs, *args, **kwargs)

from __future__ import annotations

import torch

from ... import lf, registry
from ...objectives import deviation_metric, normalized_rewards, sequence_log_probs
from ...objectives.interface import PairInputs
from ...scores.collator import SCORE_COLUMNS
from .. import witness


class MinorDPOFamilyTrainer(lf.CustomDPOTrainer):
    r"""LF's DPO trainer with the registry's pair losses (``pref_loss`` -> ``registry.get(name).fn``):

    - ``minordpo``: MinorDPO (Xie et al., 2024, arXiv:2408.09834) Eq. 6,
      -log sigmoid(beta*log(pi/pi_ref)(y_w|x) - beta*max(0, log(pi/pi_ref)(y_l|x)));
    - ``dpop``: DPO-Positive (Pal et al., 2024, arXiv:2402.13228) Eq. 5 of the MinorDPO paper,
      -log sigmoid(beta*(ratio_w - ratio_l) - beta*lambda*max(0, log(pi_ref/pi)(y_w|x)));
    - ``hinge`` and ``ipo``: computed for real (LF 0.9.5 passes no loss type to TRL's dpo_loss, so
      under TRL >= 0.20 they silently train as sigmoid).
    Other stock losses (``track_m_theta`` / ``precompute_ref_log_probs`` with sigmoid, ...) are LF's.
    Log-probs come from the lean chunked ``sequence_log_probs`` (no float32 copy of the logits).
    """

    @property
    def objective(self) -> registry.Objective | None:
        return registry.get(self.loss_type, "pref_loss")

    @property
    def averaged_log_probs(self) -> bool:
        obj = self.objective
        return obj is not None and obj.averaged_log_probs

    def concatenated_forward(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], is_ref_model: bool = False
    ) -> dict[str, torch.Tensor]:
        inputs = {k: v for k, v in batch.items() if k != "labels" and k not in SCORE_COLUMNS}
        logits = model(**inputs, return_dict=True, use_cache=False).logits
        all_logps, lengths = sequence_log_probs(logits, batch["labels"], ignore_index=lf.IGNORE_INDEX)
        if self.averaged_log_probs:  # IPO works on length-averaged log-probs, as in LF and TRL
            all_logps = all_logps / lengths.clamp(min=1)
        n = batch["input_ids"].size(0) // 2
        chosen_logps, rejected_logps = all_logps.split(n, dim=0)
        chosen_len, rejected_len = lengths.split(n, dim=0)
        chosen_logits, rejected_logits = logits.detach().split(n, dim=0)
        return {
            "chosen_logps": chosen_logps,
            "rejected_logps": rejected_logps,
            "chosen_length": chosen_len,
            "rejected_length": rejected_len,
            "chosen_logits_mean": chosen_logits.mean(dtype=torch.float32),
            "rejected_logits_mean": rejected_logits.mean(dtype=torch.float32),
            "chosen_logps_avg": chosen_logps if self.averaged_log_probs else chosen_logps / chosen_len.clamp(min=1),
        }

    def compute_reference_log_probs(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if "ref_logps" in batch:  # precomputed: [2B] in LF's concatenated order (chosen rows, then rejected)
            ref = batch["ref_logps"].to(self.accelerator.device)
            n = ref.size(0) // 2
            return ref[:n], ref[n:]
        return super().compute_reference_log_probs(model, batch)

    def compute_preference_loss(
        self, pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor | None, rr: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        obj = self.objective
        if obj is None:
            return super().compute_preference_loss(pc, pr, rc, rr)
        params = {p.name: getattr(self.finetuning_args, p.name, p.default) for p in obj.params}
        return obj.function()(PairInputs(pc, pr, rc, rr, self.beta, params))

    def get_batch_loss_metrics(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], train_eval: str = "train"
    ) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.concatenated_forward(model, batch)
        pc, pr = out["chosen_logps"], out["rejected_logps"]
        rc, rr = self.compute_reference_log_probs(model, batch)
        losses, chosen_rewards, rejected_rewards = self.compute_preference_loss(pc, pr, rc, rr)
        witness.loss_computed()
        sft_loss = -out["chosen_logps_avg"]
        if self.ftx_gamma > 1e-6:
            losses = losses + self.ftx_gamma * sft_loss

        # beta-free rewards use summed log-probs and answer lengths (IPO's averaged ones are already normalised)
        lc, lr = out["chosen_length"], out["rejected_length"]
        if self.averaged_log_probs:
            norm_c, norm_r = (pc - rc).detach(), (pr - rr).detach()
            m_theta = norm_c.mean()
        else:
            norm_c = normalized_rewards(pc.detach(), rc, lc)
            norm_r = normalized_rewards(pr.detach(), rr, lr)
            m_theta = deviation_metric(pc.detach(), rc, lc)
        prefix = "eval_" if train_eval == "eval" else ""
        metrics = {
            "rewards/chosen": chosen_rewards.mean().item(),
            "rewards/rejected": rejected_rewards.mean().item(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
            "normalized_rewards/chosen": norm_c.mean().item(),
            "normalized_rewards/rejected": norm_r.mean().item(),
            "m_theta": m_theta.item(),
            "logps/chosen": pc.detach().mean().item(),
            "logps/rejected": pr.detach().mean().item(),
            "logits/chosen": out["chosen_logits_mean"].item(),
            "logits/rejected": out["rejected_logits_mean"].item(),
        }
        if self.ftx_gamma > 1e-6:
            metrics["sft_loss"] = sft_loss.detach().mean().item()
        return losses.mean(), {f"{prefix}{k}": v for k, v in metrics.items()}

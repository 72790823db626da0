from ...objectives import poft_loss, with_sft_term
from ..common import SingleAnswerTrainer


class PoFTTrainer(SingleAnswerTrainer):
    r"""PoFT (Fan et al., 2024, arXiv:2412.12865), Eq. 6:
    -log sigmoid(poft_beta * (r_theta - agg_j r_j) + poft_gamma), r = (1/T) log p(y|x) per model;
    bi-PoFT (Eq. 12) for rows flagged as noise. The aligned scores arrive as batch columns
    ``aligned_logps`` / ``aligned_num_tokens`` [B, M] (joined by content before training).
    ``pref_ftx = gamma > 0`` adds LF's SFT term gamma * (-log pi(y|x) / m) per sample (objectives.ftx)."""

    needs_reference = False
    plot_keys = ("loss", "poft/r_theta", "poft/r_aligned")

    def compute_objective(self, policy_logps, num_tokens, ref_logps, batch):
        fa = self.finetuning_args
        device = policy_logps.device
        losses, r_theta, r_aligned = poft_loss(
            policy_logps,
            num_tokens,
            batch["aligned_logps"].to(device),
            batch["aligned_num_tokens"].to(device),
            beta=fa.poft_beta,
            gamma=fa.poft_gamma,
            aggregation=fa.poft_aggregation,
            noise_mask=batch["poft_noise"].to(device) if "poft_noise" in batch else None,
        )
        metrics = {"poft/r_theta": r_theta.mean().item(), "poft/r_aligned": r_aligned.mean().item()}
        losses, sft = with_sft_term(losses, policy_logps, num_tokens, self.ftx_gamma)
        if sft is not None:
            metrics["sft_loss"] = sft.mean().item()
        return losses, metrics

from ...objectives import minorsft_coef, minorsft_loss, with_sft_term
from ..common import SingleAnswerTrainer


class MinorSFTTrainer(SingleAnswerTrainer):
    r"""MinorSFT (Xie et al., 2024, arXiv:2408.10642), gradient of Eq. 7:
    -(2/m) * sigmoid(-beta * log(pi/pi_ref)(y|x)) * grad log pi(y|x); beta = ``pref_beta``.
    ``pref_ftx = gamma > 0`` adds LF's SFT term gamma * (-log pi(y|x) / m) per sample (objectives.ftx)."""

    plot_keys = ("loss", "m_theta", "minorsft/coef", "normalized_rewards/chosen")

    def compute_objective(self, policy_logps, num_tokens, ref_logps, batch):
        losses = minorsft_loss(policy_logps, ref_logps, num_tokens, self.beta)
        coef = minorsft_coef(policy_logps, ref_logps, self.beta)
        metrics = {"minorsft/coef": coef.mean().item()}
        losses, sft = with_sft_term(losses, policy_logps, num_tokens, self.ftx_gamma)
        if sft is not None:
            metrics["sft_loss"] = sft.mean().item()
        return losses, metrics

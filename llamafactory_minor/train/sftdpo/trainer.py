from ...objectives import sftdpo_loss, with_sft_term
from ..common import SingleAnswerTrainer


class SFTDPOTrainer(SingleAnswerTrainer):
    r""""SFT using DPO" (MinorSFT paper, Eq. 3): -log sigmoid(beta * log(pi/pi_ref)(y|x)), summed log-ratio;
    ``pref_ftx = gamma > 0`` adds LF's SFT term gamma * (-log pi(y|x) / m) per sample (objectives.ftx)."""

    plot_keys = ("loss", "m_theta", "rewards/chosen", "normalized_rewards/chosen")

    def compute_objective(self, policy_logps, num_tokens, ref_logps, batch):
        losses, sft = with_sft_term(sftdpo_loss(policy_logps, ref_logps, self.beta), policy_logps, num_tokens,
                                    self.ftx_gamma)
        return losses, ({} if sft is None else {"sft_loss": sft.mean().item()})

from ...objectives import sftdpo_loss
from ..common import SingleAnswerTrainer


class SFTDPOTrainer(SingleAnswerTrainer):
    r""""SFT using DPO" (MinorSFT paper, Eq. 3): -log sigmoid(beta * log(pi/pi_ref)(y|x)), summed log-ratio."""

    plot_keys = ("loss", "m_theta", "rewards/chosen", "normalized_rewards/chosen")

    def compute_objective(self, policy_logps, num_tokens, ref_logps, batch):
        return sftdpo_loss(policy_logps, ref_logps, self.beta), {}

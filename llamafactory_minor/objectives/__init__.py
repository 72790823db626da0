"""The math layer of llamafactory-minor: pure torch over per-sequence log-probs.

No LLaMA-Factory import, no I/O. One module per objective:

* :mod:`.logprobs` -- lean, chunked equivalent of LF's ``get_batch_logps``.
* :mod:`.minorsft` -- MinorSFT (arXiv:2408.10642, Eq. 7).
* :mod:`.sftdpo` -- "SFT using DPO" (arXiv:2408.10642, Eq. 3).
* :mod:`.poft` -- PoFT / bi-PoFT (arXiv:2412.12865, Eq. 6-8, 12; appendix C.2 aggregations).
* :mod:`.dpo` -- sigmoid / hinge / ipo DPO with an explicit loss type (TRL 0.24 formulas).
* :mod:`.minordpo` -- MinorDPO (arXiv:2408.09834, Eq. 6).
* :mod:`.dpop` -- DPO-Positive (arXiv:2402.13228; MinorDPO paper Eq. 5).
* :mod:`.ftx` -- ``pref_ftx``: LF's SFT term ``-log pi(y|x) / m`` added to the single-answer objectives.
* :mod:`.metrics` -- beta-free normalised rewards and the deviation metric (arXiv:2408.10642, Eq. 8).
"""

from .dpo import DPO_LOSS_TYPES, dpo_loss
from .dpop import dpop_loss
from .ftx import sft_term, with_sft_term
from .logprobs import sequence_log_probs, token_log_probs
from .metrics import deviation_metric, normalized_rewards
from .minordpo import minordpo_loss
from .minorsft import minorsft_coef, minorsft_loss
from .poft import POFT_AGGREGATIONS, poft_loss
from .sftdpo import sftdpo_loss

__all__ = [
    "DPO_LOSS_TYPES",
    "POFT_AGGREGATIONS",
    "deviation_metric",
    "dpo_loss",
    "dpop_loss",
    "minordpo_loss",
    "minorsft_coef",
    "minorsft_loss",
    "normalized_rewards",
    "poft_loss",
    "sequence_log_probs",
    "sft_term",
    "sftdpo_loss",
    "token_log_probs",
    "with_sft_term",
]

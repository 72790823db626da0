"""The score columns of a batch: precomputed scores travel with the rows and are stacked by the collator."""

from typing import Any

import torch

from .keys import KEY_COLUMNS

# per-row columns the workflows attach to the dataset; the collator stacks them as float tensors
SCORE_COLUMNS = ("ref_logps", "aligned_logps", "aligned_num_tokens", "poft_noise")
DROP_COLUMNS = KEY_COLUMNS  # the key columns of scores.keys: never model inputs


class ScoredCollator:
    """Wraps an LF collator: pops the score columns from each row, stacks them, pads the rest as LF does."""

    def __init__(self, collator: Any, pairwise: bool = False):
        self.collator = collator
        self.pairwise = pairwise  # LF's pairwise batches are [chosen rows..., rejected rows...]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        extras = {}
        cleaned = []
        for feature in features:
            feature = dict(feature)
            for key in DROP_COLUMNS:
                feature.pop(key, None)
            for key in SCORE_COLUMNS:
                if key in feature:
                    extras.setdefault(key, []).append(feature.pop(key))
            cleaned.append(feature)
        batch = self.collator(cleaned)
        for key, values in extras.items():
            dtype = torch.bool if key == "poft_noise" else torch.float32
            tensor = torch.tensor(values, dtype=dtype)
            if self.pairwise and key == "ref_logps":
                tensor = tensor.t().reshape(-1)  # [B, 2] -> [2B] in LF's concatenated order
            batch[key] = tensor
        return batch

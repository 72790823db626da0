"""Checks shared by the training end-to-end tests."""

import math

SFT_SIDE_KEYS = {
    "minorsft": ["loss", "rewards/chosen", "normalized_rewards/chosen", "m_theta", "minorsft/coef"],
    "sftdpo": ["loss", "rewards/chosen", "normalized_rewards/chosen", "m_theta"],
    "sft": ["loss", "m_theta"],
}
DPO_KEYS = [
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "normalized_rewards/chosen",
    "normalized_rewards/rejected",
    "m_theta",
]


def train_logs(history):
    return [h for h in history if "loss" in h and "train_runtime" not in h]


def check_metrics(logs, keys):
    assert logs, "no training log entries"
    for entry in logs:
        for key in keys:
            assert key in entry, f"{key} missing from logged metrics {sorted(entry)}"
            assert math.isfinite(entry[key]), f"{key} = {entry[key]} is not finite"
    first, last = logs[0]["loss"], logs[-1]["loss"]
    assert last < first, f"loss did not decrease on a repeated batch: {[e['loss'] for e in logs]}"

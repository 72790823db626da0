"""`pref_ftx` through the real CLI on a single-answer stage: LF's SFT term is added and logged (`sft_loss`)."""

import math

import pytest

pytestmark = pytest.mark.e2e


def test_minorsft_with_pref_ftx_logs_the_sft_term(tiny_train_cfg, run_cli, read_log_history):
    cfg = tiny_train_cfg("minorsft", pref_beta=0.04, pref_ftx=0.5, max_steps=2)
    run_cli(cfg)
    logs = [h for h in read_log_history(cfg["output_dir"]) if "loss" in h and "train_runtime" not in h]
    assert logs
    for entry in logs:
        assert math.isfinite(entry["sft_loss"]) and entry["sft_loss"] > 0
        # step 1: policy == reference, so MinorSFT's loss is -(2/(beta*m))*log(1/2) per sample > 0, plus 0.5*sft
        assert entry["loss"] > 0.5 * entry["sft_loss"]

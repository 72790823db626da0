"""Full fine-tuning of each objective through the CLI, online reference vs ``precompute_ref_log_probs``:
metrics present and finite, loss down on a repeated batch, the same loss curve (same seed, 1e-4) with no
reference model at training time, and a later run that reuses the cache without scoring. The online run is
``train_once``'s: ``test_zero3.py`` (minorsft, minordpo) and ``test_train_cli.py`` (sft and dpo with m_theta
tracking) compare with the very same run."""

import pytest
from train_checks import DPO_KEYS, SFT_SIDE_KEYS, check_metrics, train_logs

pytestmark = pytest.mark.e2e

CASES = {
    "minorsft": dict(stage="minorsft", dataset="alpaca_en_tiny", pref_beta=0.04),
    "sftdpo": dict(stage="sftdpo", dataset="alpaca_en_tiny", pref_beta=0.04),
    "sft_m_theta": dict(stage="sft", dataset="alpaca_en_tiny", track_m_theta=True),
    "minordpo": dict(stage="dpo", dataset="dpo_en_tiny", pref_loss="minordpo", pref_beta=0.1),
    "dpop": dict(stage="dpo", dataset="dpo_en_tiny", pref_loss="dpop", pref_beta=0.1),
    "dpo": dict(stage="dpo", dataset="dpo_en_tiny", pref_loss="sigmoid", pref_beta=0.1, track_m_theta=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_precomputed_equals_online(name, tiny_train_cfg, run_cli, train_once, read_log_history, tmp_path):
    case = dict(CASES[name])
    stage = case.pop("stage")
    online = tiny_train_cfg(
        stage, max_samples=4, per_device_train_batch_size=4, max_steps=3, learning_rate=1e-3, **case
    )
    pre = dict(
        online,
        output_dir=str(tmp_path / "pre"),
        precompute_ref_log_probs=True,
        minor_cache_dir=str(tmp_path / "cache"),
    )
    online_dir, _ = train_once(online)
    first = run_cli(pre)
    assert "scored" in first.stdout + first.stderr
    a, b = train_logs(read_log_history(online_dir)), train_logs(read_log_history(pre["output_dir"]))
    keys = SFT_SIDE_KEYS.get(stage, DPO_KEYS) if stage != "dpo" else DPO_KEYS
    check_metrics(a, keys)
    check_metrics(b, keys)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        assert abs(x["loss"] - y["loss"]) < 1e-4, (x["loss"], y["loss"])
        assert abs(x["m_theta"] - y["m_theta"]) < 1e-4
    if name == "minordpo":  # the lr/beta sweep case: score once, train again without scoring
        again = run_cli(dict(pre, output_dir=str(tmp_path / "again"), pref_beta=0.2))
        text = again.stdout + again.stderr
        assert "reusing cached scores" in text and " scored " not in text

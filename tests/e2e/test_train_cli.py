"""End-to-end: the real ``llamafactory-cli train`` in a subprocess, on a tiny random Llama (CPU).

Each run trains a few steps on one repeated batch (``max_samples`` = batch size), so the loss must go down.
Full fine-tuning of every objective is covered (with its metrics) in ``test_precompute.py``; here LoRA, the
fixed hinge/ipo losses, PoFT with aligned-model scoring, m_theta tracking for SFT, and stock stages. The runs
with m_theta tracking of the stock-stage tests are ``train_once``'s: ``test_precompute.py``'s online runs of
``sft_m_theta`` and ``dpo`` have the same settings, so the session trains each once.
"""

import os

import pytest
from train_checks import DPO_KEYS, SFT_SIDE_KEYS, check_metrics, train_logs

pytestmark = pytest.mark.e2e

REPEATED = dict(max_samples=4, per_device_train_batch_size=4, max_steps=4, learning_rate=1e-3)
LORA = dict(finetuning_type="lora", lora_target="all", lora_rank=8, learning_rate=5e-3)


@pytest.mark.parametrize("stage", ["minorsft", "sftdpo"])
def test_sft_side_stages_lora(stage, tiny_train_cfg, run_cli, read_log_history):
    cfg = tiny_train_cfg(stage, dataset="alpaca_en_tiny", pref_beta=0.04, plot_loss=True, **dict(REPEATED, **LORA))
    run_cli(cfg)
    logs = train_logs(read_log_history(cfg["output_dir"]))
    check_metrics(logs, SFT_SIDE_KEYS[stage])
    # at step 1 the policy is the reference (adapters start at zero): log-ratio 0, MinorSFT's coef 2*sigmoid(0) = 1
    assert abs(logs[0]["m_theta"]) < 1e-6
    if stage == "minorsft":
        assert abs(logs[0]["minorsft/coef"] - 1.0) < 1e-6
    for png in ("training_loss.png", "training_m_theta.png"):
        assert os.path.exists(os.path.join(cfg["output_dir"], png)), png


@pytest.mark.parametrize("pref_loss,tuning", [("minordpo", LORA), ("dpop", LORA), ("hinge", {}), ("ipo", {})])
def test_dpo_family(pref_loss, tuning, tiny_train_cfg, run_cli, read_log_history):
    cfg = tiny_train_cfg(
        "dpo", dataset="dpo_en_tiny", pref_loss=pref_loss, pref_beta=0.1, plot_loss=True, **dict(REPEATED, **tuning)
    )
    run_cli(cfg)
    logs = train_logs(read_log_history(cfg["output_dir"]))
    check_metrics(logs, DPO_KEYS)
    assert abs(logs[0]["rewards/margins"]) < 1e-6  # policy == reference at the first step
    if pref_loss == "hinge":  # relu(1 - beta*0) = 1 at the first step; sigmoid would log log(2)
        assert abs(logs[0]["loss"] - 1.0) < 1e-5
    if pref_loss == "ipo":  # (0 - 1/(2*beta))^2 = 25 at beta 0.1
        assert abs(logs[0]["loss"] - 25.0) < 1e-4
    assert os.path.exists(os.path.join(cfg["output_dir"], "training_rewards_margins.png"))


def test_poft_aligned_models_scored_then_trained(tiny_model, tiny_train_cfg, run_cli, read_log_history, tmp_path):
    cfg = tiny_train_cfg(
        "poft",
        dataset="alpaca_en_tiny",
        poft_aligned_models=f"{tiny_model},{tiny_model}",
        poft_aligned_templates="smollm2,default",
        minor_cache_dir=str(tmp_path / "cache"),
        **REPEATED,
    )
    proc = run_cli(cfg)
    logs = train_logs(read_log_history(cfg["output_dir"]))
    check_metrics(logs, ["loss", "poft/r_theta", "poft/r_aligned"])
    # the target model is one of the aligned ones: at step 1 r_theta equals its r_j (same template),
    # the other template gives another r_j, so r_aligned is their mean, not r_theta
    assert "scored" in proc.stdout + proc.stderr
    cfg2 = dict(cfg, output_dir=str(tmp_path / "second"), poft_aggregation="max")
    proc2 = run_cli(cfg2)  # every aligned score now comes from the cache
    text = proc2.stdout + proc2.stderr
    assert "reusing cached scores" in text and " scored " not in text
    logs2 = train_logs(read_log_history(cfg2["output_dir"]))
    assert logs2[0]["poft/r_aligned"] >= logs[0]["poft/r_aligned"] - 1e-6  # max >= mean


def test_stock_sft_unchanged_and_m_theta_tracking(tiny_train_cfg, run_cli, train_once, read_log_history, tmp_path):
    on = tiny_train_cfg("sft", dataset="alpaca_en_tiny", **dict(REPEATED, max_steps=3))
    off = dict(on, output_dir=str(tmp_path / "off"))
    run_cli(on)
    run_cli(off, env={"LLAMAFACTORY_MINOR_DISABLE": "1"})
    tracked_dir, _ = train_once(dict(on, track_m_theta=True))
    on_logs, off_logs, tracked_logs = (
        train_logs(read_log_history(d)) for d in (on["output_dir"], off["output_dir"], tracked_dir)
    )
    assert len(on_logs) == 3
    assert [e["loss"] for e in on_logs] == [e["loss"] for e in off_logs]  # the plugin does not touch stock sft
    assert [e["loss"] for e in tracked_logs] == [e["loss"] for e in on_logs]  # tracking leaves the loss alone
    check_metrics(tracked_logs, SFT_SIDE_KEYS["sft"])
    assert abs(tracked_logs[0]["m_theta"]) < 1e-6 and tracked_logs[-1]["m_theta"] > 0  # SFT raises likelihood


def test_stock_dpo_unchanged(tiny_train_cfg, run_cli, train_once, read_log_history, tmp_path):
    on = tiny_train_cfg(
        "dpo", dataset="dpo_en_tiny", pref_loss="sigmoid", pref_beta=0.1, **dict(REPEATED, max_steps=3)
    )  # LF's default beta, spelled out as in test_precompute.py's dpo case
    off = dict(on, output_dir=str(tmp_path / "off"))
    run_cli(on)
    run_cli(off, env={"LLAMAFACTORY_MINOR_DISABLE": "1"})
    tracked_dir, _ = train_once(dict(on, track_m_theta=True))
    on_logs, off_logs, tracked_logs = (
        train_logs(read_log_history(d)) for d in (on["output_dir"], off["output_dir"], tracked_dir)
    )
    assert len(on_logs) == 3
    assert [e["loss"] for e in on_logs] == [e["loss"] for e in off_logs]
    assert "normalized_rewards/chosen" not in on_logs[0]  # LF's own trainer ran
    # tracking: the plugin's trainer with LF's sigmoid loss; lean log-probs equal LF's to float32 rounding
    check_metrics(tracked_logs, DPO_KEYS)
    for a, b in zip(on_logs, tracked_logs):
        assert abs(a["loss"] - b["loss"]) < 1e-4, (a["loss"], b["loss"])

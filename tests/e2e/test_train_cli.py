"""End-to-end: the real ``llamafactory-cli train`` in a subprocess, on a tiny random Llama (CPU).

Each run trains a few steps on one repeated batch (``max_samples`` = batch size), so the loss must go down.
"""

import math

import pytest

pytestmark = pytest.mark.e2e

REPEATED = dict(max_samples=4, per_device_train_batch_size=4, max_steps=4, learning_rate=1e-3)

SFT_SIDE = {
    "minorsft": ["loss", "rewards/chosen", "normalized_rewards/chosen", "m_theta", "minorsft/coef"],
    "sftdpo": ["loss", "rewards/chosen", "normalized_rewards/chosen", "m_theta"],
}
DPO_KEYS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
            "normalized_rewards/chosen", "normalized_rewards/rejected", "m_theta"]


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


@pytest.mark.parametrize("stage", ["minorsft", "sftdpo"])
@pytest.mark.parametrize("finetuning_type", ["full", "lora"])
def test_sft_side_stages(stage, finetuning_type, tiny_train_cfg, run_cli, read_log_history):
    extra = dict(lora_target="all", lora_rank=8, learning_rate=5e-3) if finetuning_type == "lora" else {}
    cfg = tiny_train_cfg(stage, dataset="alpaca_en_tiny", finetuning_type=finetuning_type, pref_beta=0.04,
                         plot_loss=True, **dict(REPEATED, **extra))
    run_cli(cfg)
    logs = train_logs(read_log_history(cfg["output_dir"]))
    check_metrics(logs, SFT_SIDE[stage])
    # at step 1 policy == reference: log-ratio 0, so MinorSFT's coefficient is 2*sigmoid(0) = 1
    assert abs(logs[0]["m_theta"]) < 1e-5
    if stage == "minorsft":
        assert abs(logs[0]["minorsft/coef"] - 1.0) < 1e-5
    import os

    assert os.path.exists(os.path.join(cfg["output_dir"], "training_loss.png"))
    assert os.path.exists(os.path.join(cfg["output_dir"], "training_m_theta.png"))


@pytest.mark.parametrize("pref_loss", ["minordpo", "dpop", "hinge", "ipo"])
@pytest.mark.parametrize("finetuning_type", ["full", "lora"])
def test_dpo_family(pref_loss, finetuning_type, tiny_train_cfg, run_cli, read_log_history):
    if finetuning_type == "lora" and pref_loss in ("hinge", "ipo"):
        pytest.skip("hinge/ipo are checked with full fine-tuning; LoRA shares the same trainer path")
    extra = dict(lora_target="all", lora_rank=8, learning_rate=5e-3) if finetuning_type == "lora" else {}
    cfg = tiny_train_cfg("dpo", dataset="dpo_en_tiny", pref_loss=pref_loss, finetuning_type=finetuning_type,
                         pref_beta=0.1, plot_loss=True, **dict(REPEATED, **extra))
    run_cli(cfg)
    logs = train_logs(read_log_history(cfg["output_dir"]))
    check_metrics(logs, DPO_KEYS)
    assert abs(logs[0]["rewards/margins"]) < 1e-5  # policy == reference at the first step


def test_poft_aligned_models_scored_then_trained(tiny_model, tiny_train_cfg, run_cli, read_log_history, tmp_path):
    cfg = tiny_train_cfg("poft", dataset="alpaca_en_tiny", poft_aligned_models=f"{tiny_model},{tiny_model}",
                         poft_aligned_templates="smollm2,default", minor_cache_dir=str(tmp_path / "cache"),
                         **REPEATED)
    proc = run_cli(cfg)
    logs = train_logs(read_log_history(cfg["output_dir"]))
    check_metrics(logs, ["loss", "poft/r_theta", "poft/r_aligned"])
    assert "scored" in proc.stdout + proc.stderr
    # second run: every aligned score comes from the cache
    cfg2 = dict(cfg, output_dir=str(tmp_path / "second"))
    proc2 = run_cli(cfg2)
    text = proc2.stdout + proc2.stderr
    assert "reusing cached scores" in text and " scored " not in text


def test_sft_tracks_m_theta_without_changing_loss(tiny_train_cfg, run_cli, read_log_history, tmp_path):
    base = tiny_train_cfg("sft", dataset="alpaca_en_tiny", **REPEATED)
    tracked = dict(base, output_dir=str(tmp_path / "tracked"), track_m_theta=True)
    run_cli(base)
    run_cli(tracked)
    plain = train_logs(read_log_history(base["output_dir"]))
    with_m = train_logs(read_log_history(tracked["output_dir"]))
    assert [e["loss"] for e in plain] == [e["loss"] for e in with_m]
    assert all("m_theta" in e and math.isfinite(e["m_theta"]) for e in with_m)
    assert abs(with_m[0]["m_theta"]) < 1e-6 and with_m[-1]["m_theta"] > 0  # SFT raises the answers' likelihood


@pytest.mark.parametrize("stage,extra", [("sft", {"dataset": "alpaca_en_tiny"}),
                                         ("dpo", {"dataset": "dpo_en_tiny", "pref_loss": "sigmoid"})])
def test_stock_stages_unchanged_by_the_plugin(stage, extra, tiny_train_cfg, run_cli, read_log_history, tmp_path):
    cfg = tiny_train_cfg(stage, **dict(REPEATED, max_steps=3, **extra))
    off = dict(cfg, output_dir=str(tmp_path / "off"))
    run_cli(cfg)
    run_cli(off, env={"LLAMAFACTORY_MINOR_DISABLE": "1"})
    on_logs = train_logs(read_log_history(cfg["output_dir"]))
    off_logs = train_logs(read_log_history(off["output_dir"]))
    assert [e["loss"] for e in on_logs] == [e["loss"] for e in off_logs]
    assert len(on_logs) == 3

"""torchrun with 2 CPU processes (gloo) and DeepSpeed ZeRO-3, through the stock CLI:
``FORCE_TORCHRUN=1 NPROC_PER_NODE=2 llamafactory-cli train``, one run per new objective. For minorsft and
minordpo the 2-process run must log the same first-step loss as a 1-process run over the same 4 samples
(global batch 4 = 2 x 2); with precomputed reference scores each rank must get its own rows' scores, so the
ZeRO-3 run with precomputed scores must log the same losses as the ZeRO-3 run with the online reference.
The 1-process run is ``train_once``'s: the online run of ``test_precompute.py`` has the same settings, so the
session trains it once."""

import os

import pytest
from conftest import run_torchrun
from train_checks import DPO_KEYS, SFT_SIDE_KEYS, check_metrics, train_logs

pytestmark = pytest.mark.e2e

DS_CONFIG = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "fixtures", "ds_z3_cpu.json"))

CASES = {
    "minorsft": dict(stage="minorsft", dataset="alpaca_en_tiny", pref_beta=0.04),
    "minordpo": dict(stage="dpo", dataset="dpo_en_tiny", pref_loss="minordpo", pref_beta=0.1),
    "sftdpo": dict(stage="sftdpo", dataset="alpaca_en_tiny", pref_beta=0.04),
    "dpop": dict(stage="dpo", dataset="dpo_en_tiny", pref_loss="dpop", pref_beta=0.1),
    "poft": dict(stage="poft", dataset="alpaca_en_tiny", poft_aligned_templates="smollm2"),
}
KEYS = dict(SFT_SIDE_KEYS, dpo=DPO_KEYS, poft=["loss", "poft/r_theta", "poft/r_aligned"])


def _zero3(cfg, run_cli, out):
    """Train ``cfg`` with 2 processes under ZeRO-3 (conftest.run_torchrun: one retry after a post-training abort)."""
    cfg = dict(cfg, output_dir=out, per_device_train_batch_size=2, deepspeed=DS_CONFIG)
    env = {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2", "MASTER_PORT": str(29500 + os.getpid() % 500)}
    run_torchrun(run_cli, cfg, env=env, timeout=1200)
    return cfg


@pytest.mark.parametrize("name", list(CASES))
def test_zero3_two_processes(name, tiny_model, tiny_train_cfg, run_cli, train_once, read_log_history, tmp_path):
    case = dict(CASES[name])
    stage = case.pop("stage")
    if stage == "poft":
        case["poft_aligned_models"] = tiny_model
    single = tiny_train_cfg(stage, max_samples=4, per_device_train_batch_size=4, max_steps=3, **case)
    multi = _zero3(dict(single, minor_cache_dir=str(tmp_path / "cache")), run_cli, str(tmp_path / "zero3"))
    two = train_logs(read_log_history(multi["output_dir"]))
    check_metrics(two, KEYS[stage])
    if name in ("minorsft", "minordpo"):
        one_dir, _ = train_once(single)
        one = train_logs(read_log_history(one_dir))
        assert abs(one[0]["loss"] - two[0]["loss"]) < 1e-4, (one[0]["loss"], two[0]["loss"])
    if name == "minorsft":
        pre = _zero3(dict(multi, precompute_ref_log_probs=True), run_cli, str(tmp_path / "zero3_pre"))
        three = train_logs(read_log_history(pre["output_dir"]))
        for a, b in zip(two, three):
            assert abs(a["loss"] - b["loss"]) < 1e-4 and abs(a["m_theta"] - b["m_theta"]) < 1e-4

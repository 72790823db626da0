"""torchrun with 2 CPU processes (gloo) and DeepSpeed ZeRO-3, through the stock CLI:
``FORCE_TORCHRUN=1 NPROC_PER_NODE=2 llamafactory-cli train``. The 2-process run must log the same
first-step loss as a 1-process run over the same 4 samples (global batch 4 = 2 x 2)."""

import math
import os

import pytest

pytestmark = pytest.mark.e2e

DS_CONFIG = os.path.join(os.path.dirname(__file__), "..", "fixtures", "ds_z3_cpu.json")

CASES = {
    "minorsft": dict(stage="minorsft", dataset="alpaca_en_tiny", pref_beta=0.04),
    "sftdpo": dict(stage="sftdpo", dataset="alpaca_en_tiny", pref_beta=0.04),
    "minordpo": dict(stage="dpo", dataset="dpo_en_tiny", pref_loss="minordpo", pref_beta=0.1),
    "dpop": dict(stage="dpo", dataset="dpo_en_tiny", pref_loss="dpop", pref_beta=0.1),
    "poft": dict(stage="poft", dataset="alpaca_en_tiny", poft_aligned_templates="smollm2"),
    # each rank must get its own rows' precomputed reference scores
    "minorsft_precomputed": dict(stage="minorsft", dataset="alpaca_en_tiny", pref_beta=0.04,
                                 precompute_ref_log_probs=True),
}


def _first_train_log(history):
    return [h for h in history if "loss" in h and "train_runtime" not in h][0]


@pytest.mark.parametrize("name", list(CASES))
def test_zero3_two_processes_match_one(name, tiny_model, tiny_train_cfg, run_cli, read_log_history, tmp_path):
    case = dict(CASES[name])
    stage = case.pop("stage")
    if stage == "poft":
        case["poft_aligned_models"] = tiny_model
    if stage == "poft" or case.get("precompute_ref_log_probs"):
        case["minor_cache_dir"] = str(tmp_path / "cache")
    single = tiny_train_cfg(stage, max_samples=4, per_device_train_batch_size=4, max_steps=2, **case)
    if case.get("precompute_ref_log_probs"):  # compare with the online reference of a 1-process run
        single["precompute_ref_log_probs"] = False
    multi = dict(single, output_dir=str(tmp_path / "zero3"), per_device_train_batch_size=2,
                 deepspeed=os.path.abspath(DS_CONFIG))
    run_cli(single)
    run_cli(multi, env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2", "MASTER_PORT": str(29500 + os.getpid() % 500)},
            timeout=1200)
    one = _first_train_log(read_log_history(single["output_dir"]))
    two = _first_train_log(read_log_history(multi["output_dir"]))
    assert math.isfinite(two["loss"]) and ("poft/r_theta" if stage == "poft" else "m_theta") in two
    assert abs(one["loss"] - two["loss"]) < 1e-4, (one["loss"], two["loss"])

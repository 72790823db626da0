"""Precomputed scores as users run them (16 preprocessing workers, as LlamaBoard and the paper recipes pass),
and never stale: a change of what the model sees (``default_system``) or of the weights' bytes (a re-exported
model with changed middle layers, same file size) is scored again, never served from the cache.

The step-1 check is exact in kind: at step 1 the policy is the reference, so MinorSFT's m_theta is 0 up to
float rounding when the reference scores belong to the rows being trained (stale scores gave -0.27)."""

import os

import pytest
from train_checks import train_logs

pytestmark = pytest.mark.e2e

WORKERS = 16  # LlamaBoard's preprocessing_num_workers, and every paper recipe's


def _text(proc):
    return proc.stdout + proc.stderr


def _step1_m_theta(read_log_history, output_dir):
    logs = train_logs(read_log_history(output_dir))
    assert logs, "no training log"
    return logs[0]["m_theta"]


def test_precompute_with_16_workers_rescores_when_the_tokens_change(
    tiny_train_cfg, run_cli, read_log_history, tmp_path
):
    cfg = tiny_train_cfg(
        "minorsft",
        pref_beta=0.04,
        precompute_ref_log_probs=True,
        max_samples=8,
        max_steps=1,
        preprocessing_num_workers=WORKERS,
        minor_cache_dir=str(tmp_path / "cache"),
    )
    first = run_cli(cfg)
    assert " scored 8 rows" in _text(first)
    assert abs(_step1_m_theta(read_log_history, cfg["output_dir"])) < 1e-3

    same = run_cli(dict(cfg, output_dir=str(tmp_path / "same")))
    assert "reusing cached scores" in _text(same) and " scored " not in _text(same)

    system = dict(cfg, output_dir=str(tmp_path / "system"), default_system="You answer in one short sentence.")
    changed = run_cli(system)
    assert " scored 8 rows" in _text(changed), "a new default_system changes every row: it must be rescored"
    assert abs(_step1_m_theta(read_log_history, system["output_dir"])) < 1e-3
    assert len(os.listdir(tmp_path / "cache")) == 2


def test_poft_with_16_workers_rescores_aligned_scores_when_the_tokens_change(
    tiny_train_cfg, tiny_model, run_cli, read_log_history, tmp_path
):
    cfg = tiny_train_cfg(
        "poft",
        max_samples=8,
        max_steps=1,
        preprocessing_num_workers=WORKERS,
        poft_aligned_models=tiny_model,
        poft_aligned_templates="smollm2",
        minor_cache_dir=str(tmp_path / "cache"),
    )
    first = run_cli(cfg)
    assert " scored 8 rows" in _text(first)
    logs = train_logs(read_log_history(cfg["output_dir"]))
    assert logs and any(k.startswith("poft/") for k in logs[0]), logs

    changed = run_cli(dict(cfg, output_dir=str(tmp_path / "system"), default_system="Be brief."))
    assert " scored 8 rows" in _text(changed), "the aligned model's rows changed: they must be rescored"


def test_reexported_weights_with_changed_middle_layers_are_rescored(tiny_train_cfg, tiny_model, run_cli, tmp_path):
    """A merged model exported again into the same folder: same names, same sizes, other middle bytes."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "merged"
    shutil.copytree(tiny_model, model)
    cfg = tiny_train_cfg(
        "minorsft",
        model_name_or_path=str(model),
        pref_beta=0.04,
        precompute_ref_log_probs=True,
        max_samples=4,
        max_steps=1,
        minor_cache_dir=str(tmp_path / "cache"),
    )
    assert " scored 4 rows" in _text(run_cli(cfg))

    weights = model / "model.safetensors"
    size = weights.stat().st_size
    tensors = load_file(str(weights))
    layer = sorted(k for k in tensors if ".layers." in k and k.endswith("mlp.down_proj.weight"))[0]
    tensors[layer] = tensors[layer] + 0.01 * torch.randn_like(tensors[layer])
    save_file(tensors, str(weights), metadata={"format": "pt"})
    assert weights.stat().st_size == size

    again = run_cli(dict(cfg, output_dir=str(tmp_path / "again")))
    assert " scored 4 rows" in _text(again) and "reusing cached scores" not in _text(again)

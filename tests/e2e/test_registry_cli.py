"""issue 9, end to end: an objective registered from outside the package trains through the real
``llamafactory-cli train`` and is offered by LlamaBoard; a plugin objective whose trainer LF bypasses stops.

The toy objective (``tests/unit/test_registry.py``: ``TOY``) is a module written into ``tmp_path`` and named in
``$LLAMAFACTORY_MINOR_OBJECTIVES``: no file of the plugin is touched.
"""

import json
import os
import subprocess
import sys

import pytest
from train_checks import check_metrics, train_logs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "unit"))
from test_registry import write_toy  # noqa: E402

pytestmark = pytest.mark.e2e

REPEATED = dict(max_samples=4, per_device_train_batch_size=4, max_steps=4, learning_rate=1e-3)


def test_toy_objective_trains_through_the_cli(tiny_train_cfg, run_cli, read_log_history, tmp_path):
    env = write_toy(tmp_path / "toy")
    cfg = tiny_train_cfg("toysft", dataset="alpaca_en_tiny", toy_scale=2.0, plot_loss=True, **REPEATED)
    run_cli(cfg, env=env)
    logs = train_logs(read_log_history(cfg["output_dir"]))
    check_metrics(logs, ["loss", "toy/nll", "logps/chosen"])
    # the toy's loss is toy_scale * its logged mean token NLL: the registry's function computed it
    assert abs(logs[0]["loss"] - 2.0 * logs[0]["toy/nll"]) < 1e-4, logs[0]
    assert "m_theta" not in logs[0]  # needs_reference=False: no reference, no m_theta
    assert os.path.exists(os.path.join(cfg["output_dir"], "training_toy_nll.png"))
    # its bounds are the registry's: refused before anything loads, one line, exit code 2
    bad = run_cli(dict(cfg, toy_scale=0.0, output_dir=str(tmp_path / "bad")), env=env, check=False)
    assert bad.returncode == 2 and "`toy_scale` must be > 0" in bad.stderr and "Traceback" not in bad.stderr


UI = """
import json
import gradio as gr
import llamafactory_minor  # noqa
from llamafactory.webui.engine import Engine
from llamafactory.webui.components import create_top, create_train_tab
from llamafactory.webui.locales import LOCALES
engine = Engine(pure_chat=False)
with gr.Blocks():
    engine.manager.add_elems("top", create_top())
    elems = create_train_tab(engine)
choices = [c[1] if isinstance(c, (tuple, list)) else c for c in elems["training_stage"].choices]
print(json.dumps({"choices": choices, "input": type(elems.get("toy_scale")).__name__,
                  "zh": LOCALES["toy_scale"]["zh"]["label"], "visible": elems["toy_scale"].visible}))
"""


def test_toy_objective_in_the_web_uis_choices(tmp_path):
    env = dict(os.environ, **write_toy(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", UI], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path
    )  # LF writes llamaboard_cache/ into the working directory
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "Toy SFT" in out["choices"] and "MinorSFT" in out["choices"], out
    assert out["input"] == "Slider" and out["zh"] == "玩具系数" and out["visible"] is False  # LF's first stage: sft

    from llamafactory_minor.integration import webui

    assert "Toy SFT" not in webui.NEW_STAGE_LABELS  # this process never registered it: nothing leaked


MOVED = """
import json, sys, types
import llamafactory_minor
from llamafactory_minor import lf
from llamafactory_minor.errors import ObjectiveNotApplied
import llamafactory.train.dpo.trainer as lf_trainer
# LF "moved its import": run_dpo still builds LF's CustomDPOTrainer, while the plugin swaps its trainer into a
# module LF no longer reads
moved = types.ModuleType("lf_moved_trainer")
moved.CustomDPOTrainer = lf_trainer.CustomDPOTrainer
sys.modules["lf_moved_trainer"] = moved
lf.TRAINER_SLOTS["dpo"] = ("lf_moved_trainer", "CustomDPOTrainer")
try:
    llamafactory_minor.run_exp(json.loads(sys.argv[1]))
    print("TRAINED")
except ObjectiveNotApplied as e:
    print("STOPPED", e)
"""


@pytest.mark.parametrize("pref_loss", ["minordpo"])
def test_a_bypassed_plugin_trainer_stops_the_run(pref_loss, tiny_train_cfg, tmp_path):
    cfg = tiny_train_cfg("dpo", dataset="dpo_en_tiny", pref_loss=pref_loss, **dict(REPEATED, max_steps=2))
    proc = subprocess.run(
        [sys.executable, "-c", MOVED, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, WANDB_DISABLED="true"),
    )
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    assert last.startswith("STOPPED"), proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"`pref_loss: {pref_loss}` was configured" in last and "stock" in last
    saved = (
        [f for f in os.listdir(cfg["output_dir"]) if f.endswith(".safetensors")]
        if os.path.isdir(cfg["output_dir"])
        else []
    )
    assert saved == [], f"a model trained with LF's stock loss was saved: {saved}"

"""Experiment grids: the sweep and the evaluation read one file, so every evaluated path is a path the sweep
writes; a missing checkpoint is an error listing every missing run unless the user asks to skip."""

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from llamafactory_minor_eval import grid as grid_mod
from llamafactory_minor_eval.config import EvalError, build_config, load_yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAPER_GRIDS = {
    "examples/minordpo/grid.yaml": "examples/eval/minordpo_gsm8k.yaml",
    "examples/minorsft/grid.yaml": "examples/eval/minorsft_paper.yaml",
    "examples/poft/grid.yaml": "examples/eval/poft_leaderboard.yaml",
    "examples/poft/grid_noise.yaml": "examples/eval/poft_noise_leaderboard.yaml",
}


def _sweep_paths(grid_file):
    """The output_dir of every command `llamafactory-minor sweep --dry-run` prints (the real console script)."""
    exe = os.path.join(os.path.dirname(sys.executable), "llamafactory-minor")
    out = subprocess.run(
        [exe, "sweep", grid_file, "--dry-run"], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    commands = [line.split() for line in out.splitlines() if line.strip()]
    assert commands and all(c[:2] == ["llamafactory-cli", "train"] for c in commands)
    for cmd in commands:
        assert os.path.isfile(os.path.join(REPO, cmd[2])), cmd[2]
    return [OmegaConf.to_container(OmegaConf.from_cli(c[3:]))["output_dir"] for c in commands]


@pytest.mark.parametrize("grid_file", list(PAPER_GRIDS))
def test_every_evaluated_path_is_a_path_the_sweep_writes(grid_file, tmp_path, monkeypatch):
    written = _sweep_paths(grid_file)
    assert len(set(written)) == len(written)
    monkeypatch.chdir(REPO)
    data = load_yaml(PAPER_GRIDS[grid_file])
    with pytest.raises(EvalError) as e:  # nothing trained here: every run is listed as missing
        build_config(data, {}, where=PAPER_GRIDS[grid_file])
    assert f"{len(written)} of {len(written)} runs" in str(e.value)
    assert all(p in str(e.value) for p in written)
    # once every run exists, the evaluation's checkpoints are exactly the sweep's paths (in the same order); the
    # PoFT configs evaluate every epoch (`checkpoints: saved`): each run's checkpoint-<step> folders, in step order
    saved = data["grid"].get("checkpoints") == "saved"
    assert saved == grid_file.startswith("examples/poft/")  # the PoFT paper reports every epoch (Table 1, Fig. 3e, 5)
    for p in written:
        os.makedirs(tmp_path / p)
        for step in (900, 1800) if saved else ():
            os.makedirs(tmp_path / p / f"checkpoint-{step}")
    monkeypatch.chdir(tmp_path)  # the runs' relative paths now resolve under tmp_path
    data["grid"] = dict(data["grid"], file=os.path.join(REPO, data["grid"]["file"]))
    cfg = build_config(dict(data, output_dir=str(tmp_path / "eval")), {}, where=PAPER_GRIDS[grid_file])
    fixed = len(data.get("checkpoints") or [])  # the config's own checkpoints (base / aligned models) come first
    assert [c.path for c in cfg.checkpoints[:fixed]] == [str(c["path"]) for c in data["checkpoints"]]
    evaluated = [c.path for c in cfg.checkpoints[fixed:]]
    assert evaluated == (
        [os.path.join(p, f"checkpoint-{s}") for p in written for s in (900, 1800)] if saved else written
    )
    # and the grid file names this evaluation, which `sweep GRID --evaluate` runs after the training
    assert grid_mod.load(os.path.join(REPO, grid_file))["evaluate"]["config"] == PAPER_GRIDS[grid_file]


def _sweep_commands(grid_file):
    return {r.path: r.command() for r in grid_mod.runs(os.path.join(REPO, grid_file))}


def test_poft_grids_are_the_papers_and_share_their_clean_runs():
    table1 = grid_mod.runs(os.path.join(REPO, "examples/poft/grid.yaml"))
    assert {(r.values["model"], r.values["data"], r.values["method"]) for r in table1} == {
        (m, d, f)
        for m in ("mistral_7b", "llama3_8b")
        for d in ("ultrachat", "openhermes", "sharegpt")
        for f in ("sft", "poft")
    }
    noise = grid_mod.runs(os.path.join(REPO, "examples/poft/grid_noise.yaml"))
    assert len(noise) == 6 and {r.values["model"] for r in noise} == {"mistral_7b"}
    bipoft = [r for r in noise if "poft_noise_column=is_noise" in r.overrides]
    assert sorted(r.values["dataset"] for r in bipoft) == ["openhermes_noise100k", "openhermes_noise50k"]
    assert all(r.recipe.endswith("mistral_7b_full_poft_openhermes_ds3.yaml") for r in bipoft)
    # Fig. 3e / Fig. 5 compare with the runs on the original data: the very runs of Table 1's grid (same path and
    # same training command), so the sweep of either grid reuses what the other trained
    shared = set(_sweep_commands("examples/poft/grid.yaml")) & set(_sweep_commands("examples/poft/grid_noise.yaml"))
    assert len(shared) == 2
    for path in shared:
        assert (
            _sweep_commands("examples/poft/grid.yaml")[path] == _sweep_commands("examples/poft/grid_noise.yaml")[path]
        )


def test_minordpo_grid_is_the_papers(monkeypatch):
    runs = grid_mod.runs(os.path.join(REPO, "examples/minordpo/grid.yaml"))
    assert {(r.values["method"], r.values["beta"], r.values["lr"]) for r in runs} == {
        (m, b, lr) for m in ("dpo", "dpop", "minordpo") for b in (0.02, 0.04, 0.1, 0.2) for lr in ("1e-6", "1e-5")
    }


def _grid(tmp_path, text):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return str(path)


def test_missing_runs_are_listed_or_skipped_and_reported(tmp_path):
    path = _grid(
        tmp_path, f"grids:\n  - path: {tmp_path}/runs/{{method}}_lr{{lr}}\n    method: [a, b]\n    lr: [1, 2]\n"
    )
    os.makedirs(tmp_path / "runs" / "a_lr1")
    with pytest.raises(grid_mod.GridError) as e:
        grid_mod.eval_checkpoints(path)
    assert "3 of 4 runs" in str(e.value) and "b_lr2" in str(e.value) and "a_lr1" not in str(e.value)
    kept, skipped = grid_mod.eval_checkpoints(path, skip_missing=True)
    assert [k["path"] for k in kept] == [f"{tmp_path}/runs/a_lr1"] and len(skipped) == 3
    assert kept[0]["method"] == "a" and kept[0]["lr"] == 1
    cfg = build_config(
        {"grid": {"file": path, "skip_missing": True}, "output_dir": str(tmp_path / "o"), "benchmarks": ["gsm8k"]}, {}
    )
    assert len(cfg.skipped_checkpoints) == 3 and [c.path for c in cfg.checkpoints] == [f"{tmp_path}/runs/a_lr1"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("grids: []\n", "needs `grids:`"),
        ("grids:\n  - method: [a]\n", "needs a `path` template"),
        ("grids:\n  - path: x/{method}/{lr}\n    method: [a]\n", "uses {lr}, which is not an axis"),
        ("grids:\n  - path: x/{method}\n    method: [a, a]\n", "would both write x/a"),
        ("grids:\n  - path: x/{method}\n    method: []\n", "axis `method` has no values"),
    ],
)
def test_bad_grid_files_get_one_clear_message(tmp_path, text, message):
    with pytest.raises(grid_mod.GridError, match=message.replace("{", r"\{").replace("}", r"\}")):
        grid_mod.runs(_grid(tmp_path, text))


def test_sweep_cli_refuses_a_missing_recipe_and_a_bad_only(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "llamafactory-minor")
    path = _grid(tmp_path, "grids:\n  - path: x/{method}\n    method: [a]\nsweep:\n  recipe: nowhere/{method}.yaml\n")
    proc = subprocess.run([exe, "sweep", path], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs the recipe nowhere/a.yaml, which does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([exe, "sweep", path, "--only", "beta=1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "the grid has no axis `beta`" in proc.stderr


def test_saved_checkpoints_are_evaluated_per_run_in_step_order_or_listed_missing(tmp_path):
    """``grid: {file: ..., checkpoints: saved}``: every checkpoint-<step> folder of each run (accuracy per epoch,
    PoFT Fig. 3e), in step order (10 after 9, not after 1); a run that saved none counts as missing."""
    path = _grid(
        tmp_path, f"grids:\n  - path: {tmp_path}/runs/{{method}}\n    name: 'run {{method}}'\n    method: [a, b]\n"
    )
    for step in (18, 9, 27):
        os.makedirs(tmp_path / "runs" / "a" / f"checkpoint-{step}")
    os.makedirs(tmp_path / "runs" / "a" / "checkpoint-x")  # not LF's: ignored
    (tmp_path / "runs" / "a" / "checkpoint-36").write_text("a file, not a folder")
    os.makedirs(tmp_path / "runs" / "b")  # finished or not, b saved nothing
    with pytest.raises(grid_mod.GridError, match=r"1 of 2 runs .* no saved checkpoint-<step> folder") as e:
        grid_mod.eval_checkpoints(path, checkpoints="saved")
    assert "run b" in str(e.value) and "run a" not in str(e.value)
    kept, skipped = grid_mod.eval_checkpoints(path, skip_missing=True, checkpoints="saved")
    assert [(k["name"], k["step"], k["saved_index"]) for k in kept] == [
        ("run a/checkpoint-9", 9, 1),
        ("run a/checkpoint-18", 18, 2),
        ("run a/checkpoint-27", 27, 3),
    ]
    assert kept[0]["path"] == f"{tmp_path}/runs/a/checkpoint-9" and kept[0]["method"] == "a"
    assert skipped == [{"name": "run b", "path": f"{tmp_path}/runs/b"}]
    cfg = build_config(
        {
            "grid": {"file": path, "skip_missing": True, "checkpoints": "saved"},
            "output_dir": str(tmp_path / "o"),
            "benchmarks": ["gsm8k"],
        },
        {},
    )
    assert [c.path for c in cfg.checkpoints] == [k["path"] for k in kept]
    assert cfg.checkpoints[2].meta["saved_index"] == 3
    with pytest.raises(EvalError, match="use final or saved"):
        build_config({"grid": {"file": path, "checkpoints": "every"}, "benchmarks": ["gsm8k"]}, {})

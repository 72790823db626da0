"""`llamafactory-minor sweep GRID --evaluate`: training sweep -> evaluation -> report, from the one grid file.

No model is trained or loaded here (tests/e2e/test_sweep_evaluate.py runs the whole pipeline on the tiny model)."""

import io
import json
import os
import subprocess
import sys

import pytest

from llamafactory_minor.experiments import pipeline
from llamafactory_minor_eval import grid as grid_mod

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXE = os.path.join(os.path.dirname(sys.executable), "llamafactory-minor")
PAPER_GRIDS = [
    "examples/minordpo/grid.yaml",
    "examples/minorsft/grid.yaml",
    "examples/poft/grid.yaml",
    "examples/poft/grid_noise.yaml",
]


def _cli(*args, cwd=REPO):
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_dry_run_prints_the_three_stages_of_a_paper_grid():
    grid = "examples/minordpo/grid.yaml"
    proc = _cli("sweep", grid, "--evaluate", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("#")]
    assert [lines[i][:5] for i in headers] == ["# 1/3", "# 2/3", "# 3/3", "# + o"]
    # stage 1 is exactly what `sweep --dry-run` prints; stage 2 the grid's evaluation config; stage 3 the plot
    assert lines[headers[0] + 1 : headers[1]] == _cli("sweep", grid, "--dry-run").stdout.splitlines()
    assert lines[headers[1] + 1 : headers[2]] == ["llamafactory-minor-eval --config examples/eval/minordpo_gsm8k.yaml"]
    plot = lines[headers[2] + 1].split()
    assert plot[:2] == ["llamafactory-minor", "plot"] and plot[-2:] == [
        "--out",
        "outputs/report/minordpo_fig6/training_metrics.png",
    ]
    assert all(r.path in plot for r in grid_mod.runs(os.path.join(REPO, grid)))
    assert "normalized_rewards/margin" in plot


@pytest.mark.parametrize("grid_file", PAPER_GRIDS)
def test_every_paper_grid_names_an_evaluation_that_reads_it(grid_file, monkeypatch):
    monkeypatch.chdir(REPO)
    p = pipeline.plan(grid_file)
    assert os.path.isfile(p.eval_config) and p.report.startswith("outputs/report/")
    assert p.skip_missing is False  # paper scale: a missing run is an error listing them all
    out = io.StringIO()
    assert pipeline.run_pipeline(grid_file, dry_run=True, out=out) == 0
    assert f"llamafactory-minor-eval --config {p.eval_config}" in out.getvalue()


def _grid(tmp_path, evaluate: str = "", runs=("a", "b")) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(
        f"grids:\n  - path: {tmp_path}/runs/{{method}}\n    name: 'run {{method}}'\n    method: [{', '.join(runs)}]\n"
        f"sweep:\n  recipe: {tmp_path}/recipe.yaml\n{evaluate}",
        encoding="utf-8",
    )
    (tmp_path / "recipe.yaml").write_text("stage: sft\n", encoding="utf-8")
    return str(path)


def _eval_config(tmp_path, grid_file: str, skip_missing: bool = False, name: str = "eval.yaml", **extra) -> str:
    path = tmp_path / name
    lines = [
        f"output_dir: {tmp_path / 'eval_out'}",
        f"grid: {{file: {grid_file}, skip_missing: {str(skip_missing).lower()}}}",
        "benchmarks: [gsm8k]",
        *[f"{k}: {v}" for k, v in extra.items()],
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_the_evaluation_must_read_this_grid_and_is_checked_before_training(tmp_path):
    for folder in ("other", "this"):
        (tmp_path / folder).mkdir()
    other = _grid(tmp_path / "other")
    this = _grid(tmp_path / "this", evaluate=f"evaluate: {{config: {_eval_config(tmp_path, other)}}}\n")
    proc = _cli("sweep", this, "--evaluate")
    assert proc.returncode == 2 and f"does not evaluate the runs of {this}" in proc.stderr and other in proc.stderr
    assert not os.path.exists(tmp_path / "this" / "runs")  # nothing was trained
    proc = _cli("sweep", other, "--evaluate")
    assert proc.returncode == 2 and "names no evaluation" in proc.stderr and "--eval-config" in proc.stderr
    bad = _eval_config(tmp_path, other, name="bad.yaml", benchmarks="[mmlu]")
    proc = _cli("sweep", other, "--eval-config", bad, "--dry-run")
    assert proc.returncode == 2 and "unknown benchmark 'mmlu'" in proc.stderr and "Traceback" not in proc.stderr


def _fake_run(path, m_theta):
    os.makedirs(path, exist_ok=True)
    history = [{"step": i + 1, "loss": 1.0 - 0.1 * i, "m_theta": v} for i, v in enumerate(m_theta)]
    with open(os.path.join(path, "trainer_state.json"), "w", encoding="utf-8") as f:
        json.dump({"log_history": history}, f)
    with open(os.path.join(path, "all_results.json"), "w", encoding="utf-8") as f:
        json.dump({"train_loss": 0.5}, f)


def test_missing_checkpoints_stay_the_evaluations_error(tmp_path):
    grid = _grid(tmp_path)
    _fake_run(tmp_path / "runs" / "a", [0.0, -0.1])  # done: the sweep skips it; b is never trained (--only)
    cfg = _eval_config(tmp_path, grid)
    proc = _cli("sweep", grid, "--eval-config", cfg, "--only", "method=a")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "1 of 2 runs" in proc.stderr and "run b" in proc.stderr and "skip_missing: true" in proc.stderr
    assert "the evaluation failed (exit 2): no report written" in proc.stdout
    assert not (tmp_path / "eval_out" / "report").exists()


def test_report_names_every_run_plots_the_logs_and_copies_the_tables(tmp_path):
    evaluate = (
        f"evaluate: {{config: {tmp_path / 'eval.yaml'}, metrics: [m_theta, loss], report: {tmp_path / 'report'}}}\n"
    )
    grid = _grid(tmp_path, evaluate=evaluate, runs=("a", "b", "c"))
    _eval_config(tmp_path, grid, skip_missing=True)
    p = pipeline.plan(grid)
    assert p.metrics == ["m_theta", "loss"] and p.report == str(tmp_path / "report") and p.skip_missing
    all_runs = grid_mod.runs(grid)
    _fake_run(all_runs[0].path, [0.0, -0.1])
    _fake_run(all_runs[1].path, [0.0, -0.3])  # c has no checkpoint: left out by skip_missing
    os.makedirs(p.eval_output_dir)
    for name in ("summary.md", "summary.csv"):
        (tmp_path / "eval_out" / name).write_text(f"| checkpoint | x |\n| run a | 1 |\n<!-- {name} -->\n")
    lines = []
    assert pipeline.write_report(p, all_runs, done_before={all_runs[0].path}, say=lines.append) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| run a |" in report and "already done (reused)" in report
    assert "| run b |" in report and "trained now" in report
    assert "| run c |" in report and "left out of the evaluation (skip_missing)" in report
    assert "Skipped: 1 run(s)" in report and "<!-- summary.md -->" in report
    assert (tmp_path / "report" / "training_metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "report" / "evaluation" / "summary.csv").is_file()
    record = json.loads((tmp_path / "report" / "report.json").read_text())
    assert record["skipped"] == ["run c"] and [r["plotted"] for r in record["runs"]] == [True, True, False]
    assert record["metric_summary"]["run b"]["m_theta"][:2] == [0.0, -0.3]


def test_console_scripts_come_from_the_venv_then_path_else_one_error_naming_the_install(tmp_path, monkeypatch, capsys):
    """The sweep, the pipeline and reproduce find their console scripts with console_script(): the environment's bin
    (next to sys.executable), else PATH; missing, one error naming the package to install, not a traceback."""
    from llamafactory_minor.cli import main
    from llamafactory_minor.experiments import sweep as sweep_mod

    venv_bin, on_path = tmp_path / "venv" / "bin", tmp_path / "path"
    venv_bin.mkdir(parents=True)
    on_path.mkdir()
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", str(on_path))

    def script(folder, name):
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
        (folder / name).chmod(0o755)
        return str(folder / name)

    with pytest.raises(
        sweep_mod.MissingConsoleScript, match=r"`llamafactory-cli` is not installed.*llamafactory==0\.9\.5"
    ):
        sweep_mod.console_script("llamafactory-cli")
    found = script(on_path, "llamafactory-cli")
    assert sweep_mod.console_script("llamafactory-cli") == found  # PATH
    in_venv = script(venv_bin, "llamafactory-cli")
    assert sweep_mod.console_script("llamafactory-cli") == in_venv  # the environment's own first
    with pytest.raises(sweep_mod.MissingConsoleScript, match=r"pip install llamafactory-minor\)"):
        sweep_mod.console_script("llamafactory-minor-eval")

    # the sweep itself: no llamafactory-cli anywhere is the one message, before any run starts
    (venv_bin / "llamafactory-cli").unlink()
    (on_path / "llamafactory-cli").unlink()
    (tmp_path / "recipe.yaml").write_text("stage: sft\n")
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"grids:\n  - path: {tmp_path}/runs/{{m}}\n    m: [a]\nsweep:\n  recipe: {tmp_path}/recipe.yaml\n")
    assert main(["sweep", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "`llamafactory-cli` is not installed" in err and "pip install llamafactory==0.9.5" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_sweep_log_dir_keeps_each_runs_output_and_records_its_time(tmp_path, monkeypatch, capsys):
    """``log_dir``: each run's output in ``<log_dir>/<run>.log`` (the terminal gets one line per run), a failed
    run's last lines printed; a trained run's minor_run.json carries its wall time (reproduce's times come from it)."""
    from llamafactory_minor.experiments import sweep as sweep_mod

    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    cli = venv_bin / "llamafactory-cli"  # a stand-in for `llamafactory-cli train RECIPE ... output_dir=PATH`
    cli.write_text(
        '#!/bin/sh\nfor a in "$@"; do case $a in output_dir=*) out=${a#output_dir=};; esac; done\n'
        'echo "training into $out"\ncase $out in *b) echo "boom: b fails" >&2; exit 3;; esac\n'
        'mkdir -p "$out" && echo "{}" > "$out/all_results.json"\n'
    )
    cli.chmod(0o755)
    grid = _grid(tmp_path)
    io_out = io.StringIO()
    assert sweep_mod.sweep(grid, out=io_out, log_dir=str(tmp_path / "logs")) == 1
    said = io_out.getvalue()
    assert f"(log: {tmp_path / 'logs' / 'run_a.log'})" in said and f"training into {tmp_path}/runs/a" not in said
    assert (tmp_path / "logs" / "run_a.log").read_text() == f"training into {tmp_path}/runs/a\n"
    assert "run b failed (exit 3)" in said and "boom: b fails" in said  # the failed run's log tail
    assert "1 run(s) failed: run b (exit 3)" in capsys.readouterr().err
    info = json.loads((tmp_path / "runs" / "a" / "minor_run.json").read_text())
    assert info["name"] == "run a" and isinstance(info["train_seconds"], float) and info["train_seconds"] >= 0
    assert not (tmp_path / "runs" / "b").exists()
    # rerun: a is done and skipped, b fails again
    io_out = io.StringIO()
    assert sweep_mod.sweep(grid, out=io_out, log_dir=str(tmp_path / "logs")) == 1
    assert "run a: " in io_out.getvalue() and "is done, skipping" in io_out.getvalue()


def test_report_of_a_per_epoch_evaluation_names_the_runs_without_saved_checkpoints(tmp_path):
    """`checkpoints: saved` (every epoch): a run that exists but saved no checkpoint-<step> folder is left out by
    skip_missing, and the report says so instead of calling it trained."""
    evaluate = f"evaluate: {{config: {tmp_path / 'eval.yaml'}, metrics: [loss], report: {tmp_path / 'report'}}}\n"
    grid = _grid(tmp_path, evaluate=evaluate)
    (tmp_path / "eval.yaml").write_text(
        f"output_dir: {tmp_path / 'eval_out'}\n"
        f"grid: {{file: {grid}, skip_missing: true, checkpoints: saved}}\nbenchmarks: [gsm8k]\n",
        encoding="utf-8",
    )
    p = pipeline.plan(grid)
    assert p.saved and p.skip_missing
    all_runs = grid_mod.runs(grid)
    _fake_run(all_runs[0].path, [0.0, -0.1])
    os.makedirs(os.path.join(all_runs[0].path, "checkpoint-2"))
    _fake_run(all_runs[1].path, [0.0, -0.2])  # finished, but saved no checkpoint
    assert pipeline.write_report(p, all_runs, done_before=set(), say=lambda _: None) == 0
    record = json.loads((tmp_path / "report" / "report.json").read_text())
    status = {r["name"]: r["status"] for r in record["runs"]}
    assert status["run a"] == "trained now"
    assert status["run b"].startswith("no checkpoint: no saved checkpoint-<step> folder")
    assert record["skipped"] == ["run b"]

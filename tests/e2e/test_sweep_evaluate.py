"""`llamafactory-minor sweep GRID --evaluate` end to end on the tiny model: the paper-scale pipeline (training sweep
-> llamafactory-minor-eval -> report) run the way the papers' grids run, with 2 runs of 2 steps and a 2-question
local benchmark file, so the chain cannot rot."""

import csv
import json

import pytest
from conftest import tiny_train_config, write_yaml

pytestmark = pytest.mark.e2e

QUESTIONS = [
    {"question": "Tom has 3 apples and buys 2 more. How many apples does he have?", "answer": "3 + 2 = 5\n#### 5"},
    {"question": "A box holds 7 pens. 4 are taken out. How many are left?", "answer": "7 - 4 = 3\n#### 3"},
]


def _experiment(tmp_path, tiny_model):
    """A grid of 4 runs (method x lr) of which the test trains 2 (--only lr=1e-3); the evaluation skips the rest."""
    for method, extra in (("sft", {"track_m_theta": True}), ("minorsft", {"pref_beta": 0.04})):
        cfg = tiny_train_config(tiny_model, tmp_path / "unused", stage=method, max_steps=2, **extra)
        write_yaml(tmp_path, cfg, f"recipe_{method}.yaml")
    bench = tmp_path / "bench" / "gsm8k"
    bench.mkdir(parents=True)
    (bench / "test.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"""grids:
  - path: {tmp_path}/runs/{{method}}_lr{{lr}}
    name: "{{method}} lr={{lr}}"
    method: [sft, minorsft]
    lr: ["1e-3", "5e-4"]
sweep:
  recipe: {tmp_path}/recipe_{{method}}.yaml
  keys: {{lr: learning_rate}}
evaluate:
  config: {tmp_path}/eval.yaml
  metrics: [m_theta, loss]
  report: {tmp_path}/report
""",
        encoding="utf-8",
    )
    (tmp_path / "eval.yaml").write_text(
        f"""output_dir: {tmp_path}/eval_out
grid: {{file: {grid}, skip_missing: true}}
benchmarks: [gsm8k]
data_dir: {tmp_path}/bench
split: {{gsm8k: test}}
gsm8k_max_new_tokens: 8
backend: transformers
batch_size: 2
progress: false
""",
        encoding="utf-8",
    )
    return str(grid)


def test_sweep_evaluate_trains_evaluates_and_reports(tiny_model, run_cli, tmp_path):
    grid = _experiment(tmp_path, tiny_model)
    args = ["sweep", grid, "--evaluate", "--only", "lr=1e-3"]
    proc = run_cli(args, exe="llamafactory-minor", timeout=1800, cwd=tmp_path)
    assert "[pipeline 1/3]" in proc.stdout and "[pipeline 2/3]" in proc.stdout and "[pipeline 3/3]" in proc.stdout
    trained = ["sft lr=1e-3", "minorsft lr=1e-3"]
    for name in trained:
        method = name.split()[0]
        assert (tmp_path / "runs" / f"{method}_lr1e-3" / "minor_run.json").is_file()  # the sweep trained it
    report = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    for name in trained:
        assert f"| {name} |" in report
    assert report.count("trained now") == 2
    assert "Skipped: 2 run(s)" in report and "sft lr=5e-4" in report and "minorsft lr=5e-4" in report
    assert (tmp_path / "report" / "training_metrics.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert sorted(record["metric_summary"]) == sorted(trained)
    for name in trained:
        assert record["metric_summary"][name]["m_theta"][2] == 2  # m_theta logged at both steps
    assert record["skipped"] == ["sft lr=5e-4", "minorsft lr=5e-4"]
    # the evaluation's tables, in the report: one row per trained run, scored on the 2 local questions
    with open(tmp_path / "report" / "evaluation" / "summary.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["checkpoint"] for r in rows] == trained
    assert "| sft lr=1e-3 |" in (tmp_path / "report" / "evaluation" / "summary.md").read_text(encoding="utf-8")
    assert "n=2" in report  # the evaluation's summary table is in the report

    # the same command again: both runs are done (skipped), the evaluation resumes, the report says reused
    again = run_cli(args, exe="llamafactory-minor", timeout=1800, cwd=tmp_path)
    assert again.stdout.count("is done, skipping") == 2
    assert (tmp_path / "report" / "report.md").read_text(encoding="utf-8").count("already done (reused)") == 2

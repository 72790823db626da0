"""Configuration merging, grid expansion, metrics and the summary files (no model needed)."""

import csv
import os

import pytest

from llamafactory_minor_eval.cli import _split_pair, build_parser
from llamafactory_minor_eval.config import build_config, expand_grid
from llamafactory_minor_eval.errors import EvalError
from llamafactory_minor_eval.io_utils import atomic_write_text, read_jsonl
from llamafactory_minor_eval.metrics import compute_metrics
from llamafactory_minor_eval.models import Checkpoint, safe_name
from llamafactory_minor_eval.report import write_reports

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "eval")


def test_cli_overrides_yaml_and_per_benchmark_values():
    yaml_data = {
        "checkpoints": [{"name": "base", "path": "a/b"}],
        "benchmarks": ["ceval", "gsm8k"],
        "split": {"gsm8k": "train", "C-Eval": "dev"},
        "limit": 5,
        "mc_mode": "generation",
    }
    cfg = build_config(yaml_data, {"limit": 7, "mc_mode": "likelihood", "models": None})
    assert cfg.limit_for("ceval") == 7 and cfg.limit_for("gsm8k") == 7 and cfg.mc_mode == "likelihood"
    assert cfg.split_for("ceval") == "dev" and cfg.split_for("gsm8k") == "train"
    assert [c.name for c in cfg.checkpoints] == ["base"]
    cfg = build_config(yaml_data, {"models": [Checkpoint("x", "p")]})
    assert [c.name for c in cfg.checkpoints] == ["x"]


@pytest.mark.parametrize(
    "data,match",
    [
        ({"benchmarks": ["ceval"]}, "no checkpoints"),
        ({"checkpoints": ["a/b"]}, "no benchmarks"),
        ({"checkpoints": ["a/b"], "benchmarks": ["mmlu"]}, "unknown benchmark 'mmlu'"),
        ({"checkpoints": ["a/b"], "benchmarks": ["ceval"], "mc_mode": "logits"}, "mc_mode must be one of"),
        ({"checkpoints": ["a/b", {"path": "c/b"}], "benchmarks": ["ceval"]}, "names must be unique"),
        ({"checkpoints": ["a/b"], "benchmarks": ["ceval"], "limit": 0}, "limit must be a positive"),
        ({"checkpoints": ["a/b"], "benchmarks": ["ceval"], "limit": "many"}, "whole number"),
        ({"checkpoints": ["a/b"], "benchmarks": ["ceval"], "bench": 1}, "unknown key"),
    ],
)
def test_config_errors(data, match):
    with pytest.raises(EvalError, match=match):
        build_config(data, {})


def test_grid_expansion_and_names():
    ckpts = expand_grid(
        {
            "path": "saves/{method}_lr{lr}_b{beta}",
            "name": "{method} lr={lr}",
            "method": ["sft", "minorsft"],
            "lr": [1e-5, 2e-5],
            "beta": 0.04,
            "base": "base/model",
        },
        "x",
    )
    assert [c.path for c in ckpts][:2] == ["saves/sft_lr1e-05_b0.04", "saves/sft_lr2e-05_b0.04"]
    assert ckpts[2].name == "minorsft lr=1e-05" and ckpts[2].meta == {"method": "minorsft", "lr": 1e-5, "beta": 0.04}
    assert all(c.base == "base/model" for c in ckpts)
    with pytest.raises(EvalError, match="has no such list"):
        expand_grid({"path": "saves/{nope}", "lr": [1]}, "x")


def test_example_yamls_parse():
    from llamafactory_minor_eval.config import load_yaml

    for name in sorted(os.listdir(EXAMPLES)):
        if name.endswith(".yaml"):
            build_config(load_yaml(os.path.join(EXAMPLES, name)), {"models": [Checkpoint("m", "some/model")]})


def test_cli_argument_helpers():
    assert _split_pair("base=/x/y", "") == ("base", "/x/y")
    assert _split_pair("/x/y=z", "") == (None, "/x/y=z")
    assert _split_pair("saves/run", "") == (None, "saves/run")
    args = build_parser().parse_args(["--model", "a", "--split", "gsm8k=test", "--split", "dev", "-b", "ceval,gsm8k"])
    assert args.models == ["a"] and args.split == ["gsm8k=test", "dev"]
    assert safe_name("minorsft lr=2e-5 beta=0.04") == "minorsft_lr=2e-5_beta=0.04"


def test_metrics_micro_macro_and_categories():
    recs = [
        {"subject": "a", "correct": True, "parsed": "A", "category": "STEM"},
        {"subject": "a", "correct": False, "parsed": None, "category": "STEM"},
        {"subject": "a", "correct": False, "parsed": "B", "category": "STEM"},
        {"subject": "b", "correct": True, "parsed": "C", "category": "Other"},
    ]
    m = compute_metrics(recs)
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["macro_accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["unparsed"] == 1 and m["subjects"]["a"]["n"] == 3
    assert m["categories"]["STEM"]["accuracy"] == pytest.approx(1 / 3)


def test_wilson_and_bootstrap_intervals():
    from llamafactory_minor_eval.metrics import bootstrap_macro_interval, wilson_interval

    lo, hi = wilson_interval(26, 100)  # by hand: centre 0.26888, half-width 0.08483
    assert lo == pytest.approx(0.18405, abs=1e-4) and hi == pytest.approx(0.35371, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    lo, hi = bootstrap_macro_interval([(5, 10), (9, 10)])
    assert lo < 0.7 < hi and 0.45 < lo and hi < 0.95  # macro 0.7
    assert bootstrap_macro_interval([(5, 10), (9, 10)]) == (lo, hi)  # seeded
    assert bootstrap_macro_interval([(10, 10)]) == (1.0, 1.0)


def _metrics(outcomes, benchmark="ceval", mode="generation", flexible=None):
    recs = []
    for i, (subject, ok) in enumerate(outcomes):
        rec = {"subject": subject, "correct": ok, "parsed": "A" if ok else None, "category": "STEM"}
        if flexible is not None:
            rec.update(parser="strict-v2", correct_flexible=flexible[i], parsed_flexible="1")
        elif mode == "generation":
            rec.update(parser="cascade-v2", parse_rule="cue")
        recs.append(rec)
    m = compute_metrics(recs)
    m.update(benchmark=benchmark, mode=mode, split="val", pool=10)
    return m


def test_reports_micro_macro_ci_details_and_chart(tmp_path):
    ckpts = [
        Checkpoint("base", "m"),
        Checkpoint("minorsft", "saves/x", base="m", adapter="saves/x", meta={"lr": "2e-5"}),
    ]
    ceval = _metrics([("a", True), ("a", False), ("a", False), ("b", True)])
    ceval["_fingerprint"] = {"limit": 4, "seed": 42}
    gsm = _metrics([("gsm8k", True), ("gsm8k", False)], "gsm8k", flexible=[True, True])
    rows = [
        {
            "checkpoint": ckpts[0],
            "metrics": {"ceval": ceval, "gsm8k": gsm},
            "deviation": {"m_theta": 0.0, "reference": "base", "n": 3},
        },
        {"checkpoint": ckpts[1], "metrics": {}, "deviation": {"m_theta": -0.1234, "reference": "base", "n": 3}},
    ]
    write_reports(tmp_path, rows, ["ceval", "gsm8k"], {"ceval": "C-Eval", "gsm8k": "GSM8K"}, deviation_data="d.json")
    md = (tmp_path / "summary.md").read_text()
    assert (
        "| checkpoint | C-Eval micro (gen), n=4 | C-Eval macro (gen), n=4 | GSM8K strict (gen), n=2 | "
        "GSM8K flexible (gen), n=2 | m_theta |"
    ) in md
    lo, hi = ceval["ci95"]
    mlo, mhi = ceval["macro_ci95"]
    assert f"| base | 50.00 [{100 * lo:.1f}, {100 * hi:.1f}] | 66.67 [{100 * mlo:.1f}, {100 * mhi:.1f}] | 50.00 " in md
    assert "| 100.00 [" in md and "| 0.0000 |" in md and "| minorsft | - | - | - | - | -0.1234 |" in md
    assert "Wilson score interval" in md and "bootstrap" in md and "a damaged model comes out negative" in md
    assert "### C-Eval by category" in md and "| STEM micro | STEM macro |" in md
    assert "| base | C-Eval | 4 of 10 (--limit 4; seeded sample, seed 42) | val | generation | cascade-v2 | 2 |" in md
    assert "| base | GSM8K | all 2 | val | generation | strict-v2 / flexible (lm-eval) | 1 (flexible 0) |" in md
    with open(tmp_path / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert table[0]["ceval"] == "50.00" and table[0]["ceval_macro"] == "66.67" and table[1]["lr"] == "2e-5"
    assert table[0]["ceval_ci_low"] == f"{100 * lo:.2f}" and table[0]["ceval_parser"] == "cascade-v2"
    assert table[0]["gsm8k"] == "50.00" and table[0]["gsm8k_flexible"] == "100.00"
    assert table[0]["ceval_pool"] == "10" and table[0]["ceval_selection"].startswith("4 of 10")
    assert table[1]["kind"] == "lora" and table[1]["m_theta"] == "-0.123400"
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"
    write_reports(tmp_path, rows, ["ceval"], {"ceval": "C-Eval"}, table_metric="micro")
    md = (tmp_path / "summary.md").read_text()
    assert "C-Eval micro (gen)" in md and "C-Eval macro" not in md.split("\n")[0]
    # a cell of the first version (no parser, no interval): labelled as such, interval computed
    old = {k: v for k, v in ceval.items() if k not in ("parser", "ci95", "macro_ci95", "parse_rules")}
    write_reports(tmp_path, [{"checkpoint": ckpts[0], "metrics": {"ceval": old}}], ["ceval"], {})
    md = (tmp_path / "summary.md").read_text()
    assert "first-letter-v1" in md and f"50.00 [{100 * lo:.1f}, {100 * hi:.1f}]" in md


def test_chart_draws_micro_macro_chance_and_counts(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llamafactory_minor_eval import report

    seen = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        ax = fig.axes[0]
        seen["bars"] = len(ax.patches)
        seen["labels"] = [t.get_text() for t in ax.get_xticklabels()]
        seen["lines"] = [c for c in ax.collections if c.get_linestyle()[0][1] is not None]
        seen["legend"] = [t.get_text() for t in ax.get_legend().get_texts()]
        seen["titles"] = [a.get_title() for a in fig.axes]
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    ceval = _metrics([("a", True), ("a", False), ("b", True)])
    gsm = _metrics([("gsm8k", True), ("gsm8k", False)], "gsm8k", flexible=[True, True])
    rows = [
        {
            "checkpoint": Checkpoint("base", "m"),
            "metrics": {"ceval": ceval, "gsm8k": gsm},
            "deviation": {"m_theta": -0.5, "reference": "base", "n": 3},
        }
    ]
    png = report.bar_chart(rows, ["ceval", "gsm8k"], {"ceval": "C-Eval", "gsm8k": "GSM8K"}, "both", True)
    assert png[:4] == b"\x89PNG"
    assert seen["bars"] == 4  # micro + macro, strict + flexible
    assert seen["labels"] == ["C-Eval\nmicro | macro\ngen n=3", "GSM8K\nstrict | flexible\ngen n=2"]
    assert "chance (25%)" in seen["legend"] and len(seen["lines"]) == 1  # one chance line: over C-Eval only
    assert "< 0 less likely" in seen["titles"][1]
    # all wrong, and a macro estimate outside its bootstrap interval: still a chart (error bars clipped)
    zero = _metrics([("a", False), ("b", False), ("b", False)])
    odd = dict(ceval, macro_accuracy=0.9)
    rows = [
        {"checkpoint": Checkpoint("z", "m"), "metrics": {"ceval": zero}},
        {"checkpoint": Checkpoint("o", "m"), "metrics": {"ceval": odd}},
    ]
    assert report.bar_chart(rows, ["ceval"], {"ceval": "C-Eval"}, "both")[:4] == b"\x89PNG"
    assert zero["ci95"][0] == 0.0


def test_report_only_collects_every_benchmark_and_mixed_limits(tmp_path):
    from llamafactory_minor_eval.io_utils import atomic_write_json
    from llamafactory_minor_eval.report import collect_rows

    for ckpt, bench, n, limit in (("base", "ceval", 4, 4), ("base", "gsm8k", 2, None), ("other", "ceval", 3, 3)):
        folder = tmp_path / ckpt / bench
        folder.mkdir(parents=True)
        m = _metrics([("a", True)] * n, bench, flexible=[True] * n if bench == "gsm8k" else None)
        m["checkpoint"] = ckpt
        atomic_write_json(folder / "metrics.json", m)
        atomic_write_json(
            folder / "fingerprint.json", {"limit": limit, "seed": 42, "checkpoint": {"model": "/m/" + ckpt}}
        )
        (folder / "samples.jsonl").write_text("")
    rows, benches = collect_rows(tmp_path, [Checkpoint("base", "m")], ["gsm8k"])
    assert benches == ["gsm8k", "ceval"] and [r["checkpoint"].name for r in rows] == ["base", "other"]
    assert rows[1]["checkpoint"].path == "/m/other"
    md = report_md = __import__("llamafactory_minor_eval.report", fromlist=["x"]).summary_markdown(
        rows, benches, {"ceval": "C-Eval", "gsm8k": "GSM8K"}
    )
    assert "| base | " in md and "n=4 |" in md and "n=3 |" in md and "different limits" in report_md
    assert "4 of 10 (--limit 4; seeded sample, seed 42)" in md and "3 of 10 (--limit 3" in md


def _stored_result(out, name, bench="ceval"):
    """A finished (checkpoint, benchmark) pair in an output folder, as the evaluation stores it."""
    from llamafactory_minor_eval.io_utils import atomic_write_json

    folder = out / safe_name(name) / bench
    folder.mkdir(parents=True)
    m = _metrics([("a", True), ("b", False)], bench)
    m["checkpoint"] = name
    atomic_write_json(folder / "metrics.json", m)
    atomic_write_json(folder / "fingerprint.json", {"seed": 42, "checkpoint": {"model": "/m/" + name}})
    (folder / "samples.jsonl").write_text("")


def test_report_names_the_runs_skip_missing_left_out(tmp_path):
    """Issue 10: summary.md and summary.json say which grid runs skip_missing left out (recorded in the output
    folder, so that --report-only rebuilds say it too)."""
    from llamafactory_minor_eval.io_utils import read_json
    from llamafactory_minor_eval.report import SKIPPED_FILE, collect_rows, read_skipped, store_skipped

    out = tmp_path / "out"
    for name in ("base", "sft lr=1"):
        _stored_result(out, name)
    skipped = [{"name": "minorsft lr=1", "path": "saves/minorsft_lr1"}, {"name": "minorsft lr=2", "path": "saves/m2"}]
    store_skipped(out, skipped, config="eval.yaml")
    assert read_skipped(out) == {"config": "eval.yaml", "skipped": skipped}
    # built from the stored pairs only, as --report-only does: the list is read from the folder
    rows, benches = collect_rows(out, [], ["ceval"])
    assert [r["checkpoint"].name for r in rows] == ["base", "sft lr=1"]
    write_reports(out, rows, benches, {"ceval": "C-Eval"}, chart=False)
    md = (out / "summary.md").read_text(encoding="utf-8")
    line = (
        "Skipped: 2 run(s) without a checkpoint were left out of the evaluation (`skip_missing: true` in eval.yaml): "
        "minorsft lr=1 (`saves/minorsft_lr1`), minorsft lr=2 (`saves/m2`)."
    )
    assert md.split("\n\n")[1] == line  # the paragraph right under the table
    assert "| base | " in md and "| sft lr=1 | " in md
    summary = read_json(out / "summary.json")
    assert summary["skipped"] == skipped and summary["skipped_config"] == "eval.yaml"
    assert [r["checkpoint"] for r in summary["rows"]] == ["base", "sft lr=1"]
    # a skipped run whose results an earlier evaluation left in the folder: its row is there, and the line says so
    _stored_result(out, "minorsft lr=2")
    rows, benches = collect_rows(out, [], ["ceval"])
    write_reports(out, rows, benches, {"ceval": "C-Eval"}, chart=False)
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "minorsft lr=1 (`saves/minorsft_lr1`), minorsft lr=2 (`saves/m2`; its row holds results" in md
    # every run found again: the list is removed, the reports say nothing about skipped runs
    store_skipped(out, [], config="eval.yaml")
    assert not (out / SKIPPED_FILE).exists() and read_skipped(out)["skipped"] == []
    write_reports(out, rows, benches, {"ceval": "C-Eval"}, chart=False)
    assert "Skipped:" not in (out / "summary.md").read_text(encoding="utf-8")
    assert read_json(out / "summary.json")["skipped"] == []


def test_cli_records_skip_missing_runs_for_report_only(tmp_path, capsys):
    """The CLI path without a model: a grid config with skip_missing under --report-only records the runs it left out;
    --report-only of the folder alone keeps naming them; once the same config finds them the line is gone."""
    from llamafactory_minor_eval.cli import main
    from llamafactory_minor_eval.io_utils import read_json

    saves, out = tmp_path / "saves", tmp_path / "out"
    for run in ("sft_lr1", "sft_lr2"):
        (saves / run).mkdir(parents=True)
    for name in ("base", "sft_lr1", "minorsft_lr2"):  # minorsft_lr2: results of an earlier evaluation
        _stored_result(out, name)
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        f"""
checkpoints:
  - {{name: base, path: "{saves}/base"}}
grid:
  path: "{saves}/{{method}}_lr{{lr}}"
  name: "{{method}}_lr{{lr}}"
  method: [sft, minorsft]
  lr: [1, 2]
  skip_missing: true
benchmarks: [ceval]
output_dir: "{out}"
chart: false
progress: false
""",
        encoding="utf-8",
    )
    line = (
        f"Skipped: 2 run(s) without a checkpoint were left out of the evaluation (`skip_missing: true` in {cfg}): "
        f"minorsft_lr1 (`{saves}/minorsft_lr1`), "
        f"minorsft_lr2 (`{saves}/minorsft_lr2`; its row holds results of an earlier evaluation)."
    )
    assert main(["--config", str(cfg), "--report-only"]) == 0
    captured = capsys.readouterr()
    assert f"[grid] skip_missing: left out minorsft_lr1: {saves}/minorsft_lr1 has no checkpoint" in captured.err
    assert line in (out / "summary.md").read_text(encoding="utf-8") and line in captured.out
    assert read_json(out / "summary.json")["skipped"] == [
        {"name": "minorsft_lr1", "path": f"{saves}/minorsft_lr1"},
        {"name": "minorsft_lr2", "path": f"{saves}/minorsft_lr2"},
    ]
    # --report-only of the folder alone (no config, no grid): the stored list is kept
    assert main(["--report-only", "-o", str(out), "--no-chart"]) == 0
    assert line in (out / "summary.md").read_text(encoding="utf-8")
    # the checkpoints are there now: the same config finds every run and clears the list
    for run in ("minorsft_lr1", "minorsft_lr2"):
        (saves / run).mkdir()
    assert main(["--config", str(cfg), "--report-only"]) == 0
    assert "Skipped:" not in (out / "summary.md").read_text(encoding="utf-8")
    assert read_json(out / "summary.json")["skipped"] == [] and not (out / "skipped_runs.json").exists()


def test_atomic_write_and_partial_jsonl(tmp_path):
    path = tmp_path / "a" / "b.txt"
    atomic_write_text(path, "x")
    assert path.read_text() == "x" and os.listdir(path.parent) == ["b.txt"]
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)
    j = tmp_path / "p.jsonl"
    j.write_text('{"a": 1}\n{"a": 2}\n{"a": ', encoding="utf-8")
    assert read_jsonl(j) == [{"a": 1}, {"a": 2}]

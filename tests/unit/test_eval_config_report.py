"""Configuration merging, grid expansion, metrics and the summary files (no model needed)."""

import csv
import os

import pytest

from llamafactory_minor_eval.cli import _split_pair, build_parser
from llamafactory_minor_eval.config import build_config, expand_grid
from llamafactory_minor_eval.errors import EvalError
from llamafactory_minor_eval.io_utils import atomic_write_text, read_jsonl
from llamafactory_minor_eval.models import Checkpoint, safe_name
from llamafactory_minor_eval.report import write_reports
from llamafactory_minor_eval.runner import compute_metrics

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "eval")


def test_cli_overrides_yaml_and_per_benchmark_values():
    yaml_data = {"checkpoints": [{"name": "base", "path": "a/b"}], "benchmarks": ["ceval", "gsm8k"],
                 "split": {"gsm8k": "train", "C-Eval": "dev"}, "limit": 5, "mc_mode": "generation"}
    cfg = build_config(yaml_data, {"limit": 7, "mc_mode": "likelihood", "models": None})
    assert cfg.limit == 7 and cfg.mc_mode == "likelihood"
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
    ckpts = expand_grid({"path": "saves/{method}_lr{lr}_b{beta}", "name": "{method} lr={lr}", "method": ["sft", "minorsft"],
                         "lr": [1e-5, 2e-5], "beta": 0.04, "base": "base/model"}, "x")
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


def test_reports_table_csv_and_chart(tmp_path):
    ckpts = [Checkpoint("base", "m"), Checkpoint("minorsft", "saves/x", base="m", adapter="saves/x", meta={"lr": "2e-5"})]
    metrics = {"accuracy": 0.5, "macro_accuracy": 0.25, "n": 4, "correct": 2, "unparsed": 1, "mode": "generation",
               "split": "val", "subjects": {"a": {"n": 4, "correct": 2, "accuracy": 0.5, "unparsed": 1}}, "categories": {}}
    rows = [{"checkpoint": ckpts[0], "metrics": {"ceval": metrics}, "deviation": {"m_theta": 0.0, "reference": "base", "n": 3}},
            {"checkpoint": ckpts[1], "metrics": {}, "deviation": {"m_theta": -0.1234, "reference": "base", "n": 3}}]
    write_reports(tmp_path, rows, ["ceval", "gsm8k"], {"ceval": "C-Eval", "gsm8k": "GSM8K"}, deviation_data="d.json")
    md = (tmp_path / "summary.md").read_text()
    assert "| checkpoint | C-Eval (gen) | GSM8K | m_theta |" in md
    assert "| base | 50.00 | - | 0.0000 |" in md and "| minorsft | - | - | -0.1234 |" in md
    with open(tmp_path / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert table[0]["ceval"] == "50.00" and table[0]["ceval_macro"] == "25.00" and table[1]["lr"] == "2e-5"
    assert table[1]["kind"] == "lora" and table[1]["m_theta"] == "-0.123400"
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"
    write_reports(tmp_path, rows, ["ceval"], {"ceval": "C-Eval"}, table_metric="both")
    assert "| base | 50.00 (25.00) |" in (tmp_path / "summary.md").read_text()


def test_atomic_write_and_partial_jsonl(tmp_path):
    path = tmp_path / "a" / "b.txt"
    atomic_write_text(path, "x")
    assert path.read_text() == "x" and os.listdir(path.parent) == ["b.txt"]
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)
    j = tmp_path / "p.jsonl"
    j.write_text('{"a": 1}\n{"a": 2}\n{"a": ', encoding="utf-8")
    assert read_jsonl(j) == [{"a": 1}, {"a": 2}]

"""End-to-end runs of llamafactory-minor-eval with the transformers backend on the tiny model.

Uses the shared conftest fixtures (tiny_model, run_cli) and the evaluation fixtures with real rows in
tests/fixtures/eval. The whole file takes well under a minute on 2 cores.
"""

import csv
import json
import os
import shutil
import sys

import pytest

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "eval")
sys.path.insert(0, os.path.abspath(FIX))
from eval_helpers import make_lora, make_other_tiny  # noqa: E402

from llamafactory_minor_eval.cli import main  # noqa: E402
from llamafactory_minor_eval.parsing import parse_choice  # noqa: E402

pytestmark = pytest.mark.e2e

DATA = ["--data-dir", FIX, "--split", "dev", "--split", "gsm8k=train"]
DEV = os.path.join(FIX, "deviation", "alpaca_mini.json")


@pytest.fixture(scope="module")
def lora(tiny_model, tmp_path_factory):
    return make_lora(tiny_model, str(tmp_path_factory.mktemp("lora") / "tiny_lora"), scale=0.5)


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_backend_batching_matches_single_sequences(tiny_model, lora):
    import torch

    from llamafactory_minor_eval.backends.base import PromptEncoder
    from llamafactory_minor_eval.backends.hf import TransformersBackend

    backend = TransformersBackend(tiny_model, adapter=lora, batch_size=3)
    enc = PromptEncoder(backend.tokenizer)
    prompts = [enc.encode(p)[1] for p in ["short", "a somewhat longer prompt here", "x " * 30, "mid length one"]]
    letters = enc.letter_token_ids()
    batched = backend.choice_logprobs(prompts, letters)
    backend.batch_size = 1
    single = backend.choice_logprobs(prompts, letters)
    flat = lambda rows: [v for row in rows for v in row]  # noqa: E731
    assert flat(batched) == pytest.approx(flat(single), abs=1e-4)
    pairs = [(p, enc.encode_text(" an answer")) for p in prompts]
    seq_single = backend.sequence_logprobs(pairs)
    gen_single = backend.generate(prompts, 6)
    backend.batch_size = 4
    assert backend.sequence_logprobs(pairs) == pytest.approx(seq_single, abs=1e-3)
    assert backend.generate(prompts, 6) == gen_single
    # manual check of one answer log-prob with an unpadded forward
    x, y = pairs[0]
    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([x + y])).logits[0]
    logp = torch.log_softmax(logits, -1)
    manual = sum(float(logp[len(x) - 1 + i, t]) for i, t in enumerate(y))
    assert seq_single[0] == pytest.approx(manual, abs=1e-3)
    backend.close()


def test_cli_full_and_lora_on_all_benchmarks_then_resume(tiny_model, lora, tmp_path, run_cli):
    out = tmp_path / "out"
    lora = shutil.copytree(lora, tmp_path / "lora")  # its own copy: its weights are replaced below
    args = [
        "--model",
        f"base={tiny_model}",
        "--model",
        f"lora={lora}",
        "-b",
        "ceval,financeiq,fineval,gsm8k",
        *DATA,
        "--limit",
        "3",
        "--mc-mode",
        "likelihood",
        "--gsm8k-max-new-tokens",
        "8",
        "--deviation-data",
        DEV,
        "-o",
        str(out),
        "--no-progress",
    ]
    proc = run_cli(args, exe="llamafactory-minor-eval")
    assert (
        "| checkpoint | C-Eval micro (lik), n=3 | C-Eval macro (lik), n=3 | FinanceIQ micro (lik), n=3 | "
        "FinanceIQ macro (lik), n=3 | FinEval micro (lik), n=3 | FinEval macro (lik), n=3 | "
        "GSM8K strict (gen), n=3 | GSM8K flexible (gen), n=3 | m_theta |"
    ) in proc.stdout
    assert "answered by option likelihood" in proc.stderr
    rows = _rows(out / "summary.csv")
    assert [r["checkpoint"] for r in rows] == ["base", "lora"]
    assert rows[1]["kind"] == "lora" and rows[0]["kind"] == "full"
    assert float(rows[0]["m_theta"]) == 0.0 and abs(float(rows[1]["m_theta"])) > 1e-4
    assert rows[1]["m_theta_reference"] == "base"
    for name in ("ceval", "financeiq", "fineval", "gsm8k"):
        assert rows[0][f"{name}_n"] == "3"
        samples = _jsonl(out / "lora" / name / "samples.jsonl")
        assert len(samples) == 3
        for rec in samples:
            assert {"prompt", "output", "parsed", "gold", "correct", "input"} <= set(rec)
            assert rec["correct"] == (rec["parsed"] == rec["gold"]) or name == "gsm8k"
        metrics = json.load(open(out / "lora" / name / "metrics.json"))
        assert metrics["n"] == 3 and metrics["correct"] == sum(r["correct"] for r in samples)
        assert metrics["mode"] == ("generation" if name == "gsm8k" else "likelihood")
    first = _jsonl(out / "base" / "ceval" / "samples.jsonl")[0]
    assert first["prompt"].startswith("You need to choose one of the four options")
    assert "<|im_start|>user" in first["input"] and set(first["scores"]) == {"A", "B", "C", "D"}
    fin = _jsonl(out / "base" / "fineval" / "samples.jsonl")[0]
    assert fin["prompt"].startswith("Please answer the questions based on the context provided.")
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.md").is_file() and (out / "subjects.csv").is_file() and (out / "run_config.yaml").is_file()
    assert not list(out.rglob("*.partial.jsonl")) and not list(out.rglob("*.tmp"))

    # resume: every pair is done, nothing is loaded
    proc = run_cli(args, exe="llamafactory-minor-eval")
    assert "[skip] base: all pairs already done" in proc.stderr and "[load]" not in proc.stderr
    # other settings in the same folder: refused, results kept; --overwrite redoes them
    proc = run_cli(
        args[:-5] + ["--limit", "2", "-o", str(out), "--no-progress", "--deviation-data", DEV],
        exe="llamafactory-minor-eval",
        check=False,
    )
    assert proc.returncode == 2 and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert len(_jsonl(out / "base" / "ceval" / "samples.jsonl")) == 3

    # the adapter retrained in place (same folder, other weights): its pairs and m_theta are redone, base's reused
    base_before = {n: (out / "base" / n / "samples.jsonl").read_bytes() for n in ("ceval", "gsm8k")}
    lora_before = {n: _jsonl(out / "lora" / n / "samples.jsonl") for n in ("ceval", "gsm8k")}
    other = make_lora(tiny_model, str(tmp_path / "retrained"), seed=1, scale=0.5)
    weights = os.path.join(lora, "adapter_model.safetensors")
    with open(os.path.join(other, "adapter_model.safetensors"), "rb") as src, open(weights, "r+b") as dst:
        dst.truncate(0)
        dst.write(src.read())
    proc = run_cli(args, exe="llamafactory-minor-eval")
    assert "[skip] base: all pairs already done" in proc.stderr
    assert "[load] lora:" in proc.stderr and "for ceval, financeiq, fineval, gsm8k, deviation" in proc.stderr
    assert "[redo] lora | ceval: the checkpoint's files changed at the same path" in proc.stderr
    assert {n: (out / "base" / n / "samples.jsonl").read_bytes() for n in ("ceval", "gsm8k")} == base_before
    after = {n: _jsonl(out / "lora" / n / "samples.jsonl") for n in ("ceval", "gsm8k")}
    assert [r["scores"] for r in after["ceval"]] != [r["scores"] for r in lora_before["ceval"]]
    m_theta = float(_rows(out / "summary.csv")[1]["m_theta"])
    assert m_theta != float(rows[1]["m_theta"])

    # the same files moved to another folder: every pair is reused, nothing is loaded
    moved = shutil.move(lora, tmp_path / "moved_lora")
    moved_args = [a if a != f"lora={lora}" else f"lora={moved}" for a in args]
    proc = run_cli(moved_args, exe="llamafactory-minor-eval")
    assert "[load]" not in proc.stderr and "[redo]" not in proc.stderr
    assert float(_rows(out / "summary.csv")[1]["m_theta"]) == m_theta


def test_generation_mode_parses_and_counts_unparsed(tiny_model, tmp_path, capsys):
    out = tmp_path / "gen"
    rc = main(
        [
            "--model",
            tiny_model,
            "-b",
            "ceval",
            *DATA,
            "--limit",
            "4",
            "--mc-max-new-tokens",
            "6",
            "-o",
            str(out),
            "--no-progress",
            "--no-chart",
            "--batch-size",
            "3",
        ]
    )
    assert rc == 0
    name = os.path.basename(tiny_model)
    samples = _jsonl(out / name / "ceval" / "samples.jsonl")
    from llamafactory_minor_eval.data import load_split

    options = {s.key: s.options for s in load_split("ceval", os.path.join(FIX, "ceval"), "dev")}
    for rec in samples:
        assert rec["mode"] == "generation" and rec["parsed"] == parse_choice(rec["output"], options[rec["key"]])
    metrics = json.load(open(out / name / "ceval" / "metrics.json"))
    assert metrics["unparsed"] == sum(r["parsed"] is None for r in samples)
    assert "C-Eval micro (gen), n=4" in capsys.readouterr().out
    assert not (out / "summary.png").exists()


def test_unfinished_pair_resumes_from_its_partial_file(tiny_model, tmp_path, capsys):
    out = tmp_path / "res"
    args = [
        "--model",
        f"m={tiny_model}",
        "-b",
        "gsm8k",
        *DATA,
        "--gsm8k-max-new-tokens",
        "4",
        "-o",
        str(out),
        "--no-progress",
        "--no-chart",
    ]
    assert main(args) == 0
    pair = out / "m" / "gsm8k"
    done = _jsonl(pair / "samples.jsonl")
    assert len(done) == 6
    # simulate a crash after two answers (and half a line)
    (pair / "metrics.json").unlink()
    (pair / "samples.jsonl").unlink()
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done[:2]) + '{"key": "gsm8k/2", "outp'
    (pair / "samples.partial.jsonl").write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert main(args) == 0
    assert "[resume] m | gsm8k: 2 answered before, 4 to go" in capsys.readouterr().err
    again = _jsonl(pair / "samples.jsonl")
    assert again[:2] == done[:2] and [r["key"] for r in again] == [r["key"] for r in done]
    assert again == done  # greedy: the same answers


def test_yaml_grid_of_runs(tiny_model, lora, tmp_path, capsys):
    runs = tmp_path / "saves"
    for method in ("sft", "minorsft"):
        for lr in ("1e-5", "2e-5"):
            shutil.copytree(lora, runs / f"{method}_lr{lr}_b0.04")
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(
        f"""
checkpoints:
  - name: base
    path: {tiny_model}
grid:
  path: {runs}/{{method}}_lr{{lr}}_b{{beta}}
  name: "{{method}} lr={{lr}} b={{beta}}"
  base: {tiny_model}
  method: [sft, minorsft]
  lr: [1e-5, 2e-5]
  beta: [0.04]
benchmarks: [ceval]
data_dir: {FIX}
split: dev
limit: 2
mc_mode: likelihood
output_dir: {tmp_path / "grid_out"}
progress: false
chart: false
""",
        encoding="utf-8",
    )
    assert main(["--config", str(cfg)]) == 0
    rows = _rows(tmp_path / "grid_out" / "summary.csv")
    assert [r["checkpoint"] for r in rows] == [
        "base",
        "sft lr=1e-5 b=0.04",
        "sft lr=2e-5 b=0.04",
        "minorsft lr=1e-5 b=0.04",
        "minorsft lr=2e-5 b=0.04",
    ]
    assert rows[3]["method"] == "minorsft" and rows[3]["lr"] == "1e-5" and rows[3]["beta"] == "0.04"
    md = (tmp_path / "grid_out" / "summary.md").read_text(encoding="utf-8")
    table = md.split("\n\n")[0].splitlines()
    assert len(table) == 7 and table[0].startswith(
        "| checkpoint | C-Eval micro (lik), n=2 | C-Eval macro (lik), n=2 |"
    )
    # skip_missing: a run folder removed is left out with a log line naming it
    shutil.rmtree(runs / "sft_lr2e-5_b0.04")
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace("  beta: [0.04]\n", "  beta: [0.04]\n  skip_missing: true\n"),
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["--config", str(cfg), "--report-only"]) == 0
    err = capsys.readouterr().err
    assert "[grid] skip_missing: left out sft lr=2e-5 b=0.04:" in err and "sft_lr2e-5_b0.04 has no checkpoint" in err
    # ... and the report says so (its row: the results of the first evaluation), also when rebuilt from the folder
    # alone; once the same config finds the checkpoint again, the line is gone
    line = (
        "Skipped: 1 run(s) without a checkpoint were left out of the evaluation "
        f"(`skip_missing: true` in {cfg}): sft lr=2e-5 b=0.04 (`{runs}/sft_lr2e-5_b0.04`; its row holds results "
        "of an earlier evaluation)."
    )
    out = tmp_path / "grid_out"
    assert line in (out / "summary.md").read_text(encoding="utf-8")
    skipped = [{"name": "sft lr=2e-5 b=0.04", "path": f"{runs}/sft_lr2e-5_b0.04"}]
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["skipped"] == skipped
    assert main(["--report-only", "-o", str(out), "--no-chart"]) == 0
    assert line in (out / "summary.md").read_text(encoding="utf-8")
    shutil.copytree(lora, runs / "sft_lr2e-5_b0.04")
    assert main(["--config", str(cfg), "--report-only"]) == 0
    assert "Skipped:" not in (out / "summary.md").read_text(encoding="utf-8")
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["skipped"] == []


def test_limits_per_benchmark_first_n_and_report_only_over_mixed_limits(tiny_model, tmp_path, capsys):
    out = tmp_path / "o"
    common = [
        "--model",
        f"tiny={tiny_model}",
        *DATA,
        "--mc-mode",
        "likelihood",
        "--gsm8k-max-new-tokens",
        "4",
        "-o",
        str(out),
        "--no-progress",
        "--no-chart",
    ]
    assert main([*common, "-b", "ceval,gsm8k", "--limit", "3", "--limit", "gsm8k=2", "--limit-mode", "first"]) == 0
    err = capsys.readouterr().err
    assert "C-Eval: 3 of 5 questions, the first 3" in err and "GSM8K: 2 of 6 questions, the first 2" in err
    ceval = _jsonl(out / "tiny" / "ceval" / "samples.jsonl")
    assert [r["key"] for r in ceval] == ["accountant/0", "accountant/1", "accountant/2"]  # first N in file order
    assert len(_jsonl(out / "tiny" / "gsm8k" / "samples.jsonl")) == 2
    # another benchmark with another limit into the same folder: the summary still lists all three
    assert main([*common, "-b", "financeiq", "--limit", "4"]) == 0
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "C-Eval micro" in md and "GSM8K strict" in md and "FinanceIQ micro" in md
    assert "3 of 5 (--limit 3; first in file order)" in md and "4 of 6 (--limit 4; seeded sample, seed 42)" in md
    # a second checkpoint folder run with a different limit: one table from --report-only, saying so
    assert (
        main(
            [
                "--model",
                f"other={tiny_model}",
                *DATA,
                "-b",
                "ceval",
                "--limit",
                "2",
                "--mc-mode",
                "likelihood",
                "-o",
                str(out),
                "--no-progress",
                "--no-chart",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["--report-only", "-o", str(out), "--no-chart"]) == 0
    md = capsys.readouterr().out
    table = {line.split(" | ")[0][2:]: line for line in md.split("\n\n")[0].splitlines()[2:]}
    assert set(table) == {"tiny", "other"}  # without --model: every checkpoint folder (sorted by folder)
    assert " n=3 |" in table["tiny"] and " n=2 |" in table["other"] and "| - |" in table["other"]
    assert "pairs run with different limits" in md
    summary = _rows(out / "summary.csv")
    assert {r["checkpoint"]: r["ceval_n"] for r in summary} == {"tiny": "3", "other": "2"}


def test_generation_records_parser_rule_and_gsm8k_strict_and_flexible(tiny_model, tmp_path):
    out = tmp_path / "g"
    assert (
        main(
            [
                "--model",
                f"t={tiny_model}",
                "-b",
                "ceval,gsm8k",
                *DATA,
                "--limit",
                "2",
                "--mc-max-new-tokens",
                "4",
                "--gsm8k-max-new-tokens",
                "6",
                "-o",
                str(out),
                "--no-progress",
                "--no-chart",
            ]
        )
        == 0
    )
    for rec in _jsonl(out / "t" / "ceval" / "samples.jsonl"):
        assert rec["parser"] == "cascade-v2" and rec["parse_rule"] in ("cue", "first", "only", "option-text", "none")
    m = json.load(open(out / "t" / "gsm8k" / "metrics.json"))
    assert m["parser"] == "strict-v2" and m["flexible"]["n"] == 2 and "ci95" in m and "ci95" in m["flexible"]
    for rec in _jsonl(out / "t" / "gsm8k" / "samples.jsonl"):
        assert "parsed_flexible" in rec and "correct_flexible" in rec
    row = _rows(out / "summary.csv")[0]
    assert row["gsm8k_parser"] == "strict-v2" and row["gsm8k_flexible"] != ""


# ------------------------------------------------------------------------------------------ bad input


def _err(capsys):
    err = capsys.readouterr().err
    return err


def test_bad_input_unknown_benchmark(tiny_model, tmp_path, capsys):
    assert main(["--model", tiny_model, "-b", "ceval,mmlu", *DATA, "-o", str(tmp_path)]) == 2
    assert "error: unknown benchmark 'mmlu'; valid benchmarks: ceval, financeiq, fineval, gsm8k" in _err(capsys)


def test_bad_input_missing_model_path(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "no_such_model"), "-b", "ceval", *DATA, "-o", str(tmp_path)]) == 2
    err = _err(capsys)
    assert "error: model path" in err and "no_such_model does not exist" in err


def test_bad_input_mistyped_relative_model_path_fails_at_once(tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "SmolLM2").mkdir(parents=True)
    t0 = time.time()
    assert main(["--model", "models/NoSuch", "-b", "ceval", *DATA, "-o", str(tmp_path / "o")]) == 2
    err = _err(capsys)
    assert "models/NoSuch does not exist: there is a folder models/ here but no models/NoSuch" in err
    assert "SmolLM2" in err and time.time() - t0 < 10
    # no local folder of that name and the hub offline: said at once, no retries
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    assert main(["--model", "someorg/NoSuchModel", "-b", "ceval", *DATA, "-o", str(tmp_path / "o")]) == 2
    err = _err(capsys)
    assert "someorg/NoSuchModel: no such folder" in err and "HF_HUB_OFFLINE=1" in err and time.time() - t0 < 10


def test_bad_input_data_layouts(tiny_model, tmp_path, capsys):
    # FinEval's upstream layout: dev/ beside sufe_data1/dev/ -- only dev/ is read, the other is named
    data = tmp_path / "data"
    shutil.copytree(os.path.join(FIX, "fineval", "dev"), data / "fineval" / "dev")
    shutil.copytree(os.path.join(FIX, "fineval_bom", "dev"), data / "fineval" / "sufe_data1" / "dev")
    assert (
        main(
            [
                "--model",
                tiny_model,
                "-b",
                "fineval",
                "--data-dir",
                str(data),
                "--split",
                "dev",
                "--mc-mode",
                "likelihood",
                "-o",
                str(tmp_path / "o"),
                "--no-progress",
                "--no-chart",
            ]
        )
        == 0
    )
    err = _err(capsys)
    assert "FinEval: 6 of 6 questions" in err and "[data] note: fineval:" in err and "sufe_data1" in err
    # a duplicate subject: error naming both files, before any model is loaded
    shutil.copy(data / "fineval" / "dev" / "finance_dev.csv", data / "fineval" / "dev" / "finance.csv")
    assert (
        main(
            [
                "--model",
                tiny_model,
                "-b",
                "fineval",
                "--data-dir",
                str(data),
                "--split",
                "dev",
                "-o",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )
    err = _err(capsys)
    assert "subject 'finance'" in err and "finance.csv" in err and "finance_dev.csv" in err and "[load]" not in err
    # --few-shot without the dev split names the pool
    (data / "fineval" / "dev" / "finance.csv").unlink()
    shutil.move(str(data / "fineval" / "dev"), str(data / "fineval" / "val"))
    shutil.rmtree(data / "fineval" / "sufe_data1")
    assert (
        main(
            [
                "--model",
                tiny_model,
                "-b",
                "fineval",
                "--data-dir",
                str(data),
                "--few-shot",
                "2",
                "-o",
                str(tmp_path / "o3"),
            ]
        )
        == 2
    )
    assert "--few-shot 2 takes its examples from the 'dev' split" in _err(capsys)


def test_bad_input_renamed_column(tiny_model, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(os.path.join(FIX, "financeiq"), data / "financeiq")
    path = data / "financeiq" / "dev" / "税务师.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(",Question,", ",Query,"), encoding="utf-8")
    assert (
        main(
            [
                "--model",
                tiny_model,
                "-b",
                "financeiq",
                "--data-dir",
                str(data),
                "--split",
                "dev",
                "-o",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = _err(capsys)
    assert "税务师.csv: missing column 'question'" in err and "Query" in err


def test_bad_input_empty_dataset(tiny_model, tmp_path, capsys):
    (tmp_path / "ceval" / "dev").mkdir(parents=True)
    (tmp_path / "ceval" / "dev" / "x_dev.csv").write_text("id,question,A,B,C,D,answer\r\n", encoding="utf-8")
    assert (
        main(
            [
                "--model",
                tiny_model,
                "-b",
                "ceval",
                "--data-dir",
                str(tmp_path),
                "--split",
                "dev",
                "-o",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "has no rows" in _err(capsys)
    assert (
        main(["--model", tiny_model, "-b", "ceval", *DATA, "--subjects", "ceval=nope", "-o", str(tmp_path / "o")]) == 2
    )
    assert "unknown subject 'nope'" in _err(capsys)


def test_bad_input_adapter_for_another_base(tiny_model, tmp_path, capsys):
    other = make_other_tiny(str(tmp_path / "other_base"), tiny_model)
    adapter = make_lora(other, str(tmp_path / "other_lora"))
    assert main(["--model", adapter, "--base", tiny_model, "-b", "ceval", *DATA, "-o", str(tmp_path / "o")]) == 2
    err = _err(capsys)
    assert "does not fit base model" in err and "Traceback" not in err


def test_results_already_written_are_kept_when_a_later_checkpoint_fails(tiny_model, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(os.path.join(tiny_model, "config.json"), broken / "config.json")  # no weights, no tokenizer
    out = tmp_path / "o"
    rc = main(
        [
            "--model",
            f"good={tiny_model}",
            "--model",
            f"broken={broken}",
            "-b",
            "ceval",
            *DATA,
            "--limit",
            "2",
            "--mc-mode",
            "likelihood",
            "-o",
            str(out),
            "--no-progress",
            "--no-chart",
        ]
    )
    assert rc == 2
    assert "error: " in _err(capsys)
    assert len(_jsonl(out / "good" / "ceval" / "samples.jsonl")) == 2
    rows = _rows(out / "summary.csv")
    assert rows[0]["checkpoint"] == "good" and rows[0]["ceval_n"] == "2" and rows[1]["ceval_n"] == ""


def test_bad_yaml_key_and_help(tmp_path, capsys, run_cli):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("benchmark: [ceval]\n", encoding="utf-8")
    assert main(["--config", str(cfg)]) == 2
    assert "unknown key(s) benchmark" in _err(capsys)
    proc = run_cli(["--help"], exe="llamafactory-minor-eval")
    for option in (
        "--model",
        "--base",
        "--benchmarks",
        "--data-dir",
        "--data",
        "--split",
        "--subjects",
        "--limit",
        "--limit-per-subject",
        "--seed",
        "--few-shot",
        "--mc-mode",
        "--mc-max-new-tokens",
        "--gsm8k-max-new-tokens",
        "--chat-template",
        "--system-prompt",
        "--backend",
        "--batch-size",
        "--dtype",
        "--device",
        "--tensor-parallel-size",
        "--deviation-data",
        "--reference",
        "--output-dir",
        "--overwrite",
        "--keep-going",
        "--table-metric",
        "--no-chart",
        "--report-only",
    ):
        assert option in proc.stdout

"""lm-eval-harness tasks in the batch evaluation: the real ``llamafactory-minor-eval`` runs PoFT's lm-eval
tasks (pointed at the local fixtures of tests/fixtures/lmeval) beside our C-Eval over a base + LoRA
checkpoint list, with lm-eval's own HF backend; their scores land in the same summary.md / summary.csv /
summary.json (labelled with lm-eval's metric and n) and chart as ours and the m_theta column; a re-run (here
from a YAML file with the same settings) reuses every finished (checkpoint, task) pair; --report-only keeps
them; a removed pair is redone alone; other settings and unknown tasks are refused before any model loads.

The tiny random model keeps it fast (its scores are noise: what is checked is the plumbing, and that the
numbers in our tables are lm-eval's own aggregates).
"""

import csv
import json
import os
import sys

import pytest

# lm-eval-harness: skipped without it, failing under CI=true (conftest.require_lm_eval)
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("lm_eval_harness")]

FIX = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "fixtures"))
sys.path.insert(0, os.path.join(FIX, "eval"))
from eval_helpers import make_lora  # noqa: E402

EVAL = os.path.join(FIX, "eval")
LOCAL = os.path.join(FIX, "lmeval")
DEV = os.path.join(EVAL, "deviation", "alpaca_mini.json")
TASKS = "arc_challenge@2,truthfulqa_mc2,winogrande@1,gsm8k@1,mmlu:astronomy@1"
# column -> (documents in the fixtures, lm-eval's key of the reported number, header of summary.md)
EXPECTED = {
    "lm-arc_challenge": (4, "acc_norm,none", "arc_challenge 2-shot acc_norm [lm-eval], n=4"),
    "lm-truthfulqa_mc2": (4, "acc,none", "truthfulqa_mc2 0-shot acc (mc2) [lm-eval], n=4"),
    "lm-winogrande": (4, "acc,none", "winogrande 1-shot acc [lm-eval], n=4"),
    "lm-gsm8k": (3, "exact_match,flexible-extract", "gsm8k 1-shot exact_match (flexible-extract) [lm-eval], n=3"),
    "lm-mmlu": (3, "acc,none", "mmlu 1-shot acc [lm-eval], n=3"),
}


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_lmeval_tasks_beside_our_benchmarks_same_tables_resume_report_only(tiny_model, tmp_path, run_cli):
    lora = make_lora(tiny_model, str(tmp_path / "lora"), scale=2.0)
    out = tmp_path / "out"
    common = [
        "-b",
        "ceval",
        "--data-dir",
        EVAL,
        "--split",
        "dev",
        "--limit",
        "3",
        "--mc-mode",
        "likelihood",
        "--lmeval-data-dir",
        LOCAL,
        "--lmeval-max-gen-toks",
        "8",
        "--batch-size",
        "4",
        "--deviation-data",
        DEV,
        "-o",
        str(out),
        "--no-progress",
    ]
    args = ["--model", f"base={tiny_model}", "--model", f"lora={lora}", "--lmeval-tasks", TASKS, *common]
    proc = run_cli(args, exe="llamafactory-minor-eval")
    assert "[lm-eval] arc_challenge 2-shot acc_norm, truthfulqa_mc2 0-shot acc (mc2)" in proc.stderr
    assert "10 of 10 (checkpoint, task) pairs to run" in proc.stderr
    assert (
        "[load] base: lm-eval transformers for arc_challenge, truthfulqa_mc2, winogrande, gsm8k, mmlu" in proc.stderr
    )

    # summary.md: our columns, then the lm-eval ones with their metric and n, then m_theta, in one table
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| checkpoint |"))
    assert header == (
        "| checkpoint | C-Eval micro (lik), n=3 | C-Eval macro (lik), n=3 | "
        + " | ".join(h for _, _, h in EXPECTED.values())
        + " | m_theta |"
    )
    assert "[lm-eval] columns: scores of lm-eval-harness's own tasks" in proc.stdout
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "| base | arc_challenge 2-shot acc_norm [lm-eval] | all 4 |" in md  # run details

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["benchmarks"] == ["ceval", *EXPECTED]
    csv_rows = _rows(out / "summary.csv")
    assert [r["checkpoint"] for r in csv_rows] == ["base", "lora"]
    assert float(csv_rows[0]["m_theta"]) == 0.0 and abs(float(csv_rows[1]["m_theta"])) > 1e-4
    for row, csv_row in zip(summary["rows"], csv_rows):
        ck = row["checkpoint"]
        assert row["benchmarks"]["ceval"]["n"] == 3
        for column, (n, key, _) in EXPECTED.items():
            cell = row["benchmarks"][column]
            metrics = json.loads((out / ck / column / "metrics.json").read_text(encoding="utf-8"))
            # the number in our tables is lm-eval's own aggregate (MMLU: its only subject here)
            task = {"lm-mmlu": "mmlu_astronomy"}.get(column, column[3:])
            assert cell["accuracy"] == pytest.approx(metrics["lmeval_results"][task][key], abs=1e-9), (ck, column)
            assert cell["n"] == n and cell["source"] == "lm-eval" and cell["metric"] == key.split(",")[0]
            lo, hi = cell["ci95"]
            assert 0.0 <= lo <= cell["accuracy"] <= hi <= 1.0
            assert float(csv_row[column]) == pytest.approx(100 * cell["accuracy"], abs=0.006)
            assert csv_row[f"{column}_n"] == str(n) and csv_row[f"{column}_mode"].startswith("lm-eval ")
            lines = (out / ck / column / "samples.jsonl").read_text(encoding="utf-8").splitlines()
            assert len(lines) == n
    # TruthfulQA mc2 scores are probabilities, not 0/1: the stored interval is not a binomial one
    mc2 = json.loads((out / "base" / "lm-truthfulqa_mc2" / "metrics.json").read_text(encoding="utf-8"))
    assert not float(mc2["correct"]).is_integer()
    # the adapter is really applied by lm-eval's HF backend: other log-likelihoods than the base
    assert (out / "base" / "lm-arc_challenge" / "samples.jsonl").read_text() != (
        out / "lora" / "lm-arc_challenge" / "samples.jsonl"
    ).read_text()
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = md
    stamp = os.path.getmtime(out / "lora" / "lm-winogrande" / "metrics.json")

    # the same run from a YAML file (lmeval_tasks as a list): every pair is reused, no model is loaded
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        json.dumps(
            {
                "checkpoints": [{"name": "base", "path": tiny_model}, {"name": "lora", "path": lora}],
                "benchmarks": ["ceval"],
                "data_dir": EVAL,
                "split": "dev",
                "limit": 3,
                "mc_mode": "likelihood",
                "lmeval_tasks": TASKS.split(","),
                "lmeval_data_dir": LOCAL,
                "lmeval_max_gen_toks": 8,
                "batch_size": 4,
                "deviation_data": DEV,
                "output_dir": str(out),
                "progress": False,
            }
        ),
        encoding="utf-8",
    )
    proc = run_cli(["--config", str(cfg)], exe="llamafactory-minor-eval")
    assert "[load]" not in proc.stderr, proc.stderr
    assert "0 of 10 (checkpoint, task) pairs to run" in proc.stderr
    assert "[skip] lora: all lm-eval tasks already done" in proc.stderr
    assert os.path.getmtime(out / "lora" / "lm-winogrande" / "metrics.json") == stamp
    assert (out / "summary.md").read_text(encoding="utf-8") == table

    # --report-only rebuilds the same table from the folder (no model, no data, no lm-eval run)
    for name in ("summary.md", "summary.csv", "summary.json"):
        os.remove(out / name)
    proc = run_cli(["--report-only", "-o", str(out), "--no-chart"], exe="llamafactory-minor-eval")
    assert header.replace(" | m_theta |", " |") in proc.stdout  # m_theta is kept from no previous summary
    assert all(c in json.loads((out / "summary.json").read_text())["benchmarks"] for c in EXPECTED)

    # one removed pair is redone alone, in its own model load
    os.remove(out / "lora" / "lm-winogrande" / "metrics.json")
    proc = run_cli(args, exe="llamafactory-minor-eval")
    loads = [line for line in proc.stderr.splitlines() if line.startswith("[load]")]
    assert loads == ["[load] lora: lm-eval transformers for winogrande"], loads
    assert "| base | " in proc.stdout and header in proc.stdout

    # other settings of a finished pair: refused before any model is loaded, naming the key
    proc = run_cli(
        [
            "--model",
            f"base={tiny_model}",
            "--lmeval-tasks",
            "winogrande@2",
            "--lmeval-data-dir",
            LOCAL,
            "-o",
            str(out),
            "--no-progress",
        ],
        exe="llamafactory-minor-eval",
        check=False,
    )
    assert proc.returncode == 2 and "num_fewshot" in proc.stderr and "--overwrite" in proc.stderr
    assert "[load]" not in proc.stderr and "Traceback" not in proc.stderr


def test_lmeval_bad_input_is_one_line_before_loading(tiny_model, tmp_path, capsys):
    from llamafactory_minor_eval.cli import main

    base = ["--model", tiny_model, "-o", str(tmp_path / "o"), "--no-progress"]
    assert main(base + ["--lmeval-tasks", "arc_challenge,arc_easy"]) == 2
    err = capsys.readouterr().err
    assert "unknown lm-eval task 'arc_easy'" in err and "arc_challenge" in err and "Traceback" not in err
    assert main(base + ["--lmeval-tasks", "hellaswag@ten"]) == 2
    assert "shots after @ must be a whole number" in capsys.readouterr().err
    assert main(base + ["--lmeval-tasks", "winogrande", "--lmeval-data-dir", str(tmp_path)]) == 2
    assert "no local data folder" in capsys.readouterr().err
    assert main(base + ["--lmeval-tasks", "winogrande", "--lmeval-limit", "0"]) == 2
    assert "lmeval_limit must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("metrics.json"))


def run_group(cmd, env, cwd, timeout):
    """subprocess.run in its own process group, the whole group killed on a timeout: a killed vLLM command
    otherwise leaves its EngineCore and worker processes running (seen here: 2.8 GB for half an hour)."""
    import signal
    import subprocess

    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _doc_scores(out, column):
    lines = (out / "smol" / column / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["correct"] for line in lines]


def test_lmeval_tasks_on_the_vllm_backend_match_transformers(smollm2, tmp_path, run_cli):
    """The same command with --backend vllm (lm-eval's vLLM wrapper, in the vLLM venv): the same lm-* columns,
    the same per-document scores as lm-eval's HF backend, and a re-run loads nothing."""
    from conftest import require_vllm
    from eval_helpers import REPO, vllm_env

    vpy = require_vllm()
    link = tmp_path / "pkg"
    link.mkdir()
    os.symlink(os.path.join(REPO, "evaluation"), link / "llamafactory_minor_eval")
    env = vllm_env(tmp_path)
    env["PYTHONPATH"] = str(link) + os.pathsep + env.get("PYTHONPATH", "")
    common = [
        "--model",
        f"smol={smollm2}",
        "--lmeval-tasks",
        "winogrande@1,arc_challenge@1",
        "--lmeval-data-dir",
        LOCAL,
        "--no-progress",
        "--no-chart",
    ]
    v_out, t_out = tmp_path / "vllm", tmp_path / "hf"
    cmd = [vpy, "-m", "llamafactory_minor_eval", "--backend", "vllm", *common, "-o", str(v_out)]
    proc = run_group(cmd, env, str(tmp_path), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[load] smol: lm-eval vllm for winogrande, arc_challenge" in proc.stderr
    assert (
        "| checkpoint | winogrande 1-shot acc [lm-eval], n=4 | arc_challenge 1-shot acc_norm [lm-eval], n=4 |"
        in proc.stdout
    )
    run_cli(["--backend", "transformers", *common, "-o", str(t_out)], exe="llamafactory-minor-eval")
    for column in ("lm-winogrande", "lm-arc_challenge"):
        v = json.loads((v_out / "smol" / column / "metrics.json").read_text(encoding="utf-8"))
        t = json.loads((t_out / "smol" / column / "metrics.json").read_text(encoding="utf-8"))
        assert v["backend"] == {"backend": "lm-eval vllm"} and t["backend"] == {"backend": "lm-eval transformers"}
        assert _doc_scores(v_out, column) == _doc_scores(t_out, column) and v["accuracy"] == t["accuracy"], column
    proc = run_group(cmd, env, str(tmp_path), timeout=600)
    assert proc.returncode == 0 and "[load]" not in proc.stderr and "0 of 2 (checkpoint, task) pairs" in proc.stderr

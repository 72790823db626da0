"""`llamafactory-minor reproduce minorsft|minordpo|poft` end to end on the tiny model for a few steps, so the
pipelines (data -> llamafactory-cli train -> llamafactory-minor-eval -> plots -> results.json + verdict) cannot rot.
MinorSFT and MinorDPO run from this checkout (the editable install), PoFT from the installed wheel."""

import collections
import json
import math
import os

import pytest

pytestmark = pytest.mark.e2e


def _minorsft_args(out, model, **changed) -> list[str]:
    opts = {"steps": 2, "batch": 4, "train": 32, "test": 8, "eval-limit": 4, "max-new-tokens": 8, "deviation-limit": 4}
    opts.update({k.replace("_", "-"): v for k, v in changed.items()})
    args = ["reproduce", "minorsft", "--out", str(out), "--model", model]
    for key, value in opts.items():
        args += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return args


def test_minorsft_pipeline_runs_end_to_end(tiny_model, run_cli, tmp_path):
    out = tmp_path / "repro"
    proc = run_cli(_minorsft_args(out, tiny_model), exe="llamafactory-minor", timeout=1800)
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {"sft", "sftdpo", "minorsft"}
    for name, run in results["runs"].items():
        assert len(run["m_theta"]) == 2, name  # m_theta logged at both steps, for SFT too (track_m_theta)
        assert run["accuracy"] is not None and 0.0 <= run["accuracy"] <= 1.0
        assert isinstance(run["drift_m_theta"], float)
        assert not os.path.isabs(run["dir"])  # results.json names folders relative to --out (portable)
        assert os.path.isfile(os.path.join(out, run["dir"], "minor_run.json"))
    assert results["runs"]["minorsft"]["lr"] == 2 * results["runs"]["sft"]["lr"]
    assert (out / "m_theta.png").read_bytes()[:4] == b"\x89PNG"
    assert len(results["verdict"]) == 2
    assert all(
        any(f" {w} here" in line for w in ("HOLDS", "DOES NOT HOLD", "NOT RESOLVED")) for line in results["verdict"]
    )
    assert "Claim 1" in proc.stdout and "| minorsft |" in proc.stdout
    # the evaluated test set is the generated one, disjoint from training by problem
    assert (out / "eval_data" / "gsm8k" / "test.jsonl").read_text() == (out / "data" / "arith_test.jsonl").read_text()
    assert results["eval_file"] == os.path.join("data", "arith_test.jsonl") and results["n_eval"] == 4  # --eval-limit

    # Run again in the same folder, on other held-out items: --eval-file, a file in the generated test set's format
    # whose items it does not hold (three-digit problems; the task's are two-digit). Finished runs are reused only
    # when they were trained on what these arguments give, and they keep the training time measured when they
    # trained; the base and the reused run are evaluated on the file's items.
    from llamafactory_minor.experiments import tasks

    items = []
    for k, problem in enumerate([(123, "+", 456), (700, "-", 250), (315, "+", 208)]):
        question, solution, c = tasks.render(problem, (k, tasks.NAMES[k], tasks.ITEMS[k]))
        items.append({"question": question, "answer": solution.rsplit("\n", 1)[0] + f"\n#### {c}"})
    generated = [json.loads(line) for line in (out / "data" / "arith_test.jsonl").read_text().splitlines()]
    assert set(items[0]) == set(generated[0]) and generated[0]["answer"].count("\n#### ") == 1  # the same format
    assert not {i["question"] for i in items} & {g["question"] for g in generated}
    eval_file = tmp_path / "my_test.jsonl"
    eval_file.write_text("".join(json.dumps(i) + "\n" for i in items))
    first_sft_seconds = results["times_s"]["sft"]
    again = run_cli(
        _minorsft_args(out, tiny_model, runs="sft", eval_file=eval_file), exe="llamafactory-minor", timeout=1800
    )
    assert "sft: done, reused" in again.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["reused"] == ["sft"] and results["times_s"]["sft"] == first_sft_seconds
    assert results["eval_file"] == str(eval_file) and results["n_eval"] == 3  # the file's 3 items (--eval-limit 4)
    assert f"held-out set: {eval_file} (3 items asked)" in again.stdout
    for name, entry in (("base", results["base"]), ("sft", results["runs"]["sft"])):
        assert entry["eval"]["benchmarks"]["gsm8k"]["n"] == 3, name
        asked = [
            json.loads(line) for line in (out / "eval" / name / "gsm8k" / "samples.jsonl").read_text().splitlines()
        ]
        assert [r["gold"] for r in asked] == [i["answer"].rsplit("#### ", 1)[1] for i in items], name
        assert all(i["question"] in r["input"] for r, i in zip(asked, items)), name
    # a malformed --eval-file is one clear error before anything is trained; so are changed training arguments
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text(json.dumps(items[0]) + "\n" + '{"question": "What is 2 + 2?", "answer": 4\n')
    for changed, says in (
        ({"test": 6}, "generated with other arguments"),
        ({"lr": 1e-3}, "learning_rate"),
        ({"eval_file": malformed}, f"--eval-file {malformed}: line 2 is not valid JSON"),
    ):
        bad = run_cli(_minorsft_args(out, tiny_model, runs="sft", **changed), exe="llamafactory-minor", check=False)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert "$ llamafactory-cli train" not in bad.stdout and "llamafactory-minor-eval" not in bad.stdout
    # --overwrite trains again, and the evaluation of the retrained run is redone, not resumed from its path
    samples = out / "eval" / "sft" / "gsm8k" / "samples.jsonl"
    before = samples.stat().st_mtime_ns
    run_cli(_minorsft_args(out, tiny_model, runs="sft", overwrite=True), exe="llamafactory-minor", timeout=1800)
    results = json.loads((out / "results.json").read_text())
    assert results["trained"] == ["sft"] and "reused" not in results
    assert samples.stat().st_mtime_ns != before


def test_minordpo_pipeline_runs_end_to_end(tiny_model, run_cli, tmp_path):
    out = tmp_path / "repro"
    run_cli(
        [
            "reproduce",
            "minordpo",
            "--out",
            str(out),
            "--model",
            tiny_model,
            "--steps",
            "2",
            "--batch",
            "2",
            "--cutoff",
            "256",
            "--train",
            "16",
            "--test",
            "8",
            "--eval-limit",
            "4",
            "--max-new-tokens",
            "8",
            "--deviation-limit",
            "4",
        ],
        exe="llamafactory-minor",
        timeout=1800,
    )
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {"dpo", "dpop", "minordpo"}
    for name, run in results["runs"].items():
        for metric in ("normalized_rewards/chosen", "normalized_rewards/rejected", "normalized_rewards/margin"):
            assert len(run[metric]) == 2, (name, metric)
        assert run["degenerate"] is not None and run["accuracy"] is not None
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG" and len(results["verdict"]) == 2


def _kind(record: dict) -> str:
    """``llamafactory-cli train``, ``llamafactory-minor reproduce`` ... : the console script and its subcommand."""
    script = os.path.basename(record["argv"][0])
    return script if script == "llamafactory-minor-eval" else " ".join([script, *record["argv"][1:2]])


def test_poft_pipeline_runs_end_to_end_from_the_installed_wheel(tiny_model, installed_plugin, run_cli, tmp_path):
    """Run from this tree's wheel (conftest's installed_plugin), not the checkout, in a folder outside the
    repository: the pipeline an installed user runs (issue 10: reproduce's default drift set pointed into tests/).
    PoFT's is the pipeline with the most console scripts: llamafactory-cli train, llamafactory-minor score and
    llamafactory-minor-eval. Every Python process it starts records where it imported the packages from."""
    work = tmp_path / "work"  # the cwd, and the relative --out below
    work.mkdir()
    records = tmp_path / "imports"
    out = work / "repro"
    run_cli(
        [
            "reproduce",
            "poft",
            "--out",
            "repro",
            "--model",
            tiny_model,
            "--epochs",
            "2",
            "--batch",
            "8",
            "--train",
            "8",
            "--test",
            "8",
            "--eval-limit",
            "4",
            "--max-new-tokens",
            "8",
            "--deviation-limit",
            "4",
        ],
        exe=installed_plugin.script("llamafactory-minor"),
        env=installed_plugin.env(records),
        cwd=work,
        timeout=1800,
    )
    # every process imported the packages from the wheel and started in `work`; which processes ran
    found = installed_plugin.check_imports(records, cwd=work)
    kinds = collections.Counter(_kind(r) for r in found)
    expected = {"llamafactory-minor reproduce": 1, "llamafactory-cli train": 3, "llamafactory-minor score": 2}
    assert {k: kinds[k] for k in expected} == expected and kinds["llamafactory-minor-eval"] == 1, kinds
    (main,) = [r for r in found if _kind(r) == "llamafactory-minor reproduce"]
    assert main["argv"][0] == installed_plugin.script("llamafactory-minor")  # the wheel's console script
    imported = {name.split(".")[0] for r in found for name in r["modules"]}
    assert imported == {"llamafactory_minor", "llamafactory_minor_eval", "llamafactory_minor_core"}, imported
    for record in found:  # the plugin's start-up hook (it patches LF) in each of them, the evaluation suite in its CLI
        if _kind(record) in expected or _kind(record) == "llamafactory-minor-eval":
            assert "llamafactory_minor._hook" in record["modules"], record["argv"]
    (evaluation,) = [r for r in found if _kind(r) == "llamafactory-minor-eval"]
    assert "llamafactory_minor_eval.cli" in evaluation["modules"]
    results = json.loads((out / "results.json").read_text())
    assert results["noise"]["noise_rows"] == 4  # 50% of 8 rows
    for name in ("sft", "poft", "bipoft"):
        epochs = results["runs"][name]["epochs"]
        assert len(epochs) == 2 and all(e["accuracy"] is not None for e in epochs), name
    stats = results["score_distribution"]
    assert stats["clean rows"]["n"] == 8 and stats["noise rows"]["n"] == 4
    assert all(math.isfinite(st["mean"]) and st["mean"] < 0 for st in stats.values())  # per-token log-probs
    assert (out / "aligned_scores.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "accuracy_by_epoch.png").read_bytes()[:4] == b"\x89PNG"  # Fig. 3e: accuracy per epoch
    assert [line[:7] for line in results["verdict"] if line.startswith("Claim")] == ["Claim 1", "Claim 2"]

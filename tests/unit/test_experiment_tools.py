"""The experiment tools users keep: the arithmetic task (train/test disjoint by problem, pairs with one
corrupted calculation), PoFT's noise tool, and `llamafactory-minor plot` (one PNG, one line per run)."""

import io
import json
import os
import random
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from llamafactory_minor.experiments import noise, plot, tasks

EXE = os.path.join(os.path.dirname(sys.executable), "llamafactory-minor")


def _cli(*args):
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------------------------------
# arithmetic task
# --------------------------------------------------------------------------------------------------
def _numbers(text):
    return [int(x) for x in re.findall(r"\d+", text)]


def test_task_files_are_disjoint_by_problem_and_correct(tmp_path):
    proc = _cli("make-task", "--out", str(tmp_path), "--train", "400", "--test", "100", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    sft = json.load(open(tmp_path / "arith_sft.json"))
    dpo = json.load(open(tmp_path / "arith_dpo.json"))
    test = [json.loads(line) for line in open(tmp_path / "arith_test.jsonl")]
    assert (len(sft), len(dpo), len(test)) == (400, 400, 100)

    def problem(question):  # the underlying (a, op, b), whatever the wording
        a, b = _numbers(question)[:2]
        op = "-" if any(w in question for w in ("gives away", "sold", "needs")) else "+"
        return a, op, b

    train_problems = {problem(r["instruction"].split("Below is the question: ", 1)[1]) for r in sft}
    test_problems = {problem(r["question"]) for r in test}
    assert len(train_problems) == 400 and len(test_problems) == 100 and not train_problems & test_problems
    for r in test:
        (a, op, b), gold = problem(r["question"]), int(r["answer"].rsplit("####", 1)[1])
        assert gold == (a + b if op == "+" else a - b) and gold >= 0
    for s, p in zip(sft, dpo):
        assert s["instruction"] == p["instruction"] and s["output"] == p["chosen"]
        assert s["output"].splitlines()[-1].startswith("So the answer is: ")
        right, wrong = int(p["chosen"].rsplit(": ", 1)[1]), int(p["rejected"].rsplit(": ", 1)[1])
        assert right != wrong and wrong >= 0
        # the same solution with its one calculation corrupted: only the result differs
        assert p["rejected"] == p["chosen"].replace(f"= {right}", f"= {wrong}").replace(f"is: {right}", f"is: {wrong}")
    info = json.load(open(tmp_path / "dataset_info.json"))
    assert info["arith_dpo"]["ranking"] is True and info["arith_sft"]["file_name"] == "arith_sft.json"
    again = tmp_path / "again"
    assert _cli("make-task", "--out", str(again), "--train", "400", "--test", "100", "--seed", "3").returncode == 0
    assert open(again / "arith_dpo.json").read() == open(tmp_path / "arith_dpo.json").read()  # seeded


def test_task_files_load_with_lf_and_the_evaluation(tmp_path, tiny_model):
    from llamafactory.data.parser import get_dataset_list

    import llamafactory_minor  # noqa: F401
    from llamafactory_minor_eval.data import load_benchmark

    tasks.write_task(str(tmp_path), n_train=20, n_test=10)
    attrs = {a.dataset_name: a for a in get_dataset_list(["arith_sft", "arith_dpo"], str(tmp_path))}
    assert attrs["arith_dpo.json"].ranking
    os.makedirs(tmp_path / "gsm8k")
    os.replace(tmp_path / "arith_test.jsonl", tmp_path / "gsm8k" / "test.jsonl")
    data = load_benchmark("gsm8k", split="test", source=str(tmp_path / "gsm8k"))
    assert len(data.samples) == 10 and all(s.gold.isdigit() for s in data.samples)


def test_task_refuses_more_problems_than_exist():
    with pytest.raises(ValueError, match="distinct problems exist"):
        tasks.make_splits(20000, 1000)


# --------------------------------------------------------------------------------------------------
# noise tool
# --------------------------------------------------------------------------------------------------
def _alpaca_dir(tmp_path, n=20):
    rows = [
        {"instruction": f"question {i}", "input": "", "output": f"the answer to question {i} is {i * 7}"}
        for i in range(n)
    ]
    (tmp_path / "alp.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"alp": {"file_name": "alp.json"}}))
    return rows


def test_noise_rows_rematch_and_corrupt_outputs(tmp_path):
    rows = _alpaca_dir(tmp_path)
    proc = _cli("noise", "--dataset-dir", str(tmp_path), "--dataset", "alp", "--rate", "0.5", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    blend = json.load(open(tmp_path / "alp_noisy.json"))
    only = json.load(open(tmp_path / "alp_noisy_noise.json"))
    assert len(blend) == 30 and len(only) == 10 and [r["is_noise"] for r in blend] == [False] * 20 + [True] * 10
    originals = {r["instruction"]: r["output"] for r in rows}
    for r in only:
        assert r["output"] != originals[r["instruction"]]  # never its own output
        assert r["output"] not in originals.values()  # corrupted characters
    info = json.load(open(tmp_path / "dataset_info.json"))
    assert info["alp_noisy"]["file_name"] == "alp_noisy.json" and info["alp_noisy_noise"]["file_name"]


def _edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_noise_corruption_rate_is_what_is_asked():
    rng = random.Random(0)
    text = "abcdefghij" * 40
    edits = _edit_distance(text, noise.corrupt_text(text, rng, 0.1))
    assert 0.04 < edits / len(text) < 0.14  # one edit per corrupted character (some modifications are no-ops)


def test_noise_sharegpt_changes_the_last_assistant_turn(tmp_path):
    rows = [
        {"conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": f"hello {i}!" * 3}]}
        for i in range(6)
    ]
    (tmp_path / "sg.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(
        json.dumps(
            {"sg": {"file_name": "sg.json", "formatting": "sharegpt", "columns": {"messages": "conversations"}}}
        )
    )
    done = noise.make_noise(str(tmp_path), "sg", rate=1.0)
    only = json.load(open(tmp_path / "sg_noisy_noise.json"))
    assert done["noise_rows"] == 6 and all(r["conversations"][0]["value"].startswith("hi") for r in only)
    assert json.load(open(tmp_path / "dataset_info.json"))["sg_noisy"]["formatting"] == "sharegpt"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "nope"], "dataset `nope` is not in"),
        (["--dataset", "alp", "--rate", "0"], "--rate must be in (0, 1]"),
    ],
)
def test_noise_bad_input_one_message(tmp_path, args, message):
    _alpaca_dir(tmp_path)
    proc = _cli("noise", "--dataset-dir", str(tmp_path), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------------
def _run(tmp_path, name, values, info=None):
    d = tmp_path / name
    d.mkdir()
    history = [{"step": i + 1, "loss": 2.0 - 0.1 * i, "m_theta": v} for i, v in enumerate(values)]
    history.append({"step": len(values), "train_runtime": 1.0})
    (d / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    if info:
        (d / "minor_run.json").write_text(json.dumps(info))
    return str(d)


def test_plot_overlays_runs_into_one_png(tmp_path):
    a = _run(tmp_path, "sft", [0.0, 0.2, 0.5])
    b = _run(tmp_path, "minorsft", [0.0, 0.05, 0.1], info={"name": "minorsft lr=2e-5 beta=0.04"})
    out = tmp_path / "p" / "m.png"
    proc = _cli("plot", a, b, "--metrics", "m_theta", "loss", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| sft | 0 -> 0.5 (3 pts)" in proc.stdout and "minorsft lr=2e-5 beta=0.04" in proc.stdout
    summary = plot.plot_runs([a, b], ["m_theta"], out=str(tmp_path / "x.png"), labels=["A", "B"])
    assert summary["B"]["m_theta"] == (0.0, 0.1, 3)


def test_plot_bad_input_names_the_metric_or_run(tmp_path):
    a = _run(tmp_path, "sft", [0.0, 0.1])
    proc = _cli("plot", a, "--metrics", "m_thetaa")
    assert proc.returncode == 2 and "no run logged `m_thetaa`" in proc.stderr and "m_theta" in proc.stderr
    proc = _cli("plot", str(tmp_path), "--metrics", "loss")
    assert proc.returncode == 2 and "is not an LF training run" in proc.stderr


# --------------------------------------------------------------------------------------------------
# reproduce: degenerate outputs and verdicts (the numbers decide, in both directions)
# --------------------------------------------------------------------------------------------------
def test_degenerate_repetition():
    from llamafactory_minor.experiments.reproduce import is_degenerate

    assert is_degenerate("Step 1: add. Step 1: add. Step 1: add. Step 1: add.")
    assert is_degenerate("12 + 3 = 15\n12 + 3 = 15\n12 + 3 = 15\n")
    assert not is_degenerate("Tom has 12 + 30 = 42 apples.\nSo the answer is: 42")
    assert not is_degenerate("")


def _dpo_results(chosen_dpo, chosen_minor, acc_dpo, acc_minor, deg_dpo=0.0, deg_minor=0.0, base=(0.1, 0.0), n=None):
    """One lr (5e-4): DPO and MinorDPO, and the base model's (accuracy, degenerate share); n_eval None = no n."""

    def run(method, chosen, acc, deg):
        return {
            "method": method,
            "lr": 5e-4,
            "normalized_rewards/chosen": dict(enumerate(chosen, 1)),
            "accuracy": acc,
            "degenerate": deg,
        }

    return {
        "runs": {
            "dpo": run("dpo", chosen_dpo, acc_dpo, deg_dpo),
            "minordpo": run("minordpo", chosen_minor, acc_minor, deg_minor),
        },
        "base": {"accuracy": base[0], "degenerate": base[1]},
        "n_eval": n,
    }


def test_minordpo_verdict_follows_the_numbers():
    from llamafactory_minor.experiments.reproduce import verdict_minordpo

    # without n_eval the point values decide: DPO 5% below the base's 10%, MinorDPO 50% above it
    holds = verdict_minordpo(_dpo_results([0, -0.1, -0.3], [0, 0.01, 0.02], 0.05, 0.5, 0.4, 0.0))
    assert len(holds) == 2 and all(" HOLDS here" in line for line in holds)
    assert "first half, DPO degrades: established" in holds[1]
    assert "second half, MinorDPO does not degrade: established" in holds[1]
    # DPO 50% above the base's 10%: "DPO degrades" is contradicted, whatever MinorDPO does
    fails = verdict_minordpo(_dpo_results([0, 0.1, 0.2], [0, -0.01, 0.02], 0.5, 0.2))
    assert len(fails) == 2 and all(" DOES NOT HOLD here" in line for line in fails)
    assert "first half, DPO degrades: contradicted" in fails[1]


def test_minordpo_claim_2_committed_run_does_not_establish_that_dpo_degrades():
    """The committed default run (docs/reproduction/minordpo): strict accuracy base 5%, DPO 1%, MinorDPO 28% at
    n = 100. DPO's drop below the base is within the 95% intervals, so claim 2 is NOT RESOLVED (it said HOLDS,
    from MinorDPO vs DPO alone); MinorDPO not degrading is established; MinorDPO vs DPO is stated, resolved."""
    from llamafactory_minor.experiments.reproduce import verdict_minordpo

    with open(os.path.join(REPO_ROOT, "docs", "reproduction", "minordpo", "results.json"), encoding="utf-8") as f:
        committed = json.load(f)
    lines = verdict_minordpo(committed)
    assert lines[1] == (
        "Claim 2 (lr 0.0005: DPO degrades, MinorDPO does not): NOT RESOLVED here -- first half, DPO degrades: "
        "not resolved (strict held-out accuracy DPO 1.0% vs base 5.0%: below within the 95% intervals); second half, "
        "MinorDPO does not degrade: established (MinorDPO 28.0% vs base 5.0%: resolvably above; degenerate outputs "
        "MinorDPO 6% vs base 17%: below within the 95% intervals); MinorDPO vs DPO: accuracy 28.0% vs 1.0%: "
        "resolvably above; degenerate outputs 6% vs 5%: above within the 95% intervals (n = 100)."
    )
    assert committed["verdict"] == lines  # the committed verdict is what the code prints for those numbers
    # the same numbers as arguments (strict accuracy and degenerate share of DPO, MinorDPO and the base)
    line = verdict_minordpo(_dpo_results([0, -0.1], [0, 0.1], 0.01, 0.28, 0.05, 0.06, base=(0.05, 0.17), n=100))[1]
    assert line == lines[1]


def test_minordpo_claim_2_judges_both_halves_against_the_base():
    from llamafactory_minor.experiments.reproduce import verdict_minordpo

    def claim2(acc_dpo, acc_minor, base, deg_minor=0.1, n=100):
        return verdict_minordpo(_dpo_results([0, -0.1], [0, 0.1], acc_dpo, acc_minor, 0.1, deg_minor, base, n))[1]

    # DPO 5% [2.2, 11.2] resolvably below the base's 30% [21.9, 39.6]; MinorDPO at the base's 30%: both halves hold
    line = claim2(0.05, 0.30, (0.30, 0.1))
    assert " HOLDS here" in line
    assert (
        "first half, DPO degrades: established (strict held-out accuracy DPO 5.0% vs base 30.0%: resolvably below)"
        in line
    )
    assert "second half, MinorDPO does not degrade: established (MinorDPO 30.0% vs base 30.0%: equal;" in line
    # MinorDPO 10% [5.5, 17.4] resolvably below the base's 30%: "MinorDPO does not degrade" is contradicted
    line = claim2(0.05, 0.10, (0.30, 0.1))
    assert " DOES NOT HOLD here" in line and "second half, MinorDPO does not degrade: contradicted" in line
    assert "MinorDPO 10.0% vs base 30.0%: resolvably below" in line
    # ... or its degenerate share resolvably above the base's (30% [21.9, 39.6] vs 2% [0.6, 7.0])
    line = claim2(0.05, 0.30, (0.30, 0.02), deg_minor=0.30)
    assert " DOES NOT HOLD here" in line and "degenerate outputs MinorDPO 30% vs base 2%: resolvably above" in line
    # DPO resolvably above the base: "DPO degrades" is contradicted
    line = claim2(0.40, 0.40, (0.10, 0.1))
    assert " DOES NOT HOLD here" in line and "first half, DPO degrades: contradicted" in line
    # DPO 4 points below the base: not resolved on 100 items, resolved on 5000
    assert " NOT RESOLVED here" in claim2(0.26, 0.30, (0.30, 0.1))
    assert " HOLDS here" in claim2(0.26, 0.30, (0.30, 0.1), n=5000)
    # MinorDPO far above DPO decides nothing by itself (the old rule's HOLDS): DPO at the base is not a degradation
    line = claim2(0.05, 0.60, (0.05, 0.1))
    assert " NOT RESOLVED here" in line and "MinorDPO vs DPO: accuracy 60.0% vs 5.0%: resolvably above" in line


def test_minordpo_claim_2_dpo_degrades_against_a_lower_lr():
    """With --lrs, DPO at the high lr resolvably below DPO at a lower lr establishes "DPO degrades", even when its
    drop below the base is not resolved; each lr has its own line."""
    from llamafactory_minor.experiments.reproduce import verdict_minordpo

    def results(acc_dpo_low):
        runs = {}
        for lr, tag, acc_dpo, acc_minor in ((5e-5, "_lr5e-05", acc_dpo_low, 0.40), (5e-4, "_lr0.0005", 0.10, 0.38)):
            runs[f"dpo{tag}"] = {"method": "dpo", "lr": lr, "accuracy": acc_dpo, "degenerate": 0.05}
            runs[f"dpop{tag}"] = {"method": "dpop", "lr": lr, "accuracy": 0.2, "degenerate": 0.05}
            runs[f"minordpo{tag}"] = {"method": "minordpo", "lr": lr, "accuracy": acc_minor, "degenerate": 0.05}
        return {"runs": runs, "base": {"accuracy": 0.12, "degenerate": 0.1}, "n_eval": 100}

    low, high = verdict_minordpo(results(0.40))  # no chosen log-ratios: claim 2 only, one line per lr
    assert low.startswith("Claim 2 (lr 5e-05:") and high.startswith("Claim 2 (lr 0.0005:")
    # high lr: DPO 10% [5.5, 17.4] vs base 12% [7.0, 19.8] within the intervals, vs DPO at 5e-5 40% [30.9, 49.8] below
    assert " HOLDS here" in high
    assert (
        "first half, DPO degrades: established (strict held-out accuracy DPO 10.0% vs base 12.0%: below within the "
        "95% intervals; vs DPO at lr 5e-05 40.0%: resolvably below)" in high
    )
    # low lr: DPO 40% resolvably above the base, nothing lower to compare with: DPO does not degrade there
    assert " DOES NOT HOLD here" in low and "first half, DPO degrades: contradicted" in low
    assert "vs DPO at lr" not in low
    # DPO at 5e-5 no better than at 5e-4 (15% vs 10%): the high lr's first half is not resolved
    high = verdict_minordpo(results(0.15))[1]
    assert " NOT RESOLVED here" in high and "first half, DPO degrades: not resolved" in high


def test_minorsft_verdict_follows_the_numbers():
    from llamafactory_minor.experiments.reproduce import verdict

    def res(sft, minor, acc_sft, acc_minor):
        return {
            "runs": {
                "sft": {"m_theta": dict(enumerate(sft, 1)), "accuracy": acc_sft},
                "minorsft": {"m_theta": dict(enumerate(minor, 1)), "accuracy": acc_minor},
            },
            "n_eval": 10,
        }

    assert all(" HOLDS here" in x for x in verdict(res([0, 0.2, 0.5], [0, 0.1, 0.2], 0.3, 0.4)))
    lines = verdict(res([0, 0.2, 0.5], [0, 0.3, 0.2], 0.3, 0.2))
    assert " DOES NOT HOLD here" in lines[0] and "1 of 3" in lines[0]
    # 20% vs 30% on 10 items is within the 95% intervals: not resolved, not "does not hold"
    assert " NOT RESOLVED here" in lines[1] and "within the 95% intervals" in lines[1]
    assert " DOES NOT HOLD here" in verdict(res([0, 0.2], [0, 0.1], 0.9, 0.1))[1]  # 10% vs 90%: resolved


def test_plot_scores_from_cache_folders(tmp_path):
    from llamafactory_minor.scores.cache import ScoreCache

    for name, base in (("clean", -0.5), ("noisy", -3.0)):
        ScoreCache(str(tmp_path / "cache"), name, {"kind": "aligned"}).finish(
            {f"{name}{i}": {"key": f"{name}{i}", "sum_logp": base * (i + 1), "num_tokens": i + 1} for i in range(5)}
        )
    out = tmp_path / "h.png"
    proc = _cli(
        "plot-scores",
        str(tmp_path / "cache" / "clean"),
        str(tmp_path / "cache" / "noisy"),
        "--labels",
        "clean",
        "noisy",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "clean: n=5 mean r=-0.5000" in proc.stdout and "noisy: n=5 mean r=-3.0000" in proc.stdout
    assert out.read_bytes()[:4] == b"\x89PNG"
    bad = _cli("plot-scores", str(tmp_path))
    assert bad.returncode == 2 and "is not a score-cache folder" in bad.stderr


def test_plot_scores_from_a_score_folder(tmp_path):
    from llamafactory_minor.scores.cache import make_key
    from llamafactory_minor.scores.file_format import FORMAT, FORMAT_VERSION, keys_fingerprint, write_score_folder

    entries = []
    for split, base in (("train", -0.5), ("eval", -3.0)):
        rows = {
            f"{split}{i}": {"key": f"{split}{i}", "sum_logp": base * (i + 1), "num_tokens": i + 1} for i in range(4)
        }
        meta = {"kind": "aligned", "model": "m", "template": "smollm2", "dataset": keys_fingerprint(rows)}
        entries.append(
            dict(role="aligned", model="m", template="smollm2", split=split, pairwise=False, rows=rows,
                 meta=dict(meta, cache_key=make_key(meta)))
        )  # fmt: skip
    folder = write_score_folder(
        str(tmp_path / "scores"), {"format": FORMAT, "format_version": FORMAT_VERSION}, entries
    )
    proc = _cli("plot-scores", folder, "--out", str(tmp_path / "h.png"))
    assert proc.returncode == 0, proc.stderr
    assert (
        "m (smollm2, train): n=4 mean r=-0.5000" in proc.stdout
        and "m (smollm2, eval): n=4 mean r=-3.0000" in proc.stdout
    )
    with open(tmp_path / "scores" / entries[0]["meta"]["cache_key"] / "scores.jsonl", "a") as f:
        f.write('{"key": "x", "num_tokens": 1, "sum_logp": -1.0}\n')  # an edited folder is refused, naming the file
    bad = _cli("plot-scores", folder, "--out", str(tmp_path / "h2.png"))
    assert bad.returncode == 2 and "scores.jsonl has 5 rows" in bad.stderr


def test_plot_derives_the_beta_free_margin(tmp_path):
    d = tmp_path / "dpo"
    d.mkdir()
    history = [
        {"step": 1, "normalized_rewards/chosen": 0.0, "normalized_rewards/rejected": 0.0},
        {"step": 2, "normalized_rewards/chosen": -0.1, "normalized_rewards/rejected": -0.4},
    ]
    (d / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    steps, values = plot.series(plot.read_history(str(d)), "normalized_rewards/margin")
    assert steps == [1, 2] and values == [0.0, pytest.approx(0.3)]


# --------------------------------------------------------------------------------------------------
# reproduce's default --model: the folder `make models` prepares (tools/cpu_models.py is not installed)
# --------------------------------------------------------------------------------------------------
def test_reproduce_default_model_is_the_prepared_folder(tmp_path, monkeypatch):
    from llamafactory_minor.cli import DEMO_MODEL, _prepared_demo_model

    monkeypatch.setenv("LLAMAFACTORY_MINOR_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match=r"--model MODEL_FOLDER.*make models"):
        _prepared_demo_model()
    folder = tmp_path / DEMO_MODEL
    folder.mkdir()
    with pytest.raises(ValueError, match="not prepared"):  # a folder without the build marker is half-made
        _prepared_demo_model()
    (folder / "lfm_build.json").write_text('{"recipe": "smollm2-v1"}')
    assert _prepared_demo_model() == str(folder.resolve())


def test_runs_subset_by_name_and_unknown_names_listed():
    from llamafactory_minor.experiments.reproduce import ReproduceError, minorsft_runs, select_runs

    runs = minorsft_runs(1e-4, 0.04, grid=False)
    assert [r["name"] for r in select_runs(runs, "minorsft, sft")] == ["sft", "minorsft"]
    assert select_runs(runs, None) == runs
    with pytest.raises(ReproduceError, match="no run named minordpo.*sft, sftdpo, minorsft"):
        select_runs(runs, "sft,minordpo")


def test_results_json_paths_are_relative_to_the_output_folder_or_the_callers(tmp_path, monkeypatch):
    """Relative to --out, else to the folder reproduce runs in (where a relative --model resolves): not to the
    package's parent, which in a pip install is site-packages (a checkout's root only by accident)."""
    from llamafactory_minor.experiments.reproduce import portable

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = str(work / "repro")
    results = {
        "runs": {"sft": {"dir": os.path.join(out, "runs", "sft"), "lr": 1e-4}},
        "model": os.path.join(str(work), ".cache", "models", "SmolLM2"),
        "plot": os.path.join(out, "m.png"),
        "elsewhere": "/opt/data/x.json",
        "text": "a/b",
    }
    shown = portable(results, out)
    assert shown["runs"]["sft"] == {"dir": os.path.join("runs", "sft"), "lr": 1e-4}
    assert shown["model"] == os.path.join(".cache", "models", "SmolLM2") and shown["plot"] == "m.png"
    assert shown["elsewhere"] == "/opt/data/x.json" and shown["text"] == "a/b"
    assert results["plot"] == os.path.join(out, "m.png")  # the caller's dict is not changed


def _poft_results(sft, poft, n=50):
    runs = {name: {"epochs": [{"accuracy": a} for a in accs]} for name, accs in (("sft", sft), ("poft", poft))}
    return {"runs": runs, "n_eval": n}


def test_poft_verdict_follows_the_numbers_and_says_when_claim_2_is_not_tested():
    from llamafactory_minor.experiments.reproduce import verdict_poft

    # without n the point values decide: SFT peaks at epoch 2 and drops 10 points, PoFT drops 2: both claims hold
    lines = verdict_poft(_poft_results([0.3, 0.5, 0.4], [0.3, 0.5, 0.48], n=None))
    assert len(lines) == 2 and " HOLDS here" in lines[0] and " HOLDS here" in lines[1]
    # PoFT below SFT at an epoch, and dropping more: neither holds
    lines = verdict_poft(_poft_results([0.3, 0.5, 0.45], [0.2, 0.5, 0.3], n=None))
    assert " DOES NOT HOLD here" in lines[0] and " DOES NOT HOLD here" in lines[1]
    # nothing degraded (both still rising at the last epoch): claim 2 is not tested, not "holds"; claim 1 holds in
    # order (the committed 3-epoch run), and the line says that the differences are within the intervals
    lines = verdict_poft(_poft_results([0.02, 0.04, 0.06], [0.02, 0.08, 0.12]))
    assert " HOLDS here" in lines[0] and "NOT TESTED here" in lines[1] and "HOLDS" not in lines[1]
    assert "(n = 50; equal at epoch 1; above SFT within the 95% intervals at epochs 2, 3)" in lines[0]


def test_poft_claim_1_counts_only_resolved_shortfalls():
    """'At least as good' as verdict's MinorSFT claim 2: DOES NOT HOLD only where PoFT is resolvably below SFT
    (disjoint 95% Wilson intervals at n_eval), HOLDS at or above SFT at every epoch, else NOT RESOLVED."""
    from llamafactory_minor.experiments.reproduce import verdict_poft

    # resolved below: 10% vs 50% at epoch 2 of 50 items (intervals [11, 33] and [37, 63])
    line = verdict_poft(_poft_results([0.3, 0.5, 0.5], [0.3, 0.2, 0.5]))[0]
    assert " DOES NOT HOLD here" in line and "below SFT, resolved, at epoch 2" in line
    # within the intervals: the committed 5-epoch run (below SFT at epochs 2 and 4 by 2 and 6 points, n = 50);
    # the point values said DOES NOT HOLD
    e5 = _poft_results([0.06, 0.38, 0.28, 0.52, 0.32], [0.1, 0.36, 0.36, 0.46, 0.42])
    line = verdict_poft(e5)[0]
    assert " NOT RESOLVED here" in line and "below SFT within the 95% intervals at epochs 2, 4" in line
    assert "above SFT within the 95% intervals at epochs 1, 3, 5" in line
    # the same 6 points on 5000 items are resolved
    assert " DOES NOT HOLD here" in verdict_poft(dict(e5, n_eval=5000))[0]
    assert " DOES NOT HOLD here" in verdict_poft(dict(e5, n_eval=None))[0]  # without n: the point values


def test_poft_claim_2_counts_only_resolved_drops():
    """A drop from the best epoch to the last counts only when the two epochs' 95% intervals are disjoint."""
    from llamafactory_minor.experiments.reproduce import verdict_poft

    # the committed 5-epoch run: SFT 52% -> 32%, PoFT 46% -> 42%, neither resolved at n = 50 (it said HOLDS)
    e5 = _poft_results([0.06, 0.38, 0.28, 0.52, 0.32], [0.1, 0.36, 0.36, 0.46, 0.42])
    line = verdict_poft(e5)[1]
    assert " NOT RESOLVED here" in line and "SFT's drop, epoch 4 -> 5, within the 95% intervals" in line
    assert " HOLDS here" in verdict_poft(dict(e5, n_eval=None))[1]  # without n: 4 points vs 20
    # resolved degradation of SFT (80% -> 30%), PoFT's 60% -> 50% within the intervals: holds
    line = verdict_poft(_poft_results([0.3, 0.8, 0.3], [0.3, 0.6, 0.5]))[1]
    assert " HOLDS here" in line and "SFT's drop, epoch 2 -> 3, resolved" in line
    assert "PoFT's drop, epoch 2 -> 3, within the 95% intervals" in line
    # PoFT's 24% -> 0% is resolved, SFT's larger 46% -> 20% is not: PoFT degraded, SFT not resolvably
    line = verdict_poft(_poft_results([0.3, 0.46, 0.2], [0.1, 0.24, 0.0]))[1]
    assert " DOES NOT HOLD here" in line and "PoFT's drop, epoch 2 -> 3, resolved" in line
    # both resolved: the sizes decide (SFT 90% -> 10%, PoFT 90% -> 40%)
    line = verdict_poft(_poft_results([0.5, 0.9, 0.1], [0.5, 0.9, 0.4]))[1]
    assert " HOLDS here" in line and "both drops resolved" in line
    # PoFT's last epoch is its best: no drop to resolve
    line = verdict_poft(_poft_results([0.3, 0.8, 0.3], [0.3, 0.5, 0.6]))[1]
    assert " HOLDS here" in line and "PoFT did not drop" in line
    # SFT's drop not resolved and PoFT did not drop: not resolved, not "holds"
    assert " NOT RESOLVED here" in verdict_poft(_poft_results([0.3, 0.5, 0.4], [0.3, 0.5, 0.6]))[1]


def test_accuracy_by_epoch_plot_and_wilson_interval(tmp_path):
    from llamafactory_minor.experiments.reproduce import plot_accuracy_by_epoch
    from llamafactory_minor_eval.metrics import wilson_interval  # the one the plot's bars and the reports use

    lo, hi = wilson_interval(40, 100)  # the textbook value: [0.309, 0.498]
    assert abs(lo - 0.3094) < 1e-3 and abs(hi - 0.4980) < 1e-3
    runs = {
        "sft": {"epochs": [{"epoch": 1, "accuracy": 0.1}, {"epoch": 2, "accuracy": 0.2}]},
        "sft_e1": {"epoch": 1, "accuracy": 0.1},
    }
    out = plot_accuracy_by_epoch({"runs": runs, "n_eval": 50, "base": {"accuracy": 0.04}}, str(tmp_path / "a.png"))
    assert out and (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_accuracy_by_epoch({"runs": {"x": {}}}, str(tmp_path / "b.png")) is None  # nothing to draw
    assert not (tmp_path / "b.png").exists()


def test_minorsft_grid_lines_compare_each_setting_with_sft():
    from llamafactory_minor.experiments.reproduce import verdict

    runs = {
        "sft": {"method": "sft", "lr": 2e-4, "m_theta": {1: 0, 2: 0.5, 3: 0.9}, "accuracy": 0.39, "drift_m_theta": -0.28},
        "minorsft": {"method": "minorsft", "lr": 4e-4, "beta": 0.04, "m_theta": {1: 0, 2: 0.6, 3: 1.0}, "accuracy": 0.3},
        "minorsft_b0.1_lr0.0004": {
            "method": "minorsft", "lr": 4e-4, "beta": 0.1, "m_theta": {1: 0, 2: 0.4, 3: 0.8},
            "accuracy": 0.47, "drift_m_theta": -0.17,
        },
    }  # fmt: skip
    lines = verdict({"runs": runs, "n_eval": 100})
    assert [line[:7] for line in lines] == ["Claim 1", "Claim 2", "Grid (F"]
    assert "beta 0.1 lr 0.0004: m_theta below SFT's at 2 of 3 steps" in lines[2]
    assert "accuracy 47.0% vs SFT 39.0%" in lines[2] and "drift -0.170 vs SFT -0.280" in lines[2]


@pytest.mark.parametrize(
    "experiment, given, expected",
    [
        ("minorsft", [], {"lr": 2e-4, "train": 2000, "test": 100, "batch": 4}),
        ("minordpo", [], {"lr": 5e-4, "train": 2000, "test": 100, "batch": 4}),
        # PoFT trains every row --epochs times and evaluates every epoch: the reported run is its default
        ("poft", [], {"lr": 1e-4, "train": 80, "test": 50, "batch": 8}),
        ("poft", ["--train", "300", "--batch", "4"], {"lr": 1e-4, "train": 300, "test": 50, "batch": 4}),
    ],
)
def test_reproduce_defaults_per_experiment_and_given_values_win(experiment, given, expected):
    from llamafactory_minor import cli

    args = cli._parser().parse_args(["reproduce", experiment, "--out", "x", *given])
    cli.resolve_reproduce_defaults(args)
    assert {k: getattr(args, k) for k in expected} == expected


def test_drift_set_is_package_data_and_checked_before_training(tmp_path, tiny_model, capsys):
    """reproduce's default drift set ships inside the package (a pip-installed plugin has no tests/ folder: it
    failed at the evaluation, after every run had trained), setup.py's package_data covers it, the test fixture
    of the same name links to it; a missing --deviation-data is one error before anything trains."""
    import fnmatch

    import llamafactory_minor
    from llamafactory_minor.cli import main
    from llamafactory_minor.experiments.reproduce import DEFAULT_DEVIATION

    package = os.path.dirname(os.path.abspath(llamafactory_minor.__file__))
    assert os.path.isfile(DEFAULT_DEVIATION) and os.path.commonpath([DEFAULT_DEVIATION, package]) == package
    setup_py = open(os.path.join(REPO_ROOT, "setup.py"), encoding="utf-8").read()
    patterns = re.search(r'package_data=\{"llamafactory_minor": \[([^\]]*)\]', setup_py).group(1)
    assert any(
        fnmatch.fnmatch(os.path.relpath(DEFAULT_DEVIATION, package), p.strip().strip('"')) for p in patterns.split(",")
    )
    fixture = os.path.join(REPO_ROOT, "tests", "fixtures", "data", "alpaca_en_tiny.json")
    assert os.path.samefile(fixture, DEFAULT_DEVIATION)
    assert len(json.load(open(DEFAULT_DEVIATION, encoding="utf-8"))) == 32

    out = tmp_path / "repro"
    missing = str(tmp_path / "no_such.json")
    args = ["reproduce", "minorsft", "--out", str(out), "--model", tiny_model, "--deviation-data", missing]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--deviation-data {missing} does not exist" in err and "Traceback" not in err
    assert not (out / "runs").exists() and not any(out.glob("**/trainer_log.jsonl"))


def test_results_table_final_value_is_the_last_step_after_json():
    """results.md's "final" columns are the last step's value also for series read back from results.json (string
    steps): ``max`` of the strings took step "9" of 60 (docs/reproduction/minorsft/results.md showed step 9)."""
    from llamafactory_minor.experiments.reproduce import final_value, format_results

    series = {step: step / 100 for step in range(1, 61)}
    results = {"runs": {"sft": {"lr": 2e-4, "m_theta": series}}, "base": {}}
    for r in (results, json.loads(json.dumps(results))):
        assert final_value(r["runs"]["sft"]["m_theta"]) == 0.6
        assert "| sft | 0.0002 | - | 0.6000 |" in format_results(r)


def test_verdicts_order_steps_numerically_also_after_json():
    """Series read back from results.json have string steps, where plain ``sorted`` puts "10" before "9": the
    verdicts' step orderings (first step, last step, "every later step") are numeric for int and string steps."""
    from llamafactory_minor.experiments.reproduce import steps_in_order, verdict, verdict_minordpo

    assert steps_in_order(["10", "9", "1", "12"]) == ["1", "9", "10", "12"] and steps_in_order({3: 0, 1: 0}) == [1, 3]
    sft = {s: s / 10 for s in range(1, 13)}  # 0.1 .. 1.2
    minor = {s: s / 20 for s in range(1, 13)}  # below SFT's after step 1
    runs = {
        "sft": {"method": "sft", "lr": 2e-4, "m_theta": sft, "accuracy": 0.3},
        "minorsft": {"method": "minorsft", "lr": 4e-4, "beta": 0.04, "m_theta": minor, "accuracy": 0.4},
        "minorsft_b0.1_lr0.0002": {"method": "minorsft", "lr": 2e-4, "beta": 0.1, "m_theta": minor},
    }
    results = {"runs": runs, "n_eval": 10}
    lines = verdict(results)
    assert lines == verdict(json.loads(json.dumps(results)))
    assert "final: MinorSFT 0.6000, SFT 1.2000; at step 1 both start" in lines[0]  # step 12, not "9"
    assert "(final 0.6000 vs 1.2000)" in lines[2]
    # MinorDPO logged from step 8 (its first step, the reference, is left out of "stays >= 0"): "10" sorts first
    chosen_m = {8: -0.5, 9: 0.01, 10: 0.02, 11: 0.03, 12: 0.04}
    dpo_runs = {
        "dpo": {"method": "dpo", "lr": 5e-4, "normalized_rewards/chosen": {s: -s / 100 for s in chosen_m}},
        "minordpo": {"method": "minordpo", "lr": 5e-4, "normalized_rewards/chosen": chosen_m},
    }
    (line,) = verdict_minordpo({"runs": dpo_runs})
    assert " HOLDS here" in line and "MinorDPO min 0.0100, final 0.0400" in line and "DPO final -0.1200" in line
    assert verdict_minordpo(json.loads(json.dumps({"runs": dpo_runs}))) == [line]


@pytest.mark.parametrize(
    "experiment,given",
    [("minorsft", ["--grid"]), ("minordpo", ["--lrs", "5e-5,5e-4"]), ("poft", ["--epochs", "2"])],
)
def test_reproduce_runs_one_grid_that_the_sweep_trains_and_the_evaluation_reads(experiment, given, tmp_path):
    """The CPU scale goes through the paper scale's pipeline (issue 10): reproduce writes the experiment as a grid
    file plus an evaluation config reading it, and runs `llamafactory-minor sweep GRID --evaluate` on them. Here:
    the pipeline accepts them (checked before training), every path the evaluation reads is a path the sweep
    writes, each run's LF config is the one the sweep trains, and a finished run trained with other arguments is
    refused (--overwrite deletes it, so the sweep trains it again)."""
    import yaml

    from llamafactory_minor import cli
    from llamafactory_minor.experiments import pipeline, reproduce
    from llamafactory_minor_eval.config import build_config, load_yaml

    out = tmp_path / "repro"
    args = cli._parser().parse_args(["reproduce", experiment, "--out", str(out), "--model", "my/model", *given])
    cli.resolve_reproduce_defaults(args)
    args.deviation_data = reproduce.DEFAULT_DEVIATION
    if experiment == "minorsft":
        runs = reproduce.minorsft_runs(args.lr, args.beta, args.grid)
    elif experiment == "minordpo":
        runs = reproduce.minordpo_runs([5e-5, 5e-4], args.beta, args.dpop_lambda)
    else:
        runs = reproduce.poft_runs(args.lr, args.model, args.template, args.poft_beta)
    saved = experiment == "poft"
    grid = reproduce.write_experiment(runs, args, str(out / "data"), str(out), ["loss"], saved=saved)
    p = pipeline.plan(grid)
    assert p.eval_config == str(out / "eval.yaml") and p.report == str(out / "report") and not p.skip_missing
    dry = io.StringIO()
    assert pipeline.run_pipeline(grid, dry_run=True, out=dry) == 0
    commands = [line.split() for line in dry.getvalue().splitlines() if line.startswith("llamafactory-cli train")]
    written = [c[-1].removeprefix("output_dir=") for c in commands]
    assert written == [str(out / "runs" / r["name"]) for r in runs]
    for run, cmd in zip(runs, commands):  # the recipe is the run's LF config, naming the same output_dir
        cfg = yaml.safe_load(open(cmd[2], encoding="utf-8"))
        assert cfg["output_dir"] == cmd[-1].removeprefix("output_dir=") and cfg["learning_rate"] == run["lr"]
        assert cfg["stage"] == run["stage"] and cfg.get("pref_beta") == run.get("beta")
    # once the runs exist (per epoch for PoFT), the evaluation reads the base and exactly the sweep's paths
    for path in written:
        os.makedirs(os.path.join(path, "checkpoint-4") if saved else path)
        if saved:
            os.makedirs(os.path.join(path, "checkpoint-8"))
    cfg = build_config(load_yaml(p.eval_config), {}, where=p.eval_config)
    assert [c.path for c in cfg.checkpoints[:1]] == ["my/model"] and cfg.reference == "base"
    evaluated = [c.path for c in cfg.checkpoints[1:]]
    if saved:
        assert evaluated == [os.path.join(w, f"checkpoint-{s}") for w in written for s in (4, 8)]
    else:
        assert evaluated == written
    # a finished run is reused only as it was trained; --overwrite deletes it for the sweep to train again. Every
    # run is checked before anything is written: the refusal (here of the last run) leaves the others' files as they were
    finished = out / "runs" / runs[-1]["name"]
    (finished / "all_results.json").write_text("{}")
    first_config = (out / "configs" / f"{runs[0]['name']}.yaml").read_text()
    changed = [dict(r, lr=r["lr"] * 10) for r in runs]
    with pytest.raises(reproduce.ReproduceError, match="learning_rate differ"):
        reproduce.write_experiment(changed, args, str(out / "data"), str(out), ["loss"], saved=saved)
    assert (out / "configs" / f"{runs[0]['name']}.yaml").read_text() == first_config
    assert os.path.isdir(out / "runs" / runs[0]["name"])  # not deleted as an unfinished run to retrain
    changed = changed[-1:]
    args.overwrite = True
    reproduce.write_experiment(changed[:1], args, str(out / "data"), str(out), ["loss"], saved=saved)
    assert not finished.exists()

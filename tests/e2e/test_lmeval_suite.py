"""PoFT's lm-eval suite (ARC-Challenge, HellaSwag, TruthfulQA mc2, Winogrande, GSM8K flexible, MMLU) through
lm-eval-harness's own HF model class over a checkpoint list (a base and a LoRA adapter of it), with every task
pointed at local files in the hub datasets' row format (tests/fixtures/lmeval, see its PROVENANCE.md):
results land in our output layout, are resumable per (checkpoint, task), and refuse other settings.

The tiny random model keeps it fast (its scores are noise; what is checked is the plumbing and that the
numbers are lm-eval's own). Shots are reduced to what the fixtures hold.
"""

import os
import shutil
import sys

import pytest

# lm-eval-harness: skipped without it, failing under CI=true (conftest.require_lm_eval)
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("lm_eval_harness")]

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")
sys.path.insert(0, os.path.abspath(os.path.join(FIX, "eval")))
from eval_helpers import make_lora  # noqa: E402

LOCAL = os.path.abspath(os.path.join(FIX, "lmeval"))
SIZES = {"arc_challenge": 4, "hellaswag": 4, "truthfulqa_mc2": 4, "winogrande": 4, "gsm8k": 3, "mmlu": 6}


def _suite():
    from llamafactory_minor_eval.lmeval_suite import suite_from_names

    tasks = suite_from_names(["arc_challenge@2", "hellaswag@1", "truthfulqa_mc2", "winogrande@1", "gsm8k@1", "mmlu@1"])
    for t in tasks:
        if t.task == "gsm8k":  # a random model never says "Question:": keep its generations short
            t.overrides = {
                "generation_kwargs": {
                    "until": ["Question:", "</s>", "<|im_end|>"],
                    "do_sample": False,
                    "max_gen_toks": 8,
                }
            }
    return tasks


def test_poft_suite_over_checkpoints_resumable(tiny_model, tmp_path):
    from llamafactory_minor_eval.errors import EvalError
    from llamafactory_minor_eval.io_utils import read_json
    from llamafactory_minor_eval.lmeval_suite import run_suite, suite_from_names
    from llamafactory_minor_eval.models import Checkpoint, resolve_checkpoint

    lora = make_lora(tiny_model, str(tmp_path / "lora"), scale=2.0)
    ckpts = [
        resolve_checkpoint(Checkpoint(name="base", path=tiny_model)),
        resolve_checkpoint(Checkpoint(name="lora", path=lora)),
    ]
    assert ckpts[1].adapter and ckpts[1].base
    out = tmp_path / "out"
    logs = []
    done = run_suite(ckpts, _suite(), str(out), data_dir=LOCAL, batch_size=4, log=logs.append)
    for ck in ("base", "lora"):
        for task, n in SIZES.items():
            m = done[ck][f"lm-{task}"]
            assert m["n"] == n, (ck, task, m["n"])
            assert (out / ck / f"lm-{task}" / "samples.jsonl").is_file()
            assert 0.0 <= m["accuracy"] <= 1.0
            if task != "mmlu":  # the number is lm-eval's own aggregate
                res = m["lmeval_results"][task]
                key = next(k for k in res if k.startswith(("acc_norm,", "exact_match,flexible")) or k == "acc,none")
                metric = {
                    "arc_challenge": "acc_norm,none",
                    "hellaswag": "acc_norm,none",
                    "truthfulqa_mc2": "acc,none",
                    "winogrande": "acc,none",
                    "gsm8k": "exact_match,flexible-extract",
                }[task]
                assert key and m["accuracy"] == pytest.approx(res[metric], abs=1e-9)
        assert set(done[ck]["lm-mmlu"]["subjects"]) == {"mmlu_astronomy", "mmlu_high_school_chemistry"}
    # the adapter is really applied (peft through lm-eval's HFLM): other log-likelihoods than the base
    base_s = (out / "base" / "lm-arc_challenge" / "samples.jsonl").read_text()
    lora_s = (out / "lora" / "lm-arc_challenge" / "samples.jsonl").read_text()
    assert base_s != lora_s

    # resume: nothing is run again; one removed pair is redone alone
    stamp = os.path.getmtime(out / "base" / "lm-winogrande" / "metrics.json")
    os.remove(out / "lora" / "lm-hellaswag" / "metrics.json")
    logs.clear()
    again = run_suite(ckpts, _suite(), str(out), data_dir=LOCAL, batch_size=4, log=logs.append)
    assert os.path.getmtime(out / "base" / "lm-winogrande" / "metrics.json") == stamp
    assert [line for line in logs if line.startswith("[load]")] == ["[load] lora: lm-eval transformers for hellaswag"]
    assert again["lora"]["lm-hellaswag"]["n"] == 4
    assert read_json(out / "lora" / "lm-hellaswag" / "metrics.json")["title"].startswith("hellaswag 1-shot acc_norm")

    # other settings in the same folder: refused with the differing key named
    with pytest.raises(EvalError, match="other settings .*num_fewshot"):
        run_suite(ckpts[:1], suite_from_names(["winogrande@2"]), str(out), data_dir=LOCAL, log=logs.append)

    # resumed by content: the adapter retrained into the same folder has its pair redone (not the old weights'
    # results), the base's is reused; the same adapter moved elsewhere is reused
    wino = [t for t in _suite() if t.task == "winogrande"]
    before = (out / "lora" / "lm-winogrande" / "samples.jsonl").read_text()
    shutil.rmtree(lora)
    make_lora(tiny_model, lora, seed=1, scale=2.0)
    logs.clear()
    run_suite(ckpts, wino, str(out), data_dir=LOCAL, batch_size=4, log=logs.append)
    assert [line for line in logs if line.startswith(("[redo]", "[load]"))] == [
        "[redo] lora | lm-winogrande: the checkpoint's files changed at the same path since these results were made: "
        "evaluated again",
        "[load] lora: lm-eval transformers for winogrande",
    ]
    assert (out / "lora" / "lm-winogrande" / "samples.jsonl").read_text() != before
    moved = resolve_checkpoint(Checkpoint(name="lora", path=shutil.move(lora, tmp_path / "lora-moved")))
    logs.clear()
    run_suite([ckpts[0], moved], wino, str(out), data_dir=LOCAL, batch_size=4, log=logs.append)
    assert not [line for line in logs if line.startswith(("[redo]", "[load]", "[rekey]"))], logs
    assert read_json(out / "lora" / "lm-winogrande" / "fingerprint.json")["checkpoint"]["adapter"] == os.path.realpath(
        moved.adapter
    )


def test_suite_names_and_local_files_errors(tmp_path):
    from llamafactory_minor_eval.errors import EvalError
    from llamafactory_minor_eval.lmeval_suite import POFT_SUITE, local_data_overrides, suite_from_names

    assert [(t.task, t.num_fewshot, t.metric, t.filter) for t in POFT_SUITE] == [
        ("arc_challenge", 25, "acc_norm", "none"),
        ("hellaswag", 10, "acc_norm", "none"),
        ("truthfulqa_mc2", 0, "acc", "none"),
        ("winogrande", 5, "acc", "none"),
        ("gsm8k", 5, "exact_match", "flexible-extract"),
        ("mmlu", 5, "acc", "none"),
    ]
    assert suite_from_names(["mmlu:astronomy@1"])[0].subtasks == ["mmlu_astronomy"]
    with pytest.raises(EvalError, match="unknown lm-eval task 'arc_easy'"):
        suite_from_names(["arc_easy"])
    with pytest.raises(EvalError, match="no local data folder"):
        local_data_overrides(suite_from_names(["winogrande"])[0], str(tmp_path))
    (tmp_path / "winogrande").mkdir()
    with pytest.raises(EvalError, match="no train.jsonl, validation.jsonl in"):
        local_data_overrides(suite_from_names(["winogrande"])[0], str(tmp_path))

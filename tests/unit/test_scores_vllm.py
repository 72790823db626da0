"""vLLM backend plumbing without vLLM: the worker script runs in a subprocess against a stand-in ``vllm``
module whose ``prompt_logprobs`` come from a transformers forward of the tiny model. Checks the label mask
and shift, pairs, streaming into the cache, resume after a worker crash, and the error for a python
without vLLM. (The real vLLM agreement test is in tests/e2e/test_score_cli.py.)"""

import json
import os
import stat
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

from llamafactory_minor.integration.data import sequences_of, token_key
from llamafactory_minor.scores import vllm_backend
from llamafactory_minor.scores.cache import ScoreCache
from llamafactory_minor.scores.vllm_backend import (
    VLLMScoringError,
    run_worker,
    score_rows_vllm,
)
from llamafactory_minor_core.io import JsonlTail
from llamafactory_minor_core.vllm_scoring import sequence_from_prompt_logprobs

FAKE_VLLM = textwrap.dedent("""
    # A stand-in for vllm (standard library only, so the subprocess starts fast): prompt log-probs come
    # from a table the test computed with a transformers forward of the tiny model.
    import json, os, runpy, sys, types

    TABLE = json.load(open(os.environ["FAKE_VLLM_TABLE"]))

    class Logprob:
        def __init__(self, value):
            self.logprob = value

    class SamplingParams:
        def __init__(self, **kwargs):
            assert kwargs["prompt_logprobs"] == 0 and kwargs["max_tokens"] == 1, kwargs
            self.kwargs = kwargs

    class LLM:
        calls = 0

        def __init__(self, model, **kwargs):
            assert kwargs["dtype"] == "float32" and kwargs["enforce_eager"], kwargs

        def generate(self, prompts, params, use_tqdm=False):
            LLM.calls += 1
            if os.environ.get("FAKE_VLLM_FAIL_ON_CALL") == str(LLM.calls):
                raise RuntimeError("engine died (injected)")
            outs = []
            with open(os.environ["FAKE_VLLM_TRACE"], "a") as f:
                for p in prompts:
                    ids = list(p["prompt_token_ids"])
                    f.write(" ".join(map(str, ids)) + "\\n")
                    lps = TABLE[" ".join(map(str, ids))]
                    plp = [None] + [{ids[t]: Logprob(lps[t - 1])} for t in range(1, len(ids))]
                    outs.append(types.SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=plp))
            return outs

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda **kw: dict(kw)
    vllm.inputs = inputs
    sys.modules["vllm"], sys.modules["vllm.inputs"] = vllm, inputs
    sys.modules["torch"] = None  # "no torch": the worker then assumes CPU (float32)
    script = sys.argv[1]
    sys.argv = sys.argv[1:] + ["--chunk", "2"]
    runpy.run_path(script, run_name="__main__")
""")


@pytest.fixture
def fake_python(tmp_path, monkeypatch):
    runner = tmp_path / "fake_vllm_runner.py"
    runner.write_text(FAKE_VLLM)
    exe = tmp_path / "python-with-fake-vllm"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{runner}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FAKE_VLLM_TRACE", str(tmp_path / "trace.txt"))
    return str(exe)


@pytest.fixture(scope="module")
def tiny_lm(tiny_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()


def rows_of(n, seed=0, pairwise=False):
    import random

    rng = random.Random(seed)

    def seq():
        p, a = rng.randint(2, 8), rng.randint(1, 9)
        ids = [rng.randrange(3, 49152) for _ in range(p + a)]
        return ids, [-100] * p + ids[p:]

    out = []
    for i in range(n):
        row = {"sample_key": f"{seed:04x}{i:012x}"}
        if pairwise:
            (a, b), (c, d) = seq(), seq()
            row.update(chosen_input_ids=a, chosen_labels=b, rejected_input_ids=c, rejected_labels=d)
        else:
            row["input_ids"], row["labels"] = seq()
        row["token_key"] = token_key(sequences_of(row))
        out.append(row)
    return out


def test_mask_and_shift_follow_sequence_log_probs():
    from llamafactory_minor.objectives import token_log_probs

    torch.manual_seed(0)
    ids = [5, 7, 1, 3, 2, 6]
    labels = [5, -100, 1, 3, -100, 6]  # position 0 is never scored (no context), like LF's shift
    logits = torch.randn(1, len(ids), 8)
    ref, mask = token_log_probs(logits, torch.tensor([labels]))
    lps = torch.log_softmax(logits[0], -1)
    prompt_logprobs = [None] + [{ids[t]: lps[t - 1, ids[t]].item()} for t in range(1, len(ids))]
    total, count, per_token = sequence_from_prompt_logprobs(ids, prompt_logprobs, labels, per_token=True)
    assert count == int(mask.sum()) == 3
    assert per_token == pytest.approx(ref[0].tolist(), abs=1e-6)
    assert total == pytest.approx(ref.sum().item(), abs=1e-5)
    with pytest.raises(ValueError, match="differs from the input token"):
        sequence_from_prompt_logprobs(ids, prompt_logprobs, [5, -100, 4, 3, -100, 6])


def _transformers_scores(lm, rows):
    from llamafactory_minor.scores.scoring import score_dataset_rows

    class NoCache:
        def load_partial(self):
            return {}

        def append(self, rows):
            pass

    return score_dataset_rows(lm, rows, NoCache(), 2, batch_size=4, show_progress=False)


def _table(lm, rows, path):
    """log p(ids[t] | ids[:t]) for t = 1..T-1 of every sequence, by a transformers forward."""
    from llamafactory_minor.scores.scoring import sequences_of

    table = {}
    with torch.no_grad():
        for row in rows:
            for _, ids, _ in sequences_of(row):
                lps = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].float(), -1)
                table[" ".join(map(str, ids))] = [lps[t - 1, ids[t]].item() for t in range(1, len(ids))]
    path.write_text(json.dumps(table))
    return str(path)


def test_vllm_driver_matches_transformers_and_resumes_after_a_crash(
    tmp_path, fake_python, tiny_model, tiny_lm, monkeypatch
):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the driver's work folder goes
    rows = rows_of(4, seed=1, pairwise=True)
    monkeypatch.setenv("FAKE_VLLM_TABLE", _table(tiny_lm, rows, tmp_path / "table.json"))
    trace = tmp_path / "trace.txt"

    # the engine dies on its 2nd chunk (chunks of 2 sequences): the first pair is kept in the cache
    monkeypatch.setenv("FAKE_VLLM_FAIL_ON_CALL", "2")
    cache = ScoreCache(str(tmp_path / "cache"), "k", {})
    with pytest.raises(VLLMScoringError, match=r"exit code 1; 2 of 8 sequences scored and kept") as e:
        score_rows_vllm(rows, cache, tiny_model, python=fake_python, show_progress=False)
    assert "engine died (injected)" in str(e.value)  # the log tail is shown
    assert len(cache.load_partial()) == 1
    failed_workdirs = [p for p in os.listdir(tmp_path) if p.startswith("lfm-vllm-")]
    assert len(failed_workdirs) == 1  # kept for its log

    monkeypatch.delenv("FAKE_VLLM_FAIL_ON_CALL")
    trace.write_text("")
    per_token = {}
    cache = ScoreCache(str(tmp_path / "cache"), "k", {})
    got = score_rows_vllm(rows, cache, tiny_model, python=fake_python, show_progress=False, per_token=per_token)
    assert len(trace.read_text().splitlines()) == 6  # only the 3 unscored pairs went to the engine again
    assert len(per_token) == 6
    assert cache.load_partial() == got  # rows were streamed into the cache as they arrived

    want = _transformers_scores(tiny_lm, rows)
    assert got.keys() == want.keys()
    for k in want:
        for f in ("sum_logp", "rejected_sum_logp"):
            assert got[k][f] == pytest.approx(want[k][f], abs=1e-4)
        for f in ("num_tokens", "rejected_num_tokens"):
            assert got[k][f] == want[k][f]
    assert [p for p in os.listdir(tmp_path) if p.startswith("lfm-vllm-")] == failed_workdirs  # success cleans up


def test_python_without_vllm_is_a_clear_error(tiny_model, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a failed run keeps its work folder (log)
    items = [("a\tchosen", [1, 2, 3], [-100, 2, 3])]
    python = sys.executable  # the LF environment: no vllm here
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is importable in this environment")
    except ImportError:
        pass
    with pytest.raises(VLLMScoringError, match="score_backend_python"):
        run_worker(items, tiny_model, python=python, show_progress=False)
    with pytest.raises(VLLMScoringError, match="cannot run the vLLM worker"):
        run_worker(items, tiny_model, python="/nonexistent/python", show_progress=False)


def test_worker_env_does_not_leak_this_interpreter(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    env = vllm_backend._worker_env()
    assert "PYTHONPATH" not in env
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_worker_reads_only_complete_lines(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps({"id": "a"}) + "\n" + '{"id": "b", "sum')
    with open(path) as f:
        follow = JsonlTail(f)
        rows = follow.read()
        assert [r["id"] for r in rows] == ["a"] and follow.buffer == '{"id": "b", "sum'
        with open(path, "a") as w:
            w.write('_logp": 1}\n')
        rows = follow.read()
        assert rows == [{"id": "b", "sum_logp": 1}] and follow.buffer == ""
        assert follow.read() == []


def test_vllm_backend_refuses_adapters(tmp_path):
    from llamafactory_minor.integration import PluginError
    from llamafactory_minor.scores.standalone import _score_section

    sec = {"rows": [], "adapter": "some/lora", "quantization_bit": None, "meta": {}, "key": "k", "model": "m"}
    opts = {"score_backend": "vllm"}
    with pytest.raises(PluginError, match="does not load adapters"):
        _score_section(sec, opts, SimpleNamespace(), SimpleNamespace(minor_cache_dir=str(tmp_path)), "x")

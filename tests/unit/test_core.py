"""llamafactory_minor_core: the one copy of what the plugin and the evaluation suite both compute (atomic IO,
torn-line readers, label log-probs, m_theta, vLLM prompt log-prob sums and CPU engine settings), and the layering
that lets the evaluation suite use it without LLaMA-Factory."""

import ast
import json
import os
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORE = os.path.join(REPO, "llamafactory_minor_core")


def _loaded_after(code: str) -> dict:
    """Which of our packages (and LF, vLLM) ``code`` imports. The installed start-up hook (llamafactory_minor.pth)
    imports ``llamafactory_minor._hook`` into every interpreter: only what ``code`` adds counts."""
    probe = (
        "import json, sys; before = set(sys.modules); " + code + "; new = set(sys.modules) - before; "
        "print(json.dumps({k: any(m == k or m.startswith(k + '.') for m in new) for k in "
        "('llamafactory', 'llamafactory_minor', 'llamafactory_minor_eval', 'vllm')}))"
    )
    env = dict(os.environ, LLAMAFACTORY_MINOR_DISABLE="1")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_imports_neither_lf_nor_the_plugin_nor_the_evaluation_suite():
    loaded = _loaded_after(
        "import llamafactory_minor_core.io, llamafactory_minor_core.logprobs, "
        "llamafactory_minor_core.metrics, llamafactory_minor_core.vllm_scoring, llamafactory_minor_core.digest"
    )
    assert loaded == {
        "llamafactory": False,
        "llamafactory_minor": False,
        "llamafactory_minor_eval": False,
        "vllm": False,
    }


def test_evaluation_uses_the_core_and_still_never_imports_lf():
    loaded = _loaded_after(
        "import llamafactory_minor_eval.runner, llamafactory_minor_eval.backends.hf, "
        "llamafactory_minor_eval.backends.vllm_backend, llamafactory_minor_eval.deviation, "
        "llamafactory_minor_eval.io_utils, llamafactory_minor_eval.store"
    )
    assert not loaded["llamafactory"] and not loaded["llamafactory_minor"] and not loaded["vllm"]


def test_the_vllm_worker_script_needs_only_the_standard_library_at_import():
    """It runs as a script in any vLLM environment (``score_backend_python``), where nothing of ours is installed."""
    tree = ast.parse(open(os.path.join(CORE, "vllm_scoring.py"), encoding="utf-8").read())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports in a script"
            top.add(node.module.split(".")[0])
    assert top and top <= set(sys.stdlib_module_names), top - set(sys.stdlib_module_names)


def test_one_implementation_on_both_sides():
    import llamafactory_minor_core.digest as core_digest
    import llamafactory_minor_core.io as core_io
    import llamafactory_minor_core.logprobs as core_lp
    import llamafactory_minor_core.metrics as core_metrics
    import llamafactory_minor_eval.io_utils as eval_io
    import llamafactory_minor_eval.models as eval_models
    from llamafactory_minor.objectives import deviation_metric, sequence_log_probs, token_log_probs
    from llamafactory_minor.objectives._common import safe_length
    from llamafactory_minor.scores import cache

    assert (sequence_log_probs, token_log_probs) == (core_lp.sequence_log_probs, core_lp.token_log_probs)
    assert deviation_metric is core_metrics.deviation_metric and safe_length is core_metrics.safe_length
    for name in eval_io.__all__:
        assert getattr(eval_io, name) is getattr(core_io, name), name
    # the model-content digest: the score cache's and the evaluation store's are the core's
    assert cache.file_digest is core_digest.file_digest and eval_models.folder_digest is core_digest.folder_digest


# --------------------------------------------------------------------------------------------------
# m_theta
# --------------------------------------------------------------------------------------------------
def test_m_theta_of_lists_is_the_training_metric():
    from llamafactory_minor_core.metrics import deviation_metric, m_theta

    policy, ref, lengths = [-10.0, -4.0, -7.5, -3.0], [-12.0, -4.0, -6.0, -1.0], [4, 2, 3, 0]
    # m == 0 has no defined value: left out of the mean (N = 3), as in training
    expected = ((-10 + 12) / 4 + 0 / 2 + (-7.5 + 6) / 3) / 3
    assert m_theta(policy, ref, lengths) == pytest.approx(expected, abs=1e-12)
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    assert float(deviation_metric(t(policy), t(ref), t(lengths))) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="same length"):
        m_theta([1.0], [1.0, 2.0], [1])
    with pytest.raises(ValueError, match="non-empty"):
        m_theta([], [], [])


# --------------------------------------------------------------------------------------------------
# atomic IO and torn lines
# --------------------------------------------------------------------------------------------------
def test_atomic_write_replaces_whole_files_with_plain_modes(tmp_path):
    from llamafactory_minor_core.io import atomic_write_json, atomic_write_text, read_json

    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"x": 1})
    assert read_json(path) == {"x": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and os.listdir(path.parent) == ["a.json"]  # no temporary file left

    class Boom(Exception):
        pass

    def explode():
        raise Boom

    with pytest.raises(Boom):
        atomic_write_text(path, type("S", (str,), {"encode": lambda self, enc: explode()})("x"))
    assert path.read_text() == "new" and os.listdir(path.parent) == ["a.json"]


def test_jsonl_readers_survive_a_torn_last_line(tmp_path):
    from llamafactory_minor_core.io import append_jsonl, iter_jsonl_lines, read_jsonl

    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as f:
        f.write('{"a": 3')  # a crash in the middle of an append
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert list(iter_jsonl_lines(path)) == [(1, {"a": 1}), (2, {"a": 2}), (3, None)]
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')  # damage in the middle is an error, not a torn append
    with pytest.raises(json.JSONDecodeError):
        read_jsonl(path)
    path.write_bytes(b'{"a": 1}\n\xff\xfe\n')
    assert list(iter_jsonl_lines(path)) == [(1, {"a": 1}), (2, None)]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


# --------------------------------------------------------------------------------------------------
# vLLM: prompt log-prob sums and CPU settings (no vLLM needed)
# --------------------------------------------------------------------------------------------------
def test_answer_log_prob_sums_from_prompt_logprobs():
    from llamafactory_minor_core.vllm_scoring import answer_labels, sequence_from_prompt_logprobs

    ids = [5, 7, 1, 3, 2]
    plp = [None] + [{ids[t]: type("L", (), {"logprob": -0.5 * t})()} for t in range(1, len(ids))]
    labels = answer_labels(3, ids[3:])  # prompt of 3 tokens, answer [3, 2]
    assert labels == [-100, -100, -100, 3, 2]
    assert sequence_from_prompt_logprobs(ids, plp, labels) == (-1.5 + -2.0, 2)
    assert sequence_from_prompt_logprobs(ids, plp, labels, per_token=True)[2] == [0.0, 0.0, -1.5, -2.0]
    with pytest.raises(ValueError, match="differs from the input token"):
        sequence_from_prompt_logprobs(ids, plp, [-100, -100, -100, 9, 2])
    with pytest.raises(ValueError, match="5 prompt tokens but 4 labels"):
        sequence_from_prompt_logprobs(ids, plp, labels[:4])


def test_cpu_engine_settings():
    from llamafactory_minor_core.vllm_scoring import engine_dtype, engine_kwargs, set_cpu_env

    assert engine_dtype("auto", cpu=True) == "float32" and engine_dtype("auto", cpu=False) == "auto"
    assert engine_dtype("bfloat16", cpu=True) == "bfloat16"
    env = set_cpu_env({}, kv_cache_gb=2.5)
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "3", "VLLM_NO_USAGE_STATS": "1"}  # vLLM's default core binding
    env = set_cpu_env({"VLLM_CPU_KVCACHE_SPACE": "8"}, all_cores=True)
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "8", "VLLM_NO_USAGE_STATS": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    kw = engine_kwargs("/m", dtype="float32", max_model_len=33, enable_prefix_caching=False)
    assert kw == dict(
        model="/m",
        tokenizer="/m",
        dtype="float32",
        seed=0,
        enforce_eager=True,
        trust_remote_code=False,
        enable_prefix_caching=False,
        max_model_len=33,
    )

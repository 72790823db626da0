"""Score cache: the key (changes with every component: weights bytes, every token and label), joins by token
key with token counts checked, atomic writes, resume after an interrupted pass, corrupt or edited caches
recomputed with a warning (never used), nothing left on disk by a pass that failed before scoring."""

import contextlib
import json
import math
import os
import random
from types import SimpleNamespace

import pytest
import torch

import llamafactory_minor  # noqa: F401  (activates the plugin's LF patches)
from llamafactory_minor.integration import PluginError
from llamafactory_minor.integration.data import answer_token_counts, sequences_of, token_key
from llamafactory_minor.scores import cache as cache_mod
from llamafactory_minor.scores import passes
from llamafactory_minor.scores.aligned import aligned_meta
from llamafactory_minor.scores.cache import ScoreCache, atomic_write_text, make_key, weights_digest
from llamafactory_minor.scores.passes import KEY_SCHEME, dataset_fingerprint, join, pass_key, run_pass
from llamafactory_minor.scores.reference import _reference_meta
from llamafactory_minor.scores.scoring import score_dataset_rows
from llamafactory_minor_core import digest as core_digest


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
class Log:
    """Stands in for LF's logger: records what would be logged."""

    def __init__(self):
        self.warnings, self.infos = [], []

    def warning_rank0(self, msg):
        self.warnings.append(msg)

    def info_rank0(self, msg):
        self.infos.append(msg)

    def text(self):
        return "\n".join(self.warnings + self.infos)


def fake_model_dir(path, payload=b"w" * 1000):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(payload)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write('{"model_type": "llama"}')
    return str(path)


def synthetic_rows(n=10, seed=0, vocab=49152, pairwise=False):
    """LF-shaped tokenized rows with content keys: a prompt (labels -100) then an answer."""
    rng = random.Random(seed)

    def seq():
        p, a = rng.randint(3, 12), rng.randint(2, 15)
        ids = [rng.randrange(3, vocab) for _ in range(p + a)]
        return ids, [-100] * p + ids[p:]

    rows = []
    for i in range(n):
        row = {"sample_key": f"{i:016x}"}
        if pairwise:
            (ci, cl), (ri, rl) = seq(), seq()
            row.update(chosen_input_ids=ci, chosen_labels=cl, rejected_input_ids=ri, rejected_labels=rl)
        else:
            row["input_ids"], row["labels"] = seq()
        row["token_key"] = token_key(sequences_of(row))
        row["answer_tokens"] = answer_token_counts(sequences_of(row))
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def tiny_lm(tiny_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()


class CountingModel(torch.nn.Module):
    """Wraps a causal LM: counts forward calls and the sequences it saw; may fail on a given call."""

    def __init__(self, lm, fail_on_call=None):
        super().__init__()
        self.lm = lm
        self.calls = 0
        self.seen = []
        self.fail_on_call = fail_on_call

    def forward(self, input_ids, attention_mask=None, **kwargs):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError("injected failure after the first batch")
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            self.seen.append(tuple(i for i, m in zip(ids, mask) if m))
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def _args(tmp_path):
    model_dir = fake_model_dir(tmp_path / "model")
    ma = SimpleNamespace(
        model_name_or_path=model_dir,
        adapter_name_or_path=None,
        compute_dtype=None,
        model_revision="main",
        quantization_bit=None,
    )
    da = SimpleNamespace(template="smollm2", cutoff_len=128, train_on_prompt=False, mask_history=False)
    fa = SimpleNamespace(ref_model=None, ref_model_adapters=None, ref_model_quantization_bit=None)
    return ma, da, fa


# --------------------------------------------------------------------------------------------------
# cache key
# --------------------------------------------------------------------------------------------------
def test_reference_cache_key_changes_with_every_component(tmp_path, monkeypatch):
    ma, da, fa = _args(tmp_path)
    rows = {"token_key": ["a" * 32, "b" * 32, "c" * 32]}
    base = pass_key(rows, _reference_meta(ma, da, fa))[1]
    keys = {"base": base}

    def key_with(name, ma=ma, da=da, fa=fa, rows=rows):
        keys[name] = pass_key(rows, _reference_meta(ma, da, fa))[1]

    other_model = fake_model_dir(tmp_path / "other", payload=b"v" * 1000)
    key_with("model", ma=SimpleNamespace(**{**vars(ma), "model_name_or_path": other_model}))
    key_with("ref_model", fa=SimpleNamespace(**{**vars(fa), "ref_model": other_model}))
    lora = fake_model_dir(tmp_path / "lora", payload=b"a" * 100)
    key_with("adapter", ma=SimpleNamespace(**{**vars(ma), "adapter_name_or_path": [lora]}))
    key_with("ref_adapter", fa=SimpleNamespace(**{**vars(fa), "ref_model": other_model, "ref_model_adapters": [lora]}))
    key_with("quantization", ma=SimpleNamespace(**{**vars(ma), "quantization_bit": 4}))
    key_with("template", da=SimpleNamespace(**{**vars(da), "template": "chatml"}))
    key_with("cutoff", da=SimpleNamespace(**{**vars(da), "cutoff_len": 64}))
    key_with("train_on_prompt", da=SimpleNamespace(**{**vars(da), "train_on_prompt": True}))
    key_with("mask_history", da=SimpleNamespace(**{**vars(da), "mask_history": True}))
    key_with("dtype", ma=SimpleNamespace(**{**vars(ma), "compute_dtype": torch.bfloat16}))
    key_with("dataset", rows={"token_key": ["a" * 32, "b" * 32, "d" * 32]})
    key_with("dataset_subset", rows={"token_key": ["a" * 32, "b" * 32]})
    monkeypatch.setattr(passes, "__version__", "9.9.9")
    key_with("plugin_version")
    monkeypatch.undo()
    # the same weights folder with one changed weight byte in the middle (same size, same name)
    weights = os.path.join(ma.model_name_or_path, "model.safetensors")
    with open(weights, "r+b") as f:
        f.seek(500)
        f.write(b"X")
    key_with("weights")
    # the reference is the same model whether it comes from `ref_model` or from `model_name_or_path`
    assert keys.pop("ref_model") == keys["model"]
    assert len(set(keys.values())) == len(keys), keys

    # content, not position: order and duplicates of the rows do not matter
    with open(weights, "r+b") as f:
        f.seek(500)
        f.write(b"w")
    same = pass_key({"token_key": ["c" * 32, "a" * 32, "b" * 32, "a" * 32]}, _reference_meta(ma, da, fa))[1]
    assert same == base


def test_aligned_cache_key_changes_with_every_component(tmp_path):
    ma, da, _ = _args(tmp_path)
    other = fake_model_dir(tmp_path / "other", payload=b"v" * 1000)
    rows = {"token_key": ["a" * 32]}
    variants = [
        aligned_meta(ma, da, ma.model_name_or_path, "smollm2"),
        aligned_meta(ma, da, other, "smollm2"),
        aligned_meta(ma, da, ma.model_name_or_path, "chatml"),
        aligned_meta(ma, SimpleNamespace(**{**vars(da), "cutoff_len": 64}), ma.model_name_or_path, "smollm2"),
        aligned_meta(
            SimpleNamespace(**{**vars(ma), "compute_dtype": torch.float16}), da, ma.model_name_or_path, "smollm2"
        ),
    ]
    keys = [pass_key(rows, m)[1] for m in variants]
    assert len(set(keys)) == len(keys)
    # an aligned pass never shares a key with a reference pass of the same model and template
    fa = SimpleNamespace(ref_model=None, ref_model_adapters=None, ref_model_quantization_bit=None)
    assert pass_key(rows, _reference_meta(ma, da, fa))[1] not in keys


def test_weights_digest_reads_every_byte(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAFACTORY_MINOR_DIGEST_MEMO", str(tmp_path / "memo.json"))
    monkeypatch.setattr(core_digest, "_memo", None)
    a = fake_model_dir(tmp_path / "a")
    b = fake_model_dir(tmp_path / "b")  # same content elsewhere: same identity
    assert weights_digest(a) == weights_digest(b)
    big = tmp_path / "a" / "model.safetensors"
    big.write_bytes(b"0" * 3_000_000)
    before = weights_digest(a)
    data = bytearray(big.read_bytes())
    data[1_500_000] = ord("1")  # a byte in the middle (re-exported middle layers), same size
    big.write_bytes(bytes(data))
    assert weights_digest(a) != before
    # hidden files and sub-folders (checkpoints) are not part of the model
    (tmp_path / "a" / ".lock").write_text("x")
    os.makedirs(tmp_path / "a" / "checkpoint-5")
    after = weights_digest(a)
    (tmp_path / "a" / ".lock").write_text("y")
    assert weights_digest(a) == after
    assert dataset_fingerprint({"token_key": ["b", "a"]}) == dataset_fingerprint({"token_key": ["a", "b", "a"]})


def test_weights_digest_is_memoised_per_file_version(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAFACTORY_MINOR_DIGEST_MEMO", str(tmp_path / "memo.json"))
    monkeypatch.setattr(core_digest, "_memo", None)
    model = fake_model_dir(tmp_path / "m", payload=b"q" * 100_000)
    reads = []
    real_open = open

    def counting_open(path, mode="r", *args, **kwargs):
        if "b" in mode and str(path).endswith("model.safetensors"):
            reads.append(path)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    first = weights_digest(model)
    monkeypatch.setattr(core_digest, "_memo", None)  # a new process: the memo file is read back
    assert weights_digest(model) == first
    assert len(reads) == 1, "each file version is hashed once"
    path = os.path.join(model, "model.safetensors")
    with real_open(path, "r+b") as f:  # same size, new mtime: hashed again
        f.write(b"Q")
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10_000_000))
    assert weights_digest(model) != first and len(reads) == 2


def test_hub_ids_are_identified_by_their_commit(tmp_path, monkeypatch):
    """A hub id resolves through the real huggingface_hub cache layout to the commit it names."""
    hub = tmp_path / "hub"
    repo = hub / "models--org--some-model"
    commit = "0123456789abcdef0123456789abcdef01234567"
    os.makedirs(repo / "refs")
    (repo / "refs" / "main").write_text(commit)
    fake_model_dir(repo / "snapshots" / commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    assert weights_digest("org/some-model") == f"hf:org/some-model@{commit}"
    with pytest.raises(PluginError, match="Cannot identify the weights of `org/not-here`"):
        weights_digest("org/not-here")


# --------------------------------------------------------------------------------------------------
# join
# --------------------------------------------------------------------------------------------------
def _score(k, n, **extra):
    return dict({"key": k, "sum_logp": -float(n), "num_tokens": n}, **extra)


def test_join_by_token_key_not_position():
    rows = {"token_key": ["k3", "k1", "k2", "k1"], "answer_tokens": [[3], [1], [2], [1]]}
    scores = {k: _score(k, i + 1) for i, k in enumerate(["k1", "k2", "k3", "k4"])}
    joined = join(rows, scores, "reference score")
    assert [s["key"] for s in joined] == ["k3", "k1", "k2", "k1"]  # extra scores (k4) are fine


def test_join_missing_names_how_many_and_which():
    rows = {"token_key": ["a", "b", "c", "d"], "answer_tokens": [[1]] * 4}
    with pytest.raises(PluginError) as e:
        join(rows, {"a": _score("a", 1)}, "reference score")
    msg = str(e.value)
    assert "3 of 4 training rows have no reference score" in msg and "b, c, d" in msg
    many = {"token_key": [f"k{i}" for i in range(9)], "answer_tokens": [[1]] * 9}
    with pytest.raises(PluginError, match=r"9 of 9 .*k0, k1, k2, k3, k4, \.\.\."):
        join(many, {}, "score")


def test_join_refuses_a_score_of_another_length():
    rows = {"token_key": ["a", "b"], "answer_tokens": [[2], [5]]}
    with pytest.raises(PluginError, match=r"token key b covers \[4\] answer tokens, the training row has \[5\]"):
        join(rows, {"a": _score("a", 2), "b": _score("b", 4)}, "reference score")
    pairs = {"token_key": ["p"], "answer_tokens": [[2, 3]]}
    assert join(pairs, {"p": _score("p", 2, rejected_sum_logp=-1.0, rejected_num_tokens=3)}, "s")
    with pytest.raises(PluginError, match="covers"):
        join(pairs, {"p": _score("p", 2, rejected_sum_logp=-1.0, rejected_num_tokens=4)}, "s")
    with pytest.raises(PluginError, match="covers"):  # a single-answer score for a pair
        join(pairs, {"p": _score("p", 2)}, "s")


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------
def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "scores.jsonl"
    atomic_write_text(str(path), "one\n")
    atomic_write_text(str(path), "two\n")
    assert path.read_text() == "two\n"
    assert os.listdir(tmp_path) == ["scores.jsonl"]


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch, where):
    path = tmp_path / "scores.jsonl"
    path.write_text("old complete content\n")

    def boom(*args, **kwargs):
        raise OSError("disk full (injected)")

    if where == "fsync":
        monkeypatch.setattr(cache_mod.os, "fsync", boom)
    elif where == "replace":
        monkeypatch.setattr(cache_mod.os, "replace", boom)
    else:
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, text):
                self.f.write(text[: len(text) // 2])
                raise OSError("disk full (injected)")

        monkeypatch.setattr(cache_mod.os, "fdopen", lambda *a, **k: HalfWriter(real_fdopen(*a, **k)))
    with pytest.raises(OSError, match="injected"):
        atomic_write_text(str(path), "new content that never lands\n" * 100)
    monkeypatch.undo()
    assert path.read_text() == "old complete content\n"
    assert os.listdir(tmp_path) == ["scores.jsonl"]


def test_cache_finish_interrupted_leaves_previous_complete_scores(tmp_path, monkeypatch):
    meta = {"kind": "reference", "dataset": "x"}
    cache = ScoreCache(str(tmp_path), "k1", meta)
    old = {"a": {"key": "a", "sum_logp": -1.0, "num_tokens": 2}}
    cache.finish(old)

    def boom(path, text):
        raise OSError("killed (injected)")

    monkeypatch.setattr(cache_mod, "atomic_write_text", boom)
    cache2 = ScoreCache(str(tmp_path), "k1", meta)
    cache2.append([{"key": "a", "sum_logp": -5.0, "num_tokens": 2}])
    with pytest.raises(OSError):
        cache2.finish({"a": {"key": "a", "sum_logp": -5.0, "num_tokens": 2}})
    monkeypatch.undo()
    assert ScoreCache(str(tmp_path), "k1", meta).load_complete() == old
    assert not [n for n in os.listdir(cache.dir) if n.startswith(".")]  # no temporary file left behind


# --------------------------------------------------------------------------------------------------
# resume
# --------------------------------------------------------------------------------------------------
def test_interrupted_pass_resumes_without_rescoring_the_first_batch(tmp_path, tiny_lm):
    rows = synthetic_rows(10, seed=1)
    clean = score_dataset_rows(
        tiny_lm, rows, ScoreCache(str(tmp_path), "clean", {}), 2, batch_size=4, show_progress=False
    )

    cache = ScoreCache(str(tmp_path), "run", {})
    failing = CountingModel(tiny_lm, fail_on_call=2)
    with pytest.raises(RuntimeError, match="injected"):
        score_dataset_rows(failing, rows, cache, 2, batch_size=4, show_progress=False)
    first_batch = set(failing.seen)
    assert len(first_batch) == 4
    partial = cache.load_partial()
    assert len(partial) == 4 and cache.load_complete() is None

    counting = CountingModel(tiny_lm)
    resumed = score_dataset_rows(
        counting, rows, ScoreCache(str(tmp_path), "run", {}), 2, batch_size=4, show_progress=False
    )
    assert len(counting.seen) == 6 and not first_batch & set(counting.seen)  # the first batch is not rescored
    assert resumed.keys() == clean.keys()
    for k in clean:
        assert resumed[k]["num_tokens"] == clean[k]["num_tokens"]
        assert resumed[k]["sum_logp"] == pytest.approx(clean[k]["sum_logp"], abs=1e-6)


def test_interrupted_pairwise_pass_resumes(tmp_path, tiny_lm):
    rows = synthetic_rows(6, seed=2, pairwise=True)
    clean = score_dataset_rows(
        tiny_lm, rows, ScoreCache(str(tmp_path), "clean", {}), 2, batch_size=3, show_progress=False
    )
    failing = CountingModel(tiny_lm, fail_on_call=3)
    with pytest.raises(RuntimeError):
        score_dataset_rows(failing, rows, ScoreCache(str(tmp_path), "run", {}), 2, batch_size=3, show_progress=False)
    done = ScoreCache(str(tmp_path), "run", {}).load_partial()
    assert all("rejected_sum_logp" in r for r in done.values())  # only rows with both halves are kept
    resumed = score_dataset_rows(
        tiny_lm, rows, ScoreCache(str(tmp_path), "run", {}), 2, batch_size=3, show_progress=False
    )
    for k in clean:
        for f in ("sum_logp", "rejected_sum_logp"):
            assert resumed[k][f] == pytest.approx(clean[k][f], abs=1e-5)


# --------------------------------------------------------------------------------------------------
# corrupt caches
# --------------------------------------------------------------------------------------------------
def _complete_cache(tmp_path, key="k", n=4):
    cache = ScoreCache(str(tmp_path), key, {"kind": "reference"})
    rows = {f"{i:016x}": {"key": f"{i:016x}", "sum_logp": -1.5 * (i + 1), "num_tokens": i + 1} for i in range(n)}
    cache.finish(rows)
    return cache, rows


def _truncate(cache):
    lines = open(cache.final_path).read().splitlines(True)
    open(cache.final_path, "w").write("".join(lines[:-1]) + lines[-1][:7])


def _garble(cache):
    lines = open(cache.final_path).read().splitlines(True)
    lines[1] = "\x00\x00{not json\n"
    open(cache.final_path, "w").write("".join(lines))


def _nan(cache):
    lines = open(cache.final_path).read().splitlines(True)
    row = json.loads(lines[2])
    row["sum_logp"] = float("nan")
    lines[2] = json.dumps(row) + "\n"
    open(cache.final_path, "w").write("".join(lines))


def _inf(cache):
    text = open(cache.final_path).read()
    assert '"sum_logp": -1.5' in text
    open(cache.final_path, "w").write(text.replace('"sum_logp": -1.5', '"sum_logp": -Infinity'))


def _drop_row(cache):
    lines = open(cache.final_path).read().splitlines(True)
    open(cache.final_path, "w").write("".join(lines[:-1]))


def _meta_garbled(cache):
    open(cache.meta_path, "w").write("{")


def _meta_other_key(cache):
    meta = json.load(open(cache.meta_path))
    meta["cache_key"] = "somethingelse"
    open(cache.meta_path, "w").write(json.dumps(meta))


def _meta_incomplete(cache):
    meta = json.load(open(cache.meta_path))
    meta["complete"] = False
    open(cache.meta_path, "w").write(json.dumps(meta))


def _edited_value(cache):
    text = open(cache.final_path).read()
    assert '"sum_logp": -3.0' in text
    open(cache.final_path, "w").write(text.replace('"sum_logp": -3.0', '"sum_logp": -2.5'))


def _edited_key(cache):
    text = open(cache.final_path).read()
    assert '"key": "0000000000000001"' in text
    open(cache.final_path, "w").write(text.replace('"key": "0000000000000001"', '"key": "00000000000000ff"'))


def _non_utf8_scores(cache):
    data = open(cache.final_path, "rb").read()
    open(cache.final_path, "wb").write(data[:20] + b"\xff\xfe" + data[22:])


def _non_utf8_meta(cache):
    data = open(cache.meta_path, "rb").read()
    open(cache.meta_path, "wb").write(b"\xff" + data)


CORRUPTIONS = {
    f.__name__.strip("_"): f
    for f in (
        _truncate,
        _garble,
        _nan,
        _inf,
        _drop_row,
        _meta_garbled,
        _meta_other_key,
        _meta_incomplete,
        _edited_value,
        _edited_key,
        _non_utf8_scores,
        _non_utf8_meta,
    )
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_cache_is_detected_with_a_warning(tmp_path, name):
    cache, rows = _complete_cache(tmp_path)
    assert ScoreCache(str(tmp_path), "k", {"kind": "reference"}).load_complete() == rows
    CORRUPTIONS[name](cache)
    log = Log()
    assert ScoreCache(str(tmp_path), "k", {"kind": "reference"}, logger=log).load_complete() is None
    assert log.warnings and "recomputing" in log.warnings[0]


def test_corrupt_partial_rows_are_rescored_not_used(tmp_path, tiny_lm):
    rows = synthetic_rows(5, seed=3)
    clean = score_dataset_rows(
        tiny_lm, rows, ScoreCache(str(tmp_path), "clean", {}), 2, batch_size=2, show_progress=False
    )
    cache = ScoreCache(str(tmp_path), "run", {})
    good = clean[rows[0]["token_key"]]
    os.makedirs(cache.dir, exist_ok=True)
    with open(cache.partial_path, "w") as f:
        f.write(json.dumps(good) + "\n")
        f.write(json.dumps(dict(clean[rows[1]["token_key"]], sum_logp=float("nan"))) + "\n")
        f.write('{"key": "' + rows[2]["token_key"] + '", "sum_lo')  # torn last line
    counting = CountingModel(tiny_lm)
    result = score_dataset_rows(counting, rows, cache, 2, batch_size=2, show_progress=False)
    assert len(counting.seen) == 4  # rows 1 (NaN) and 2 (torn) are rescored, row 0 is reused
    for k in clean:
        assert math.isfinite(result[k]["sum_logp"])
        assert result[k]["sum_logp"] == pytest.approx(clean[k]["sum_logp"], abs=1e-5)


class Rows(list):
    """Rows that also answer column look-ups (``rows["token_key"]``), as a ``datasets.Dataset`` does."""

    def __getitem__(self, item):
        if isinstance(item, str):
            return [row[item] for row in self]
        return list.__getitem__(self, item)


class _TrainingArgs:
    should_save = True
    world_size = 1
    per_device_train_batch_size = 2

    @contextlib.contextmanager
    def main_process_first(self, desc="", local=False):
        yield


def test_run_pass_recomputes_a_corrupt_cache_and_then_reuses_it(tmp_path, tiny_lm, monkeypatch):
    log = Log()
    monkeypatch.setattr(passes, "logger", log)
    rows = Rows(synthetic_rows(4, seed=4))
    fa = SimpleNamespace(minor_cache_dir=str(tmp_path))
    loads = []

    def load():
        loads.append(1)
        return CountingModel(tiny_lm), SimpleNamespace(pad_token_id=2)

    first = run_pass(rows, {"kind": "reference"}, load, _TrainingArgs(), fa, desc="Reference scores")
    assert len(loads) == 1 and "scored 4 rows" in log.text()
    key = make_key(
        dict(
            {"kind": "reference"},
            dataset=dataset_fingerprint(rows),
            plugin=llamafactory_minor.__version__,
            key_scheme=KEY_SCHEME,
        )
    )
    cache = ScoreCache(str(tmp_path), key, {})
    _nan(cache)
    second = run_pass(rows, {"kind": "reference"}, load, _TrainingArgs(), fa, desc="Reference scores")
    assert len(loads) == 2, "a corrupt cache must be recomputed"
    assert any("corrupt" in w for w in log.warnings)
    assert all(math.isfinite(r["sum_logp"]) for r in second.values())
    assert {k: v["sum_logp"] for k, v in second.items()} == pytest.approx({k: v["sum_logp"] for k, v in first.items()})
    run_pass(rows, {"kind": "reference"}, load, _TrainingArgs(), fa, desc="Reference scores")
    assert len(loads) == 2 and "reusing cached scores" in log.infos[-1]


def test_run_pass_leaves_no_folder_when_the_scoring_model_fails_to_load(tmp_path):
    rows = Rows(synthetic_rows(3, seed=5))
    fa = SimpleNamespace(minor_cache_dir=str(tmp_path / "cache"))

    def load():
        raise PluginError("Cannot load the scoring model `nowhere` (injected)")

    with pytest.raises(PluginError, match="injected"):
        run_pass(rows, {"kind": "reference"}, load, _TrainingArgs(), fa, desc="Reference scores")
    assert os.listdir(tmp_path / "cache") == []


def test_cache_folder_is_created_only_when_rows_are_written(tmp_path):
    cache = ScoreCache(str(tmp_path), "k", {})
    assert cache.load_complete() is None and cache.load_partial() == {}
    assert os.listdir(tmp_path) == []
    cache.append([_score("a", 1)])
    assert os.listdir(tmp_path) == ["k"]

"""The lm-eval pairs of the batch runner (``<output>/<checkpoint>/lm-<task>/``) are resumed by content, as our own
benchmarks' pairs are (tests/unit/test_eval_store.py): a digest of every byte of the checkpoint's files and of the
lm-eval data files the task reads (``DIR/<task>/<split>.jsonl``), not the paths they were read from. ``plan_pairs``
loads no model; finished pairs are written with ``store_pair``, as ``run_suite`` writes them."""

import json
import os
import shutil
import sys
import time

import pytest

from llamafactory_minor_eval.errors import EvalError
from llamafactory_minor_eval.lmeval_suite import plan_pairs, store_pair, suite_from_names
from llamafactory_minor_eval.models import Checkpoint

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
FIX = os.path.join(FIXTURES, "lmeval")
sys.path.insert(0, os.path.abspath(os.path.join(FIXTURES, "eval")))
from eval_helpers import fake_model as _model  # noqa: E402
from eval_helpers import own_digest_memo  # noqa: E402, F401 (autouse: this module's own digest memo)
from eval_helpers import rewrite_in_place as _rewrite_in_place  # noqa: E402

TASKS = ["winogrande@1", "mmlu:astronomy@1"]
COLUMNS = ["lm-mmlu", "lm-winogrande"]  # sorted


def _data(tmp_path, name="lmdata"):
    root = tmp_path / name
    for task in ("winogrande", "mmlu"):
        shutil.copytree(os.path.join(FIX, task), root / task)
    return str(root)


def _edit_row(path):
    rows = open(path, encoding="utf-8").read().splitlines()
    rows[0] = rows[0].replace('"', '" ', 1)  # still one valid JSON row, other bytes
    _rewrite_in_place(path, ("\n".join(rows) + "\n").encode())


def _plan(ckpt, out, data, lines=None, **kw):
    done, pending = plan_pairs(
        ckpt, suite_from_names(TASKS), str(out), data_dir=data, log=(lines.append if lines is not None else None), **kw
    )
    return sorted(done), sorted(task.column for task, *_ in pending)


def _finish(ckpt, out, data, elapsed=5.0):
    """Every pending pair stored as a finished run stores it (lm-eval's answers are not needed here)."""
    _, pending = plan_pairs(ckpt, suite_from_names(TASKS), str(out), data_dir=data)
    for task, specs, pair, fp in pending:
        assert specs, task
        metrics = {"n": 1, "accuracy": 1.0, "checkpoint": ckpt.name, "benchmark": task.column, "elapsed_s": elapsed}
        store_pair(pair, fp, [{"key": f"{task.task}/0", "correct": 1.0}], metrics)


def _fp(out, name, column):
    return json.loads((out / name / column / "fingerprint.json").read_text())


def test_a_checkpoint_retrained_in_place_is_evaluated_again(tmp_path):
    base = _model(tmp_path / "base")
    adapter = _model(tmp_path / "lora", b"a" * 512, weights="adapter_model.safetensors")
    plain = Checkpoint(name="base", path=base)
    lora = Checkpoint(name="lora", path=adapter, base=base, adapter=adapter)
    data, out = _data(tmp_path), tmp_path / "out"
    for ck in (plain, lora):
        assert _plan(ck, out, data) == ([], COLUMNS)
        _finish(ck, out, data)
        assert _plan(ck, out, data) == (COLUMNS, [])

    # the base's weights replaced by others of the same size (retrained into the same folder): both redone
    _rewrite_in_place(os.path.join(base, "model.safetensors"), b"W" * 4096)
    lines = []
    assert _plan(plain, out, data, lines) == ([], COLUMNS)
    assert any(line.startswith("[redo] base | lm-winogrande:") and "checkpoint" in line for line in lines), lines
    assert not (out / "base" / "lm-winogrande" / "metrics.json").exists(), "the stale results are removed"
    assert _plan(lora, out, data) == ([], COLUMNS)
    for ck in (plain, lora):
        _finish(ck, out, data)
    # the adapter retrained in place: only its pairs
    _rewrite_in_place(os.path.join(adapter, "adapter_model.safetensors"), b"A" * 512)
    assert _plan(plain, out, data) == (COLUMNS, [])
    assert _plan(lora, out, data) == ([], COLUMNS)
    # a config file is part of the checkpoint too
    _finish(lora, out, data)
    with open(os.path.join(base, "config.json"), "a") as f:
        f.write("\n")
    assert _plan(plain, out, data) == ([], COLUMNS)


def test_lmeval_data_edited_at_the_same_path_is_evaluated_again(tmp_path):
    ck = Checkpoint(name="a", path=_model(tmp_path / "a"))
    data, out = _data(tmp_path), tmp_path / "out"
    _finish(ck, out, data)
    assert _plan(ck, out, data) == (COLUMNS, [])

    lines = []
    _edit_row(os.path.join(data, "winogrande", "validation.jsonl"))
    assert _plan(ck, out, data, lines) == (["lm-mmlu"], ["lm-winogrande"])
    assert any(line.startswith("[redo] a | lm-winogrande:") and "data" in line for line in lines), lines
    _finish(ck, out, data)
    # the few-shot split is read too
    _edit_row(os.path.join(data, "winogrande", "train.jsonl"))
    assert _plan(ck, out, data) == (["lm-mmlu"], ["lm-winogrande"])
    _finish(ck, out, data)
    # files the tasks do not read change nothing: another MMLU subject (mmlu:astronomy only), a stray file
    _edit_row(os.path.join(data, "mmlu", "high_school_chemistry", "test.jsonl"))
    (tmp_path / "lmdata" / "winogrande" / "NOTES.md").write_text("where these rows come from\n")
    assert _plan(ck, out, data) == (COLUMNS, [])
    # an MMLU subject's file that is read
    _edit_row(os.path.join(data, "mmlu", "astronomy", "dev.jsonl"))
    assert _plan(ck, out, data) == (["lm-winogrande"], ["lm-mmlu"])


def test_moved_checkpoint_and_data_with_the_same_bytes_are_reused(tmp_path):
    ck = Checkpoint(name="a", path=_model(tmp_path / "a"))
    data, out = _data(tmp_path), tmp_path / "out"
    _finish(ck, out, data)
    before = (out / "a" / "lm-winogrande" / "samples.jsonl").read_bytes()

    moved = shutil.move(ck.path, tmp_path / "elsewhere")
    data2 = _data(tmp_path, "copied")  # the same files, copied to another folder
    shutil.rmtree(data)
    lines = []
    assert _plan(Checkpoint(name="a", path=str(moved)), out, data2, lines) == (COLUMNS, [])
    assert not any(line.startswith(("[redo]", "[rekey]")) for line in lines), lines
    assert (out / "a" / "lm-winogrande" / "samples.jsonl").read_bytes() == before
    # the paths are kept as information (where the pair was read last), not compared
    fp = _fp(out, "a", "lm-winogrande")
    assert fp["checkpoint"]["model"] == os.path.realpath(moved) and fp["data"] == os.path.realpath(data2)
    assert fp["checkpoint_digest"]["model"] and fp["data_digest"] and data2 not in json.dumps(fp["data_digest"])
    assert (fp["lmeval_task"], fp["num_fewshot"], fp["metric"], fp["filter"]) == ("winogrande", 1, "acc", "none")


def test_other_files_at_another_path_under_the_same_name_are_refused(tmp_path):
    """Another model (or other data) at another path under a name with results: an error as before, not a silent
    replacement of results; --overwrite redoes them."""
    ck, other = Checkpoint(name="a", path=_model(tmp_path / "a")), Checkpoint(name="a", path=_model(tmp_path / "o"))
    _rewrite_in_place(os.path.join(other.path, "model.safetensors"), b"o" * 4096)
    data, out = _data(tmp_path), tmp_path / "out"
    _finish(ck, out, data)
    with pytest.raises(EvalError, match=r"lm-eval results made with other settings \(different: checkpoint_digest\)"):
        _plan(other, out, data)
    assert (out / "a" / "lm-winogrande" / "metrics.json").is_file()
    assert _plan(other, out, data, overwrite=True) == ([], COLUMNS)

    data2 = _data(tmp_path, "other-data")
    _edit_row(os.path.join(data2, "winogrande", "validation.jsonl"))
    with pytest.raises(EvalError, match=r"\(different: data_digest\); use --overwrite .* another --output-dir"):
        _plan(ck, out, data2)


def test_hub_data_is_named_by_its_task(tmp_path):
    ck = Checkpoint(name="a", path=_model(tmp_path / "a"))
    out = tmp_path / "out"
    _, pending = plan_pairs(ck, suite_from_names(["winogrande@1"]), str(out))
    fp = pending[0][3]
    assert fp["data"] == "hub" and fp["data_digest"] == "hub:winogrande"
    task, specs, pair, fp = pending[0]
    store_pair(pair, fp, [], {"n": 0, "elapsed_s": 1.0})
    assert [t.column for t, *_ in plan_pairs(ck, suite_from_names(["winogrande@1"]), str(out))[1]] == []
    _rewrite_in_place(os.path.join(ck.path, "model.safetensors"), b"W" * 4096)
    assert [t.column for t, *_ in plan_pairs(ck, suite_from_names(["winogrande@1"]), str(out))[1]] == ["lm-winogrande"]


def _as_older_version(out, columns=COLUMNS):
    """Every pair's fingerprint as the older version wrote it: the same settings and paths, no digests (its
    fingerprint.json was written after the pair's lm-eval run, which took metrics.json's elapsed_s)."""
    for column in columns:
        path = out / "a" / column / "fingerprint.json"
        fp = json.loads(path.read_text())
        assert fp.pop("checkpoint_digest") and fp.pop("data_digest")
        path.write_text(json.dumps(fp))


def _age(paths, seconds):
    """The checkpoint and data files as they were: written well before the older version's run."""
    then = time.time_ns() - int(seconds * 1e9)
    for root in paths:
        for folder, _, names in os.walk(root):
            for n in names:
                os.utime(os.path.join(folder, n), ns=(then, then))


def test_results_of_the_older_path_keyed_version(tmp_path):
    """Re-keyed when the same settings and paths are asked for and none of the files the pair read was modified
    after its lm-eval run started (its fingerprint.json's time minus the run's elapsed_s); otherwise one error
    naming the keys and why, and --overwrite redoes them."""
    ck = Checkpoint(name="a", path=_model(tmp_path / "a"))
    data, out = _data(tmp_path), tmp_path / "out"
    _age([ck.path, data], 3600)
    _finish(ck, out, data, elapsed=5.0)
    new = {c: _fp(out, "a", c) for c in COLUMNS}
    _as_older_version(out)

    lines = []
    assert _plan(ck, out, data, lines) == (COLUMNS, [])
    assert any(line.startswith("[rekey] a | lm-winogrande:") for line in lines), lines
    assert {c: _fp(out, "a", c) for c in COLUMNS} == new

    # a data file modified during that run (after it started, before its fingerprint was written): not trusted
    _as_older_version(out)
    stamp = os.stat(out / "a" / "lm-winogrande" / "fingerprint.json").st_mtime_ns
    during = stamp - 2_000_000_000
    os.utime(os.path.join(data, "winogrande", "validation.jsonl"), ns=(during, during))
    with pytest.raises(EvalError) as err:
        _plan(ck, out, data)
    msg = str(err.value)
    assert "lm-winogrande" in msg and "different: checkpoint_digest, data_digest" in msg, msg
    assert "by path only" in msg and "--overwrite" in msg and "--output-dir" in msg, msg
    assert _plan(ck, out, data, overwrite=True) == (["lm-mmlu"], ["lm-winogrande"])  # mmlu's files are unchanged

    # the same files at another path: not provably what the older version read (it named paths only)
    _age([data], 3600)
    moved = shutil.move(ck.path, tmp_path / "elsewhere")
    with pytest.raises(EvalError, match=r"different: checkpoint_digest, data_digest\) -- .*by path only"):
        _plan(Checkpoint(name="a", path=str(moved)), out, data)
    shutil.move(moved, ck.path)

    # other settings: named beside the digests
    with pytest.raises(EvalError, match="different: checkpoint_digest, data_digest, num_fewshot"):
        plan_pairs(ck, suite_from_names(["winogrande@2"]), str(out), data_dir=data)

    # an older pair that never finished (no metrics.json): nothing to reuse, run again
    _as_older_version(out, ["lm-mmlu"])
    (out / "a" / "lm-mmlu" / "metrics.json").unlink()
    done, pending = plan_pairs(ck, suite_from_names(["mmlu:astronomy@1"]), str(out), data_dir=data)
    assert (sorted(done), [t.column for t, *_ in pending]) == ([], ["lm-mmlu"])

"""The evaluation's resume store keys finished (checkpoint, benchmark) pairs and the deviation passes by content:
a digest of every byte of the checkpoint's files and of the questions (and few-shot examples) actually asked, and
of the deviation pairs used -- not by the paths they were read from. No model is loaded: ``Runner.prepare`` plans
the run (what is done, what is to do) from the store, and finished pairs are written with the store's own
functions, as a run writes them."""

import json
import os
import shutil
import sys

import pytest

from llamafactory_minor_eval.config import build_config
from llamafactory_minor_eval.errors import EvalError
from llamafactory_minor_eval.runner import Runner

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "eval")
sys.path.insert(0, os.path.abspath(FIX))
from eval_helpers import fake_model as _model  # noqa: E402
from eval_helpers import own_digest_memo  # noqa: E402, F401 (autouse: this module's own digest memo)
from eval_helpers import rewrite_in_place as _rewrite_in_place  # noqa: E402


def _data(tmp_path, name="data"):
    root = tmp_path / name
    shutil.copytree(os.path.join(FIX, "gsm8k"), root / "gsm8k")
    dev = tmp_path / f"{name}_deviation.json"
    shutil.copyfile(os.path.join(FIX, "deviation", "alpaca_mini.json"), dev)
    return str(root), str(dev)


def _cfg(out, models: dict[str, str], data_dir: str, deviation: str | None = None, **extra):
    yaml = {
        "checkpoints": [{"name": n, "path": p} for n, p in models.items()],
        "benchmarks": ["gsm8k"],
        "data_dir": data_dir,
        "split": {"gsm8k": "train"},
        "limit": 3,
        "output_dir": str(out),
        **extra,
    }
    if deviation:
        yaml.update(deviation_data=deviation, deviation_limit=4, reference=next(iter(models)))
    return build_config(yaml, {})


def _plan(cfg, log=None):
    runner = Runner(cfg, log=log or (lambda msg: None))
    runner.prepare()
    return runner, {u.ckpt.name: u for u in runner.units}


def _finish_everything(runner):
    """Store every pending pair and deviation pass as a finished run does (answers are not needed here)."""
    for unit in runner.units:
        for name in unit.benchmarks:
            samples = runner.data[name].samples
            folder, _ = runner.store.start_pair(unit, name, samples)
            records = [{"key": s.key, "output": "42", "correct": False} for s in samples]
            runner.store.finish_pair(folder, records, {"n": len(records), "checkpoint": unit.ckpt.name})
        if unit.needs_deviation:
            n = len(runner.dev_samples)
            runner.store.write_deviation(unit, {"model": unit.ckpt.name, "n": n, "logprobs": [-1.0] * n})


def _pending(units):
    return {name: (u.benchmarks, u.needs_deviation) for name, u in units.items()}


def test_a_checkpoint_retrained_in_place_is_evaluated_again(tmp_path):
    a, b = _model(tmp_path / "a"), _model(tmp_path / "b", b"v" * 4096)
    data, dev = _data(tmp_path)
    cfg = lambda: _cfg(tmp_path / "out", {"a": a, "b": b}, data, dev)  # noqa: E731
    runner, units = _plan(cfg())
    assert _pending(units) == {"a": (["gsm8k"], True), "b": (["gsm8k"], True)}
    _finish_everything(runner)
    assert _pending(_plan(cfg())[1]) == {"a": ([], False), "b": ([], False)}

    # b's weights are replaced by new ones of the same size (retrained into the same folder)
    _rewrite_in_place(os.path.join(b, "model.safetensors"), b"V" * 4096)
    lines = []
    runner, units = _plan(cfg(), lines.append)
    assert _pending(units) == {"a": ([], False), "b": (["gsm8k"], True)}
    assert not (tmp_path / "out" / "b" / "gsm8k" / "metrics.json").exists(), "the stale results are removed"
    assert any(line.startswith("[redo] b | gsm8k:") and "checkpoint" in line for line in lines), lines
    # a config or tokenizer file is part of the checkpoint too
    _finish_everything(runner)
    with open(os.path.join(a, "config.json"), "a") as f:
        f.write("\n")
    assert _pending(_plan(cfg())[1]) == {"a": (["gsm8k"], True), "b": ([], False)}


def test_benchmark_data_changed_at_the_same_path_is_evaluated_again(tmp_path):
    a = _model(tmp_path / "a")
    data, _ = _data(tmp_path)
    cfg = lambda: _cfg(tmp_path / "out", {"a": a}, data, limit_mode="first")  # noqa: E731
    runner, _ = _plan(cfg())
    _finish_everything(runner)
    assert _pending(_plan(cfg())[1]) == {"a": ([], False)}

    train = os.path.join(data, "gsm8k", "train.jsonl")
    rows = [json.loads(line) for line in open(train, encoding="utf-8")]
    # a question that is not asked (--limit 3, the first three): the results still hold
    rows[-1]["question"] += " (edited)"
    _rewrite_in_place(train, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    assert _pending(_plan(cfg())[1]) == {"a": ([], False)}
    # an asked question changes: redone
    rows[0]["question"] += " (edited)"
    _rewrite_in_place(train, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    assert _pending(_plan(cfg())[1]) == {"a": (["gsm8k"], False)}


def test_few_shot_examples_are_part_of_the_data(tmp_path):
    a = _model(tmp_path / "a")
    data, _ = _data(tmp_path)
    cfg = lambda: _cfg(tmp_path / "out", {"a": a}, data, limit_mode="first", limit=1, few_shot=2)  # noqa: E731
    runner, _ = _plan(cfg())
    _finish_everything(runner)
    train = os.path.join(data, "gsm8k", "train.jsonl")
    rows = [json.loads(line) for line in open(train, encoding="utf-8")]
    rows[1]["answer"] = rows[1]["answer"].replace("####", "so ####")  # the first few-shot example's solution
    _rewrite_in_place(train, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    assert _pending(_plan(cfg())[1]) == {"a": (["gsm8k"], False)}


def test_moved_checkpoint_and_data_with_the_same_bytes_are_reused(tmp_path):
    a = _model(tmp_path / "a")
    data, dev = _data(tmp_path)
    runner, _ = _plan(_cfg(tmp_path / "out", {"a": a}, data, dev))
    _finish_everything(runner)
    before = (tmp_path / "out" / "a" / "gsm8k" / "samples.jsonl").read_bytes()

    moved = shutil.move(a, tmp_path / "elsewhere")
    data2, dev2 = _data(tmp_path, "copied")  # the same files, copied to other paths
    shutil.rmtree(data)
    os.unlink(dev)
    runner, units = _plan(_cfg(tmp_path / "out", {"a": str(moved)}, data2, dev2))
    assert _pending(units) == {"a": ([], False)}
    assert (tmp_path / "out" / "a" / "gsm8k" / "samples.jsonl").read_bytes() == before
    # the paths are kept as information (where the pair was read last), not compared
    fp = json.loads((tmp_path / "out" / "a" / "gsm8k" / "fingerprint.json").read_text())
    assert fp["checkpoint"]["model"] == str(moved) and fp["data"] == os.path.realpath(os.path.join(data2, "gsm8k"))


def test_deviation_data_changed_is_computed_again(tmp_path):
    a, b = _model(tmp_path / "a"), _model(tmp_path / "b", b"v" * 4096)
    data, dev = _data(tmp_path)
    cfg = lambda: _cfg(tmp_path / "out", {"a": a, "b": b}, data, dev)  # noqa: E731
    runner, _ = _plan(cfg())
    _finish_everything(runner)
    assert _pending(_plan(cfg())[1]) == {"a": ([], False), "b": ([], False)}
    records = json.loads(open(dev, encoding="utf-8").read())
    assert len(records) > 4
    for r in records:  # every pair (--deviation-limit 4 takes a seeded sample)
        r["output"] = r["output"] + " Indeed."
    _rewrite_in_place(dev, json.dumps(records, ensure_ascii=False).encode())
    assert _pending(_plan(cfg())[1]) == {"a": ([], True), "b": ([], True)}


def test_another_checkpoint_under_the_same_name_is_refused(tmp_path):
    """Other files at another path under a name with results: another model, as before an error (no silent
    replacement of results), and --overwrite redoes it."""
    a, other = _model(tmp_path / "a"), _model(tmp_path / "other", b"o" * 4096)
    data, _ = _data(tmp_path)
    runner, _ = _plan(_cfg(tmp_path / "out", {"a": a}, data))
    _finish_everything(runner)
    with pytest.raises(EvalError, match=r"other settings \(different: checkpoint_digest\).*--overwrite"):
        _plan(_cfg(tmp_path / "out", {"a": other}, data))
    assert (tmp_path / "out" / "a" / "gsm8k" / "metrics.json").is_file()
    assert _pending(_plan(_cfg(tmp_path / "out", {"a": other}, data, overwrite=True))[1]) == {"a": (["gsm8k"], False)}


def _as_older_version(fp: dict) -> dict:
    """The fingerprint an older version wrote: the same settings and paths, no digests."""
    fp = dict(fp)
    for key in ("checkpoint_digest", "data_digest", "model_digest"):
        fp.pop(key, None)
    return fp


def test_results_of_an_older_version_are_kept_while_their_files_are_unchanged(tmp_path):
    """A folder written before fingerprints held content digests (paths only): its results are kept and re-keyed
    when the same settings and paths are asked for and no file there was modified after the pair was started;
    otherwise the mismatch names the keys, says why, and --overwrite redoes them."""
    a = _model(tmp_path / "a")
    data, dev = _data(tmp_path)
    runner, _ = _plan(_cfg(tmp_path / "out", {"a": a}, data, dev))
    _finish_everything(runner)
    pair = tmp_path / "out" / "a" / "gsm8k" / "fingerprint.json"
    deviation = tmp_path / "out" / "a" / "deviation.json"
    new_pair, new_dev = json.loads(pair.read_text()), json.loads(deviation.read_text())
    old_pair, old_dev = _as_older_version(new_pair), _as_older_version(new_dev["fingerprint"])
    pair.write_text(json.dumps(old_pair))
    deviation.write_text(json.dumps({**new_dev, "fingerprint": old_dev}))
    assert "model_digest" not in old_dev and "checkpoint_digest" not in json.loads(pair.read_text())

    lines = []
    assert _pending(_plan(_cfg(tmp_path / "out", {"a": a}, data, dev), lines.append)[1]) == {"a": ([], False)}
    assert any(line.startswith("[rekey] a | gsm8k:") for line in lines), lines
    assert json.loads(pair.read_text()) == new_pair and json.loads(deviation.read_text()) == new_dev

    # the weights were modified after the older version evaluated them: not trusted
    pair.write_text(json.dumps(old_pair))
    deviation.write_text(json.dumps({**new_dev, "fingerprint": old_dev}))
    weights = os.path.join(a, "model.safetensors")
    later = os.stat(pair).st_mtime_ns + 10_000_000
    os.utime(weights, ns=(later, later))
    with pytest.raises(EvalError) as err:
        _plan(_cfg(tmp_path / "out", {"a": a}, data, dev))
    msg = str(err.value)
    assert "different: checkpoint_digest, data_digest" in msg and "--overwrite" in msg and "by path only" in msg
    runner, units = _plan(_cfg(tmp_path / "out", {"a": a}, data, dev, overwrite=True))
    assert _pending(units) == {"a": (["gsm8k"], True)}  # the deviation pass is computed again too

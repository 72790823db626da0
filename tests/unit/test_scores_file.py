"""The score file of ``llamafactory-minor score``: format, validation (NaN/inf, truncated, garbled, edited),
atomic writes, import into the score-cache layout, and refusal of files made for another model/dataset."""

import json
import os

import pytest

from llamafactory_minor.scores import file_format, standalone
from llamafactory_minor.scores.cache import ScoreCache, make_key, rows_digest, weights_digest
from llamafactory_minor.scores.file_format import (
    FORMAT,
    FORMAT_VERSION,
    ScoreFileError,
    keys_fingerprint,
    read_score_file,
    write_score_file,
)
from llamafactory_minor.scores.standalone import _match, import_score_file


def fake_model_dir(path, payload=b"w" * 1000):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(payload)
    return str(path)


def make_section(model, keys, template="smollm2", split="train", pairwise=False, role="reference", **meta_over):
    meta = {
        "kind": role,
        "model": model,
        "weights": weights_digest(model),
        "adapter": None,
        "template": template,
        "cutoff_len": 128,
        "train_on_prompt": False,
        "mask_history": False,
        "dtype": "None",
        "dataset": keys_fingerprint(keys),
        "plugin": "0.1.0",
    }
    if role == "aligned":
        for k in ("adapter", "train_on_prompt", "mask_history"):
            meta.pop(k)
    meta.update(meta_over)
    header = {
        "role": role,
        "model": model,
        "template": template,
        "split": split,
        "pairwise": pairwise,
        "num_rows": len(keys),
        "weights": meta["weights"],
        "dataset_fingerprint": meta["dataset"],
        "cutoff_len": 128,
        "dtype": "None",
        "adapter": None,
        "cache_key": make_key(meta),
        "cache_meta": meta,
    }
    rows = []
    for i, k in enumerate(keys):
        row = {
            "key": k,
            "sum_logp": -1.25 * (i + 1),
            "num_tokens": i + 1,
            "model": model,
            "template": template,
            "split": split,
        }
        if pairwise:
            row.update(rejected_sum_logp=-2.5 * (i + 1), rejected_num_tokens=i + 2)
        rows.append(row)
    return header, rows


def make_file(path, sections):
    for h, rows in sections:
        try:
            h["rows_digest"] = rows_digest({r["key"]: file_format.cache_row(r) for r in rows})
        except (ValueError, KeyError):  # a bad row: write_score_file must refuse it
            h["rows_digest"] = None
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": "2026-01-01T00:00:00Z",
        "plugin_version": "0.1.0",
        "backend": "transformers",
        "sections": [h for h, _ in sections],
    }
    return write_score_file(str(path), header, [r for _, r in sections])


KEYS = [f"{i:016x}" for i in range(6)]


@pytest.fixture
def model_dir(tmp_path):
    return fake_model_dir(tmp_path / "model")


@pytest.fixture
def score_file(tmp_path, model_dir):
    return make_file(
        tmp_path / "scores.jsonl", [make_section(model_dir, KEYS), make_section(model_dir, KEYS[:2], split="eval")]
    )


def _lines(path):
    return open(path).read().splitlines(True)


def _rewrite(path, lines):
    with open(path, "w") as f:
        f.write("".join(lines))


# --------------------------------------------------------------------------------------------------
# format
# --------------------------------------------------------------------------------------------------
def test_roundtrip_and_documented_fields(score_file, model_dir):
    header, rows = read_score_file(score_file)
    assert header["format"] == FORMAT and [s["split"] for s in header["sections"]] == ["train", "eval"]
    assert list(rows[0]) == KEYS and list(rows[1]) == KEYS[:2]
    row = rows[0][KEYS[0]]
    assert set(row) == {"key", "sum_logp", "num_tokens", "model", "template", "split"}
    assert file_format.cache_row(row) == {"key": KEYS[0], "sum_logp": -1.25, "num_tokens": 1}
    assert len(_lines(score_file)) == 1 + 6 + 2


def test_pairwise_rows_need_the_rejected_half(tmp_path, model_dir):
    h, rows = make_section(model_dir, KEYS[:3], pairwise=True)
    path = make_file(tmp_path / "pairs.jsonl", [(h, rows)])
    assert read_score_file(path)[1][0][KEYS[1]]["rejected_num_tokens"] == 3
    del rows[1]["rejected_sum_logp"]
    with pytest.raises(ScoreFileError, match="rejected_sum_logp"):
        make_file(tmp_path / "bad.jsonl", [(h, rows)])
    assert not os.path.exists(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_are_never_written(tmp_path, model_dir, value):
    h, rows = make_section(model_dir, KEYS)
    rows[3]["sum_logp"] = value
    with pytest.raises(ScoreFileError, match="finite"):
        make_file(tmp_path / "out.jsonl", [(h, rows)])
    assert os.listdir(tmp_path) == ["model"]


def _nan_line(lines):
    lines[3] = lines[3].replace('"sum_logp": -3.75', '"sum_logp": NaN')


def _inf_line(lines):
    lines[3] = lines[3].replace('"sum_logp": -3.75', '"sum_logp": -Infinity')


def _string_score(lines):
    lines[3] = lines[3].replace('"sum_logp": -3.75', '"sum_logp": "-3.75"')


def _negative_count(lines):
    lines[3] = lines[3].replace('"num_tokens": 3', '"num_tokens": -3')


def _garbled(lines):
    lines[4] = "\x00garbage{\n"


def _torn_last_line(lines):
    lines[-1] = lines[-1][:20]


def _missing_row(lines):
    del lines[5]


def _duplicate_key(lines):
    lines[5] = lines[4]


def _edited_key(lines):
    row = json.loads(lines[2])
    row["key"] = "ffffffffffffffff"
    lines[2] = json.dumps(row) + "\n"


def _unknown_section(lines):
    lines[2] = lines[2].replace('"split": "train"', '"split": "test"')


def _edited_header(lines):
    header = json.loads(lines[0])
    header["sections"][0]["cache_meta"]["cutoff_len"] = 4096
    lines[0] = json.dumps(header) + "\n"


def _not_a_score_file(lines):
    lines[0] = '{"hello": "world"}\n'


def _future_version(lines):
    header = json.loads(lines[0])
    header["format_version"] = 99
    lines[0] = json.dumps(header) + "\n"


def _edited_value(lines):
    assert '"sum_logp": -3.75' in lines[3]
    lines[3] = lines[3].replace('"sum_logp": -3.75', '"sum_logp": -3.5')  # valid, finite, but not what was scored


def _edited_count(lines):
    assert '"num_tokens": 3' in lines[3]
    lines[3] = lines[3].replace('"num_tokens": 3', '"num_tokens": 4')


def _edited_digest(lines):
    header = json.loads(lines[0])
    header["sections"][0]["rows_digest"] = "0" * 64
    lines[0] = json.dumps(header) + "\n"


BAD_FILES = {
    f.__name__.strip("_"): f
    for f in (
        _nan_line,
        _inf_line,
        _string_score,
        _negative_count,
        _garbled,
        _torn_last_line,
        _missing_row,
        _duplicate_key,
        _edited_key,
        _unknown_section,
        _edited_header,
        _not_a_score_file,
        _future_version,
        _edited_value,
        _edited_count,
        _edited_digest,
    )
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_are_refused_and_nothing_is_imported(tmp_path, score_file, name):
    lines = _lines(score_file)
    BAD_FILES[name](lines)
    _rewrite(score_file, lines)
    with pytest.raises(ScoreFileError):
        read_score_file(score_file)
    cache_dir = tmp_path / "cache"
    with pytest.raises(ScoreFileError):
        import_score_file(score_file, cache_dir=str(cache_dir))
    assert not cache_dir.exists() or not os.listdir(cache_dir)


def test_non_utf8_file_is_refused_naming_the_file(score_file):
    data = open(score_file, "rb").read()
    at = data.index(b"\n") + 10
    open(score_file, "wb").write(data[:at] + b"\xff\xfe" + data[at + 2 :])
    with pytest.raises(ScoreFileError, match=f"{score_file}: not UTF-8 text"):
        read_score_file(score_file)


def test_edited_scores_are_refused_with_a_clear_message(score_file):
    lines = _lines(score_file)
    _edited_value(lines)
    _rewrite(score_file, lines)
    with pytest.raises(ScoreFileError, match="do not match the section's rows_digest"):
        read_score_file(score_file)


def test_error_names_the_line(score_file):
    lines = _lines(score_file)
    _nan_line(lines)
    _rewrite(score_file, lines)
    with pytest.raises(ScoreFileError, match=r"line 4: `sum_logp` is not a finite number"):
        read_score_file(score_file)


def test_write_failure_keeps_the_old_file(tmp_path, model_dir, monkeypatch):
    path = make_file(tmp_path / "scores.jsonl", [make_section(model_dir, KEYS)])
    before = open(path).read()

    def boom(*a, **k):
        raise OSError("killed mid-write (injected)")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        make_file(tmp_path / "scores.jsonl", [make_section(model_dir, KEYS[:2])])
    monkeypatch.undo()
    assert open(path).read() == before
    assert sorted(os.listdir(tmp_path)) == ["model", "scores.jsonl"]


# --------------------------------------------------------------------------------------------------
# import without a training config
# --------------------------------------------------------------------------------------------------
def test_import_places_every_section_in_the_cache_layout(tmp_path, score_file):
    cache_dir = tmp_path / "cache"
    folders = import_score_file(score_file, cache_dir=str(cache_dir))
    header, rows = read_score_file(score_file)
    assert len(folders) == 2
    for sec, sec_rows, folder in zip(header["sections"], rows, folders):
        assert os.path.basename(folder) == sec["cache_key"]
        cached = ScoreCache(str(cache_dir), sec["cache_key"], sec["cache_meta"]).load_complete()
        assert cached == {k: file_format.cache_row(r) for k, r in sec_rows.items()}
        meta = json.load(open(os.path.join(folder, "meta.json")))
        assert meta["complete"] and meta["imported_from"] == os.path.abspath(score_file)
        assert sorted(os.listdir(folder)) == ["meta.json", "scores.jsonl"]


def test_import_replaces_a_previous_cache_entry(tmp_path, score_file):
    cache_dir = tmp_path / "cache"
    import_score_file(score_file, cache_dir=str(cache_dir))
    folders = import_score_file(score_file, cache_dir=str(cache_dir))
    assert all(sorted(os.listdir(f)) == ["meta.json", "scores.jsonl"] for f in folders)


def test_import_refuses_a_changed_model(tmp_path, score_file, model_dir):
    with open(os.path.join(model_dir, "model.safetensors"), "wb") as f:
        f.write(b"retrained" * 100)
    with pytest.raises(ScoreFileError, match="is not the one that was scored"):
        import_score_file(score_file, cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_import_interrupted_leaves_no_complete_entry(tmp_path, score_file, monkeypatch):
    cache_dir = tmp_path / "cache"
    import_score_file(score_file, cache_dir=str(cache_dir))  # an older complete entry exists
    from llamafactory_minor.scores import cache as cache_mod

    real = cache_mod.atomic_write_text

    def fail_on_meta(path, text):
        if path.endswith("meta.json"):
            raise OSError("killed (injected)")
        return real(path, text)

    monkeypatch.setattr(cache_mod, "atomic_write_text", fail_on_meta)
    with pytest.raises(OSError):
        import_score_file(score_file, cache_dir=str(cache_dir))
    monkeypatch.undo()
    header, _ = read_score_file(score_file)
    sec = header["sections"][0]
    assert ScoreCache(str(cache_dir), sec["cache_key"], sec["cache_meta"]).load_complete() is None


# --------------------------------------------------------------------------------------------------
# matching a file against what a training config will look up
# --------------------------------------------------------------------------------------------------
def _expected(model, keys, template="smollm2", split="train", role="reference", **meta_over):
    h, _ = make_section(model, keys, template=template, split=split, role=role, **meta_over)
    return {
        "role": role,
        "model": model,
        "template": template,
        "split": split,
        "meta": h["cache_meta"],
        "key": h["cache_key"],
        "rows": {"token_key": list(keys)},
    }


def _sections(path):
    header, rows = read_score_file(path)
    return list(zip(header["sections"], rows))


def test_match_accepts_the_same_weights_under_another_path(tmp_path, score_file, model_dir):
    moved = fake_model_dir(tmp_path / "elsewhere" / "model")  # the training machine's copy
    exp = _expected(moved, KEYS)
    h, rows = _match(exp, _sections(score_file), score_file)
    assert h["split"] == "train" and list(rows) == KEYS
    assert exp["key"] != h["cache_key"]  # import files it under the key training computes


def test_match_refuses_another_model(tmp_path, score_file):
    other = fake_model_dir(tmp_path / "other", payload=b"v" * 1000)
    with pytest.raises(ScoreFileError, match="made for another model"):
        _match(_expected(other, KEYS), _sections(score_file), score_file)


def test_match_refuses_another_dataset_naming_missing_rows(tmp_path, score_file, model_dir):
    keys = KEYS[:4] + ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]
    with pytest.raises(ScoreFileError) as e:
        _match(_expected(model_dir, keys), _sections(score_file), score_file)
    msg = str(e.value)
    assert "made for another dataset" in msg and "2 of the config's rows have no score" in msg
    assert "aaaaaaaaaaaaaaaa" in msg and "2 scored rows are not in the config's data" in msg


@pytest.mark.parametrize(
    "field,value", [("template", "chatml"), ("cutoff_len", 64), ("dtype", "torch.bfloat16"), ("train_on_prompt", True)]
)
def test_match_refuses_other_settings(score_file, model_dir, field, value):
    template = value if field == "template" else "smollm2"
    over = {} if field == "template" else {field: value}
    with pytest.raises(ScoreFileError, match=f"other settings.*{field}"):
        _match(_expected(model_dir, KEYS, template=template, **over), _sections(score_file), score_file)


def test_match_refuses_reference_scores_for_poft(score_file, model_dir):
    with pytest.raises(ScoreFileError, match="holds no aligned scores"):
        _match(_expected(model_dir, KEYS, role="aligned"), _sections(score_file), score_file)


def test_split_options_validation():
    with pytest.raises(Exception, match="unknown key"):
        standalone.split_score_options({"score_outptu": "x"})
    with pytest.raises(Exception, match="one LF template per model"):
        standalone.split_score_options({"score_models": "a,b", "score_templates": "t"})
    with pytest.raises(Exception, match="transformers or vllm"):
        standalone.split_score_options({"score_backend": "onnx"})
    lf, opts = standalone.split_score_options(
        {"model_name_or_path": "m", "score_models": "a, b", "score_templates": "t1,t2", "score_batch_size": "3"}
    )
    assert lf == {"model_name_or_path": "m"} and opts["score_models"] == ["a", "b"] and opts["score_batch_size"] == 3


def test_default_cache_root_is_trainings(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from llamafactory_minor.scores.passes import cache_root

    for env in (None, str(tmp_path / "env")):
        if env:
            monkeypatch.setenv("LLAMAFACTORY_MINOR_SCORE_CACHE", env)
        else:
            monkeypatch.delenv("LLAMAFACTORY_MINOR_SCORE_CACHE", raising=False)
        for mcd in (None, str(tmp_path / "mcd")):
            assert standalone.default_cache_root(mcd) == cache_root(SimpleNamespace(minor_cache_dir=mcd))

"""The score folder of ``llamafactory-minor score`` (score-cache entries + manifest): format, verification
(NaN/inf, truncated, garbled, edited meta / scores / manifest), atomic writes, import = verify + copy into the
score cache, and refusal of folders made for another model/dataset; the old single-file format is refused."""

import hashlib
import json
import os

import pytest

from llamafactory_minor.scores import file_format, standalone
from llamafactory_minor.scores.cache import ScoreCache, make_key, weights_digest
from llamafactory_minor.scores.file_format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ScoreFileError,
    keys_fingerprint,
    read_score_folder,
    write_score_folder,
)
from llamafactory_minor.scores.standalone import _match, import_scores


def fake_model_dir(path, payload=b"w" * 1000):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(payload)
    return str(path)


def make_section(model, keys, template="smollm2", split="train", pairwise=False, role="reference", **meta_over):
    """One entry as ``score`` hands it to ``write_score_folder``: the section, its cache meta, its rows."""
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
    rows = {}
    for i, k in enumerate(keys):
        row = {"key": k, "sum_logp": -1.25 * (i + 1), "num_tokens": i + 1}
        if pairwise:
            row.update(rejected_sum_logp=-2.5 * (i + 1), rejected_num_tokens=i + 2)
        rows[k] = row
    return {
        "role": role,
        "model": model,
        "template": template,
        "split": split,
        "pairwise": pairwise,
        "meta": dict(meta, cache_key=make_key(meta)),
        "rows": rows,
    }


MANIFEST_FIELDS = {
    "format": FORMAT,
    "format_version": FORMAT_VERSION,
    "created": "2026-01-01T00:00:00Z",
    "plugin_version": "0.1.0",
    "backend": "transformers",
}


def make_folder(path, entries):
    return write_score_folder(str(path), dict(MANIFEST_FIELDS), entries)


KEYS = [f"{i:016x}" for i in range(6)]


@pytest.fixture
def model_dir(tmp_path):
    return fake_model_dir(tmp_path / "model")


@pytest.fixture
def score_dir(tmp_path, model_dir):
    return make_folder(
        tmp_path / "scores", [make_section(model_dir, KEYS), make_section(model_dir, KEYS[:2], split="eval")]
    )


def _entry(score_dir, i=0):
    return os.path.join(score_dir, json.load(open(os.path.join(score_dir, MANIFEST)))["sections"][i]["entry"])


def _rows_file(score_dir, i=0):
    return os.path.join(_entry(score_dir, i), "scores.jsonl")


def _lines(path):
    return open(path).read().splitlines(True)


def _rewrite(path, lines):
    with open(path, "w") as f:
        f.write("".join(lines))


def _edit_json(path, fn):
    data = json.load(open(path))
    fn(data)
    with open(path, "w") as f:
        json.dump(data, f)


# --------------------------------------------------------------------------------------------------
# format
# --------------------------------------------------------------------------------------------------
def test_roundtrip_and_documented_fields(score_dir, model_dir):
    manifest, sections = read_score_folder(score_dir)
    assert manifest["format"] == FORMAT and [s["split"] for s in sections] == ["train", "eval"]
    assert sorted(os.listdir(score_dir)) == sorted([MANIFEST] + [s["entry"] for s in sections])
    assert list(sections[0]["rows"]) == KEYS and list(sections[1]["rows"]) == KEYS[:2]
    assert sections[0]["rows"][KEYS[0]] == {"key": KEYS[0], "sum_logp": -1.25, "num_tokens": 1}
    for sec in sections:  # each section is one cache entry: meta.json + scores.jsonl, named by its key
        assert sorted(os.listdir(sec["dir"])) == ["meta.json", "scores.jsonl"]
        assert sec["entry"] == sec["meta"]["cache_key"] == os.path.basename(sec["dir"])
        assert set(sec) >= set(file_format.SECTION_FIELDS)
        assert sec["meta"]["num_rows"] == len(sec["rows"]) and sec["meta"]["complete"] is True
    assert len(_lines(_rows_file(score_dir))) == 6 and len(_lines(_rows_file(score_dir, 1))) == 2


def test_entries_are_the_training_cache_bytes(tmp_path, model_dir):
    """The folder holds the cache entry itself: the same bytes as the training cache writes for that key."""
    entry = make_section(model_dir, KEYS)
    folder = make_folder(tmp_path / "scores", [entry])
    meta = {k: v for k, v in entry["meta"].items() if k != "cache_key"}
    cache = ScoreCache(str(tmp_path / "cache"), entry["meta"]["cache_key"], meta)
    cache.finish(entry["rows"])
    for name in ("meta.json", "scores.jsonl"):
        assert (
            open(os.path.join(_entry(folder), name), "rb").read() == open(os.path.join(cache.dir, name), "rb").read()
        )
    assert cache.load_complete() == entry["rows"]


def test_sections_with_one_key_share_one_entry(tmp_path, model_dir):
    """Splits (or models) with the same rows and settings have one cache key: one entry, listed twice."""
    path = make_folder(
        tmp_path / "scores", [make_section(model_dir, KEYS), make_section(model_dir, KEYS, split="eval")]
    )
    _, sections = read_score_folder(path)
    assert [s["split"] for s in sections] == ["train", "eval"] and sections[0]["entry"] == sections[1]["entry"]
    assert sorted(os.listdir(path)) == sorted([MANIFEST, sections[0]["entry"]])
    assert [os.path.basename(f) for f in import_scores(path, cache_dir=str(tmp_path / "cache"))] == [
        sections[0]["entry"]
    ]


def test_pairwise_rows_need_the_rejected_half(tmp_path, model_dir):
    entry = make_section(model_dir, KEYS[:3], pairwise=True)
    path = make_folder(tmp_path / "pairs", [entry])
    assert read_score_folder(path)[1][0]["rows"][KEYS[1]]["rejected_num_tokens"] == 3
    del entry["rows"][KEYS[1]]["rejected_sum_logp"]
    with pytest.raises(ScoreFileError, match="rejected_sum_logp"):
        make_folder(tmp_path / "bad", [entry])
    assert not os.path.exists(tmp_path / "bad")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_are_never_written(tmp_path, model_dir, value):
    entry = make_section(model_dir, KEYS)
    entry["rows"][KEYS[3]]["sum_logp"] = value
    with pytest.raises(ScoreFileError, match="finite"):
        make_folder(tmp_path / "out", [entry])
    assert os.listdir(tmp_path) == ["model"]


# edits of scores.jsonl of the first entry (line i+1 holds KEYS[i], sum_logp -1.25 * (i + 1))
def _nan_line(lines):
    lines[2] = lines[2].replace('"sum_logp": -3.75', '"sum_logp": NaN')


def _inf_line(lines):
    lines[2] = lines[2].replace('"sum_logp": -3.75', '"sum_logp": -Infinity')


def _string_score(lines):
    lines[2] = lines[2].replace('"sum_logp": -3.75', '"sum_logp": "-3.75"')


def _negative_count(lines):
    lines[2] = lines[2].replace('"num_tokens": 3', '"num_tokens": -3')


def _garbled(lines):
    lines[3] = "\x00garbage{\n"


def _torn_last_line(lines):
    lines[-1] = lines[-1][:20]


def _missing_row(lines):
    del lines[4]


def _duplicate_key(lines):
    lines[4] = lines[3]


def _edited_key(lines):
    row = json.loads(lines[1])
    row["key"] = "ffffffffffffffff"
    lines[1] = json.dumps(row, sort_keys=True) + "\n"


def _edited_value(lines):
    assert '"sum_logp": -3.75' in lines[2]
    lines[2] = lines[2].replace('"sum_logp": -3.75', '"sum_logp": -3.5')  # valid, finite, but not what was scored


def _edited_count(lines):
    assert '"num_tokens": 3' in lines[2]
    lines[2] = lines[2].replace('"num_tokens": 3', '"num_tokens": 4')


def _pair_field_in_single(lines):
    row = json.loads(lines[2])
    row.update(rejected_sum_logp=-1.0, rejected_num_tokens=1)
    lines[2] = json.dumps(row, sort_keys=True) + "\n"


ROW_EDITS = (
    _nan_line,
    _inf_line,
    _string_score,
    _negative_count,
    _garbled,
    _torn_last_line,
    _missing_row,
    _duplicate_key,
    _edited_key,
    _edited_value,
    _edited_count,
    _pair_field_in_single,
)


# edits of the first entry's meta.json, of manifest.json, of the folder
def _edited_meta(d):
    d["cutoff_len"] = 4096


def _edited_digest(d):
    d["rows_digest"] = "0" * 64


def _edited_num_rows(d):
    d["num_rows"] = 5


def _incomplete(d):
    d["complete"] = False


META_EDITS = (_edited_meta, _edited_digest, _edited_num_rows, _incomplete)


def _unknown_section(d):
    d["sections"][0]["entry"] = "0" * 20


def _not_a_score_folder(d):
    d.clear()
    d["hello"] = "world"


def _future_version(d):
    d["format_version"] = 99


def _old_version(d):
    d["format_version"] = 2


def _edited_role(d):
    d["sections"][0]["role"] = "aligned"


def _edited_template(d):
    d["sections"][0]["template"] = "chatml"


def _no_sections(d):
    d["sections"] = []


def _path_entry(d):
    d["sections"][0]["entry"] = "../model"


MANIFEST_EDITS = (
    _unknown_section,
    _not_a_score_folder,
    _future_version,
    _old_version,
    _edited_role,
    _edited_template,
    _no_sections,
    _path_entry,
)


def _stray_entry(folder):
    os.makedirs(os.path.join(folder, "f" * 20))


def _entry_removed(folder):
    import shutil

    shutil.rmtree(_entry(folder, 1))


def _meta_removed(folder):
    os.unlink(os.path.join(_entry(folder), "meta.json"))


def _entry_renamed(folder):  # an entry moved under another key: the manifest follows, meta.json does not
    old = _entry(folder)
    os.rename(old, os.path.join(folder, "e" * 20))
    _edit_json(os.path.join(folder, MANIFEST), lambda d: d["sections"][0].update(entry="e" * 20))


def _garbled_meta(folder):
    with open(os.path.join(_entry(folder), "meta.json"), "w") as f:
        f.write("{garbage")


FOLDER_EDITS = (_stray_entry, _entry_removed, _meta_removed, _entry_renamed, _garbled_meta)


def _apply(score_dir, name):
    kind, fn = BAD_FOLDERS[name]
    if kind == "rows":
        lines = _lines(_rows_file(score_dir))
        fn(lines)
        _rewrite(_rows_file(score_dir), lines)
    elif kind == "meta":
        _edit_json(os.path.join(_entry(score_dir), "meta.json"), fn)
    elif kind == "manifest":
        _edit_json(os.path.join(score_dir, MANIFEST), fn)
    else:
        fn(score_dir)


BAD_FOLDERS = {
    f.__name__.strip("_"): (kind, f)
    for kind, fns in (
        ("rows", ROW_EDITS),
        ("meta", META_EDITS),
        ("manifest", MANIFEST_EDITS),
        ("folder", FOLDER_EDITS),
    )
    for f in fns
}


@pytest.mark.parametrize("name", list(BAD_FOLDERS))
def test_bad_folders_are_refused_and_nothing_is_imported(tmp_path, score_dir, name):
    _apply(score_dir, name)
    with pytest.raises(ScoreFileError):
        read_score_folder(score_dir)
    cache_dir = tmp_path / "cache"
    with pytest.raises(ScoreFileError):
        import_scores(score_dir, cache_dir=str(cache_dir))
    assert not cache_dir.exists() or not os.listdir(cache_dir)


def test_non_utf8_scores_are_refused_naming_the_file(score_dir):
    path = _rows_file(score_dir)
    data = open(path, "rb").read()
    at = data.index(b"\n") + 10
    open(path, "wb").write(data[:at] + b"\xff\xfe" + data[at + 2 :])
    with pytest.raises(ScoreFileError, match=f"{path}: not UTF-8 text"):
        read_score_folder(score_dir)


def test_edited_scores_are_refused_with_a_clear_message(score_dir):
    path = _rows_file(score_dir)
    lines = _lines(path)
    _edited_value(lines)
    _rewrite(path, lines)
    with pytest.raises(ScoreFileError, match=f"{path}: its scores do not match meta.json's rows_digest"):
        read_score_folder(score_dir)


def test_edited_meta_is_refused_naming_the_file(score_dir):
    path = os.path.join(_entry(score_dir), "meta.json")
    _edit_json(path, _edited_meta)
    with pytest.raises(ScoreFileError, match=f"{path}: its components do not give its cache key"):
        read_score_folder(score_dir)


def test_error_names_the_line(score_dir):
    path = _rows_file(score_dir)
    lines = _lines(path)
    _nan_line(lines)
    _rewrite(path, lines)
    with pytest.raises(ScoreFileError, match=rf"{path}, line 3: `sum_logp` is not a finite number"):
        read_score_folder(score_dir)


def test_old_single_file_format_says_to_rescore(tmp_path):
    old = tmp_path / "scores.jsonl"
    old.write_text(json.dumps({"format": FORMAT, "format_version": 2, "sections": []}) + "\n")
    for fn in (read_score_folder, import_scores):
        with pytest.raises(
            ScoreFileError, match=r"single-file score export \(format_version 2\).*re-run `llamafactory-minor score`"
        ):
            fn(str(old))
    other = tmp_path / "other.jsonl"
    other.write_text('{"a": 1}\n')
    with pytest.raises(ScoreFileError, match="is a file, not a score folder"):
        read_score_folder(str(other))
    with pytest.raises(ScoreFileError, match="does not exist"):
        read_score_folder(str(tmp_path / "nope"))


def test_write_failure_keeps_the_old_folder(tmp_path, model_dir, monkeypatch):
    path = make_folder(tmp_path / "scores", [make_section(model_dir, KEYS)])

    def snapshot():
        return {
            os.path.relpath(os.path.join(d, f), path): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(path)
            for f in files
        }

    before = snapshot()

    def boom(*a, **k):
        raise OSError("killed mid-write (injected)")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        make_folder(tmp_path / "scores", [make_section(model_dir, KEYS[:2])])
    monkeypatch.undo()
    assert snapshot() == before
    assert sorted(os.listdir(tmp_path)) == ["model", "scores"]
    read_score_folder(path)
    make_folder(tmp_path / "scores", [make_section(model_dir, KEYS[:2])])  # a later pass replaces it
    assert [list(s["rows"]) for s in read_score_folder(path)[1]] == [KEYS[:2]]
    assert sorted(os.listdir(tmp_path)) == ["model", "scores"]


def test_output_that_is_not_a_score_folder_is_never_replaced(tmp_path):
    (tmp_path / "old.jsonl").write_text("x\n")
    with pytest.raises(ScoreFileError, match="is a file"):
        file_format.check_output(str(tmp_path / "old.jsonl"))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep.txt").write_text("mine")
    with pytest.raises(ScoreFileError, match="not a score folder"):
        file_format.check_output(str(tmp_path / "results"))
    file_format.check_output(str(tmp_path / "new"))  # a new path, or an empty folder, is fine
    (tmp_path / "empty").mkdir()
    file_format.check_output(str(tmp_path / "empty"))


# --------------------------------------------------------------------------------------------------
# import without a training config
# --------------------------------------------------------------------------------------------------
def test_import_copies_every_entry_into_the_cache(tmp_path, score_dir):
    cache_dir = tmp_path / "cache"
    folders = import_scores(score_dir, cache_dir=str(cache_dir))
    _, sections = read_score_folder(score_dir)
    assert len(folders) == 2
    for sec, folder in zip(sections, folders):
        assert os.path.basename(folder) == sec["entry"]
        meta = {k: v for k, v in sec["meta"].items() if k not in ("cache_key", "complete", "num_rows", "rows_digest")}
        cached = ScoreCache(str(cache_dir), sec["entry"], meta).load_complete()
        assert cached == sec["rows"]
        copied = open(os.path.join(folder, "scores.jsonl"), "rb").read()
        assert copied == open(os.path.join(sec["dir"], "scores.jsonl"), "rb").read()  # byte for byte
        assert hashlib.sha256(copied).hexdigest() == sec["meta"]["rows_digest"]
        meta = json.load(open(os.path.join(folder, "meta.json")))
        assert meta["complete"] and meta["imported_from"] == os.path.abspath(score_dir)
        assert meta["scored_backend"] == "transformers" and meta["scored_at"] == "2026-01-01T00:00:00Z"
        assert {k: v for k, v in meta.items() if k not in ("imported_from", "scored_backend", "scored_at")} == sec[
            "meta"
        ]
        assert sorted(os.listdir(folder)) == ["meta.json", "scores.jsonl"]
    assert sorted(os.listdir(cache_dir)) == sorted(s["entry"] for s in sections)  # no staging folder left


def test_import_replaces_a_previous_cache_entry(tmp_path, score_dir):
    cache_dir = tmp_path / "cache"
    import_scores(score_dir, cache_dir=str(cache_dir))
    folders = import_scores(score_dir, cache_dir=str(cache_dir))
    assert all(sorted(os.listdir(f)) == ["meta.json", "scores.jsonl"] for f in folders)
    assert sorted(os.listdir(cache_dir)) == sorted(os.path.basename(f) for f in folders)


def test_import_refuses_a_changed_model(tmp_path, score_dir, model_dir):
    with open(os.path.join(model_dir, "model.safetensors"), "wb") as f:
        f.write(b"retrained" * 100)
    with pytest.raises(ScoreFileError, match="is not the one that was scored"):
        import_scores(score_dir, cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_import_interrupted_leaves_the_cache_as_it_was(tmp_path, score_dir, monkeypatch):
    from llamafactory_minor.scores import cache as cache_mod

    real = cache_mod.atomic_write_text
    calls = []

    def fail_on_second_meta(path, text):
        if path.endswith("meta.json"):
            calls.append(path)
            if len(calls) == 2:
                raise OSError("killed (injected)")
        return real(path, text)

    # a fresh cache: the first entry was staged, the second failed: nothing at all is left
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(cache_mod, "atomic_write_text", fail_on_second_meta)
    with pytest.raises(OSError):
        import_scores(score_dir, cache_dir=str(fresh))
    monkeypatch.undo()
    assert not fresh.exists()

    # an older complete entry exists: it stays complete and unchanged, no staging folder is left
    cache_dir = tmp_path / "cache"
    folders = import_scores(score_dir, cache_dir=str(cache_dir))
    before = {f: open(os.path.join(f, "meta.json")).read() for f in folders}
    calls.clear()
    monkeypatch.setattr(cache_mod, "atomic_write_text", fail_on_second_meta)
    with pytest.raises(OSError):
        import_scores(score_dir, cache_dir=str(cache_dir))
    monkeypatch.undo()
    assert {f: open(os.path.join(f, "meta.json")).read() for f in folders} == before
    assert sorted(os.listdir(cache_dir)) == sorted(os.path.basename(f) for f in folders)
    _, sections = read_score_folder(score_dir)
    for sec in sections:
        meta = {k: v for k, v in sec["meta"].items() if k not in ("cache_key", "complete", "num_rows", "rows_digest")}
        assert ScoreCache(str(cache_dir), sec["entry"], meta).load_complete() == sec["rows"]


# --------------------------------------------------------------------------------------------------
# matching a score folder against what a training config will look up
# --------------------------------------------------------------------------------------------------
def _expected(model, keys, template="smollm2", split="train", role="reference", **meta_over):
    entry = make_section(model, keys, template=template, split=split, role=role, **meta_over)
    return {
        "role": role,
        "model": model,
        "template": template,
        "split": split,
        "meta": {k: v for k, v in entry["meta"].items() if k != "cache_key"},
        "key": entry["meta"]["cache_key"],
        "rows": {"token_key": list(keys)},
    }


def _sections(path):
    return read_score_folder(path)[1]


def test_match_accepts_the_same_weights_under_another_path(tmp_path, score_dir, model_dir):
    moved = fake_model_dir(tmp_path / "elsewhere" / "model")  # the training machine's copy
    exp = _expected(moved, KEYS)
    sec = _match(exp, _sections(score_dir), score_dir)
    assert sec["split"] == "train" and list(sec["rows"]) == KEYS
    assert exp["key"] != sec["entry"]  # import files it under the key training computes


def test_match_refuses_another_model(tmp_path, score_dir):
    other = fake_model_dir(tmp_path / "other", payload=b"v" * 1000)
    with pytest.raises(ScoreFileError, match="made for another model"):
        _match(_expected(other, KEYS), _sections(score_dir), score_dir)


def test_match_refuses_another_dataset_naming_missing_rows(tmp_path, score_dir, model_dir):
    keys = KEYS[:4] + ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]
    with pytest.raises(ScoreFileError) as e:
        _match(_expected(model_dir, keys), _sections(score_dir), score_dir)
    msg = str(e.value)
    assert "made for another dataset" in msg and "2 of the config's rows have no score" in msg
    assert "aaaaaaaaaaaaaaaa" in msg and "2 scored rows are not in the config's data" in msg


@pytest.mark.parametrize(
    "field,value", [("template", "chatml"), ("cutoff_len", 64), ("dtype", "torch.bfloat16"), ("train_on_prompt", True)]
)
def test_match_refuses_other_settings(score_dir, model_dir, field, value):
    template = value if field == "template" else "smollm2"
    over = {} if field == "template" else {field: value}
    with pytest.raises(ScoreFileError, match=f"other settings.*{field}"):
        _match(_expected(model_dir, KEYS, template=template, **over), _sections(score_dir), score_dir)


def test_match_refuses_reference_scores_for_poft(score_dir, model_dir):
    with pytest.raises(ScoreFileError, match="holds no aligned scores"):
        _match(_expected(model_dir, KEYS, role="aligned"), _sections(score_dir), score_dir)


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


def test_which_model_names_the_scorer_of_each_pass():
    """The progress record's model: the aligned model a PoFT pass scores with (matched against
    poft_aligned_models), the reference of a DPO pass, and the model of a standalone `score` section, whose
    "Scores i/N" counts sections, not models."""
    from types import SimpleNamespace

    from llamafactory_minor.scores.progress import which_model

    fa = SimpleNamespace(poft_aligned_models=["/m/a", "/m/ab"], ref_model=None)
    parsed = (SimpleNamespace(model_name_or_path="/m/target"), None, None, fa, None)
    assert which_model("Aligned scores /m/a (train_dataset)", parsed) == (1, 2, "/m/a")
    assert which_model("Aligned scores /m/ab (train_dataset)", parsed) == (2, 2, "/m/ab")
    assert which_model("Reference scores (train_dataset)", parsed) == (1, 1, "/m/target")
    assert which_model("Scores 3/4: aligned /m/y (llama3, train)", None) == (None, None, "/m/y")
    assert which_model("Scores 1/2: reference org/x (qwen, eval)", None) == (None, None, "org/x")
    assert which_model("Scoring", None) == (None, None, None)

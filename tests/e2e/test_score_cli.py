"""``llamafactory-minor score`` end to end on the tiny model: the score folder's numbers equal the training-time
online reference (LF's collated batch + ``sequence_log_probs``, 1e-5 in float32), its entries are the bytes of the
training cache's, an imported folder makes ``llamafactory-cli train`` with ``precompute_ref_log_probs`` reuse it
without scoring, PoFT finds imported aligned scores, folders for another model / dataset / settings are refused.
The vLLM tests (per-token agreement; the vLLM score folder keyed as training and imported) run on
SmolLM2-135M-Instruct with the separate vLLM venv (skipped without it; under CI=true a failure: conftest's
require_vllm). They share one ``score_backend: vllm`` pass (``vllm_pass``: one vLLM engine start, ~70 s on 2 cores,
instead of two)."""

import math
import os
import time
from unittest import mock

import pytest
import torch
from train_checks import train_logs

pytestmark = pytest.mark.e2e

TOL = 1e-5  # float32, the precision for precomputed vs online reference


# --------------------------------------------------------------------------------------------------
# helpers: the online reference exactly as training computes it
# --------------------------------------------------------------------------------------------------
def _lf_training_setup(cfg):
    """(args, template, tokenizer_module, keyed dataset module, reference model) as LF's workflows build them."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import FinetuningArguments, get_train_args
    from llamafactory.model import load_model, load_tokenizer

    from llamafactory_minor.integration import activate
    from llamafactory_minor.integration.data import plugin_dataset

    activate()
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(dict(cfg))
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    stage = "rm" if finetuning_args.stage == "dpo" else "sft"
    with plugin_dataset("test", keyed=True):
        module = get_dataset(template, model_args, data_args, training_args, stage=stage, **tokenizer_module)
    ref = load_model(tokenizer_module["tokenizer"], model_args, FinetuningArguments(), is_trainable=False)
    return (model_args, data_args, training_args, finetuning_args), template, tokenizer_module, module, ref


@torch.no_grad()
def online_reference(cfg, batch_size=4):
    """{token_key: (logp, n) or (chosen, n, rejected, n)} from LF's collator, as the trainers compute them."""
    from llamafactory.data import PairwiseDataCollatorWithPadding, SFTDataCollatorWith4DAttentionMask
    from llamafactory.extras.constants import IGNORE_INDEX

    from llamafactory_minor.objectives import sequence_log_probs

    (model_args, _, _, finetuning_args), template, tm, module, model = _lf_training_setup(cfg)
    pairwise = finetuning_args.stage == "dpo"
    if pairwise:  # llamafactory.train.dpo.workflow.run_dpo
        collator = PairwiseDataCollatorWithPadding(
            template=template, model=model, pad_to_multiple_of=8, label_pad_token_id=IGNORE_INDEX, **tm
        )
    else:  # llamafactory_minor.train.common.run_single_answer
        collator = SFTDataCollatorWith4DAttentionMask(
            template=template,
            model=model,
            pad_to_multiple_of=8,
            label_pad_token_id=IGNORE_INDEX,
            block_diag_attn=model_args.block_diag_attn,
            attn_implementation=getattr(model.config, "_attn_implementation", None),
            compute_dtype=model_args.compute_dtype,
            **tm,
        )
    rows = module["train_dataset"]
    out = {}
    for s in range(0, len(rows), batch_size):
        feats = [dict(rows[i]) for i in range(s, min(s + batch_size, len(rows)))]
        keys = [f.pop("token_key") for f in feats]
        for f in feats:
            f.pop("sample_key"), f.pop("answer_tokens")
        batch = collator(feats)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs, return_dict=True, use_cache=False).logits
        logps, counts = sequence_log_probs(logits, batch["labels"], ignore_index=IGNORE_INDEX)
        logps, counts = logps.tolist(), counts.tolist()
        b = len(keys)
        for j, key in enumerate(keys):
            out[key] = (logps[j], counts[j], logps[b + j], counts[b + j]) if pairwise else (logps[j], counts[j])
    return out


def assert_file_equals_online(rows, online):
    assert set(rows) == set(online)
    worst = 0.0
    for key, row in rows.items():
        ref = online[key]
        assert row["num_tokens"] == ref[1]
        worst = max(worst, abs(row["sum_logp"] - ref[0]))
        if len(ref) == 4:
            assert row["rejected_num_tokens"] == ref[3]
            worst = max(worst, abs(row["rejected_sum_logp"] - ref[2]))
    assert worst <= TOL, f"score folder vs online reference: max |diff| {worst}"


# --------------------------------------------------------------------------------------------------
# CLI basics
# --------------------------------------------------------------------------------------------------
def test_help_version_and_refusal_without_lf(run_cli, tmp_path):
    top = run_cli(["--help"], exe="llamafactory-minor").stdout
    assert "score" in top and "import-scores" in top and "version" in top
    text = run_cli(["score", "--help"], exe="llamafactory-minor").stdout
    for key in (
        "score_output",
        "score_backend",
        "score_batch_size",
        "score_models",
        "score_templates",
        "score_backend_python",
        '"sum_logp"',
        '"num_tokens"',
        "rejected_sum_logp",
    ):
        assert key in text, key
    assert "--cache-dir" in run_cli(["import-scores", "--help"], exe="llamafactory-minor").stdout
    assert run_cli(["version"], exe="llamafactory-minor").stdout.startswith("llamafactory-minor ")

    bad = tmp_path / "scores"
    bad.mkdir()
    (bad / "manifest.json").write_text(
        '{"format": "llamafactory-minor-scores", "format_version": 3, "sections": []}\n'
    )
    old = tmp_path / "scores.jsonl"  # the single-file format of earlier versions
    old.write_text('{"format": "llamafactory-minor-scores", "format_version": 2, "sections": []}\n')
    for path, expected in ((bad, "lists no sections"), (old, "re-run `llamafactory-minor score`")):
        proc = run_cli(
            ["import-scores", str(path), "--cache-dir", str(tmp_path / "cache")], exe="llamafactory-minor", check=False
        )
        assert proc.returncode == 2 and "error:" in proc.stderr and expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists()
    missing = run_cli(["score", str(tmp_path / "nope.yaml")], exe="llamafactory-minor", check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    config = tmp_path / "c.yaml"
    config.write_text("model_name_or_path: m\ndataset: d\n")
    for args, expected in (
        [[], "set `score_output"],
        [["score_output=/proc/nope/scores"], "cannot create the folder"],
        [[f"score_output={old}"], "is a file"],
        [[f"score_output={tmp_path}"], "not a score folder"],
        [["score_output=scores", "score_outptu=x"], "unknown key(s) score_outptu"],
        [["score_output=scores", "score_models=a,b", "score_templates=t"], "one LF template per"],
    ):
        proc = run_cli(["score", str(config)] + args, exe="llamafactory-minor", check=False)
        assert proc.returncode == 2 and expected in proc.stderr, (args, proc.stderr)


# --------------------------------------------------------------------------------------------------
# reference scores: CLI folder == online reference == the training cache's entry; import; training reuses them
# --------------------------------------------------------------------------------------------------
def test_cli_scores_equal_online_reference_and_training_reuses_the_import(
    tiny_train_cfg, run_cli, write_yaml, read_log_history, tmp_path, tiny_model
):
    from llamafactory_minor.scores.cache import weights_digest
    from llamafactory_minor.scores.file_format import read_score_folder
    from llamafactory_minor.scores.standalone import import_scores

    cfg = tiny_train_cfg(
        "minorsft",
        pref_beta=0.04,
        precompute_ref_log_probs=True,
        max_samples=8,
        max_steps=2,
        minor_cache_dir=str(tmp_path / "scoring_box_cache"),
    )
    config = write_yaml(tmp_path, cfg, "minorsft.yaml")
    out = tmp_path / "out" / "scores"
    proc = run_cli(["score", config, f"score_output={out}", "score_batch_size=3"], exe="llamafactory-minor")
    assert "scored 8 rows" in proc.stdout + proc.stderr and f"scores written to {out}" in proc.stdout
    assert sorted(os.listdir(out.parent)) == ["scores"]  # no temp folders left

    manifest, (section,) = read_score_folder(str(out))
    assert sorted(os.listdir(out)) == sorted(["manifest.json", section["entry"]])
    meta = section["meta"]
    assert manifest["backend"] == "transformers" and manifest["stage"] == "sft"
    assert section["role"] == "reference" and section["model"] == tiny_model and section["template"] == "smollm2"
    assert meta["num_rows"] == 8 and meta["weights"] == weights_digest(tiny_model)
    assert meta["cutoff_len"] == 128 and section["pairwise"] is False
    assert_file_equals_online(section["rows"], online_reference(cfg))
    # the entry is the scoring box's training cache entry itself: same folder name, same bytes
    box_entry = tmp_path / "scoring_box_cache" / section["entry"]
    for name in ("meta.json", "scores.jsonl"):
        assert (box_entry / name).read_bytes() == (out / section["entry"] / name).read_bytes(), name

    # the training machine: a fresh cache, the scores imported, no scoring at training time
    train_cache = tmp_path / "training_box_cache"
    train_cfg = dict(cfg, minor_cache_dir=str(train_cache))
    folders = import_scores(str(out), config=train_cfg)
    assert [os.path.basename(f) for f in folders] == [section["entry"]]
    assert os.path.dirname(folders[0]) == str(train_cache)
    assert (train_cache / section["entry"] / "scores.jsonl").read_bytes() == (
        out / section["entry"] / "scores.jsonl"
    ).read_bytes()
    proc = run_cli(train_cfg)
    text = proc.stdout + proc.stderr
    assert "reusing cached scores (8 rows)" in text and " scored " not in text
    logs = train_logs(read_log_history(train_cfg["output_dir"]))
    assert len(logs) == 2 and all(math.isfinite(e["loss"]) for e in logs)


# --------------------------------------------------------------------------------------------------
# pairs, and score folders for another model / dataset / settings
# --------------------------------------------------------------------------------------------------
def test_pairwise_scores_equal_online_reference_and_mismatches_are_refused(tiny_train_cfg, tmp_path, tiny_model_large):
    from llamafactory_minor.scores.cache import ScoreCache, key_parts
    from llamafactory_minor.scores.file_format import ScoreFileError, read_score_folder
    from llamafactory_minor.scores.standalone import import_scores, score

    cfg = tiny_train_cfg(
        "dpo",
        pref_loss="minordpo",
        pref_beta=0.1,
        precompute_ref_log_probs=True,
        max_samples=6,
        val_size=2,
        minor_cache_dir=str(tmp_path / "cache"),
    )
    out = score(dict(cfg, score_output=str(tmp_path / "pairs")))
    manifest, sections = read_score_folder(out)
    assert manifest["stage"] == "rm" and [s["split"] for s in sections] == ["train", "eval"]
    assert [s["meta"]["num_rows"] for s in sections] == [4, 2] and sections[0]["pairwise"]
    assert_file_equals_online(sections[0]["rows"], online_reference(cfg))

    # the scoring pass went through training's own cache key: a rerun reuses it
    sec = sections[0]
    assert ScoreCache(str(tmp_path / "cache"), sec["entry"], key_parts(sec["meta"])).load_complete() == sec["rows"]

    fresh = str(tmp_path / "import")
    with pytest.raises(ScoreFileError, match="made for another dataset"):
        import_scores(out, cache_dir=fresh, config=dict(cfg, max_samples=5))
    with pytest.raises(ScoreFileError, match="made for another model"):
        import_scores(out, cache_dir=fresh, config=dict(cfg, model_name_or_path=tiny_model_large))
    with pytest.raises(ScoreFileError, match="other settings.*cutoff_len"):
        import_scores(out, cache_dir=fresh, config=dict(cfg, cutoff_len=256))
    assert not os.path.exists(fresh) or not os.listdir(fresh)  # nothing half-written
    assert len(import_scores(out, cache_dir=fresh, config=cfg)) == 2  # train and eval splits


# --------------------------------------------------------------------------------------------------
# PoFT: aligned models, each with its own template
# --------------------------------------------------------------------------------------------------
def test_aligned_scores_import_and_poft_finds_them_without_scoring(tiny_train_cfg, tmp_path, tiny_model):
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    from llamafactory_minor.integration.data import plugin_dataset
    from llamafactory_minor.scores import aligned
    from llamafactory_minor.scores.file_format import read_score_folder
    from llamafactory_minor.scores.standalone import import_scores, score

    # score on the "GPU box": two aligned models (here the same weights) with their own templates
    sft = tiny_train_cfg("sft", max_samples=6, minor_cache_dir=str(tmp_path / "box"))
    out = score(
        dict(
            sft,
            score_output=str(tmp_path / "aligned"),
            score_models=f"{tiny_model},{tiny_model}",
            score_templates="smollm2,chatml",
        )
    )
    _, sections = read_score_folder(out)
    rows = [s["rows"] for s in sections]
    assert [(s["role"], s["template"]) for s in sections] == [("aligned", "smollm2"), ("aligned", "chatml")]
    assert len(rows[0]) == len(rows[1]) == 6
    assert not rows[0].keys() & rows[1].keys()  # another template, other tokens: other token keys

    # train elsewhere with stage poft: import, then the PoFT attacher joins them without loading any model
    poft = tiny_train_cfg(
        "poft",
        max_samples=6,
        poft_aligned_models=f"{tiny_model},{tiny_model}",
        poft_aligned_templates="smollm2,chatml",
        minor_cache_dir=str(tmp_path / "train"),
    )
    assert len(import_scores(out, config=poft)) == 2
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(dict(poft))
    tm = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tm["tokenizer"], data_args)
    with plugin_dataset("stage: poft", keyed=True):
        module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tm)

    def no_model(*args, **kwargs):
        raise AssertionError("PoFT scored although the aligned scores were imported")

    with mock.patch.object(aligned, "load_scoring_model", no_model):
        attached = aligned.aligned_score_attacher(model_args, data_args, training_args, finetuning_args)(
            module, template, tm
        )
    ds = attached["train_dataset"]
    for j in (0, 1):  # each training row got the score its content has under aligned model j's template
        assert sorted((lp[j], n[j]) for lp, n in zip(ds["aligned_logps"], ds["aligned_num_tokens"])) == sorted(
            (r["sum_logp"], r["num_tokens"]) for r in rows[j].values()
        )


# --------------------------------------------------------------------------------------------------
# vLLM vs transformers, per token, on SmolLM2-135M-Instruct (separate vLLM venv)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vllm_pass(smollm2, tmp_path_factory):
    """``llamafactory-minor score`` with ``score_backend: vllm`` on alpaca_en_tiny (32 rows) as a user runs it
    (``score()``, the worker in the vLLM venv), once for the module. The real ``score_rows_vllm`` is wrapped only to
    also ask the worker for its per-token log-probs (``--per-token``) and to keep the rows and scores it returns."""
    from conftest import require_vllm, tiny_train_config

    from llamafactory_minor.scores import vllm_backend
    from llamafactory_minor.scores.standalone import score

    python = require_vllm()
    tmp = tmp_path_factory.mktemp("vllm_pass")
    cfg = tiny_train_config(smollm2, tmp / "unused", stage="sft", minor_cache_dir=str(tmp / "box"))  # cutoff 128
    seen = {"calls": 0, "per_token": {}}
    real = vllm_backend.score_rows_vllm

    def recording(rows, cache, model, **kwargs):
        assert kwargs.get("per_token") is None  # score() never asks for them: the wrapper adds it
        seen["calls"] += 1
        seen["rows"] = rows
        seen["scores"] = real(rows, cache, model, per_token=seen["per_token"], **kwargs)
        return seen["scores"]

    start = time.time()
    with mock.patch.object(vllm_backend, "score_rows_vllm", recording):
        folder = score(dict(cfg, score_output=str(tmp / "vllm"), score_backend="vllm", score_backend_python=python))
    assert seen["calls"] == 1, "score() did not go through vllm_backend.score_rows_vllm once"
    return dict(seen, cfg=cfg, folder=folder, python=python, seconds=time.time() - start, tmp=tmp)


@pytest.mark.slow
def test_vllm_agrees_with_transformers_per_token(vllm_pass, smollm2, record_property):
    from llamafactory_minor.objectives import token_log_probs
    from llamafactory_minor.scores.standalone import parse_training_args, plan_sections, split_score_options

    lf_cfg, _ = split_score_options(dict(vllm_pass["cfg"]))
    model_args, data_args, training_args, finetuning_args = parse_training_args(lf_cfg)
    (section,) = plan_sections(model_args, data_args, training_args, finetuning_args, "sft")
    rows = section["rows"]
    assert len(rows) == 32 and list(rows["token_key"]) == list(vllm_pass["rows"]["token_key"])
    vllm_scores, per_token, vllm_seconds = vllm_pass["scores"], vllm_pass["per_token"], vllm_pass["seconds"]

    model, tokenizer = section["load"]()
    assert next(model.parameters()).dtype == torch.float32
    worst_token = worst_mean = 0.0
    with torch.no_grad():
        for s in range(0, len(rows), 8):
            batch = [rows[i] for i in range(s, min(s + 8, len(rows)))]
            width = max(len(r["input_ids"]) for r in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, r in enumerate(batch):
                n = len(r["input_ids"])
                ids[j, :n], labels[j, :n], mask[j, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
            hf, valid = token_log_probs(model(input_ids=ids, attention_mask=mask).logits, labels)
            for j, r in enumerate(batch):
                n = len(r["input_ids"])
                theirs = torch.tensor(per_token[(r["token_key"], "chosen")], dtype=torch.float64)
                ours = hf[j, : n - 1].double()
                assert int(valid[j].sum()) == vllm_scores[r["token_key"]]["num_tokens"]
                worst_token = max(worst_token, (ours - theirs).abs().max().item())
                diff = abs(ours.sum().item() - vllm_scores[r["token_key"]]["sum_logp"])
                worst_mean = max(worst_mean, diff / max(1, int(valid[j].sum())))
    record_property("vllm_max_per_token_abs_diff", worst_token)
    record_property("vllm_seconds", round(vllm_seconds, 1))
    print(
        f"\nvLLM vs transformers on SmolLM2-135M-Instruct, {len(rows)} rows: max per-token |diff| "
        f"{worst_token:.2e}, max per-row mean |diff| {worst_mean:.2e}, vLLM pass (score()) {vllm_seconds:.0f}s"
    )
    assert worst_token < 1e-3, f"max per-token |diff| {worst_token}"


@pytest.mark.slow
def test_vllm_score_folder_is_keyed_as_training_and_imports(vllm_pass):
    """``score_backend: vllm``: the folder's entry carries the key training computes (the transformers entry's),
    the manifest says vllm, the scoring box's training cache is not filled with vLLM numbers (staged apart), and
    an import files them where training looks, recording the backend."""
    from llamafactory_minor.scores.cache import ScoreCache, key_parts
    from llamafactory_minor.scores.file_format import read_score_folder
    from llamafactory_minor.scores.standalone import import_scores, score

    cfg, tmp, vllm_out = vllm_pass["cfg"], vllm_pass["tmp"], vllm_pass["folder"]
    manifest, (vsec,) = read_score_folder(vllm_out)
    # on the scoring box, training's key holds no vLLM numbers (they are staged under another key)
    assert ScoreCache(str(tmp / "box"), vsec["entry"], key_parts(vsec["meta"])).load_complete() is None
    hf_out = score(dict(cfg, score_output=str(tmp / "hf")))
    (hsec,) = read_score_folder(hf_out)[1]
    assert manifest["backend"] == "vllm" and manifest["backend_dtype"]
    assert vsec["entry"] == hsec["entry"] and key_parts(vsec["meta"]) == key_parts(hsec["meta"])
    assert set(vsec["rows"]) == set(hsec["rows"]) and len(vsec["rows"]) == 32
    for key, row in vsec["rows"].items():
        assert row["num_tokens"] == hsec["rows"][key]["num_tokens"]
        assert abs(row["sum_logp"] - hsec["rows"][key]["sum_logp"]) / max(1, row["num_tokens"]) < 1e-3

    train_cache = tmp / "train"
    (folder,) = import_scores(
        vllm_out, config=dict(cfg, track_m_theta=True, precompute_ref_log_probs=True, minor_cache_dir=str(train_cache))
    )
    assert os.path.basename(folder) == vsec["entry"]
    imported = ScoreCache(str(train_cache), vsec["entry"], key_parts(vsec["meta"])).load_complete()
    assert imported == vsec["rows"]
    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
        assert '"scored_backend": "vllm"' in f.read()

"""Every training recipe under ``examples/`` trains 2 steps through the real ``llamafactory-cli train``.

What is swapped, and nothing else (``test_only_the_swapped_keys_change`` checks the diff):

* the model: ``model_name_or_path`` (and ``ref_model``, each of ``poft_aligned_models``) -> the tiny random
  Llama with SmolLM2's tokenizer (``tiny_model``), or a copy of it that already holds the special tokens the
  recipe's template adds (see *Templates* below). The CPU recipes' SmolLM2-135M-Instruct is swapped too (its DPO
  recipe took 15 min and 4.5 GB RSS for 2 steps on this loaded 2-core machine; ``make demo`` trains SmolLM2).
* the data: ``dataset_dir: examples/data`` -> ``tests/fixtures/recipes`` (16-row stand-ins registered under
  the SAME names, formats and columns; see its PROVENANCE.md). ``dataset`` is unchanged. The CPU recipes
  already use local fixture data.
* the length of the run and where it goes: ``max_steps: 2``, ``output_dir`` -> tmp, ``logging_steps: 1``
  (so both steps are logged), ``report_to: none``.
* ``bf16: true`` -> ``false``, because transformers refuses it here: ``TrainingArguments`` raises "Your setup
  doesn't support bf16/gpu" when no bf16-capable GPU is visible, unless ``use_cpu: true`` -- and with
  ``use_cpu`` accelerate never selects DeepSpeed (``AcceleratorState`` sets ``DistributedType.DEEPSPEED``
  only ``and not cpu``), so the recipe's ZeRO-3 would silently not run. float32 it is; the ZeRO-3 path stays.

Everything else runs as written: ``preprocessing_num_workers: 16``, ``dataloader_num_workers: 4``, cutoffs,
templates, schedulers and warm-up, batch sizes and accumulation, ``save_steps`` / ``save_strategy``,
``deepspeed: examples/deepspeed/ds_z3_config.json``. A recipe with ``deepspeed`` is launched as its header
says, ``FORCE_TORCHRUN=1 NPROC_PER_NODE=<n>``, with n = 2 CPU processes over gloo (as ``test_zero3.py``).

Templates. The tiny model has SmolLM2's tokenizer. LF's template fixing (``get_template_and_fix_tokenizer``)
adds nothing for ``qwen``, ``zephyr``, ``yi`` and ``smollm2`` (``<|im_end|>`` / ``<|im_start|>`` exist in it,
zephyr uses the tokenizer's own eos), but for ``llama3`` it adds ``<|eot_id|>`` and ``<|eom_id|>`` as new
special tokens (ids 49152, 49153): the embedding has 49,152 rows, so the first step would index past it.
The real Llama-3 tokenizer already holds those tokens, and so must its stand-in: for such a template the test
builds a copy of the tiny model whose tokenizer has exactly the tokens LF would add (as special tokens) and
whose embedding is resized to match (``template_model``), and asserts LF adds nothing to it. ``resize_vocab``
is not set: no recipe needs it with its real model.

Groups. Recipes that differ only in model (incl. its template and the aligned models), dataset, or numbers
(learning rate, beta, steps, batch, cutoff, ...) form one group (``group_key``). ``GROUPS`` is the table;
``test_groups_partition_the_recipes`` checks that it matches the rule and holds every recipe exactly once.
``make test`` runs the representatives in ``CI_RECIPES`` (time: see there), ``LLAMAFACTORY_MINOR_RECIPES=groups``
every group's representative, ``make test-recipes`` (``LLAMAFACTORY_MINOR_RECIPES=all``) every recipe. The non-representatives carry the ``recipes_all`` marker.

Scores (PoFT's aligned models, precomputed references) are cached in a tmp folder
(``LLAMAFACTORY_MINOR_SCORE_CACHE``), so every run scores afresh.
"""

from __future__ import annotations

import json
import math
import os

import pytest
from conftest import run_torchrun
from recipe_files import RECIPES, REPO_ROOT, load_yaml, rel
from train_checks import DPO_KEYS, SFT_SIDE_KEYS, train_logs

pytestmark = pytest.mark.e2e

STANDIN_DIR = REPO_ROOT / "tests" / "fixtures" / "recipes"
# "" (make test, CI): the CI_RECIPES below; "groups": every group's representative; "all": every recipe
RECIPE_LEVEL = os.environ.get("LLAMAFACTORY_MINOR_RECIPES", "").lower()
RUN_ALL = RECIPE_LEVEL == "all"
NPROC = 2  # CPU processes for a `deepspeed:` recipe (the recipes say 8 GPUs)
MAX_STEPS = 2

MODEL_KEYS = ("model_name_or_path", "template", "ref_model", "poft_aligned_models", "poft_aligned_templates")
DATASET_KEYS = ("dataset", "dataset_dir", "eval_dataset", "poft_noise_dataset")
NAME_KEYS = ("output_dir",)  # where a run goes is named after its model and data

# group -> (representative, members). Rule: same group <=> same `group_key`.
GROUPS = {
    "minorsft-sft-full-ds3": (
        "examples/minorsft/qwen2_7b_full_sft.yaml",
        ["examples/minorsft/qwen2_7b_full_sft.yaml"],
    ),
    "minorsft-minorsft-full-ds3": (
        "examples/minorsft/qwen2_7b_full_minorsft.yaml",
        ["examples/minorsft/qwen2_7b_full_minorsft.yaml"],
    ),
    "minorsft-sftdpo-full-ds3": (
        "examples/minorsft/qwen2_7b_full_sftdpo.yaml",
        ["examples/minorsft/qwen2_7b_full_sftdpo.yaml"],
    ),
    "minorsft-sft-lora-ds3": (
        "examples/minorsft/qwen2_7b_lora_sft.yaml",
        ["examples/minorsft/qwen2_7b_lora_sft.yaml"],
    ),
    "minorsft-minorsft-lora-ds3": (
        "examples/minorsft/qwen2_7b_lora_minorsft.yaml",
        ["examples/minorsft/qwen2_7b_lora_minorsft.yaml"],
    ),
    "minorsft-sftdpo-lora-ds3": (
        "examples/minorsft/qwen2_7b_lora_sftdpo.yaml",
        ["examples/minorsft/qwen2_7b_lora_sftdpo.yaml"],
    ),
    "minordpo-dpo-ds3": (
        "examples/minordpo/qwen1.5_7b_full_dpo_ds3.yaml",
        ["examples/minordpo/qwen1.5_7b_full_dpo_ds3.yaml"],
    ),
    "minordpo-dpop-ds3": (
        "examples/minordpo/qwen1.5_7b_full_dpop_ds3.yaml",
        ["examples/minordpo/qwen1.5_7b_full_dpop_ds3.yaml"],
    ),
    "minordpo-minordpo-ds3": (
        "examples/minordpo/qwen1.5_7b_full_minordpo_ds3.yaml",
        ["examples/minordpo/qwen1.5_7b_full_minordpo_ds3.yaml"],
    ),
    # the representatives of the two PoFT groups cover both base models' templates and two data formats
    "poft-sft-ds3": (
        "examples/poft/mistral_7b_full_sft_ultrachat_ds3.yaml",
        [
            f"examples/poft/{m}_full_sft_{d}_ds3.yaml"
            for m in ("llama3_8b", "mistral_7b")
            for d in ("openhermes", "sharegpt", "ultrachat")
        ],
    ),
    "poft-poft-ds3": (
        "examples/poft/llama3_8b_full_poft_openhermes_ds3.yaml",
        [
            f"examples/poft/{m}_full_poft_{d}_ds3.yaml"
            for m in ("llama3_8b", "mistral_7b")
            for d in ("openhermes", "sharegpt", "ultrachat")
        ],
    ),
    **{
        f"cpu-{name}": (f"examples/cpu/{name}.yaml", [f"examples/cpu/{name}.yaml"])
        for name in (
            "smollm2_sft",
            "smollm2_minorsft",
            "smollm2_lora_minorsft",
            "smollm2_sftdpo",
            "smollm2_dpo",
            "smollm2_minordpo",
            "smollm2_dpop",
            "tiny_poft",
            "tiny_minorsft_ds3",
            "tiny_minordpo_ds3",
        )
    },
}
REPRESENTATIVES = {rep for rep, _ in GROUPS.values()}
# What `make test` (CI) runs: a run takes 45-130 s on an idle 2-core machine (ZeRO-3 recipes start 3 processes that
# import torch, LF and DeepSpeed, and map the data with 16 workers), so all 21 representatives would add 15-45
# minutes. These four cover each paper, full and LoRA, ZeRO-3 over 2 processes, precomputed references, PoFT's
# aligned scoring with the llama3 template and 16 workers; `make test-recipes` runs every recipe.
CI_RECIPES = {
    "examples/minorsft/qwen2_7b_full_minorsft.yaml",
    "examples/minorsft/qwen2_7b_lora_sftdpo.yaml",
    "examples/minordpo/qwen1.5_7b_full_minordpo_ds3.yaml",
    "examples/poft/llama3_8b_full_poft_openhermes_ds3.yaml",
}


def group_key(cfg: dict) -> tuple:
    """What a recipe is once its model, data and numbers are set aside."""

    def norm(value):
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, (int, float)):
            return "<number>"
        return value

    dropped = set(MODEL_KEYS) | set(DATASET_KEYS) | set(NAME_KEYS)
    return tuple(sorted((k, norm(v)) for k, v in cfg.items() if k not in dropped))


# --------------------------------------------------------------------------------------------------
# what is swapped
# --------------------------------------------------------------------------------------------------
def run_config(cfg: dict, output_dir: str, model_for) -> dict:
    """The recipe ``cfg`` with only the swaps the module doc lists. ``model_for(model, template) -> path``."""
    out = dict(cfg)
    template = cfg["template"]
    out["model_name_or_path"] = model_for(cfg["model_name_or_path"], template)
    if cfg.get("ref_model"):
        out["ref_model"] = model_for(cfg["ref_model"], template)
    if cfg.get("poft_aligned_models"):
        models = [m.strip() for m in str(cfg["poft_aligned_models"]).split(",")]
        templates = [t.strip() for t in str(cfg["poft_aligned_templates"]).split(",")]
        assert len(models) == len(templates), cfg
        out["poft_aligned_models"] = ",".join(model_for(m, t) for m, t in zip(models, templates))
    if cfg["dataset_dir"] == "examples/data":
        out["dataset_dir"] = str(STANDIN_DIR)
    out.update(max_steps=MAX_STEPS, output_dir=output_dir, logging_steps=1, report_to="none")
    if cfg.get("bf16"):
        out["bf16"] = False  # transformers: "Your setup doesn't support bf16/gpu" (module doc)
    return out


SWAPPED = {
    "model_name_or_path",
    "ref_model",
    "poft_aligned_models",
    "dataset_dir",
    "max_steps",
    "output_dir",
    "logging_steps",
    "report_to",
    "bf16",
}


def _fake_model_for(model, template):
    return f"<tiny for {model} / {template}>"


@pytest.mark.parametrize("path", RECIPES, ids=[rel(p) for p in RECIPES])
def test_only_the_swapped_keys_change(path):
    cfg = load_yaml(path)
    run = run_config(cfg, "/tmp/x", _fake_model_for)
    changed = {k for k in set(cfg) | set(run) if cfg.get(k, "<absent>") != run.get(k, "<absent>")}
    assert changed <= SWAPPED, f"{rel(path)}: unexpected changes {sorted(changed - SWAPPED)}"
    for key in (
        "preprocessing_num_workers",
        "cutoff_len",
        "template",
        "lr_scheduler_type",
        "deepspeed",
        "dataset",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "stage",
    ):
        assert run.get(key) == cfg.get(key), key
    if rel(path).split("/")[1] in ("minorsft", "minordpo", "poft"):
        assert run["preprocessing_num_workers"] == 16 and run["deepspeed"] == "examples/deepspeed/ds_z3_config.json"


def test_stand_in_registry_matches_the_recipes_registry():
    """``tests/fixtures/recipes/dataset_info.json`` = ``examples/data/dataset_info.json`` with files for hubs."""
    committed = json.loads((REPO_ROOT / "examples" / "data" / "dataset_info.json").read_text(encoding="utf-8"))
    stand_in = json.loads((STANDIN_DIR / "dataset_info.json").read_text(encoding="utf-8"))
    assert set(stand_in) == set(committed)
    for name, entry in committed.items():
        local = stand_in[name]
        for key in ("formatting", "ranking", "columns", "tags"):
            assert local.get(key) == entry.get(key), (name, key)
        assert set(local) - {"file_name"} == set(entry) - {"hf_hub_url", "split", "file_name"}, name
        rows = json.loads((STANDIN_DIR / local["file_name"]).read_text(encoding="utf-8"))
        assert 16 <= len(rows) <= 32, (name, len(rows))
        # the columns the registry maps exist in every row (LF would silently read None otherwise)
        columns = entry.get("columns") or {"prompt": "instruction", "query": "input", "response": "output"}
        for row in rows:
            for column in columns.values():
                assert column in row, (name, column)
        if "tags" in entry:
            tags = entry["tags"]
            roles = {tags[t] for t in ("user_tag", "assistant_tag", "system_tag") if t in tags}
            for row in rows:
                turns = row[columns["messages"]]
                assert turns and {m[tags["role_tag"]] for m in turns} <= roles, name
                assert all(isinstance(m[tags["content_tag"]], str) and m[tags["content_tag"]] for m in turns)


def test_groups_partition_the_recipes():
    members = [m for _, group in GROUPS.values() for m in group]
    assert sorted(members) == sorted(rel(p) for p in RECIPES), "every recipe in exactly one group"
    assert len(members) == len(set(members))
    keys = {}
    for name, (rep, group) in GROUPS.items():
        assert rep in group, name
        found = {group_key(load_yaml(REPO_ROOT / m)) for m in group}
        assert len(found) == 1, f"group {name}: its recipes differ in more than model, dataset or numbers"
        keys[name] = found.pop()
    by_key = {}
    for name, key in keys.items():
        by_key.setdefault(key, []).append(name)
    merged = [names for names in by_key.values() if len(names) > 1]
    assert not merged, f"these groups differ only in model, dataset or numbers; merge them: {merged}"


# --------------------------------------------------------------------------------------------------
# the runs
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def template_model(tiny_model, tmp_path_factory):
    """``template_model(template) -> path``: the tiny model, or a copy holding the tokens LF adds for it."""
    built = {}

    def lf_added_tokens(model_path, template):
        from llamafactory.data.template import get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments
        from transformers import AutoTokenizer

        import llamafactory_minor  # noqa: F401

        tok = AutoTokenizer.from_pretrained(model_path)
        before = set(tok.get_vocab())
        get_template_and_fix_tokenizer(tok, DataArguments(template=template))
        return sorted(set(tok.get_vocab()) - before, key=tok.convert_tokens_to_ids)

    def get(template):
        if template in built:
            return built[template]
        added = lf_added_tokens(tiny_model, template)
        if not added:
            built[template] = tiny_model
            return tiny_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        out = tmp_path_factory.mktemp(f"tiny-{template}")
        tok = AutoTokenizer.from_pretrained(tiny_model)
        tok.add_tokens(added, special_tokens=True)
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        model.resize_token_embeddings(len(tok))
        model.save_pretrained(out)
        tok.save_pretrained(out)
        assert lf_added_tokens(str(out), template) == [], f"LF still adds tokens to the {template} stand-in"
        built[template] = str(out)
        return built[template]

    return get


def _model_for(template_model):
    def model_for(model, template):  # every model (base, reference, aligned) -> the tiny one for its template
        return template_model(template)

    return model_for


def expected_keys(cfg: dict) -> list:
    """The metrics each step must log (the plugin's, where the plugin trains)."""
    stage, loss = cfg["stage"], cfg.get("pref_loss", "sigmoid")
    if stage == "poft":
        return ["loss", "poft/r_theta", "poft/r_aligned"]
    if stage in ("minorsft", "sftdpo"):
        return SFT_SIDE_KEYS[stage]
    if stage == "dpo":
        if loss in ("minordpo", "dpop") or cfg.get("track_m_theta"):
            return DPO_KEYS
        return ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"]
    if stage == "sft":
        return SFT_SIDE_KEYS["sft"] if cfg.get("track_m_theta") else ["loss"]
    raise AssertionError(f"no expected metrics for stage {stage}")


def _cases():
    cases = []
    for path in RECIPES:
        name = rel(path)
        if name in REPRESENTATIVES:
            cases.append(pytest.param(path, id=name))
        else:
            cases.append(pytest.param(path, id=name, marks=pytest.mark.recipes_all))
    return cases


@pytest.mark.parametrize("path", _cases())
def test_recipe_trains_two_steps(path, template_model, run_cli, read_log_history, tmp_path):
    name = rel(path)
    if name not in REPRESENTATIVES and not RUN_ALL:
        pytest.skip("not its group's representative: `make test-recipes` runs every recipe")
    if name not in CI_RECIPES and RECIPE_LEVEL not in ("all", "groups"):
        pytest.skip("a group representative outside the CI set: `make test-recipes` runs it")
    cfg = load_yaml(path)
    out = tmp_path / "out"
    run = run_config(cfg, str(out), _model_for(template_model))
    env = {"LLAMAFACTORY_MINOR_SCORE_CACHE": str(tmp_path / "scores")}
    if run.get("deepspeed"):
        env.update(FORCE_TORCHRUN="1", NPROC_PER_NODE=str(NPROC), MASTER_PORT=str(29500 + os.getpid() % 500))
        proc = run_torchrun(run_cli, run, env=env, timeout=1500, config_dir=tmp_path)
    else:
        proc = run_cli(run, env=env, timeout=1500, config_dir=tmp_path)

    workers = run.get("preprocessing_num_workers") or 1
    if workers > 1:  # the recipe's workers really pre-processed the data (datasets' progress bar says how many)
        assert f"Running tokenizer on dataset (num_proc={workers})" in proc.stdout + proc.stderr, name

    with open(out / "trainer_state.json", encoding="utf-8") as f:
        state = json.load(f)
    assert state["global_step"] == MAX_STEPS, state["global_step"]
    logs = train_logs(state["log_history"])
    assert [e["step"] for e in logs] == list(range(1, MAX_STEPS + 1)), logs
    for entry in logs:
        for key in expected_keys(cfg):
            assert key in entry, f"{name}: {key} missing from logged metrics {sorted(entry)}"
            assert math.isfinite(entry[key]), f"{name}: {key} = {entry[key]}"
    if cfg["stage"] != "poft" and "m_theta" in expected_keys(cfg):
        # step 1: the policy is its reference, so the deviation is 0
        assert abs(logs[0]["m_theta"]) < 1e-5, logs[0]
    # the trained model is saved where the recipe saves it (LoRA: the adapter only)
    saved = {p.name for p in out.iterdir()}
    weights = "adapter_model.safetensors" if cfg["finetuning_type"] == "lora" else "model.safetensors"
    assert weights in saved, sorted(saved)
    if cfg.get("plot_loss"):
        assert "training_loss.png" in saved, sorted(saved)


def test_ci_recipes_are_group_representatives():
    assert CI_RECIPES <= REPRESENTATIVES and all(os.path.isfile(REPO_ROOT / r) for r in CI_RECIPES)
    # every paper is run in CI
    assert {r.split("/")[1] for r in CI_RECIPES} == {"minorsft", "minordpo", "poft"}

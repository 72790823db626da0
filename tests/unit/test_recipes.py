"""Every recipe under ``examples/`` goes through LLaMA-Factory's real argument parser, so none rots.

No training and no download: each YAML is read as LF reads it (OmegaConf), ``output_dir`` is moved to a
temporary folder, and the dict is given to ``llamafactory.hparams.parser._parse_train_args`` -- the layer
of ``get_train_args`` that builds LF's argument dataclasses (with the plugin's ``FinetuningArguments``
subclass, swapped in when ``llamafactory_minor`` is imported) and runs their ``__post_init__``
validation: unknown keys, ``Literal`` choices (stage, pref_loss, poft_aggregation), the plugin's own
checks, and transformers' ``TrainingArguments`` checks including loading the DeepSpeed JSON. (The rest of
``get_train_args`` checks the launch environment -- torchrun for DeepSpeed, devices -- not the file.)

On top of parsing, the test checks that each file is what its name and folder say (stage, pref_loss,
LoRA/full, ZeRO-3, dataset, the paper's hyper-parameters), that every dataset it names is registered in
its ``dataset_dir``, that ``examples/minordpo/sweep.sh`` produces the paper's 24 parseable runs, the
data-preparation helpers, and that ``examples/README.md`` lists every recipe.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from recipe_files import EXAMPLES, GRIDS, RECIPES, REPO_ROOT, load_yaml
from recipe_files import rel as _rel

DS_Z3 = "examples/deepspeed/ds_z3_config.json"
GPUS = 8  # the paper recipes' effective batch sizes assume one 8-GPU node

# file-name token -> (stage, pref_loss or None)
OBJECTIVES = {
    "sft": ("sft", None),
    "minorsft": ("minorsft", None),
    "sftdpo": ("sftdpo", None),
    "poft": ("poft", None),
    "dpo": ("dpo", "sigmoid"),
    "dpop": ("dpo", "dpop"),
    "minordpo": ("dpo", "minordpo"),
}
DATASET_TOKENS = {"ultrachat": "ultrachat_200k", "openhermes": "openhermes_2_5", "sharegpt": "sharegpt_en"}
POFT_ALIGNED = ["alignment-handbook/zephyr-7b-sft-full", "meta-llama/Meta-Llama-3-8B-Instruct", "01-ai/Yi-6B-Chat"]
POFT_TEMPLATES = ["zephyr", "llama3", "yi"]
POFT_BASES = {"mistral": ("mistralai/Mistral-7B-v0.1", "zephyr"), "llama3": ("meta-llama/Meta-Llama-3-8B", "llama3")}
CPU_MODELS = {".cache/models/SmolLM2-135M-Instruct", ".cache/models/tiny-llama-smollm2"}


def _load_script(rel_path: str):
    path = REPO_ROOT / rel_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def parse(tmp_path, monkeypatch):
    """``parse(cfg) -> (model_args, data_args, training_args, finetuning_args)`` through LF's parser."""
    from llamafactory.hparams.parser import _parse_train_args
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    import llamafactory_minor  # noqa: F401  (activates the plugin: LF's parser gets the new keys)

    monkeypatch.chdir(REPO_ROOT)  # `deepspeed:` and `dataset_dir:` are relative to the repository root
    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)  # unknown keys must fail
    saved_env = dict(os.environ)
    counter = iter(range(10**6))

    def _parse(cfg: dict):
        cfg = dict(cfg, output_dir=str(tmp_path / f"out{next(counter)}"))
        # transformers refuses `bf16: true` without a bf16-capable GPU ("Your setup doesn't support
        # bf16/gpu"), so the GPU recipes are parsed with bf16 off; their bf16 value is asserted from the YAML.
        cfg["bf16"] = False
        try:
            model_args, data_args, training_args, finetuning_args, _ = _parse_train_args(cfg)
        finally:
            # a DeepSpeed config registers itself globally (is_deepspeed_zero3_enabled); do not leak it
            unset_hf_deepspeed_config()
            os.environ.clear()
            os.environ.update(saved_env)
        return model_args, data_args, training_args, finetuning_args

    return _parse


def _literal_choices(tp):
    """The allowed values of a ``Literal[...]`` (or ``Literal[...] | None``) annotation, else None."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return set(typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        choices = set()
        for arg in typing.get_args(tp):
            if arg is type(None):
                choices.add(None)
            elif typing.get_origin(arg) is typing.Literal:
                choices |= set(typing.get_args(arg))
            else:
                return None
        return choices
    return None


def literal_violations(*parsed) -> list:
    """Fields whose value is outside their ``Literal`` choices. ``HfArgumentParser.parse_dict`` (the path LF
    takes for YAML files) does not enforce choices; only command-line strings go through argparse's."""
    bad = []
    for obj in parsed:
        hints = typing.get_type_hints(type(obj))
        for field in dataclasses.fields(obj):
            choices = _literal_choices(hints.get(field.name))
            value = getattr(obj, field.name)
            if choices is not None and value not in choices:
                bad.append(f"{type(obj).__name__}.{field.name}={value!r} not in {sorted(map(str, choices))}")
    return bad


def _objective(stem: str):
    found = [tok for tok in stem.split("_") if tok in OBJECTIVES]
    assert len(found) == 1, f"{stem}: the file name must name exactly one objective of {sorted(OBJECTIVES)}"
    return found[0], OBJECTIVES[found[0]]


def _registered(names, dataset_dir):
    from llamafactory.data.parser import get_dataset_list

    return get_dataset_list(names, dataset_dir)


@pytest.mark.parametrize("path", RECIPES, ids=[_rel(p) for p in RECIPES])
def test_recipe_parses_and_matches_its_name(path: Path, parse):
    from llamafactory_minor.integration.arguments import MinorFinetuningArguments

    cfg = load_yaml(path)
    folder, stem = path.parent.name, path.stem
    tokens = stem.split("_")
    model_args, data_args, training_args, fa = parse(cfg)
    assert isinstance(fa, MinorFinetuningArguments), "the plugin did not patch LF's parser"
    assert not literal_violations(model_args, data_args, fa)

    # --- what the file name says
    token, (stage, pref_loss) = _objective(stem)
    assert fa.stage == stage, f"{stem}: stage {fa.stage!r}, the name says {stage!r}"
    if pref_loss is not None:
        assert fa.pref_loss == pref_loss, f"{stem}: pref_loss {fa.pref_loss!r}, the name says {pref_loss!r}"
    if pref_loss == "dpop":
        assert fa.dpop_lambda == 50.0  # the Smaug paper's lambda, used by the MinorDPO paper
    assert fa.finetuning_type == ("lora" if "lora" in tokens else "full")
    if "ds3" in tokens or folder in ("minorsft", "minordpo", "poft"):
        assert cfg.get("deepspeed") == DS_Z3, f"{stem}: expected `deepspeed: {DS_Z3}`"
        with open(REPO_ROOT / DS_Z3) as f:
            assert json.load(f)["zero_optimization"]["stage"] == 3
    else:
        assert "deepspeed" not in cfg
    for tok, dataset in DATASET_TOKENS.items():
        if tok in tokens:
            assert data_args.dataset == [dataset]
    if stage == "sft" and folder in ("minorsft", "cpu"):
        assert fa.track_m_theta, f"{stem}: the SFT baseline logs m_theta for the comparison (paper Fig. 1)"

    # --- values are typed as LF needs them (e.g. `1e-5` written so that YAML gives a float)
    assert isinstance(training_args.learning_rate, float) and training_args.learning_rate > 0
    assert isinstance(fa.pref_beta, float)
    assert cfg.get("plot_loss") is True
    assert cfg.get("report_to") == "none"

    # --- every dataset named is registered in the recipe's dataset_dir, of the right kind
    names = list(data_args.dataset or []) + list(data_args.eval_dataset or []) + list(fa.poft_noise_dataset or [])
    assert names, f"{stem}: no dataset"
    attrs = _registered(names, data_args.dataset_dir)
    pairwise = stage in ("dpo", "rm")
    for attr in attrs:
        assert attr.ranking == pairwise, f"{stem}: dataset {attr} ranking={attr.ranking}, stage {stage}"
        if attr.load_from == "file" and data_args.dataset_dir.startswith("tests/"):
            assert (REPO_ROOT / data_args.dataset_dir / attr.dataset_name).is_file()

    # --- the paper's settings, per folder
    effective = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    if folder in ("minorsft", "minordpo", "poft"):
        assert cfg["bf16"] is True
        assert cfg["warmup_ratio"] == 0.1 and training_args.warmup_steps == 0.1  # transformers 5: ratio -> steps
        assert data_args.dataset_dir == "examples/data"
    if folder == "minorsft":
        assert model_args.model_name_or_path == "Qwen/Qwen2-7B-Instruct" and data_args.template == "qwen"
        assert effective * GPUS == 64
        assert training_args.lr_scheduler_type == "linear" and training_args.num_train_epochs == 1.0
        if stage == "sft":
            assert training_args.learning_rate == 1e-5
        else:
            assert training_args.learning_rate == 2e-5 and fa.pref_beta == 0.04
    elif folder == "minordpo":
        assert model_args.model_name_or_path == "Qwen/Qwen1.5-7B-Chat" and data_args.template == "qwen"
        assert stage == "dpo" and stem.endswith("_ds3")
        assert effective * GPUS == 128
        assert training_args.lr_scheduler_type == "linear" and training_args.num_train_epochs == 1.0
        assert fa.pref_beta == 0.1 and training_args.learning_rate in (1e-6, 1e-5)
        assert data_args.dataset == ["metamath_dpo_zeroshot"]
    elif folder == "poft":
        base = POFT_BASES[tokens[0]]
        assert (model_args.model_name_or_path, data_args.template) == base
        assert training_args.lr_scheduler_type == "cosine" and data_args.cutoff_len == 2048
        assert 5e-6 <= training_args.learning_rate <= 5e-5 and 3 <= training_args.num_train_epochs <= 4
        if stage == "poft":
            assert fa.poft_aligned_models == POFT_ALIGNED and fa.poft_aligned_templates == POFT_TEMPLATES
            assert fa.poft_aggregation == "mean" and fa.poft_beta == 1.0 and fa.poft_gamma == 0.0
    elif folder == "cpu":
        assert cfg["model_name_or_path"] in CPU_MODELS and data_args.template == "smollm2"
        assert cfg["bf16"] is False and not training_args.fp16
        assert data_args.dataset_dir == "tests/fixtures/data"
        assert data_args.cutoff_len == (288 if pairwise else 128)
        assert training_args.per_device_train_batch_size == 4 and 0 < training_args.max_steps <= 20
        assert training_args.logging_steps == 1
        assert cfg["output_dir"] == f"saves/cpu/{stem}" and cfg["overwrite_output_dir"] is True
        assert data_args.preprocessing_num_workers == 1 and training_args.dataloader_num_workers == 0
    else:
        pytest.fail(f"{_rel(path)}: no expectations for folder {folder!r}; add them to this test")


def test_every_recipe_folder_is_covered():
    assert RECIPES, "no recipe found"
    assert {p.parent.name for p in RECIPES} == {"minorsft", "minordpo", "poft", "cpu"}
    names = {_rel(p) for p in RECIPES}
    assert "examples/minordpo/qwen1.5_7b_full_minordpo_ds3.yaml" in names  # the example
    assert "examples/minorsft/qwen2_7b_full_minorsft.yaml" in names


def test_readme_lists_every_recipe():
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    missing = [_rel(p) for p in RECIPES if _rel(p) not in readme]
    assert not missing, f"examples/README.md does not list: {missing}"


def test_dataset_info_entries():
    info = json.loads((EXAMPLES / "data" / "dataset_info.json").read_text(encoding="utf-8"))
    attrs = {name: attr for name, attr in zip(info, _registered(list(info), str(EXAMPLES / "data")))}
    uc = attrs["ultrachat_200k"]
    assert (uc.load_from, uc.dataset_name, uc.split, uc.formatting) == (
        "hf_hub",
        "HuggingFaceH4/ultrachat_200k",
        "train_sft",
        "sharegpt",
    )
    assert (uc.messages, uc.role_tag, uc.content_tag, uc.user_tag, uc.assistant_tag, uc.system_tag) == (
        "messages",
        "role",
        "content",
        "user",
        "assistant",
        "system",
    )
    oh = attrs["openhermes_2_5"]
    assert (oh.dataset_name, oh.formatting, oh.messages, oh.role_tag, oh.user_tag, oh.assistant_tag) == (
        "teknium/OpenHermes-2.5",
        "sharegpt",
        "conversations",
        "from",
        "human",
        "gpt",
    )
    mm = attrs["metamath_dpo_zeroshot"]
    assert (mm.load_from, mm.dataset_name, mm.ranking, mm.formatting) == (
        "file",
        "metamath_dpo_zeroshot.json",
        True,
        "alpaca",
    )
    assert (mm.prompt, mm.chosen, mm.rejected) == ("instruction", "chosen", "rejected")
    sg = attrs["sharegpt_en"]
    assert (sg.load_from, sg.dataset_name, sg.formatting, sg.messages) == (
        "file",
        "sharegpt_en.json",
        "sharegpt",
        "conversations",
    )


def test_sweep_runs_the_papers_grid(parse):
    # the venv's console scripts first, as in an activated venv (sweep.sh calls `llamafactory-minor sweep`)
    env = dict(os.environ, DRY_RUN="1", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    out = subprocess.run(
        ["bash", str(EXAMPLES / "minordpo" / "sweep.sh")],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    commands = [line.split() for line in out.splitlines() if line.strip()]
    assert len(commands) == 3 * 4 * 2
    grid, outputs, caches = set(), set(), set()
    for cmd in commands:
        assert cmd[:2] == ["llamafactory-cli", "train"]
        recipe, overrides = REPO_ROOT / cmd[2], cmd[3:]
        # exactly what LF's read_args does with `llamafactory-cli train x.yaml key=value ...`
        cfg = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(recipe), OmegaConf.from_cli(overrides)))
        _, _, training_args, fa = parse(cfg)
        assert fa.precompute_ref_log_probs is True and fa.minor_cache_dir
        grid.add((fa.pref_loss, fa.pref_beta, training_args.learning_rate))
        outputs.add(cfg["output_dir"])
        caches.add(fa.minor_cache_dir)
    assert grid == {
        (loss, beta, lr)
        for loss in ("sigmoid", "dpop", "minordpo")
        for beta in (0.02, 0.04, 0.1, 0.2)
        for lr in (1e-6, 1e-5)
    }
    assert len(outputs) == 24  # one output folder per run
    assert len(caches) == 1  # one score cache shared by every run: the reference is scored once


# ---------------------------------------------------------------------------------------------------------
# data preparation helpers
# ---------------------------------------------------------------------------------------------------------
FEW_SHOT = (
    "Question: Tom has 3 apples and buys 2 more. How many apples does he have?\n"
    "Answer: Tom has 3 + 2 = 5 apples. The answer is: 5\n"
    "\n"
    "Q: What is 6 times 7?\n"
    "A: 6 * 7 = 42. The answer is: 42\n"
    "\n"
    "Question: A train travels 60 miles per hour.\n"
    "How far does it go in 3 hours?\n"
    "Answer:"
)


def test_metamath_zero_shot_prompt():
    mm = _load_script("examples/minordpo/prepare_metamath_dpo.py")
    question, removed = mm.zero_shot_prompt(FEW_SHOT)
    assert question == "A train travels 60 miles per hour.\nHow far does it go in 3 hours?"
    assert removed == 2
    # already zero-shot: kept whole
    assert mm.zero_shot_prompt("  What is 1 + 1?\n") == ("What is 1 + 1?", 0)
    # a single marked question with its answer cue on the same line
    assert mm.zero_shot_prompt("Question: What is 1 + 1? Answer:") == ("What is 1 + 1?", 0)
    # nothing after the last marker: keep the prompt and flag it
    assert mm.zero_shot_prompt("Question: x\nAnswer: y\n\nQuestion:\nAnswer:")[1] == -1

    row, removed = mm.convert_row(
        {
            "prompt": FEW_SHOT,
            "chosen": " 60 * 3 = 180. The answer is: 180 ",
            "rejected": "60 * 3 = 120. The answer is: 180",
        }
    )
    assert removed == 2
    assert row == {
        "instruction": "A train travels 60 miles per hour.\nHow far does it go in 3 hours?",
        "chosen": "60 * 3 = 180. The answer is: 180",
        "rejected": "60 * 3 = 120. The answer is: 180",
    }
    assert mm.convert_row({"prompt": FEW_SHOT, "chosen": "same", "rejected": "same"})[0] is None
    with_paper = mm.convert_row({"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}, mm.PAPER_PROMPT)[0]
    assert with_paper["instruction"] == mm.PAPER_PROMPT + "\nWhat is 2 + 2?"


def test_metamath_script_writes_an_lf_pairwise_dataset(tmp_path):
    mm = _load_script("examples/minordpo/prepare_metamath_dpo.py")
    src = tmp_path / "few_shot.jsonl"
    rows = [
        {"prompt": FEW_SHOT, "chosen": "180", "rejected": "120"},
        {"prompt": "Question: What is 2 + 2?\nAnswer:", "chosen": "4", "rejected": "5"},
        {"prompt": "Question: dropped?\nAnswer:", "chosen": "x", "rejected": "x"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "data" / "mm.json"
    assert mm.main(["--input", str(src), "--output", str(out), "--name", "mm"]) == 0

    written = json.loads(out.read_text(encoding="utf-8"))
    assert [r["instruction"] for r in written] == [
        "A train travels 60 miles per hour.\nHow far does it go in 3 hours?",
        "What is 2 + 2?",
    ]
    (attr,) = _registered(["mm"], str(out.parent))
    assert (attr.load_from, attr.dataset_name, attr.ranking) == ("file", "mm.json", True)
    # the committed registry carries the same entry as the script writes
    info = json.loads((EXAMPLES / "data" / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["metamath_dpo_zeroshot"] == mm.dataset_info_entry("metamath_dpo_zeroshot.json")


def test_sharegpt_conversion(tmp_path):
    sg = _load_script("examples/poft/prepare_sharegpt.py")
    record = {
        "conversation_id": "1",
        "category": "x",
        "conversation": [
            {"human": "Hi, what is Python?", "assistant": "A programming language."},
            {"human": "Who made it?", "assistant": "Guido van Rossum."},
            {"human": "", "assistant": "orphan answer"},
            {"human": "after the gap", "assistant": "dropped"},
        ],
    }
    assert sg.to_sharegpt(record) == {
        "conversations": [
            {"from": "human", "value": "Hi, what is Python?"},
            {"from": "gpt", "value": "A programming language."},
            {"from": "human", "value": "Who made it?"},
            {"from": "gpt", "value": "Guido van Rossum."},
        ]
    }
    chinese = {"conversation": [{"human": "你好，请介绍一下你自己", "assistant": "我是一个语言模型。"}]}
    assert sg.to_sharegpt(chinese) is None
    assert sg.to_sharegpt({"conversation": []}) is None
    assert sg.is_english_file("sharegpt_jsonl/common_en_70k.jsonl")
    assert sg.is_english_file("computer_en_26k(fixed).jsonl")
    assert not sg.is_english_file("common_zh_70k.jsonl") and not sg.is_english_file("unknow_zh_38k_continue.jsonl")

    src = tmp_path / "in"
    src.mkdir()
    (src / "common_en_2.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    (src / "common_zh_2.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    out = tmp_path / "data" / "sg.json"
    assert sg.main(["--input", str(src), "--output", str(out), "--name", "sg"]) == 0
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 1  # the zh file is skipped
    info = json.loads((out.parent / "dataset_info.json").read_text(encoding="utf-8"))
    committed = json.loads((EXAMPLES / "data" / "dataset_info.json").read_text(encoding="utf-8"))
    assert dict(info["sg"], file_name="sharegpt_en.json") == committed["sharegpt_en"]


@pytest.mark.parametrize("grid_path", GRIDS, ids=[_rel(p) for p in GRIDS])
def test_every_grid_run_parses_with_its_overrides(grid_path: Path, parse, monkeypatch):
    """Every run of every grid under examples/ is its recipe + the run's key=value overrides, merged by LF's own
    ``read_args`` from the sweep's command line ``llamafactory-cli train RECIPE key=value ...``, through the same
    parser as the recipes: an override LF rejects (unknown key, bad value) fails here, not on a GPU node."""
    from llamafactory.hparams.parser import read_args

    from llamafactory_minor_eval import grid as grid_mod

    runs = grid_mod.runs(str(grid_path))
    assert runs and all(r.recipe for r in runs)
    for run in runs:
        cmd = run.command()
        assert cmd[:3] == ["llamafactory-cli", "train", run.recipe]
        overrides = cmd[3:]
        # sys.argv as LF's launcher leaves it for the train command (it pops `train`); `parse` runs in REPO_ROOT
        monkeypatch.setattr(sys, "argv", ["llamafactory-cli", *cmd[2:]])
        cfg = read_args()
        model_args, data_args, training_args, fa = parse(cfg)
        assert not literal_violations(model_args, data_args, fa), run.name
        assert cfg["output_dir"] == run.path  # the path the evaluation reads (the parser got a temporary one)
        for key, value in (o.split("=", 1) for o in overrides if not o.startswith("output_dir=")):
            parsed = next(
                (getattr(a, key) for a in (model_args, data_args, training_args, fa) if hasattr(a, key)), None
            )
            assert parsed is not None, f"{run.name}: override {key}={value} reached none of LF's arguments"

"""The option table of llamafactory-minor-eval (evaluation/options.py): declared once, the parser, the
command-line overrides and the YAML keys derive from it."""

import re
from dataclasses import fields

import pytest

from llamafactory_minor_core.vllm_scoring import CPU_KV_CACHE_GB
from llamafactory_minor_eval.cli import build_parser
from llamafactory_minor_eval.config import RunConfig, build_config
from llamafactory_minor_eval.errors import EvalError
from llamafactory_minor_eval.options import OPTIONS, SETTINGS, help_text, overrides_from


def test_table_and_runconfig_list_the_same_settings():
    # RunConfig's checkpoints come from --model (key "models") and the YAML's checkpoints / grid
    assert {f.name for f in fields(RunConfig)} - {"checkpoints"} == set(SETTINGS) - {"models"}
    flags = [f for o in OPTIONS for f in o.flags]
    assert len(flags) == len(set(flags))
    for opt in OPTIONS:
        if opt.key:  # the long flag is the key with '-' (negated flags: --no-<key> or --<x>-no-<y>)
            long = opt.flags[0][2:].replace("-", "_")
            assert long == opt.key or "no_" in long or (long, opt.key) == ("model", "models"), (opt.key, opt.flags)


def test_every_option_is_in_help_in_its_group():
    text = build_parser().format_help()
    for opt in OPTIONS:
        assert opt.flags[0] in text, opt.flags
        assert opt.group + ":" in text


def test_overrides_from_the_command_line():
    args = build_parser().parse_args(
        [
            "--model",
            "base=m/one",
            "-m",
            "saves/two",
            "-b",
            "ceval,gsm8k",
            "-b",
            "fineval",
            "--split",
            "dev",
            "--split",
            "gsm8k=train",
            "--subjects",
            "ceval=a,b",
            "--limit",
            "5",
            "--limit",
            "gsm8k=2",
            "--seed",
            "7",
            "--no-chart",
            "--overwrite",
            "--vllm-no-enforce-eager",
            "--lmeval-tasks",
            "arc_challenge,mmlu:anatomy,virology",
            "--lmeval-limit",
            "3",
            "--ref",
            "base",
            "--vllm-kv-cache-gb",
            "1.5",
        ]
    )
    o = overrides_from(args)
    assert [(c.name, c.path) for c in o["models"]] == [("base", "m/one"), ("two", "saves/two")]
    assert o["benchmarks"] == ["ceval", "gsm8k", "fineval"]
    assert o["split"] == {"*": "dev", "gsm8k": "train"} and o["subjects"] == {"ceval": ["a", "b"]}
    assert o["limit"] == {"*": "5", "gsm8k": "2"} and o["seed"] == 7 and o["vllm_kv_cache_gb"] == 1.5
    assert o["chart"] is False and o["overwrite"] is True and o["vllm_enforce_eager"] is False
    assert o["reference"] == "base" and o["lmeval_limit"] == 3
    # not given = None: the run file decides
    assert o["progress"] is None and o["keep_going"] is None and o["trust_remote_code"] is None and o["dtype"] is None
    cfg = build_config(None, o)
    assert cfg.lmeval_tasks == ["arc_challenge", "mmlu:anatomy,virology"] and cfg.limit == {"*": 5, "gsm8k": 2}
    assert cfg.chart is False and cfg.progress is True


def test_whole_number_settings_from_yaml():
    base = {"checkpoints": ["a/b"], "benchmarks": ["ceval"]}
    assert build_config(dict(base, batch_size="4", deviation_limit=None), {}).deviation_limit is None
    assert build_config(dict(base, batch_size="4"), {}).batch_size == 4
    with pytest.raises(EvalError, match="seed must be a whole number"):
        build_config(dict(base, seed=None), {})
    with pytest.raises(EvalError, match="lmeval_limit must be a whole number"):
        build_config(dict(base, lmeval_limit="x"), {})


def test_choices_and_minimums_of_the_table_check_a_run_file():
    base = {"checkpoints": ["a/b"], "benchmarks": ["ceval"]}
    checked = [o for o in OPTIONS if o.kind == "choice" and o.check_choices]
    assert {o.key for o in checked} == {"limit_mode", "mc_mode", "chat_template", "backend", "table_metric"}
    for opt in checked:
        assert getattr(build_config(dict(base, **{opt.key: opt.choices[-1]}), {}), opt.key) == opt.choices[-1]
        with pytest.raises(EvalError, match=f"{opt.key} must be one of {', '.join(opt.choices)}, got 'nope'"):
            build_config(dict(base, **{opt.key: "nope"}), {})
    bounded = [o for o in OPTIONS if o.minimum is not None]
    assert {o.key for o in bounded} >= {"batch_size", "few_shot", "deviation_max_length", "lmeval_limit"}
    for opt in bounded:
        assert getattr(build_config(dict(base, **{opt.key: opt.minimum}), {}), opt.key) == opt.minimum
        what = "a positive number" if opt.minimum == 1 else f">= {opt.minimum}"
        with pytest.raises(EvalError, match=f"^{opt.key} must be {what}, got {opt.minimum - 1}$"):
            build_config(dict(base, **{opt.key: opt.minimum - 1}), {})


def test_help_states_the_runconfig_defaults():
    text = " ".join(build_parser().format_help().split())
    defaults = RunConfig()
    templated = [o for o in OPTIONS if "{default}" in o.help]
    assert {o.key for o in templated} >= {"seed", "batch_size", "mc_max_new_tokens", "gsm8k_max_new_tokens", "backend"}
    for opt in templated:
        assert str(getattr(defaults, opt.key)) in text
        assert " ".join(help_text(opt).split()) in text
    for opt in OPTIONS:  # a default written out as a number would not follow RunConfig
        if opt.key == "vllm_kv_cache_gb":  # not a RunConfig default: the shared core's CPU setting
            assert f"on CPU default {CPU_KV_CACHE_GB} GiB" in opt.help
            continue
        assert not re.search(r"default:? \d", opt.help), opt.flags

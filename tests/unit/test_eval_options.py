"""The option table of llamafactory-minor-eval (evaluation/options.py): declared once, the parser, the
command-line overrides and the YAML keys derive from it."""

from dataclasses import fields

import pytest

from llamafactory_minor_eval.cli import build_parser
from llamafactory_minor_eval.config import RunConfig, build_config
from llamafactory_minor_eval.errors import EvalError
from llamafactory_minor_eval.options import OPTIONS, SETTINGS, overrides_from


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

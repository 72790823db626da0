"""issue 8: one clear message for bad input, no silent no-ops, one validation entry point.

In-process through the real paths: ``validate_train_args`` (what LlamaBoard calls), LF's own
``_parse_train_args`` / ``get_train_args`` of ``llamafactory.train.tuner`` (what ``llamafactory-cli train``
calls) and ``llamafactory_minor.run_exp``. Nothing here loads a model.
"""

import os
import subprocess
import sys

import pytest

import llamafactory_minor  # noqa: F401  (activates the plugin)
from llamafactory_minor.integration import PluginError

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "data")
POFT = dict(poft_aligned_models="some/aligned", poft_aligned_templates="smollm2")


def cfg(tmp_path, stage="minorsft", **overrides):
    pairwise = stage == "dpo"
    base = dict(
        model_name_or_path="unused/model",
        stage=stage,
        do_train=True,
        finetuning_type="full",
        dataset="dpo_en_tiny" if pairwise else "alpaca_en_tiny",
        dataset_dir=FIXTURES,
        template="smollm2",
        output_dir=str(tmp_path / "out"),
        overwrite_output_dir=True,
        report_to="none",
        cutoff_len=128,
    )
    base.update(overrides)
    return base


def refused(args, *pieces):
    from llamafactory_minor.integration.validate import validate_train_args

    with pytest.raises(PluginError) as info:
        validate_train_args(args)
    text = str(info.value)
    for piece in pieces:
        assert piece in text, f"{piece!r} not in {text!r}"
    assert "\n" not in text.strip()
    return text


def refused_by_cli_parse(args, *pieces):
    """``llamafactory-cli train`` parses with the tuner's ``get_train_args`` (LF's, wrapped by the plugin)."""
    import llamafactory.train.tuner as tuner

    with pytest.raises(PluginError) as info:
        tuner.get_train_args(args)
    for piece in pieces:
        assert piece in str(info.value)


# --------------------------------------------------------------------------------------------------
# A. one clear message
# --------------------------------------------------------------------------------------------------
STAGES = [
    ("minorsft", {}),
    ("sftdpo", {}),
    ("poft", POFT),
    ("dpo", {"pref_loss": "minordpo"}),
    ("dpo", {"pref_loss": "dpop"}),
    ("sft", {"track_m_theta": True}),
]


@pytest.mark.parametrize("stage,extra", STAGES)
def test_unknown_template_names_the_key_and_nearest_templates(tmp_path, stage, extra):
    args = cfg(tmp_path, stage, template="smolm2", **extra)
    refused(args, "`template: smolm2`", "smollm2")
    refused_by_cli_parse(args, "`template: smolm2`", "smollm2")


def test_unknown_aligned_template_is_refused_before_loading(tmp_path):
    refused(cfg(tmp_path, "poft", **dict(POFT, poft_aligned_templates="zephyrr")), "poft_aligned_templates", "zephyr")


def test_poft_train_on_prompt_names_the_key_and_why(tmp_path):
    args = cfg(tmp_path, "poft", train_on_prompt=True, **POFT)
    refused(args, "`train_on_prompt: true`", "stage: poft", "aligned")
    refused_by_cli_parse(args, "`train_on_prompt: true`", "stage: poft")


def test_misspelled_plugin_key_names_the_nearest_key(tmp_path):
    refused(cfg(tmp_path, "dpo", pref_loss="dpop", dpop_lamda=10), "`dpop_lamda`", "`dpop_lambda`")
    refused(cfg(tmp_path, "sft", trak_m_theta=True), "`trak_m_theta`", "`track_m_theta`")  # stock stage, plugin key
    refused(cfg(tmp_path, "minorsft", pref_betta=0.1), "`pref_betta`", "`pref_beta`")  # plugin stage, LF key


def test_misspelled_key_as_cli_override(tmp_path, monkeypatch, write_yaml):
    """`llamafactory-cli train x.yaml dpop_lamda=3`: LF's read_args merges the override, then the same check."""
    path = write_yaml(tmp_path, cfg(tmp_path, "dpo", pref_loss="dpop"))
    monkeypatch.setattr(sys, "argv", ["llamafactory-cli", path, "dpop_lamda=3"])
    refused_by_cli_parse(None, "`dpop_lamda`", "`dpop_lambda`")
    # LF's list form: llamafactory-cli train --stage dpo ... --dpop_lamda 3
    from llamafactory.hparams.parser import _parse_train_args

    with pytest.raises(PluginError, match="dpop_lambda"):
        _parse_train_args(
            [
                "--stage",
                "dpo",
                "--pref_loss",
                "dpop",
                "--model_name_or_path",
                "m",
                "--output_dir",
                str(tmp_path),
                "--dpop_lamda",
                "3",
            ]
        )


def test_stock_typo_keeps_lfs_own_error(tmp_path):
    from llamafactory.hparams.parser import _parse_train_args

    with pytest.raises(ValueError, match="not used by the HfArgumentParser") as info:
        _parse_train_args(cfg(tmp_path, "sft", learnin_rate=1.0))
    assert not isinstance(info.value, PluginError)


def test_lf_value_errors_become_one_line_for_plugin_configs(tmp_path):
    # LF's own check (FinetuningArguments.__post_init__), raised for a plugin config
    refused(cfg(tmp_path, finetuning_type="full", pissa_init=True), "pissa_init")


# --------------------------------------------------------------------------------------------------
# B. silent no-ops and wrong combinations
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stage,extra",
    [
        ("minorsft", {}),
        ("sftdpo", {}),
        ("dpo", {"pref_loss": "minordpo"}),
        ("dpo", {"pref_loss": "dpop"}),
        ("sft", {"track_m_theta": True}),
    ],
)
def test_pissa_with_a_reference_is_refused(tmp_path, stage, extra):
    refused(cfg(tmp_path, stage, finetuning_type="lora", pissa_init=True, **extra), "`pissa_init`", "residual")


def test_pissa_with_poft_is_allowed(tmp_path):
    from llamafactory_minor.integration.validate import validate_train_args

    validate_train_args(cfg(tmp_path, "poft", finetuning_type="lora", pissa_init=True, **POFT))  # no reference model


@pytest.mark.parametrize("stage,extra", [("minorsft", {}), ("sftdpo", {}), ("poft", POFT)])
@pytest.mark.parametrize(
    "key,value,piece",
    [
        ("dpo_label_smoothing", 0.1, "one answer per row"),
        ("ld_alpha", 0.5, "one answer per row"),
        ("pref_bco_weight", 0.5, "set it to 0"),
        ("use_dft_loss", True, "objective replaces the loss"),
    ],
)
def test_pairwise_only_options_refused_on_single_answer_stages(tmp_path, stage, extra, key, value, piece):
    refused(cfg(tmp_path, stage, **{key: value}, **extra), f"`{key}`", f"stage: {stage}", piece)


@pytest.mark.parametrize("stage,extra", [("minorsft", {}), ("sftdpo", {}), ("poft", POFT)])
def test_pref_ftx_is_accepted_on_single_answer_stages(tmp_path, stage, extra):
    import llamafactory.train.tuner as tuner

    fa = tuner.get_train_args(cfg(tmp_path, stage, pref_ftx=0.5, **extra))[3]
    assert fa.pref_ftx == 0.5


@pytest.mark.parametrize("key", ["packing", "neat_packing"])
@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_track_m_theta_with_packing_is_refused(tmp_path, key, stage):
    args = cfg(tmp_path, stage, track_m_theta=True, **{key: True})
    if stage == "dpo" and key == "neat_packing":
        refused(args, "neat_packing")  # LF's own refusal (except SFT), as one line
    else:
        refused(args, "`track_m_theta`", f"`{key}`", "per pack")


@pytest.mark.parametrize(
    "env,overrides,piece",
    [
        ({"USE_MCA": "1"}, {}, "USE_MCA"),
        ({"USE_RAY": "1"}, {}, "USE_RAY"),
        ({"USE_KT": "1"}, {}, "KTransformers"),
        ({}, {"use_hyper_parallel": True}, "use_hyper_parallel"),
        ({"USE_V1": "1"}, {}, "USE_V1"),
    ],
)
def test_lf_modes_that_bypass_the_plugin_are_refused(tmp_path, monkeypatch, env, overrides, piece):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from llamafactory.hparams.parser import _parse_train_args

    from llamafactory_minor.integration.validate import check_parsed

    if "USE_MCA" in env:  # mcore_adapter is not installed here: LF's MCA parser cannot even be built; the check
        monkeypatch.delenv("USE_MCA")  # sees the environment variable, so parse without it and check with it
        parsed = _parse_train_args(cfg(tmp_path, "minorsft"))
        monkeypatch.setenv("USE_MCA", "1")
        with pytest.raises(PluginError, match=piece):
            check_parsed(*parsed[:4])
        return
    refused(cfg(tmp_path, "minorsft", **overrides), piece)
    refused(cfg(tmp_path, "dpo", pref_loss="minordpo", **overrides), piece)


def test_stock_configs_are_not_checked_by_the_plugin(tmp_path, monkeypatch):
    from llamafactory.hparams.parser import _parse_train_args

    monkeypatch.setenv("USE_RAY", "1")
    _parse_train_args(cfg(tmp_path, "sft", packing=True))  # LF's own business


def test_pairwise_dataset_for_minorsft_is_refused_before_any_model_load(tmp_path):
    refused(cfg(tmp_path, dataset="dpo_en_tiny"), "stage: minorsft", "dpo_en_tiny", "pairwise")
    refused(cfg(tmp_path, "dpo", pref_loss="minordpo", dataset="alpaca_en_tiny"), "alpaca_en_tiny", "not pairwise")
    refused(cfg(tmp_path, dataset="no_such_dataset"), "no_such_dataset")


def test_run_exp_raises_plugin_error_not_system_exit(tmp_path):
    with pytest.raises(PluginError, match="smolm2"):
        llamafactory_minor.run_exp(cfg(tmp_path, template="smolm2"))


def test_lfs_own_run_exp_called_from_python_raises_too(tmp_path):
    """Only llamafactory-cli (its launcher) turns a PluginError into exit code 2."""
    from llamafactory.train.tuner import run_exp

    with pytest.raises(PluginError, match="dpop_lambda"):
        run_exp(cfg(tmp_path, "dpo", pref_loss="dpop", dpop_lamda=3))


def test_plugin_keys_match_the_argument_dataclass():
    from dataclasses import fields

    from llamafactory.hparams.finetuning_args import FinetuningArguments

    from llamafactory_minor.integration.arguments import MinorFinetuningArguments
    from llamafactory_minor.integration.validate import PLUGIN_KEYS

    new = {f.name for f in fields(MinorFinetuningArguments)} - {f.name for f in fields(FinetuningArguments)}
    assert set(PLUGIN_KEYS) == new


# --------------------------------------------------------------------------------------------------
# disabled plugin: a minimal guard on the raw config
# --------------------------------------------------------------------------------------------------
def _py(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, LLAMAFACTORY_MINOR_DISABLE="1", **env),
    )


DISABLED_PARSE = """
from llamafactory.hparams.parser import _parse_train_args
import llamafactory.hparams.parser as p
args = dict(model_name_or_path="m", stage="dpo", do_train=True, dataset="d", output_dir={out!r})
args.update({extra})
print(p._TRAIN_ARGS[3].__name__)
try:
    _parse_train_args(args)
    print("PARSED")
except ValueError as e:
    print(type(e).__name__, e)
"""


@pytest.mark.parametrize(
    "extra,piece",
    [
        ({"pref_loss": "minordpo"}, "pref_loss: minordpo"),
        ({"stage": "minorsft"}, "stage: minorsft"),
        ({"pref_loss": "sigmoid", "track_m_theta": True}, "track_m_theta"),
    ],
)
def test_disabled_plugin_refuses_configs_that_need_it(tmp_path, extra, piece):
    proc = _py(DISABLED_PARSE.format(out=str(tmp_path), extra=repr(extra)))
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "FinetuningArguments", proc.stdout + proc.stderr  # LF unpatched
    assert lines[-1].startswith("PluginError") and "disabled" in lines[-1] and piece in lines[-1], proc.stdout


def test_disabled_plugin_leaves_stock_configs_to_lf(tmp_path):
    proc = _py(DISABLED_PARSE.format(out=str(tmp_path), extra=repr({"pref_loss": "sigmoid"})))
    assert proc.stdout.strip().splitlines()[-1] == "PARSED", proc.stdout + proc.stderr


def test_disabled_guard_costs_nothing_at_start_up():
    proc = _py(
        "import sys; print('torch' in sys.modules, 'llamafactory' in sys.modules, "
        "'llamafactory_minor.integration.validate' in sys.modules)"
    )
    assert proc.stdout.strip() == "False False False", proc.stderr


def test_use_v1_cli_refuses_a_plugin_config(tmp_path, write_yaml):
    """USE_V1=1: `llamafactory-cli train x.yaml` goes to LF's v1 launcher, which the plugin does not patch."""
    path = write_yaml(tmp_path, cfg(tmp_path, "minorsft"))
    code = (
        "import sys\nimport llamafactory.v1.launcher as v1\n"
        f"sys.argv = ['llamafactory-cli', 'train', {path!r}]\nv1.launch()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, USE_V1="1")
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "USE_V1" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr

"""Activation: the .pth hook, the switch-off variable, the version gate and the argument extension."""

import os
import subprocess
import sys

import pytest


def _py(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full)


def test_installed_pth_activates_in_a_fresh_interpreter():
    proc = _py("import llamafactory.hparams.parser as p; print(p._TRAIN_ARGS[3].__name__)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "MinorFinetuningArguments"


def test_hook_costs_nothing_until_llamafactory_is_imported():
    proc = _py("import sys; print('torch' in sys.modules, 'llamafactory' in sys.modules)")
    assert proc.stdout.strip() == "False False"


def test_switch_off_variable():
    proc = _py(
        "import llamafactory.hparams.parser as p; print(p._TRAIN_ARGS[3].__name__)", LLAMAFACTORY_MINOR_DISABLE="1"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "FinetuningArguments"


def test_version_gate_names_the_supported_range(monkeypatch):
    from llamafactory_minor import integration

    monkeypatch.setattr(integration.metadata, "version", lambda name: "0.9.4")
    with pytest.raises(
        integration.PluginError, match=r"supports llamafactory==0\.9\.5 only, found llamafactory==0\.9\.4"
    ):
        integration.check_lf_version()


def test_new_keys_parse_with_lf_parser(tmp_path):
    from llamafactory.hparams.parser import _parse_train_args

    import llamafactory_minor  # noqa: F401

    args = dict(
        model_name_or_path="m",
        stage="dpo",
        pref_loss="dpop",
        dpop_lambda=25,
        dataset="d",
        output_dir=str(tmp_path),
        do_train=True,
    )
    _, _, _, finetuning_args, _ = _parse_train_args(args)
    assert finetuning_args.pref_loss == "dpop" and finetuning_args.dpop_lambda == 25
    assert finetuning_args.plugin_trains and finetuning_args.use_ref_model
    stock = dict(args, pref_loss="sigmoid")
    assert not _parse_train_args(stock)[3].plugin_trains
    poft = dict(
        args,
        stage="poft",
        pref_loss="sigmoid",
        poft_aligned_models="a, b",
        poft_aligned_templates="zephyr,llama3",
        poft_aggregation="min",
    )
    fa = _parse_train_args(poft)[3]
    assert fa.poft_aligned_models == ["a", "b"] and fa.poft_aggregation == "min" and not fa.use_ref_model


def test_importing_the_argument_module_first_still_patches_lf():
    proc = _py(
        "import llamafactory_minor.integration.arguments\n"
        "import llamafactory.hparams.parser as p; print(p._TRAIN_ARGS[3].__name__)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "MinorFinetuningArguments"


def test_disabled_plugin_installs_only_the_raw_config_guard():
    from llamafactory_minor import _hook

    assert set(_hook.DISABLED_GUARD) == {"llamafactory.hparams.parser", "llamafactory.launcher"}
    proc = _py(
        "import llamafactory.hparams.parser as p, llamafactory.train.tuner as t, sys\n"
        "print(p._TRAIN_ARGS[3].__name__, 'llamafactory_minor.integration.arguments' in sys.modules,\n"
        "      t._training_function.__module__)",
        LLAMAFACTORY_MINOR_DISABLE="1",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["FinetuningArguments", "False", "llamafactory.train.tuner"]

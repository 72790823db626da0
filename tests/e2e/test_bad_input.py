"""Bad input through the real CLI: one clear message naming the key to change, no traceback, no run."""

import os

import pytest

pytestmark = pytest.mark.e2e


def _fails_clearly(run_cli, cfg, *expected, env=None):
    proc = run_cli(cfg, check=False, env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    for piece in expected:
        assert piece in text, f"{piece!r} not in output:\n{text[-2000:]}"
    assert not os.path.exists(os.path.join(cfg["output_dir"], "trainer_state.json"))
    return text


PARSE_ERRORS = [
    ("nonsense", "alpaca_en_tiny", {}, ["Unknown `stage: nonsense`", "minorsft", "kto"]),
    ("dpo", "dpo_en_tiny", {"pref_loss": "minordpp"}, ["Unknown `pref_loss: minordpp`", "minordpo", "sigmoid"]),
    ("minorsft", "alpaca_en_tiny", {"pref_beta": 0.0}, ["`pref_beta` must be > 0", "stage: minorsft"]),
    ("sftdpo", "alpaca_en_tiny", {"pref_beta": -1.0}, ["`pref_beta` must be > 0"]),
    ("dpo", "dpo_en_tiny", {"pref_loss": "dpop", "pref_beta": 0.0}, ["`pref_beta` must be > 0", "pref_loss: dpop"]),
    ("dpo", "dpo_en_tiny", {"pref_loss": "dpop", "dpop_lambda": -1.0}, ["`dpop_lambda` must be >= 0"]),
    ("sft", "alpaca_en_tiny", {"pref_loss": "minordpo"}, ["`pref_loss: minordpo` needs `stage: dpo`"]),
    ("poft", "alpaca_en_tiny", {}, ["`stage: poft` needs aligned-LLM scores", "poft_aligned_models"]),
    (
        "poft",
        "alpaca_en_tiny",
        {"poft_aligned_models": "a,b", "poft_aligned_templates": "smollm2"},
        ["poft_aligned_templates", "2 models"],
    ),
    (
        "poft",
        "alpaca_en_tiny",
        {"poft_aligned_models": "a", "poft_aligned_templates": "t", "precompute_ref_log_probs": True},
        ["`precompute_ref_log_probs` needs a reference model"],
    ),
]


@pytest.mark.parametrize("stage,dataset,overrides,expected", PARSE_ERRORS)
def test_bad_keys_rejected_by_the_parser(stage, dataset, overrides, expected, tiny_train_cfg):
    """In-process through LF's own argument parser (the CLI path is covered below)."""
    from llamafactory.hparams.parser import _parse_train_args

    import llamafactory_minor  # noqa: F401
    from llamafactory_minor.integration import PluginError

    with pytest.raises(PluginError) as info:
        _parse_train_args(tiny_train_cfg(stage, dataset=dataset, **overrides))
    for piece in expected:
        assert piece in str(info.value)


@pytest.mark.parametrize(
    "stage,dataset,overrides,expected",
    [
        PARSE_ERRORS[0],
        PARSE_ERRORS[7],
        ("dpo", "alpaca_en_tiny", {"pref_loss": "minordpo"}, ["pref_loss: minordpo", "not pairwise", "ranking"]),
        ("minorsft", "dpo_en_tiny", {}, ["stage: minorsft", "pairwise"]),
        (
            "minorsft",
            "alpaca_en_tiny",
            {"ref_model": "/nonexistent/reference"},
            ["Cannot load the reference model", "ref_model: /nonexistent/reference"],
        ),
        (
            "poft",
            "alpaca_en_tiny",
            {"poft_aligned_models": "/nonexistent/aligned", "poft_aligned_templates": "smollm2"},
            ["poft_aligned_models", "/nonexistent/aligned"],
        ),
    ],
)
def test_bad_configuration_through_the_cli(stage, dataset, overrides, expected, tiny_train_cfg, run_cli):
    cfg = tiny_train_cfg(stage, dataset=dataset, **overrides)
    _fails_clearly(run_cli, cfg, *expected)


def test_unknown_aligned_template(tiny_model, tiny_train_cfg, run_cli, tmp_path):
    cfg = tiny_train_cfg(
        "poft",
        dataset="alpaca_en_tiny",
        poft_aligned_models=tiny_model,
        poft_aligned_templates="no_such_template",
        minor_cache_dir=str(tmp_path / "c"),
    )
    _fails_clearly(run_cli, cfg, "poft_aligned_templates", "no_such_template")


def test_unwritable_cache_dir(tiny_train_cfg, run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = tiny_train_cfg(
        "minorsft", dataset="alpaca_en_tiny", precompute_ref_log_probs=True, minor_cache_dir=str(blocker / "cache")
    )
    _fails_clearly(run_cli, cfg, "minor_cache_dir")


# --------------------------------------------------------------------------------------------------
# issue 8: one clear line (exit code 2) through the real CLI
# --------------------------------------------------------------------------------------------------
def _one_clear_line(proc, *expected):
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit code {proc.returncode}:\n{text[-3000:]}"
    assert "Traceback" not in text and "ChildFailedError" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if "[llamafactory-minor] error:" in line]
    assert len(lines) == 1, text[-3000:]
    for piece in expected:
        assert piece in lines[0], f"{piece!r} not in {lines[0]!r}"
    return lines[0]


def test_unknown_template_one_line(tiny_train_cfg, run_cli):
    cfg = tiny_train_cfg("minorsft", template="smolm2")
    _one_clear_line(run_cli(cfg, check=False), "`template: smolm2`", "smollm2")


def test_misspelled_key_as_cli_override(tiny_train_cfg, run_cli, write_yaml):
    cfg = tiny_train_cfg("dpo", pref_loss="dpop")
    path = write_yaml(cfg["output_dir"], cfg)
    _one_clear_line(run_cli(["train", path, "dpop_lamda=10"], check=False), "`dpop_lamda`", "`dpop_lambda`")


def test_disabled_plugin_refuses_minordpo(tiny_train_cfg, run_cli):
    cfg = tiny_train_cfg("dpo", pref_loss="minordpo")
    proc = run_cli(cfg, check=False, env={"LLAMAFACTORY_MINOR_DISABLE": "1"})
    _one_clear_line(proc, "disabled", "LLAMAFACTORY_MINOR_DISABLE", "pref_loss: minordpo")
    assert not os.path.exists(os.path.join(cfg["output_dir"], "trainer_state.json"))


def test_torchrun_launch_stops_once_before_the_workers(tiny_train_cfg, run_cli):
    cfg = tiny_train_cfg(
        "poft", poft_aligned_models="unused/aligned", poft_aligned_templates="smollm2", train_on_prompt=True
    )
    proc = run_cli(cfg, check=False, env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"})
    _one_clear_line(proc, "`train_on_prompt: true`", "stage: poft")
    assert "Initializing 2 distributed tasks" not in proc.stdout + proc.stderr

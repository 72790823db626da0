"""issue 9: one objective registry; arguments, validation, dispatch, LlamaBoard and the README derive from it.

The toy objective registered from a test (``$LLAMAFACTORY_MINOR_OBJECTIVES``) trains through the real
``llamafactory-cli`` in ``tests/e2e/test_registry_cli.py``; here the cheap checks.
"""

import os
import re
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from llamafactory_minor import registry

ROOT = Path(__file__).resolve().parents[2]
TOY = """
from llamafactory_minor import registry

registry.register(registry.Objective(
    "toysft", "stage", "toy_objective:objective", {"en": "Toy SFT", "zh": "玩具 SFT"},
    needs_reference=False, uses_beta=False,
    params=(registry.Param("toy_scale", "float", 1.0, "Toy: scale of the mean token NLL.",
                           {"en": "Toy scale", "zh": "玩具系数"},
                           {"en": "Toy: scale of the mean token NLL.", "zh": "玩具：平均词元负对数似然的系数。"},
                           minimum=0.0, exclusive=True, ui_range=(0.1, 5, 0.1)),),
    metrics=("toy/nll",), plot_keys=("loss", "toy/nll"), ui_plot=("toy/nll",)))


def objective(x):
    nll = -x.policy_logps / x.num_tokens.clamp(min=1)
    return x.params["toy_scale"] * nll, {"toy/nll": nll.detach().mean().item()}
"""


def write_toy(directory) -> dict:
    """The toy objective's module in ``directory``; the environment that registers it."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / "toy_objective.py").write_text(TOY, encoding="utf-8")
    path = os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
    return {registry.OBJECTIVES_ENV: "toy_objective", "PYTHONPATH": path}


@pytest.mark.parametrize("obj", registry.BUILTIN, ids=lambda o: o.name)
def test_every_entry_has_its_texts_and_functions(obj):
    assert registry.missing_texts(obj) == []
    assert callable(obj.function())
    for target in (obj.scores, obj.check):
        if target:
            assert callable(registry.resolve(target))
    assert obj.carrier in registry.CARRIERS


def test_missing_texts_are_found():
    bare = registry.Objective(
        "x",
        "stage",
        "m:f",
        {"en": "X"},
        params=(registry.Param("x_k", "float", 1.0, "", {"en": "K"}, {"en": "k", "zh": "k"}),),
    )
    assert registry.missing_texts(bare) == ["x.label.zh", "x_k.label.zh", "x_k.arg_help"]


def test_registration_refuses_stock_names_and_taken_keys():
    with pytest.raises(ValueError, match="stock LF stage"):
        registry.register(registry.Objective("sft", "stage", "m:f", {"en": "s", "zh": "s"}))
    with pytest.raises(ValueError, match="stock LF pref_loss"):
        registry.register(registry.Objective("orpo", "pref_loss", "m:f", {"en": "o", "zh": "o"}))
    dup = registry.Param("dpop_lambda", "float", 1.0, "h", {"en": "l", "zh": "l"}, {"en": "i", "zh": "i"})
    with pytest.raises(ValueError, match="already declared"):
        registry.register(registry.Objective("other", "pref_loss", "m:f", {"en": "o", "zh": "o"}, params=(dup,)))
    assert registry.get("other") is None and registry.get("sft") is None


def test_derived_names():
    assert registry.new_stages() == ("minorsft", "sftdpo", "poft")
    assert registry.new_pref_losses() == ("minordpo", "dpop")
    assert registry.fixed_pref_losses() == ("hinge", "ipo")
    assert registry.single_answer_stages() == ("minorsft", "sftdpo", "poft")
    assert registry.of_config("dpo", "dpop").name == "dpop" and registry.of_config("dpo", "sigmoid") is None
    assert registry.of_config("sft", "dpop") is None and registry.of_config("poft", "sigmoid").name == "poft"


def test_argument_dataclass_is_the_registrys():
    import llamafactory_minor  # noqa: F401
    from llamafactory_minor import lf
    from llamafactory_minor.integration.arguments import MinorFinetuningArguments

    new = {f.name for f in fields(MinorFinetuningArguments)} - {f.name for f in fields(lf.FinetuningArguments)}
    assert new == set(registry.plugin_keys())
    by_name = {f.name: f for f in fields(MinorFinetuningArguments)}
    assert typing.get_args(by_name["stage"].type) == registry.all_stages()
    assert typing.get_args(by_name["pref_loss"].type) == registry.all_pref_losses()
    for p in registry.params():
        assert by_name[p.name].default == p.default and by_name[p.name].metadata["help"] == p.arg_help


def test_bounds_come_from_the_registry(tmp_path):
    import llamafactory_minor  # noqa: F401
    from llamafactory_minor.errors import PluginError
    from llamafactory_minor.integration.validate import validate_train_args

    fixtures = str(ROOT / "tests" / "fixtures" / "data")
    base = dict(
        model_name_or_path="unused/model",
        do_train=True,
        finetuning_type="full",
        dataset_dir=fixtures,
        template="smollm2",
        output_dir=str(tmp_path / "out"),
        report_to="none",
    )
    with pytest.raises(PluginError, match=r"`poft_beta` must be > 0 \(got 0.0\)"):
        validate_train_args(
            dict(
                base,
                stage="poft",
                dataset="alpaca_en_tiny",
                poft_beta=0.0,
                poft_aligned_models="a",
                poft_aligned_templates="smollm2",
            )
        )
    with pytest.raises(PluginError, match="the Smaug paper uses 50"):
        validate_train_args(dict(base, stage="dpo", pref_loss="dpop", dataset="dpo_en_tiny", dpop_lambda=-2.0))
    # a parameter is checked only where its objective trains (dpop_lambda is DPOP's)
    validate_train_args(dict(base, stage="dpo", pref_loss="minordpo", dataset="dpo_en_tiny", dpop_lambda=-2.0))


def test_webui_tables_are_the_registrys():
    from llamafactory_minor.integration import webui

    ui = [p.name for p in registry.params() if p.ui]
    assert sorted(webui.INPUT_NAMES) == sorted(ui) and set(ui) <= set(webui.APPLIES)
    assert set(webui.load_locales()["LOCALES"]) >= set(ui)
    assert webui.NEW_STAGE_LABELS == {"MinorSFT": "minorsft", "SFT using DPO": "sftdpo", "PoFT": "poft"}
    assert webui.STAGE_DEFAULTS == {"minorsft": {"pref_beta": 0.04}, "sftdpo": {"pref_beta": 0.04}}
    for o in registry.objectives("stage"):
        assert webui.plot_defaults(o.name) == list(o.ui_plot)
        assert set(o.ui_plot) <= set(webui.PLOT_METRICS)


def test_score_command_stage_kinds_are_the_registrys():
    from llamafactory_minor.scores.standalone import SINGLE_STAGES

    assert SINGLE_STAGES == ("sft",) + registry.single_answer_stages()


def _readme_rows():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Objectives and options", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def test_readme_option_table_is_the_registrys():
    rows = {}
    for line in _readme_rows():
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = re.fullmatch(r"`([a-z_]+)`", cells[0])
        if key:  # "| `key` | default | meaning |" (LF's own keys are marked "(LF's)" and skipped)
            rows[key.group(1)] = cells[1]
    assert set(rows) == set(registry.plugin_keys()), "README option table vs registry"
    for p in registry.params():
        assert rows[p.name] == registry.readme_default(p), f"README default of {p.name}: {rows[p.name]}"


def test_readme_objective_table_lists_every_objective():
    rows = [line for line in _readme_rows() if line.startswith("| `stage:")]
    for o in registry.BUILTIN:
        if o.kind == "stage":
            hits = [r for r in rows if r.startswith(f"| `stage: {o.name}` |")]
        else:
            hits = [
                r
                for r in rows
                if r.startswith("| `stage: dpo`, `pref_loss:")
                and re.search(rf"`(pref_loss: )?{o.name}`", r.split("|")[1])
            ]
        assert hits, f"README objective table has no row for {o.yaml}"
        assert o.paper in hits[0], f"{o.yaml}: README row lacks the paper reference {o.paper!r}"


def test_a_registered_objective_is_everywhere_at_activation(tmp_path):
    """Registered from outside the package (``$LLAMAFACTORY_MINOR_OBJECTIVES``): its stage and key parse, its
    bounds are checked, the score command and LlamaBoard's tables know it. No file of the plugin touched."""
    code = """
import llamafactory_minor
from llamafactory_minor import registry
from llamafactory_minor.integration import webui
from llamafactory_minor.integration.arguments import MinorFinetuningArguments
from llamafactory_minor.integration.validate import validate_train_args, is_plugin_config
from llamafactory_minor.errors import PluginError
from llamafactory_minor.scores.standalone import SINGLE_STAGES
import llamafactory.hparams.parser as p
import sys
import typing
from dataclasses import fields
f = {x.name: x for x in fields(MinorFinetuningArguments)}
print("stage", "toysft" in typing.get_args(f["stage"].type), f["toy_scale"].default)
print("argclass", p._TRAIN_ARGS[3] is MinorFinetuningArguments)
print("ui", webui.NEW_STAGE_LABELS.get("Toy SFT"), "toy_scale" in webui.INPUT_NAMES, webui.APPLIES["toy_scale"])
print("score", "toysft" in SINGLE_STAGES, is_plugin_config({"stage": "toysft"}))
base = dict(model_name_or_path="m", stage="toysft", do_train=True, dataset="alpaca_en_tiny", dataset_dir=sys.argv[1],
            template="smollm2", output_dir=sys.argv[2], report_to="none")
try:
    validate_train_args(dict(base, toy_scale=0.0))
except PluginError as e:
    print("bounds", e)
try:
    validate_train_args(dict(base, dataset="dpo_en_tiny"))
except PluginError as e:
    print("kind", e)
"""
    args = [str(ROOT / "tests" / "fixtures" / "data"), str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **write_toy(tmp_path)),
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "stage True 1.0" in out and "argclass True" in out
    assert "ui toysft True (('toysft', None),)" in out and "score True True" in out
    assert "bounds `toy_scale` must be > 0 (got 0.0)." in out
    assert "kind `stage: toysft` trains on single answers, but dataset `dpo_en_tiny`" in out


def test_poft_aggregations_agree_with_the_math():
    from llamafactory_minor.objectives import POFT_AGGREGATIONS

    param = next(p for p in registry.get("poft").params if p.name == "poft_aggregation")
    assert param.choices == POFT_AGGREGATIONS


def test_locales_file_holds_no_parameter_rows():
    """A parameter's label and help live in its registry entry only (one source for the web UI's texts)."""
    import json

    with open(ROOT / "llamafactory_minor" / "webui" / "locales.json", encoding="utf-8") as f:
        rows = json.load(f)["LOCALES"]
    assert not set(rows) & set(registry.plugin_keys())

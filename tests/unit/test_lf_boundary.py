"""issue 9: the LF boundary as code (``llamafactory_minor.lf``).

Every LF / TRL / transformers internal the plugin uses is named there; here each is checked to exist with the
signature relied on, each patched attribute to exist, LF's recognised error texts to be in LF's source, and
no other module of the plugin to import those packages (nor ``unittest.mock``).
"""

import ast
import inspect
from pathlib import Path

import pytest

import llamafactory_minor  # noqa: F401  (activates the plugin: the patched LF attributes are wrapped)
from llamafactory_minor import lf

PKG = Path(__file__).resolve().parents[2] / "llamafactory_minor"
FOREIGN = ("llamafactory", "trl", "transformers")
# public, documented APIs a user would call too (not internals)
PUBLIC = {"transformers": ("TrainerCallback",)}


@pytest.mark.parametrize("name", sorted(lf.SYMBOLS))
def test_every_symbol_exists(name):
    assert lf.symbol(name) is not None


def _resolve(dotted: str):
    head, _, attr = dotted.partition(".")
    obj = lf.symbol(head)
    return getattr(obj, attr) if attr else obj


@pytest.mark.parametrize("name", sorted(lf.SIGNATURES))
def test_signature_relied_on(name):
    obj = inspect.unwrap(_resolve(name))
    params = list(inspect.signature(obj).parameters)
    want = list(lf.SIGNATURES[name])
    assert params[: len(want)] == want, f"{name}{inspect.signature(obj)}: the plugin passes {want}"


@pytest.mark.parametrize("module", sorted(lf.PATCH_POINTS))
def test_patched_attributes_exist(module):
    mod = lf.module(module)
    missing = [a for a in lf.PATCH_POINTS[module] if not hasattr(mod, a)]
    assert not missing, f"{module} lacks {missing}"


def test_the_hook_patches_only_listed_modules():
    from llamafactory_minor import _hook

    assert set(_hook.PATCHES) <= set(lf.PATCH_POINTS)
    assert set(_hook.DISABLED_GUARD) <= set(lf.PATCH_POINTS)


def test_trainer_slots_and_wrapped_signatures():
    """The swap targets exist, and the wrapped LF functions keep LF's signature (functools.wraps)."""
    for carrier, (module, attr) in lf.TRAINER_SLOTS.items():
        assert inspect.isclass(getattr(lf.module(module), attr)), (carrier, module, attr)
    tuner = lf.module("llamafactory.train.tuner")
    assert tuner.run_sft.__wrapped__ is not tuner.run_sft  # the plugin's wrapper, LF's function inside
    assert list(inspect.signature(tuner.run_dpo).parameters)[:4] == [
        "model_args",
        "data_args",
        "training_args",
        "finetuning_args",
    ]
    # LF 0.9.5 looks CustomDPOTrainer up in its trainer module inside run_dpo: the slot the plugin swaps
    source = inspect.getsource(inspect.unwrap(lf.workflow("dpo").run_dpo))
    assert "from .trainer import CustomDPOTrainer" in source


@pytest.mark.parametrize("name", sorted(lf.ERROR_TEXTS))
def test_error_texts_are_lfs(name):
    text, module = lf.ERROR_TEXTS[name]
    assert text in inspect.getsource(lf.module(module)), f"LF's {module} no longer says {text!r}"


def _foreign_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.lineno, node.module, tuple(a.name for a in node.names)


def test_nothing_else_imports_lf_trl_or_transformers():
    found = []
    for path in sorted(PKG.rglob("*.py")):
        if path == PKG / "lf.py":
            continue
        for line, module, names in _foreign_imports(path):
            top = module.split(".")[0]
            if top not in FOREIGN:
                continue
            if module == top and names and set(names) <= set(PUBLIC.get(top, ())):
                continue
            found.append(f"{path.relative_to(PKG.parent)}:{line}: {module} {names or ''}")
    assert not found, "LF / TRL / transformers imported outside llamafactory_minor/lf.py:\n" + "\n".join(found)


def test_no_mock_in_production_code():
    hits = []
    for path in sorted(PKG.rglob("*.py")):
        for line, module, names in _foreign_imports(path):
            if module.startswith("unittest") or module == "mock" or "mock" in names:
                hits.append(f"{path.relative_to(PKG.parent)}:{line}")
    assert not hits, hits


def test_lf_costs_nothing_until_used():
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, llamafactory_minor.lf, llamafactory_minor.registry; "
            "print('llamafactory' in sys.modules, 'torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.stdout.strip() == "False False", proc.stdout + proc.stderr

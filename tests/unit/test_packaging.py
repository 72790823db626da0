"""setup.py ships every package of the tree and nothing of the repository's infrastructure: each folder with an
``__init__.py`` under llamafactory_minor/, llamafactory_minor_core/ and evaluation/ (llamafactory_minor_eval) is
listed, tools/ (cpu_models) is not. Checked from setup()'s own arguments, without building a wheel."""

import os
import runpy
from unittest import mock

import setuptools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _setup_kwargs() -> dict:
    seen = {}
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        with mock.patch.object(setuptools, "setup", lambda **kw: seen.update(kw)):
            runpy.run_path(os.path.join(REPO, "setup.py"), run_name="__main__")
    finally:
        os.chdir(cwd)
    return seen


def _packages_under(folder: str, name: str) -> set:
    found = set()
    for root, dirs, files in os.walk(os.path.join(REPO, folder)):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        if "__init__.py" in files:
            rel = os.path.relpath(root, os.path.join(REPO, folder))
            found.add(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    return found


def test_every_package_is_shipped_and_tools_are_not():
    kw = _setup_kwargs()
    listed = set(kw["packages"])
    expected = (
        _packages_under("llamafactory_minor", "llamafactory_minor")
        | _packages_under("llamafactory_minor_core", "llamafactory_minor_core")
        | _packages_under("evaluation", "llamafactory_minor_eval")
    )
    assert expected - listed == set(), "packages missing from setup.py"
    assert not [p for p in listed if p.split(".")[0] in ("tools", "tests", "benchmarks", "examples")]
    assert kw["package_dir"] == {"llamafactory_minor_eval": "evaluation"}
    assert (
        kw["version"]
        and "cpu-demo" in kw["extras_require"]
        and any(r.startswith("ruff") for r in kw["extras_require"]["test"])
    )

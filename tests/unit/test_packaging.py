"""setup.py ships every package of the tree and nothing of the repository's infrastructure: each folder with an
``__init__.py`` under llamafactory_minor/, llamafactory_minor_core/ and evaluation/ (llamafactory_minor_eval) is
listed, tools/ (cpu_models) is not. Checked from setup()'s own arguments, without building a wheel."""

import ast
import os
import runpy
import sys
import zipfile
from unittest import mock

import setuptools
from conftest import PACKAGE_SOURCES, source_files

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


# --------------------------------------------------------------------------------------------------
# the built wheel (conftest's built_wheel: this tree's `pip wheel`, ~2 s): what an installed package holds
# --------------------------------------------------------------------------------------------------
# files of the package folders that are not package data, and why the installed package does without them
NOT_SHIPPED = {
    "evaluation/README.md": "the evaluation tool's documentation, read in the repository",
    "evaluation/setup_vllm_cpu.sh": "builds the separate vLLM venv from a clone (`make vllm`); no package code runs it",
}


def _wheel_names(wheel: str) -> set:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _in_wheel(rel: str) -> str | None:
    """The wheel path of the repository file ``rel`` (``evaluation/x.py`` -> ``llamafactory_minor_eval/x.py``), or None
    when it is in none of the packages."""
    parts = rel.replace(os.sep, "/").split("/")
    for package, folder in PACKAGE_SOURCES.items():
        if parts[0] == folder:
            return "/".join([package, *parts[1:]])
    return None


def test_wheel_ships_every_file_of_the_packages(built_wheel):
    names = _wheel_names(built_wheel)
    files = {rel: _in_wheel(rel) for rel in source_files() if _in_wheel(rel) and not rel.endswith(".pyc")}
    assert "llamafactory_minor/experiments/data/alpaca_en_tiny.json" in files.values()  # the listing is the tree's
    missing = sorted(rel for rel, name in files.items() if name not in names and rel not in NOT_SHIPPED)
    assert not missing, (
        "the wheel lacks these files of the packages (setup.py: package_data; or NOT_SHIPPED here, with the reason "
        f"the installed package never opens them): {missing}"
    )
    assert not [rel for rel in NOT_SHIPPED if rel not in files], "NOT_SHIPPED names files the tree no longer has"
    top = {name.split("/")[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {*PACKAGE_SOURCES, "llamafactory_minor.pth"} and len(dist_info) == 1, top
    with zipfile.ZipFile(built_wheel) as zf:
        assert zf.read("llamafactory_minor.pth").decode().startswith("import llamafactory_minor._hook")
        entry_points = zf.read(f"{dist_info.pop()}/entry_points.txt").decode()
    for script, target in _setup_kwargs()["entry_points"].items():
        assert all(line in entry_points for line in target), (script, entry_points)


_PATH_CALLS = {"abspath", "realpath", "normpath", "Path", "resolve", "absolute"}


def _from_file(node, module_file: str, names: dict) -> str | None:
    """The path ``node`` evaluates to when the module builds it from its own ``__file__`` (os.path.dirname / join /
    abspath, pathlib's parent and ``/``, with string constants, or a name assigned such a path), else None."""
    if isinstance(node, ast.Name):
        return module_file if node.id == "__file__" else names.get(node.id)
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        base = _from_file(node.value, module_file, names)
        return os.path.dirname(base) if base else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
        base = _from_file(node.left, module_file, names)
        return os.path.join(base, node.right.value) if base and isinstance(node.right.value, str) else None
    if not isinstance(node, ast.Call):
        return None
    func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
    if func in ("resolve", "absolute") and isinstance(node.func, ast.Attribute):
        return _from_file(node.func.value, module_file, names)
    if not node.args:
        return None
    base = _from_file(node.args[0], module_file, names)
    if base is None:
        return None
    if func in _PATH_CALLS:
        return os.path.normpath(base)
    if func == "dirname":
        return os.path.dirname(base)
    rest = node.args[1:]
    if func == "join" and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in rest):
        return os.path.join(base, *(a.value for a in rest))
    return None


def _file_relative_paths():
    """(module, line, path relative to the repository) of every path a module of the packages builds from its own
    ``__file__`` (the outermost expression; names assigned such a path are followed)."""
    found = []
    for rel in source_files():
        if not rel.endswith(".py") or not _in_wheel(rel):
            continue
        module_file = os.path.join(REPO, rel)
        with open(module_file, encoding="utf-8") as f:
            tree = ast.parse(f.read(), rel)
        names, parents = {}, {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Assign)), key=lambda n: n.lineno):
            path = _from_file(node.value, module_file, names)
            if path and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                names[node.targets[0].id] = path
        for node in ast.walk(tree):
            path = _from_file(node, module_file, names)
            if path is None or _from_file(parents.get(node), module_file, names) is not None:
                continue
            if isinstance(node, ast.Name) and node.id != "__file__":
                continue  # a use of a name: its assignment is the finding
            found.append((rel, node.lineno, os.path.relpath(path, REPO)))
    return found


def test_the_file_path_scan_follows_os_path_pathlib_and_names():
    module = "/r/pkg/sub/mod.py"
    code = {
        'os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "x.json")': "/r/pkg/sub/data/x.json",
        'Path(__file__).resolve().parent.parent / "t.yaml"': "/r/pkg/t.yaml",
        'os.path.join(ROOT, "tests", "f.json")': "/r/tests/f.json",  # ROOT assigned from __file__ below
        "os.path.dirname(os.path.realpath(__file__))": "/r/pkg/sub",
        "os.path.join(os.path.dirname(__file__), name)": None,  # not a constant: not followed
        'os.path.join(other, "x.json")': None,
    }
    names = {"ROOT": _from_file(ast.parse("dirname(dirname(dirname(__file__)))", mode="eval").body, module, {})}
    assert names["ROOT"] == "/r"
    for expr, expected in code.items():
        assert _from_file(ast.parse(expr, mode="eval").body, module, names) == expected, expr


def test_files_the_code_finds_by_its_own_path_are_in_the_wheel(built_wheel):
    """A path the code builds from its ``__file__`` names a file or folder of its own package, which the wheel holds;
    none leads out of the package into the repository (tests/, the repo root), which an installed package lacks."""
    names = _wheel_names(built_wheel)
    folders = {name.rsplit("/", k)[0] for name in names for k in range(1, name.count("/") + 1)}
    found = _file_relative_paths()
    in_wheel, outside = {}, []
    for rel, line, path in found:
        module_package = rel.split("/")[0]
        if path.split(os.sep)[0] == module_package and _in_wheel(path):
            in_wheel[f"{rel}:{line}"] = _in_wheel(path)
        else:
            outside.append(f"{rel}:{line}: {path}")
    # the scan sees what the code opens: the drift set (reproduce's default --deviation-data) and the web UI texts
    assert {"llamafactory_minor/experiments/data/alpaca_en_tiny.json", "llamafactory_minor/webui/locales.json"} <= set(
        in_wheel.values()
    ), found
    missing = sorted(f"{where}: {name}" for where, name in in_wheel.items() if name not in names | folders)
    assert not missing, f"paths the code builds from __file__ that the wheel lacks (setup.py package_data): {missing}"
    assert not outside, f"paths built from __file__ that lead out of the package (absent when installed): {outside}"


def test_reproduce_runs_its_steps_in_the_callers_folder(tmp_path, monkeypatch):
    """The training / evaluation / scoring subprocesses start where `llamafactory-minor reproduce` was started, so a
    relative --model, --eval-file or --deviation-data names the same file for them as for reproduce's own checks
    (they ran in the repository, in an installed package in site-packages' parent)."""
    from llamafactory_minor.experiments import reproduce

    monkeypatch.chdir(tmp_path)
    log = tmp_path / "step.log"
    reproduce._run([sys.executable, "-c", "import os; print(os.getcwd())"], str(log), "printing the folder")
    assert log.read_text().strip() == str(tmp_path)

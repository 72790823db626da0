"""issue 9: the package's layers import downwards only (an AST import graph; no import is executed).

base (errors, env, version, registry, log, lf) <- objectives <- scores <- train <- integration <- hook
(``_hook`` and the package's ``__init__``). ``cli`` and ``experiments`` are applications on top: they may
import any layer, and no layer imports them.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "llamafactory_minor"
BASE = {"errors", "env", "version", "registry", "log", "lf"}
ORDER = ["base", "objectives", "scores", "train", "integration", "hook", "app"]


def layer_of(module: str) -> str:
    parts = module.split(".")[1:]  # drop "llamafactory_minor"
    if not parts or parts[0] == "_hook":
        return "hook"
    head = parts[0]
    if head in BASE:
        return "base"
    if head in ("objectives", "scores", "train", "integration"):
        return head
    if head in ("cli", "experiments"):
        return "app"
    raise AssertionError(f"module {module} has no layer: add it to tests/unit/test_layers.py")


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PKG.parent / rel).with_suffix(".py").is_file() or (PKG.parent / rel / "__init__.py").is_file()


def imports_of(path: Path, name: str | None = None):
    """(line, imported plugin module) for every import in ``path`` (module ``name``), at any depth."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "llamafactory_minor":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "llamafactory_minor":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield node.lineno, sub if _exists(sub) else target


def edges():
    for path in sorted(PKG.rglob("*.py")):
        src = module_name(path)
        for line, dst in imports_of(path):
            yield src, f"{path.relative_to(PKG.parent)}:{line}", dst


def test_every_module_has_a_layer():
    for path in PKG.rglob("*.py"):
        layer_of(module_name(path))


def test_layers_import_downwards_only():
    upward = []
    for src, where, dst in edges():
        a, b = layer_of(src), layer_of(dst)
        if ORDER.index(b) > ORDER.index(a):
            upward.append(f"{where}: {src} ({a}) imports {dst} ({b})")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_cycles_between_layers():
    graph = {}
    for src, _, dst in edges():
        a, b = layer_of(src), layer_of(dst)
        if a != b:
            graph.setdefault(a, set()).add(b)
    seen, stack = set(), []

    def visit(n):
        assert n not in stack, f"layer cycle: {' -> '.join(stack + [n])}"
        if n in seen:
            return
        stack.append(n)
        for m in graph.get(n, ()):
            visit(m)
        stack.pop()
        seen.add(n)

    for n in list(graph):
        visit(n)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The graph is real: a planted upward import (train -> integration, inside a function) is found."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\n\ndef f():\n    from ..integration import dispatch  # noqa: F401\n"
        "    from ... import llamafactory_minor\n",
        encoding="utf-8",
    )
    name = "llamafactory_minor.train.probe"
    found = [d for _, d in imports_of(probe, name)]
    assert found[0] == "llamafactory_minor.integration.dispatch"
    assert ORDER.index(layer_of(found[0])) > ORDER.index(layer_of(name))


def test_every_plugin_import_resolves():
    """Function-level imports too: a module moved between layers leaves no stale import behind."""
    missing = [f"{where}: {dst}" for _, where, dst in edges() if not _exists(dst)]
    assert not missing, missing

"""Issue 9's habit: every public function and method of ``train/`` and ``scores/`` has type hints (each
parameter but self/cls, and the return; ``__init__`` needs no return). Read from the source (ast), nothing
imported."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "llamafactory_minor"


def unannotated(source: str, name: str = "<source>") -> list[str]:
    """``file:line qualified.name: what lacks a hint`` for each public function / method of ``source``."""
    out = []

    def visit(nodes, prefix, public):
        for node in nodes:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.", public and not node.name.startswith("_"))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not public or (node.name.startswith("_") and node.name != "__init__"):
                    continue
                a = node.args
                missing = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.annotation is None]
                missing = [m for m in missing if m not in ("self", "cls")]
                missing += [f"*{x.arg}" for x in (a.vararg, a.kwarg) if x is not None and x.annotation is None]
                if node.returns is None and node.name != "__init__":
                    missing.append("return")
                if missing:
                    out.append(f"{name}:{node.lineno} {prefix}{node.name}: {', '.join(missing)}")

    visit(ast.parse(source).body, "", True)
    return out


def test_the_check_finds_a_missing_hint():
    src = (
        "def f(a: int, b) -> int: ...\n"
        "def g(a: int): ...\n"
        "def _private(a): ...\n"
        "class C:\n"
        "    def __init__(self, x): ...\n"
        "    def m(self, *args, **kw: int) -> None: ...\n"
        "    def ok(self, y: str) -> str: ...\n"
        "class _Hidden:\n"
        "    def m(self, z): ...\n"
    )
    assert unannotated(src) == [
        "<source>:1 f: b",
        "<source>:2 g: return",
        "<source>:5 C.__init__: x",
        "<source>:6 C.m: *args",
    ]


@pytest.mark.parametrize("package", ["train", "scores"])
def test_public_functions_have_type_hints(package):
    found = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        found += unannotated(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    assert not found, "public functions without type hints:\n" + "\n".join(found)

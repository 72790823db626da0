"""`make demo` (examples/cpu/demo.py) runs what the README says it runs, with arguments the real
`llamafactory-minor reproduce` parser accepts. Nothing is trained: the command is built and parsed only."""

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess

import pytest
from conftest import REPO_ROOT

from llamafactory_minor import cli

DEMO = REPO_ROOT / "examples" / "cpu" / "demo.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("lfm_cpu_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reproduce(argv: list[str]):
    """``llamafactory-minor ARGV`` parsed by the CLI's own parser (llamafactory_minor/cli.py); an argument it
    rejects fails the test with argparse's message. argparse also takes an unambiguous prefix (``--step`` for
    ``--steps``): every option must be spelt out."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = cli._parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`llamafactory-minor {' '.join(argv)}` is rejected: {err.getvalue().strip()}")
    for token in argv:
        if token.startswith("--") and not hasattr(ns, token[2:].replace("-", "_")):
            pytest.fail(f"{token} is not an option of `llamafactory-minor {argv[0]}` (only a prefix of one?)")
    return ns


def _readme_demo():
    """(the command README.md says `make demo` runs, as tokens; the text after it)."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"`make demo` is the short version of the MinorSFT experiment \(`([^`]+)`\)", text)
    assert m, "README.md no longer states the command `make demo` runs"
    return shlex.split(m.group(1)), text[m.end() : m.end() + 400]


def test_make_demo_runs_demo_py_with_its_defaults():
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:.*\n\t\$\(PY\) examples/cpu/demo\.py[ \t]*$", makefile, re.M)


def test_demo_command_is_reproduce_minorsft_as_the_readme_states(demo):
    argv = demo.demo_args()
    ns = _reproduce(argv)
    assert ns.command == "reproduce" and ns.experiment == "minorsft"
    assert ns.runs.split(",") == ["sft", "minorsft"]
    assert os.path.realpath(ns.out) == os.path.realpath(REPO_ROOT / "saves" / "demo")  # README: saves/demo/...
    # the README's command (llamafactory-minor reproduce minorsft --runs ... --steps N --test M): the demo sets
    # every option it names to the same value
    readme, after = _readme_demo()
    assert readme[:3] == ["llamafactory-minor", "reproduce", "minorsft"]
    assert {"--runs", "--steps", "--test"} <= set(readme)
    stated = _reproduce(readme[1:] + ["--out", "x"])
    for token in readme[1:]:
        if token.startswith("--"):
            dest = token[2:].replace("-", "_")
            assert getattr(ns, dest) == getattr(stated, dest), f"demo {token} {getattr(ns, dest)}, README's {token}"
    # the runs the demo trains, as reproduce selects them, with the lrs and beta the README states
    from llamafactory_minor.experiments.reproduce import minorsft_runs, select_runs

    cli.resolve_reproduce_defaults(ns)
    runs = select_runs(minorsft_runs(ns.lr, ns.beta, ns.grid), ns.runs)
    assert [r["name"] for r in runs] == ["sft", "minorsft"]
    m = re.search(r"SFT\s+\(lr\s+([0-9.e-]+)\)\s+and\s+MinorSFT\s+\(lr\s+([0-9.e-]+),\s+beta\s+([0-9.]+)\)", after)
    assert m, "README.md no longer states the demo's lrs and beta"
    assert runs[0]["lr"] == pytest.approx(float(m.group(1)))
    assert runs[1]["lr"] == pytest.approx(float(m.group(2))) and runs[1]["beta"] == pytest.approx(float(m.group(3)))


def test_main_runs_the_command_demo_args_builds(demo, monkeypatch, capsys):
    seen = []

    def fake_run(cmd, **kwargs):  # nothing is trained
        seen.append((cmd, kwargs))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    demo.main([])
    ((cmd, kwargs),) = seen
    assert os.path.basename(cmd[0]) == "llamafactory-minor" and cmd[1:] == demo.demo_args()
    assert kwargs.get("cwd") == demo.REPO
    assert "$ llamafactory-minor reproduce minorsft --out" in capsys.readouterr().out
    # the demo's own options reach reproduce
    demo.main(["--steps", "3", "--test", "7", "--out", "elsewhere", "--overwrite"])
    ns = _reproduce(seen[-1][0][1:])
    assert (ns.steps, ns.test, ns.out, ns.overwrite) == (3, 7, "elsewhere", True)


def test_the_parser_check_rejects_a_misspelt_or_abbreviated_option(demo):
    good = demo.demo_args()
    for bad in ("--stesp", "--step"):  # unknown; a prefix argparse would take for --steps
        with pytest.raises(pytest.fail.Exception, match=re.escape(bad)):
            _reproduce([bad if token == "--steps" else token for token in good])
    with pytest.raises(pytest.fail.Exception, match="invalid choice"):
        _reproduce(["reproduce", "minorsfts", *good[2:]])

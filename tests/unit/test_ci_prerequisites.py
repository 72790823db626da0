"""tests/conftest.py's one helper for missing prerequisites (``missing_prerequisite``): a skip with a message saying
how to provide what is missing for developers, a failure naming what is missing and how CI provides it under
CI=true (as .ci/run sets it); and its users for the vLLM / lm-eval tests (``require_vllm``, ``require_lm_eval``,
``require_shared_dir``) do one or the other accordingly."""

import os
import sys

import pytest
from conftest import missing_prerequisite, require_lm_eval, require_shared_dir, require_vllm

SKIP, FAIL = pytest.skip.Exception, pytest.fail.Exception


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_outside_ci_a_missing_prerequisite_skips_with_its_message(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(SKIP) as info:
        missing_prerequisite("no widget: build it with `make widget`", ".ci/run builds it with `make widget`")
    assert str(info.value.msg) == "no widget: build it with `make widget`"


@pytest.mark.parametrize("ci", ["true", "TRUE", "1", "yes"])
def test_under_ci_a_missing_prerequisite_fails_naming_it_and_how_ci_provides_it(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(FAIL) as info:
        missing_prerequisite("no widget: build it with `make widget`", ".ci/run builds it with `make widget`")
    msg = info.value.msg
    assert msg.startswith("CI=true but no widget: build it with `make widget`")
    assert ".ci/run builds it with `make widget`" in msg and "a failure, not a skip" in msg
    assert not info.value.pytrace  # one message, no traceback of the helper


def _missing_vllm(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMAFACTORY_MINOR_VLLM_PYTHON", str(tmp_path / "no-such-python"))
    return require_vllm, [str(tmp_path / "no-such-python"), "make vllm"]


def _missing_lm_eval(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` raises ImportError
    return require_lm_eval, ["lm-eval-harness is not importable", "pip install -e '.[lmeval]'"]


def _missing_shared(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMAFACTORY_MINOR_SHARED", str(tmp_path / "no-shared"))
    return require_shared_dir, [str(tmp_path / "no-shared"), "LLAMAFACTORY_MINOR_SHARED"]


@pytest.mark.parametrize("ci", [False, True])
@pytest.mark.parametrize("missing", [_missing_vllm, _missing_lm_eval, _missing_shared])
def test_the_vllm_and_lm_eval_prerequisites_skip_or_fail_through_it(monkeypatch, tmp_path, missing, ci):
    require, named = missing(monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true" if ci else "false")
    with pytest.raises(FAIL if ci else SKIP) as info:
        require()
    assert all(part in info.value.msg for part in named), info.value.msg
    assert ("In CI it is provided: .ci/run" in info.value.msg) == ci  # how CI provides it: said in CI


def test_present_prerequisites_are_returned(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    monkeypatch.setenv("LLAMAFACTORY_MINOR_VLLM_PYTHON", str(python))
    assert require_vllm() == str(python)
    monkeypatch.setenv("LLAMAFACTORY_MINOR_SHARED", str(tmp_path))
    assert require_shared_dir() == os.path.realpath(tmp_path)

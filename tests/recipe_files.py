"""The training recipes under ``examples/`` and how LF reads them; shared by ``tests/unit/test_recipes.py``
(parsing) and ``tests/e2e/test_recipes_run.py`` (2-step runs)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
# examples/eval holds evaluation configs (llamafactory-minor-eval), checked by the eval tests
_YAMLS = sorted(
    p for ext in ("*.yaml", "*.yml") for p in EXAMPLES.rglob(ext) if "eval" not in p.relative_to(EXAMPLES).parts
)
# experiment grids (`grids:` + `sweep:`, read by `llamafactory-minor sweep` and the evaluation), checked by
# tests/unit/test_experiment_grid.py; every other YAML here is a training recipe
GRIDS = [p for p in _YAMLS if "grids" in OmegaConf.load(p)]
RECIPES = [p for p in _YAMLS if p not in GRIDS]


def rel(path: Path) -> str:
    """``examples/<folder>/<file>.yaml``: the recipe's path from the repository root."""
    return Path(path).resolve().relative_to(REPO_ROOT).as_posix()


def load_yaml(path: Path) -> dict:
    """The dict LF's ``read_args`` builds from ``llamafactory-cli train <path>`` (no overrides)."""
    return OmegaConf.to_container(OmegaConf.load(path))

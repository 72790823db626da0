#!/usr/bin/env bash
# MinorDPO paper, Fig. 6: the 24 runs of examples/minordpo/grid.yaml (3 losses x 4 betas x 2 lrs) through stock
# `llamafactory-cli train`, via `llamafactory-minor sweep` (the evaluation reads the same grid file, so the
# paths it evaluates are the paths this writes).
#
# Usage (from anywhere; runs from the repository root):
#   python examples/minordpo/prepare_metamath_dpo.py       # once: the zero-shot pairs
#   bash examples/minordpo/sweep.sh                        # 8 GPUs by default
#   DRY_RUN=1 bash examples/minordpo/sweep.sh              # print the 24 commands only
#   bash examples/minordpo/sweep.sh --only method=minordpo --only beta=0.1   # a subset
#   bash examples/minordpo/sweep.sh max_samples=2000       # extra key=value overrides for every run
# Environment: NPROC_PER_NODE (8), FORCE_TORCHRUN (1). A run whose output_dir already holds all_results.json
# is skipped, so an interrupted sweep can simply be restarted.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export FORCE_TORCHRUN=${FORCE_TORCHRUN:-1}
export NPROC_PER_NODE=${NPROC_PER_NODE:-8}
args=()
if [[ "${DRY_RUN:-0}" != "0" ]]; then args+=(--dry-run); fi
if command -v llamafactory-minor >/dev/null 2>&1; then exe=(llamafactory-minor); else exe=("${PYTHON:-python3}" -m llamafactory_minor.cli); fi
exec "${exe[@]}" sweep examples/minordpo/grid.yaml "${args[@]}" "$@"

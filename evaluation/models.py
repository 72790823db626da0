"""Checkpoints: a full model folder (or hub id), or a LoRA adapter folder on top of a base model.

A folder holding ``adapter_config.json`` is a (PEFT) LoRA adapter; its base model is the checkpoint's
``base`` if given, else ``base_model_name_or_path`` of ``adapter_config.json``. Before any model is
loaded, every adapter is checked against its base: each LoRA matrix must fit the shape of the module it
adapts (read from the safetensors header and from the base's config on the meta device, so no weights
are loaded). A mismatch is reported as "adapter ... does not fit base model ...".
"""

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from llamafactory_minor_core.digest import folder_digest

from .errors import EvalError


@dataclass
class Checkpoint:
    name: str
    path: str  # model folder / hub id, or the adapter folder
    base: str | None = None  # base model of an adapter
    adapter: str | None = None  # set when ``path`` is an adapter
    ref: str | None = None  # reference model for m_theta (checkpoint name or model path)
    meta: dict[str, object] = field(default_factory=dict)  # free-form: method, lr, beta ... (shown in the CSV)

    @property
    def model_path(self) -> str:
        """The weights to load first (the base for an adapter)."""
        return self.base if self.adapter else self.path

    @property
    def kind(self) -> str:
        return "lora" if self.adapter else "full"

    def identity(self) -> dict[str, str | None]:
        """Where the checkpoint is read from (absolute paths, or the hub id): which models share an engine."""
        return {"model": _abs(self.model_path), "adapter": _abs(self.adapter) if self.adapter else None}

    def content_identity(self) -> dict[str, str | None]:
        """What the checkpoint is: a digest of every byte of every top-level file of the model folder (weights,
        config, tokenizer) and of the adapter folder (``llamafactory_minor_core.digest.folder_digest``, memoised
        per file version); a hub id is its id. The same files under another path give the same identity."""
        return {
            "model": content_digest(self.model_path),
            "adapter": content_digest(self.adapter) if self.adapter else None,
        }


def content_digest(path: str | None) -> str | None:
    """A local folder by the digest of its files, anything else (a hub id) by its name (``hub:<id>``)."""
    if path is None:
        return None
    folder = os.path.expanduser(path)
    if os.path.isdir(folder):
        return folder_digest(folder)
    return f"hub:{path}"


def _abs(path: str | None) -> str | None:
    if path is None:
        return None
    return str(Path(os.path.expanduser(path)).resolve()) if os.path.exists(os.path.expanduser(path)) else path


def looks_like_hub_id(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text)) and not os.path.isabs(text)


def safe_name(name: str) -> str:
    """A folder name for a checkpoint (kept readable: letters, digits, ``.-_=`` survive)."""
    text = re.sub(r"[^\w.=+-]+", "_", name.strip()).strip("._")
    return text or "model"


def _check_model_location(path: str, what: str) -> None:
    expanded = os.path.expanduser(path)
    if os.path.isdir(expanded):
        if not (os.path.isfile(os.path.join(expanded, "config.json")) or _has_gguf(expanded)):
            raise EvalError(f"{what} {path} has no config.json (not a Hugging Face model folder)")
        return
    if os.path.exists(expanded):
        raise EvalError(f"{what} {path} is a file; give the model folder")
    if looks_like_hub_id(path) and not path.startswith((".", "~")):
        first = path.split("/", 1)[0]
        if os.path.isdir(first):
            raise EvalError(
                f"{what} {path} does not exist: there is a folder {first}/ here but no {path} in it "
                f"(a typo? folders in {first}/: {_listing(first)})"
            )
        if _in_hub_cache(path):
            return  # downloaded before: loads offline
        offline = _hub_offline_reason()
        if offline:
            raise EvalError(
                f"{what} {path}: no such folder, and it is not a downloaded hub model while the hub is "
                f"unreachable ({offline}); give the path of a local model folder"
            )
        return  # a hub model id: transformers / vLLM download it (needs network access)
    raise EvalError(f"{what} {path} does not exist (no such folder{_parent_hint(expanded)})")


def _listing(folder: str, limit: int = 8) -> str:
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError:
        return "?"
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "") if names else "none"


def _parent_hint(path: str) -> str:
    parent = os.path.dirname(os.path.normpath(path))
    if parent and os.path.isdir(parent):
        return f"; {parent}/ holds: {_listing(parent)}"
    if parent:
        return f"; {parent}/ does not exist either"
    return ""


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
        return isinstance(found, str)
    except Exception:  # noqa: BLE001 - an old huggingface_hub: let the loader decide
        return False


_HUB_STATE: dict[str, str | None] = {}


def _hub_offline_reason() -> str | None:
    """Why the Hugging Face hub cannot be used (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set, or no
    connection to its host within 3 s), or None when it can. Checked once per process."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    if "reason" not in _HUB_STATE:
        import socket
        from urllib.parse import urlparse

        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        url = urlparse(endpoint)
        host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
        try:
            socket.create_connection((host, port), timeout=3).close()
            _HUB_STATE["reason"] = None
        except OSError as exc:
            _HUB_STATE["reason"] = f"no connection to {host}:{port}: {exc.strerror or type(exc).__name__}"
    return _HUB_STATE["reason"]


def _has_gguf(folder: str) -> bool:
    return any(name.endswith(".gguf") for name in os.listdir(folder))


def resolve_checkpoint(ckpt: Checkpoint) -> Checkpoint:
    """Detect adapters, find their base, and check that the paths exist."""
    path = os.path.expanduser(ckpt.path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "adapter_config.json")):
        try:
            with open(os.path.join(path, "adapter_config.json"), encoding="utf-8") as f:
                config = json.load(f)
        except ValueError as exc:
            raise EvalError(f"{ckpt.path}/adapter_config.json is not valid JSON ({exc})") from None
        peft_type = str(config.get("peft_type", "LORA")).upper()
        if peft_type not in ("LORA",):
            raise EvalError(f"adapter {ckpt.path}: peft_type {peft_type} is not supported (only LoRA)")
        ckpt.adapter = ckpt.path
        if not ckpt.base:
            ckpt.base = config.get("base_model_name_or_path")
            if not ckpt.base:
                raise EvalError(
                    f"adapter {ckpt.path}: adapter_config.json names no base model; set base: for checkpoint {ckpt.name!r}"
                )
        try:
            _check_model_location(ckpt.base, f"base model of adapter {ckpt.path}:")
        except EvalError as exc:
            raise EvalError(f"{exc} (set base: for checkpoint {ckpt.name!r} to the right folder)") from None
        check_adapter_fits(ckpt.adapter, ckpt.base)
    else:
        if ckpt.base and os.path.isdir(path):
            raise EvalError(
                f"checkpoint {ckpt.name!r}: base: is set but {ckpt.path} is not a LoRA adapter (no adapter_config.json)"
            )
        _check_model_location(ckpt.path, "model path")
    return ckpt


def _lora_shapes(adapter: str) -> dict[str, dict[str, int]]:
    """module name -> {"in": in_features, "out": out_features} read from the adapter's weights header."""
    folder = os.path.expanduser(adapter)
    shapes: dict[str, dict[str, int]] = {}
    st = os.path.join(folder, "adapter_model.safetensors")
    tensors: dict[str, list[int]] = {}
    if os.path.isfile(st):
        with open(st, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        tensors = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    elif os.path.isfile(os.path.join(folder, "adapter_model.bin")):
        import torch

        state = torch.load(os.path.join(folder, "adapter_model.bin"), map_location="meta", weights_only=True)
        tensors = {k: list(v.shape) for k, v in state.items()}
    else:
        raise EvalError(f"adapter {adapter}: no adapter_model.safetensors or adapter_model.bin")
    for key, shape in tensors.items():
        m = re.match(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", key)
        if not m or len(shape) != 2:
            continue
        module, which = m.group(1), m.group(2)
        entry = shapes.setdefault(module, {})
        if which == "A":
            entry["in"] = shape[1]
        else:
            entry["out"] = shape[0]
    return shapes


def check_adapter_fits(adapter: str, base: str) -> None:
    """Raise EvalError when a LoRA adapter's matrices do not fit the base model's modules."""
    base_dir = os.path.expanduser(base)
    if not os.path.isdir(base_dir):
        return  # hub base: checked when loading
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(base_dir)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001 - unusual architectures: peft's own check applies when loading
        return
    modules = dict(model.named_modules())
    shapes = _lora_shapes(adapter)
    for name, shape in sorted(shapes.items()):
        target = modules.get(name)
        if target is None:
            raise EvalError(
                f"adapter {adapter} does not fit base model {base}: the base has no module {name} "
                f"(the adapter was trained on another base; adapter_config.json names "
                f"{_adapter_base_name(adapter)!r})"
            )
        weight = getattr(target, "weight", None)
        if weight is None or weight.dim() != 2:
            continue
        out_f, in_f = weight.shape  # Linear: [out, in]; Embedding: [num, dim] (LoRA A is [r, num])
        if type(target).__name__ == "Embedding":
            in_f, out_f = weight.shape
        if ("in" in shape and shape["in"] != in_f) or ("out" in shape and shape["out"] != out_f):
            raise EvalError(
                f"adapter {adapter} does not fit base model {base}: module {name} is {in_f}->{out_f} in the base "
                f"but {shape.get('in', '?')}->{shape.get('out', '?')} in the adapter (the adapter was trained on "
                f"another base; adapter_config.json names {_adapter_base_name(adapter)!r})"
            )


def _adapter_base_name(adapter: str) -> str | None:
    try:
        with open(os.path.join(os.path.expanduser(adapter), "adapter_config.json"), encoding="utf-8") as f:
            return json.load(f).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None


def adapter_rank(adapter: str) -> int:
    try:
        with open(os.path.join(os.path.expanduser(adapter), "adapter_config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return 16
    ranks = [int(config.get("r", 8))] + [int(v) for v in (config.get("rank_pattern") or {}).values()]
    return max(ranks)

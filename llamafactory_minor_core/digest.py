"""Content digests of files and model folders, shared by the score cache (``llamafactory_minor.scores.cache``)
and the evaluation suite's resume store: a cache keyed by what determines its content, not by where it was read.

* :func:`file_digest` -- xxh3-128 of every byte of a file, memoised by (real path, size, mtime): each version of
  a file is read once, however often it is looked up (the memo is ``~/.cache/llamafactory_minor/
  weights-digests.json``, or ``$LLAMAFACTORY_MINOR_DIGEST_MEMO``);
* :func:`folder_digest` -- a digest over the names and digests of the top-level files of a folder (hidden files
  and sub-folders such as ``checkpoint-*`` excluded);
* :func:`weights_digest` -- a model folder by :func:`folder_digest`, a hub id by the commit it resolves to.

Imports only the standard library (xxhash and huggingface_hub when called).
"""

import hashlib
import json
import os
import threading

from .io import atomic_write_text

DIGEST_MEMO_ENV = "LLAMAFACTORY_MINOR_DIGEST_MEMO"
_memo_lock = threading.Lock()
_memo: dict | None = None


class HubIdentityError(ValueError):
    """A hub id that is neither in the local hub cache nor answered by the hub: its weights cannot be identified."""


def _memo_path() -> str:
    return os.environ.get(DIGEST_MEMO_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "llamafactory_minor", "weights-digests.json"
    )


def _load_memo() -> dict:
    global _memo
    if _memo is None:
        try:
            with open(_memo_path(), encoding="utf-8") as f:
                _memo = json.load(f)
            if not isinstance(_memo, dict):
                _memo = {}
        except (OSError, ValueError):  # missing or unreadable memo: digests are recomputed
            _memo = {}
    return _memo


def _save_memo() -> None:
    path = _memo_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_text(path, json.dumps(_memo, indent=0, sort_keys=True))
    except OSError:  # a read-only home: the memo only saves time
        pass


def _hasher():
    try:
        import xxhash  # a dependency of `datasets`, hence always there with LF (and with lm-eval)

        return xxhash.xxh3_128()
    except ImportError:  # pragma: no cover
        return hashlib.blake2b(digest_size=16)


def file_digest(path: str) -> str:
    """Digest of every byte of ``path`` (xxh3-128), memoised by (real path, size, mtime): each version of a
    file is read once, however often it is looked up."""
    st = os.stat(path)
    memo_key = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    with _memo_lock:
        found = _load_memo().get(memo_key)
    if found:
        return found
    h = _hasher()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 23), b""):
            h.update(block)
    digest = h.hexdigest()
    with _memo_lock:
        _load_memo()[memo_key] = digest
        _save_memo()
    return digest


def folder_digest(path: str) -> str:
    """A digest over the names and :func:`file_digest` of all top-level files of ``path`` (weights, config,
    tokenizer files; hidden files and sub-folders such as checkpoints excluded): the same bytes under another
    path give the same digest, one changed byte another."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith(".") or not os.path.isfile(full):
            continue
        h.update(f"{name}:{file_digest(full)}\n".encode())
    return h.hexdigest()[:32]


def hub_snapshot(name: str, revision: str | None) -> str:
    """The commit a hub id resolves to: a content address of every file of the repository."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(name, revision=revision or "main", local_files_only=True)
        return os.path.basename(os.path.normpath(folder))
    except Exception as local_error:  # not in the local hub cache: ask the hub for the commit
        try:
            from huggingface_hub import model_info

            return model_info(name, revision=revision or "main").sha
        except Exception as e:
            raise HubIdentityError(
                f"Cannot identify the weights of `{name}`: it is not a local folder, not in the Hugging Face "
                f"cache ({type(local_error).__name__}), and the hub did not answer ({type(e).__name__}: {e}). "
                "Give a local model folder, or download it once with the hub reachable."
            ) from None


def weights_digest(path: str, revision: str | None = None) -> str:
    """Identity of a model by content: :func:`folder_digest` of its folder; a hub id is identified by the
    commit it resolves to (``hf:<id>@<commit>``, :class:`HubIdentityError` when it cannot be resolved)."""
    if path is None:
        return None
    if not os.path.isdir(path):
        return f"hf:{path}@{hub_snapshot(path, revision)}"
    return folder_digest(path)

#!/usr/bin/env python
"""Make the PoFT paper's ShareGPT training set: the English half of shareAI/ShareGPT-Chinese-English-90k.

The PoFT paper (Fan et al., Sec. 4.1) trains on "the ShareGPT-Chinese-English-90k dataset (shareAI 2023)
... As ShareGPT comprises parallel bilingual data, we exclusively utilize the English corpus". That
dataset's JSONL rows are ``{"conversation_id", "category", "conversation": [{"human": ..., "assistant":
...}, ...]}``, a layout LLaMA-Factory's ``dataset_info.json`` cannot map directly, so this script
converts it to LF's sharegpt format (``{"conversations": [{"from": "human"|"gpt", "value": ...}]}``).

English selection: only the files whose name has an ``en`` token (``*_en_*.jsonl``, e.g.
``common_en_70k.jsonl``); as a guard, conversations with more than ``--max-cjk-ratio`` (default 5%)
CJK characters are dropped too. A conversation is cut at its first turn with an empty question or
answer (turns after a gap would lose their context); conversations with no complete turn are dropped.

Output: ``examples/data/sharegpt_en.json`` registered as ``sharegpt_en`` in the ``dataset_info.json``
next to it (the entry the PoFT recipes use).

Usage (from the repository root)::

    python examples/poft/prepare_sharegpt.py                       # downloads the English files
    python examples/poft/prepare_sharegpt.py --input /data/sharegpt_jsonl   # local folder or files
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator

HUB_ID = "shareAI/ShareGPT-Chinese-English-90k"
HUB_PATTERN = "sharegpt_jsonl/*_en_*"
DEFAULT_NAME = "sharegpt_en"
DEFAULT_OUTPUT = os.path.join("examples", "data", DEFAULT_NAME + ".json")

_EN_FILE_RE = re.compile(r"(?:^|[_\-.])en(?:[_\-.(]|$)", re.IGNORECASE)
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def is_english_file(path: str) -> bool:
    return bool(_EN_FILE_RE.search(os.path.basename(path)))


def cjk_ratio(text: str) -> float:
    letters = [c for c in text if not c.isspace()]
    return (len(_CJK_RE.findall(text)) / len(letters)) if letters else 0.0


def to_sharegpt(record: dict, max_cjk_ratio: float = 0.05) -> dict | None:
    """One shareAI row -> LF sharegpt row, or None (no complete turn, or not English)."""
    messages = []
    for turn in record.get("conversation") or []:
        human = (turn.get("human") or "").strip()
        assistant = (turn.get("assistant") or "").strip()
        if not human or not assistant:
            break
        messages.append({"from": "human", "value": human})
        messages.append({"from": "gpt", "value": assistant})
    if not messages:
        return None
    if cjk_ratio(" ".join(m["value"] for m in messages)) > max_cjk_ratio:
        return None
    return {"conversations": messages}


def input_files(inputs: list | None) -> list:
    if not inputs:
        from huggingface_hub import snapshot_download

        root = snapshot_download(HUB_ID, repo_type="dataset", allow_patterns=[HUB_PATTERN])
        inputs = [os.path.join(root, "sharegpt_jsonl")]
    files = []
    for item in inputs:
        if os.path.isdir(item):
            files += sorted(glob.glob(os.path.join(item, "*.jsonl")))
        else:
            files.append(item)
    return [f for f in files if is_english_file(f)]


def read_jsonl(files: Iterable[str]) -> Iterator[dict]:
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    yield json.loads(line)


def write_dataset_info(output: str, name: str) -> str:
    info_path = os.path.join(os.path.dirname(os.path.abspath(output)), "dataset_info.json")
    info = {}
    if os.path.exists(info_path):
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    info[name] = {
        "file_name": os.path.basename(output),
        "formatting": "sharegpt",
        "columns": {"messages": "conversations"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    }
    with open(info_path, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return info_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", nargs="*", default=None, help="local JSONL files or folders (default: the hub)")
    ap.add_argument("--output", default=DEFAULT_OUTPUT)
    ap.add_argument("--name", default=DEFAULT_NAME)
    ap.add_argument("--max-cjk-ratio", type=float, default=0.05)
    args = ap.parse_args(argv)

    files = input_files(args.input)
    if not files:
        raise SystemExit("no English (*_en_*) JSONL file found in --input")
    rows = [r for r in (to_sharegpt(rec, args.max_cjk_ratio) for rec in read_jsonl(files)) if r is not None]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False)
    info_path = write_dataset_info(args.output, args.name)
    print(
        f"{len(rows)} English conversations from {len(files)} file(s) -> {args.output}; "
        f"registered `{args.name}` in {info_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Make the MinorDPO paper's training data: MetaMath DPO pairs with few-shot prompts turned zero-shot.

The MinorDPO paper (Xie et al., Sec. 4, footnote 3) trains Qwen1.5-7B-Chat on
``abacusai/MetaMath_DPO_FewShot`` (the Smaug / DPOP paper's pairs: ``prompt``, ``chosen``, ``rejected``;
393,999 train rows) "but change few-shot to zero-shot for training". The paper does not publish its
conversion, so this script implements the obvious one and reports what it did.

Heuristic (``zero_shot_prompt``)
--------------------------------
A few-shot prompt is a run of solved exemplars followed by the real question::

    Question: <exemplar 1>\\nAnswer: <its worked answer>\\n\\n
    ...
    Question: <the real question>\\nAnswer:

Only the text after the LAST question marker (``Question:``, ``Q:`` or ``Problem:`` at the start of a
line, case-insensitive) is kept, and a trailing empty answer cue (``Answer:``, ``A:``, ``Solution:`` at
the very end) is removed. Exemplars always carry their answer, so the real question is the last marked
block. A prompt with no marker is kept whole (it is already zero-shot). If the last block is empty, the
prompt is kept whole too and counted as ``unparsed``. The answers (``chosen`` / ``rejected``) are kept
as they are (surrounding whitespace stripped); pairs whose two answers are equal or empty are dropped.

Check the printed summary: it gives how many exemplars were removed per prompt. If most prompts report
0, the data uses another marker: pass ``--question-marker REGEX`` (a regex matched at line starts).

Output: an LLaMA-Factory pairwise file in alpaca format (``instruction``, ``chosen``, ``rejected``) and
its entry in ``dataset_info.json`` next to it (``"ranking": true``), by default
``examples/data/metamath_dpo_zeroshot.json`` as ``metamath_dpo_zeroshot`` -- the dataset the recipes in
``examples/minordpo/`` train on.

Usage (from the repository root)::

    python examples/minordpo/prepare_metamath_dpo.py                   # from the Hugging Face hub
    python examples/minordpo/prepare_metamath_dpo.py --input /data/MetaMath_DPO_FewShot   # local copy
    python examples/minordpo/prepare_metamath_dpo.py --max-samples 1000 --output /tmp/mm/mm.json

``--input`` takes a folder made by ``datasets.save_to_disk`` / a hub snapshot, or a .json/.jsonl/
.parquet/.arrow/.csv file. ``--instruction paper`` prepends the paper's GSM8K inference prompt to every
question (the paper states it for inference only, so the default is the bare question).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
from collections.abc import Iterable

HUB_ID = "abacusai/MetaMath_DPO_FewShot"
DEFAULT_NAME = "metamath_dpo_zeroshot"
DEFAULT_OUTPUT = os.path.join("examples", "data", DEFAULT_NAME + ".json")

# The MinorDPO paper's GSM8K inference prompt (Sec. 4), for --instruction paper.
PAPER_PROMPT = (
    "You are a helpful assistant. Please answer follow question step by step and give final answer in a "
    "separate line using the brief format So the answer is: . Below is the question:"
)

QUESTION_MARKER = r"(?:question|q|problem)[ \t]*:"
# an empty answer cue at the very end: "Answer:"/"A:"/"Solution:" on its own line, or "Answer:"/"Solution:"
# after the question on the same line
ANSWER_CUE_RE = re.compile(
    r"(?:(?:^|\n)[ \t]*(?:answer|a|solution)|[ \t]+(?:answer|solution))[ \t]*:[ \t]*\Z", re.IGNORECASE
)


def _marker_re(marker: str) -> re.Pattern[str]:
    return re.compile(r"^[ \t]*" + marker + r"[ \t]*", re.IGNORECASE | re.MULTILINE)


_DEFAULT_MARKER_RE = _marker_re(QUESTION_MARKER)


def zero_shot_prompt(prompt: str, marker_re: re.Pattern[str] = _DEFAULT_MARKER_RE) -> tuple[str, int]:
    """Strip few-shot exemplars: ``(last question, number of exemplars removed)``.

    Returns ``(prompt.strip(), 0)`` when there is no marker, and ``(prompt.strip(), -1)`` when the last
    marked block is empty (nothing sensible to keep; counted as unparsed).
    """
    text = prompt.strip()
    matches = list(marker_re.finditer(text))
    if not matches:
        return text, 0
    question = text[matches[-1].end() :]
    question = ANSWER_CUE_RE.sub("", question).strip()
    if not question:
        return text, -1
    return question, len(matches) - 1


def convert_row(
    row: dict,
    instruction: str | None = None,
    marker_re: re.Pattern[str] = _DEFAULT_MARKER_RE,
) -> tuple[dict | None, int]:
    """One hub row -> (LF alpaca pairwise row or None if dropped, exemplars removed)."""
    question, removed = zero_shot_prompt(row["prompt"], marker_re)
    chosen = (row.get("chosen") or "").strip()
    rejected = (row.get("rejected") or "").strip()
    if not question or not chosen or not rejected or chosen == rejected:
        return None, removed
    if instruction:
        question = f"{instruction}\n{question}"
    return {"instruction": question, "chosen": chosen, "rejected": rejected}, removed


def dataset_info_entry(file_name: str) -> dict:
    return {
        "file_name": file_name,
        "ranking": True,
        "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"},
    }


def load_rows(input_path: str | None, split: str) -> Iterable[dict]:
    """The hub dataset (``input_path`` None) or a local copy, as an iterable of dict rows."""
    import datasets

    if input_path is None:
        return datasets.load_dataset(HUB_ID, split=split)
    if os.path.isdir(input_path):
        if os.path.exists(os.path.join(input_path, "dataset_dict.json")) or os.path.exists(
            os.path.join(input_path, "state.json")
        ):
            loaded = datasets.load_from_disk(input_path)
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(input_path, split=split)  # a hub snapshot folder
    ext = os.path.splitext(input_path)[1].lower().lstrip(".")
    builder = {"json": "json", "jsonl": "json", "parquet": "parquet", "arrow": "arrow", "csv": "csv"}.get(ext)
    if builder is None:
        raise SystemExit(f"--input: unsupported file type {input_path!r} (json, jsonl, parquet, arrow, csv)")
    return datasets.load_dataset(builder, data_files=input_path, split="train")


def write_dataset_info(output: str, name: str) -> str:
    """Add or replace ``name`` in the dataset_info.json beside ``output``; returns its path."""
    info_path = os.path.join(os.path.dirname(os.path.abspath(output)), "dataset_info.json")
    info = {}
    if os.path.exists(info_path):
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    info[name] = dataset_info_entry(os.path.basename(output))
    with open(info_path, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return info_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=None, help=f"local copy of {HUB_ID} (default: load it from the hub)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--output", default=DEFAULT_OUTPUT, help="LF pairwise JSON to write")
    ap.add_argument("--name", default=DEFAULT_NAME, help="dataset name to register in dataset_info.json")
    ap.add_argument("--max-samples", type=int, default=None)
    ap.add_argument(
        "--instruction",
        default=None,
        help="text put before every question; 'paper' = the paper's GSM8K inference prompt",
    )
    ap.add_argument(
        "--question-marker",
        default=QUESTION_MARKER,
        help="regex of the question marker at a line start (default: Question:|Q:|Problem:)",
    )
    args = ap.parse_args(argv)

    instruction = PAPER_PROMPT if args.instruction == "paper" else args.instruction
    marker_re = _marker_re(args.question_marker)
    rows = load_rows(args.input, args.split)

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    removed_hist = collections.Counter()
    seen = kept = 0
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:  # streamed: the train split is ~1.2 GB of few-shot text
        f.write("[\n")
        for row in rows:
            if args.max_samples is not None and seen >= args.max_samples:
                break
            seen += 1
            out, removed = convert_row(row, instruction, marker_re)
            removed_hist[removed] += 1
            if out is None:
                continue
            f.write(("" if kept == 0 else ",\n") + json.dumps(out, ensure_ascii=False))
            kept += 1
        f.write("\n]\n")
    os.replace(tmp, args.output)
    info_path = write_dataset_info(args.output, args.name)

    print(f"read {seen} rows, wrote {kept} pairs to {args.output} ({seen - kept} dropped: empty or identical answers)")
    print(
        "exemplars removed per prompt: "
        + ", ".join(f"{'unparsed' if k < 0 else k}: {v}" for k, v in sorted(removed_hist.items()))
    )
    print(f"registered `{args.name}` in {info_path}")
    if seen and removed_hist.get(0, 0) > 0.5 * seen:
        print("WARNING: most prompts had no few-shot marker; check the data and --question-marker", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

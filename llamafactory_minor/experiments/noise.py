"""PoFT's hand-crafted noise (Fan et al., Sec. 4.3) for any LF dataset: randomly re-matched outputs with
character insertion, deletion and modification.

Paper: "we create a pair of inputs with a randomly matched output and simulate data corruption through the
processes of character insertion, deletion, and modification [...] The newly created noise data is blended with
the original data for training." So, for a dataset of N rows and ``rate`` r, ``round(r * N)`` noise rows are made:
each takes the prompt of one row (drawn without replacement) and the response of another (a derangement: never
its own), then every character of that response is, with probability ``char_rate`` (default 0.1), deleted,
replaced by or preceded by a random character of the response's own alphabet (one of the three, equally likely).

Written into the dataset folder (nothing is overwritten half-way; temp file + rename):

- ``<out>.json``: the original rows then the noise rows, each with a boolean column (``is_noise`` by default)
  marking the noise rows -- the per-row flag for bi-PoFT (PoFT Eq. 12) and for score histograms;
- ``<out>_noise.json``: the noise rows alone;
- ``dataset_info.json`` entries ``<out>`` and ``<out>_noise`` with the source entry's format and columns, so
  ``dataset: <out>`` trains on the blend; bi-PoFT reads the flag per row with ``poft_noise_column: is_noise``
  (or, equivalently, ``dataset: <name>,<out>_noise`` with ``poft_noise_dataset: <out>_noise``).

Supported: LF ``alpaca`` (the response column) and ``sharegpt`` (the last assistant turn) datasets from local
json / jsonl files.
"""

from __future__ import annotations

import json
import os
import random

from llamafactory_minor_core.io import read_rows


class NoiseError(ValueError):
    """Bad input for the noise tool: the message names the dataset, file or option."""


def corrupt_text(text: str, rng: random.Random, char_rate: float = 0.1) -> str:
    if not text:
        return text
    alphabet = sorted(set(text)) or ["x"]
    out = []
    for ch in text:
        if rng.random() >= char_rate:
            out.append(ch)
            continue
        action = rng.randrange(3)
        if action == 0:  # deletion
            continue
        if action == 1:  # modification
            out.append(rng.choice(alphabet))
        else:  # insertion before the character
            out.extend([rng.choice(alphabet), ch])
    result = "".join(out)
    return result if result != text else text + rng.choice(alphabet)


def _read_rows(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise NoiseError(f"dataset file {path} does not exist")
    rows = read_rows(path)
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise NoiseError(f"{path} must hold a non-empty JSON list of rows")
    return rows


class _Response:
    """Get / set the response of a row for the entry's format."""

    def __init__(self, entry: dict, name: str):
        self.formatting = entry.get("formatting", "alpaca")
        columns = entry.get("columns") or {}
        if entry.get("ranking"):
            raise NoiseError(f"`{name}` is a pairwise (ranking) dataset; the noise tool takes SFT datasets")
        if self.formatting == "alpaca":
            self.column = columns.get("response", "output")
        elif self.formatting == "sharegpt":
            tags = entry.get("tags") or {}
            self.column = columns.get("messages", "conversations")
            self.role_tag = tags.get("role_tag", "from")
            self.content_tag = tags.get("content_tag", "value")
            self.assistant = tags.get("assistant_tag", "gpt")
        else:
            raise NoiseError(f"`{name}` has formatting `{self.formatting}`; the noise tool takes alpaca or sharegpt")

    def _last_assistant(self, row):
        messages = row.get(self.column)
        if not isinstance(messages, list):
            raise NoiseError(f"a row has no `{self.column}` list of messages")
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].get(self.role_tag) == self.assistant:
                return messages, i
        raise NoiseError(f"a row of `{self.column}` has no `{self.assistant}` message")

    def get(self, row) -> str:
        if self.formatting == "alpaca":
            if self.column not in row:
                raise NoiseError(f"a row has no `{self.column}` column (the entry's response column)")
            return str(row[self.column])
        messages, i = self._last_assistant(row)
        return str(messages[i].get(self.content_tag, ""))

    def set(self, row, text: str) -> dict:
        row = json.loads(json.dumps(row))  # deep copy
        if self.formatting == "alpaca":
            row[self.column] = text
        else:
            messages, i = self._last_assistant(row)
            messages[i][self.content_tag] = text
        return row


def make_noise(
    dataset_dir: str,
    dataset: str,
    rate: float = 0.5,
    seed: int = 0,
    out: str | None = None,
    column: str = "is_noise",
    char_rate: float = 0.1,
) -> dict:
    """Write the blend and the noise-only file and their dataset_info entries; returns a summary."""
    if not 0 < rate <= 1:
        raise NoiseError(f"--rate must be in (0, 1] (the share of noise rows per original row), got {rate}")
    if not 0 < char_rate < 1:
        raise NoiseError(f"--char-rate must be in (0, 1), got {char_rate}")
    info_path = os.path.join(dataset_dir, "dataset_info.json")
    if not os.path.isfile(info_path):
        raise NoiseError(f"{dataset_dir} has no dataset_info.json (give LF's dataset_dir)")
    with open(info_path, encoding="utf-8") as f:
        info = json.load(f)
    if dataset not in info:
        raise NoiseError(f"dataset `{dataset}` is not in {info_path} (it has: {', '.join(sorted(info))})")
    entry = info[dataset]
    if "file_name" not in entry:
        raise NoiseError(f"`{dataset}` is not a local file dataset (no file_name); download it to a json file first")
    response = _Response(entry, dataset)
    rows = _read_rows(os.path.join(dataset_dir, entry["file_name"]))
    if len(rows) < 2:
        raise NoiseError(f"`{dataset}` needs at least 2 rows to re-match outputs")
    out = out or f"{dataset}_noisy"
    rng = random.Random(seed)
    n_noise = max(1, round(rate * len(rows)))
    prompts = rng.sample(range(len(rows)), min(n_noise, len(rows)))
    while len(prompts) < n_noise:  # rate 1 with repeats is not needed; kept for completeness
        prompts.append(rng.randrange(len(rows)))
    noise = []
    for i in prompts:
        j = rng.randrange(len(rows) - 1)
        j = j + 1 if j >= i else j  # another row's output, never its own
        text = corrupt_text(response.get(rows[j]), rng, char_rate)
        noise.append(dict(response.set(rows[i], text), **{column: True}))
    blend = [dict(r, **{column: False}) for r in rows] + noise
    files = {f"{out}.json": blend, f"{out}_noise.json": noise}
    for name, data in files.items():
        _write_json(os.path.join(dataset_dir, name), data)
    base = {k: v for k, v in entry.items() if k not in ("file_name", "file_sha1", "hf_hub_url", "ms_hub_url")}
    info[out] = dict(base, file_name=f"{out}.json")
    info[f"{out}_noise"] = dict(base, file_name=f"{out}_noise.json")
    _write_json(info_path, info)
    return {
        "rows": len(rows),
        "noise_rows": len(noise),
        "blend": f"{out}.json",
        "noise_only": f"{out}_noise.json",
        "entries": [out, f"{out}_noise"],
        "column": column,
    }


def _write_json(path: str, data) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
    os.replace(tmp, path)

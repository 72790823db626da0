"""The scoring pass: sum of answer-token log-probs and answer length per tokenized row, no grad.

Rows are LF's own tokenized rows (same template, cutoff and masking as training), keyed by
``token_key`` (digest of the row's token ids and labels). Batched, sorted by length, resumable through ``ScoreCache``.
"""

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ..errors import PluginError
from ..lf import no_zero3_init  # noqa: F401  (re-exported: transformers' ZeRO-3 switch is an LF-boundary internal)
from ..objectives import sequence_log_probs
from .keys import sequences_of

if TYPE_CHECKING:
    from datasets import Dataset

    from .cache import ScoreCache

IGNORE_INDEX = -100


@torch.no_grad()
def score_sequences(
    model: Any,
    items: list[tuple[Any, list[int], list[int]]],
    pad_token_id: int | None,
    batch_size: int = 8,
    desc: str = "Scoring",
    on_batch: Callable[[dict], None] | None = None,
    show_progress: bool = True,
) -> dict:
    """Score ``items`` = [(item_id, input_ids, labels)]; returns {item_id: (sum_logp, num_tokens)}.

    ``on_batch(results_of_batch)`` is called after each batch (the cache appends there).
    """
    device = next(model.parameters()).device
    order = sorted(range(len(items)), key=lambda i: -len(items[i][1]))
    results = {}
    pad = pad_token_id if pad_token_id is not None else 0
    bar = tqdm(total=len(order), desc=desc, disable=not show_progress)
    from ..log import get_logger
    from .progress import ScoringProgress  # the log at LF's cadence and LlamaBoard's progress bar

    progress = ScoringProgress(
        len(order),
        batch_size,
        desc,
        logger=get_logger(__name__),
        pairwise=any(isinstance(i, tuple) and "rejected" in i for i, _, _ in items),
    )
    for start in range(0, len(order), batch_size):
        chunk = [items[i] for i in order[start : start + batch_size]]
        width = max(len(ids) for _, ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, (_, ids, labs) in enumerate(chunk):
            input_ids[j, : len(ids)] = torch.tensor(ids)
            labels[j, : len(labs)] = torch.tensor(labs)
            attention[j, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False).logits
        logps, counts = sequence_log_probs(logits, labels.to(device), ignore_index=IGNORE_INDEX)
        batch_results = {}
        for (item_id, _, _), lp, n in zip(chunk, logps.tolist(), counts.tolist()):
            if not math.isfinite(lp):
                raise PluginError(
                    f"Scoring produced a non-finite log-prob ({lp}) for sample {item_id[0]}; "
                    "check the model's dtype (try float32) and weights."
                )
            batch_results[item_id] = (lp, int(n))
        results.update(batch_results)
        if on_batch is not None:
            on_batch(batch_results)
        bar.update(len(chunk))
        progress.update(len(chunk))
    bar.close()
    progress.close()
    return results


class RowAssembler:
    """Collects scored parts; a row goes to the cache (and ``done``) once all its parts are in: the chosen
    answer, and the rejected one for pairs."""

    def __init__(self, cache: "ScoreCache", done: dict, pairwise: bool):
        self.cache, self.done, self.pairwise = cache, done, pairwise
        self.pending = {}

    def add(self, parts: Iterable[tuple[str, str, tuple[float, int]]]) -> None:
        """``parts``: iterable of (token_key, "chosen" | "rejected", (sum_logp, num_tokens))."""
        out = []
        for key, part, score in parts:
            entry = self.pending.setdefault(key, {})
            entry[part] = score
            if "chosen" in entry and ("rejected" in entry or not self.pairwise):
                row = {"key": key, "sum_logp": entry["chosen"][0], "num_tokens": entry["chosen"][1]}
                if self.pairwise:
                    row["rejected_sum_logp"], row["rejected_num_tokens"] = entry["rejected"]
                out.append(row)
                del self.pending[key]
        if out:
            self.cache.append(out)
            for r in out:
                self.done[r["key"]] = r


def pending_sequences(rows: "Dataset | list[dict]", done: dict) -> list[tuple[tuple[str, str], list, list]]:
    """``[((token_key, part), input_ids, labels)]`` of every distinct ``token_key`` of ``rows`` not in ``done``
    (``part``: "chosen" / "rejected" for pairs, else "chosen"): what a pass still has to score."""
    items, seen = [], set(done)
    for row in rows:
        key = row["token_key"]
        if key in seen:
            continue
        seen.add(key)
        for part, ids, labs in sequences_of(row):
            items.append(((key, part), list(ids), list(labs)))
    return items


def is_pairwise(rows: "Dataset | list[dict]") -> bool:
    return bool(rows) and "chosen_input_ids" in rows[0]


def score_dataset_rows(
    model: Any,
    rows: "Dataset | list[dict]",
    cache: "ScoreCache",
    pad_token_id: int | None,
    batch_size: int = 8,
    desc: str = "Scoring",
    show_progress: bool = True,
) -> dict:
    """Score every distinct ``token_key`` of ``rows`` that the cache does not hold; returns all rows' scores."""
    done = cache.load_partial()
    items = pending_sequences(rows, done)
    rows_out = RowAssembler(cache, done, pairwise=is_pairwise(rows))

    def on_batch(batch_results):
        rows_out.add((key, part, score) for (key, part), score in batch_results.items())

    if items:
        score_sequences(model, items, pad_token_id, batch_size, desc, on_batch, show_progress)
    if rows_out.pending:  # pragma: no cover - all parts of a row are always scored in the same pass
        raise PluginError(f"Scoring left {len(rows_out.pending)} rows incomplete.")
    return done

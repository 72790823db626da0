"""Run a scoring pass once, on the main process, through the cache; every rank gets the same scores.

LF symbols (``lf``): ``ModelArguments``, ``FinetuningArguments``, ``load_model``, ``load_tokenizer``, LF's logging.
"""

import gc
import hashlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import lf
from ..errors import PluginError
from ..log import get_logger
from ..version import __version__
from .cache import ScoreCache, make_key
from .scoring import no_zero3_init, score_dataset_rows

if TYPE_CHECKING:
    from datasets import Dataset

logger = get_logger(__name__)

CACHE_ENV = "LLAMAFACTORY_MINOR_SCORE_CACHE"
# 2: rows keyed by token ids + labels, models by a digest of all weight bytes, rows digest verified
KEY_SCHEME = 2


def cache_root(finetuning_args: Any) -> str:
    return (
        finetuning_args.minor_cache_dir
        or os.environ.get(CACHE_ENV)
        or os.path.join(os.path.expanduser("~"), ".cache", "llamafactory_minor", "scores")
    )


def dataset_fingerprint(rows: "Dataset") -> str:
    """Digest of the set of rows a pass scores: of their ``token_key``s, i.e. of every token and label."""
    keys = sorted(set(rows["token_key"]))
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def load_scoring_model(
    model_args: Any, name_or_path: str, adapters: str | list[str] | None = None, quantization_bit: int | None = None
) -> tuple[Any, Any]:
    """A frozen copy of ``name_or_path`` loaded the way LF loads a reference model (``create_ref_model``)."""
    FinetuningArguments, ModelArguments, load_model, load_tokenizer = (
        lf.FinetuningArguments,
        lf.ModelArguments,
        lf.load_model,
        lf.load_tokenizer,
    )
    args = ModelArguments.copyfrom(
        model_args, model_name_or_path=name_or_path, adapter_name_or_path=adapters, quantization_bit=quantization_bit
    )
    try:
        tokenizer = load_tokenizer(args)["tokenizer"]
        with no_zero3_init():
            model = load_model(tokenizer, args, FinetuningArguments(), is_trainable=False)
    except Exception as e:
        raise PluginError(f"Cannot load the scoring model `{name_or_path}`: {type(e).__name__}: {e}") from None
    model.eval()
    return model, tokenizer


def pass_key(rows: "Dataset", meta: dict) -> tuple[dict, str]:
    """The cache meta of a pass over ``rows`` (``meta`` + dataset fingerprint + plugin version) and its key."""
    meta = dict(meta, dataset=dataset_fingerprint(rows), plugin=__version__, key_scheme=KEY_SCHEME)
    return meta, make_key(meta)


def run_pass(
    rows: "Dataset",
    meta: dict,
    load_fn: Callable[[], tuple[Any, Any]],
    training_args: Any,
    finetuning_args: Any,
    desc: str,
) -> dict:
    """Scores for every ``sample_key`` in ``rows``: from the cache, or computed once by the main process."""
    meta, key = pass_key(rows, meta)
    cache = ScoreCache(cache_root(finetuning_args), key, meta, logger=logger)
    with training_args.main_process_first(desc=desc, local=False):

        def score():
            if not training_args.should_save and training_args.world_size > 1:
                raise PluginError(
                    f"{desc}: the main process did not leave complete scores in {cache.dir} (a cache "
                    "folder not shared between nodes? set `minor_cache_dir` to a shared path)."
                )
            return score_with_model(load_fn, rows, cache, max(1, training_args.per_device_train_batch_size), desc)

        return cached_or_scored(cache, desc, score)


def cached_or_scored(cache: ScoreCache, desc: str, score_fn: Callable[[], dict]) -> dict:
    """The cache's complete scores, or ``score_fn()`` (which resumes from the cache's partial rows), finished
    (atomically) and logged. The log lines are what tests and users look for: "reusing cached scores" / "scored"."""
    scores = cache.load_complete()
    if scores is not None:
        logger.info_rank0(f"{desc}: reusing cached scores ({len(scores)} rows) from {cache.dir}; no scoring.")
        return scores
    resumed = len(cache.load_partial())
    if resumed:
        logger.info_rank0(f"{desc}: resuming an interrupted pass ({resumed} rows already scored).")
    start = time.time()
    try:
        scores = score_fn()
    except BaseException:
        cache.discard_if_empty()  # e.g. the scoring model failed to load: leave no empty folder behind
        raise
    cache.finish(scores)
    logger.info_rank0(
        f"{desc}: scored {len(scores) - resumed} rows in {time.time() - start:.1f}s; cached at {cache.dir}."
    )
    return scores


def score_with_model(
    load_fn: Callable[[], tuple[Any, Any]], rows: "Dataset", cache: ScoreCache, batch_size: int, desc: str
) -> dict:
    """Load the scoring model (``load_fn() -> (model, tokenizer)``), score ``rows`` through the cache, free it."""
    model, tokenizer = load_fn()
    try:
        return score_dataset_rows(model, rows, cache, tokenizer.pad_token_id, batch_size=batch_size, desc=desc)
    finally:
        del model
        gc.collect()


def join(
    rows: "Dataset", scores: dict, what: str, keys: list[str] | None = None, counts: list[int] | None = None
) -> list[dict]:
    """The score of each row, by ``token_key`` (or the given ``keys``), checking each score's token count
    against the row's (``answer_tokens``, or the given ``counts``). A row without a score, or with a score
    of another length, is an error naming how many and which."""
    keys = rows["token_key"] if keys is None else keys
    counts = rows["answer_tokens"] if counts is None else counts
    missing = [k for k in keys if k not in scores]
    if missing:
        shown = ", ".join(missing[:5])
        raise PluginError(
            f"{len(missing)} of {len(keys)} training rows have no {what} (token keys {shown}"
            f"{', ...' if len(missing) > 5 else ''}); check that the imported scores were made for "
            "this dataset, model and template, or let training score it (remove the import)."
        )
    out = []
    for key, count in zip(keys, counts):
        s = scores[key]
        have = [s["num_tokens"]] + ([s["rejected_num_tokens"]] if "rejected_num_tokens" in s else [])
        if list(count) != have:
            raise PluginError(
                f"The {what} of token key {key} covers {have} answer tokens, the training row has "
                f"{list(count)}: the scores were made for other rows; rescore them."
            )
        out.append(s)
    return out


def datasets_of(dataset_module: dict) -> list[tuple[str, "Dataset"]]:
    """(name, dataset) for the train split and every eval split present."""
    out = []
    if dataset_module.get("train_dataset") is not None:
        out.append(("train_dataset", dataset_module["train_dataset"]))
    evals = dataset_module.get("eval_dataset")
    if isinstance(evals, dict):
        out += [(f"eval_dataset/{k}", v) for k, v in evals.items()]
    elif evals is not None:
        out.append(("eval_dataset", evals))
    return out


def replace_dataset(dataset_module: dict, name: str, dataset: "Dataset") -> None:
    if name.startswith("eval_dataset/"):
        dataset_module["eval_dataset"][name.split("/", 1)[1]] = dataset
    else:
        dataset_module[name] = dataset

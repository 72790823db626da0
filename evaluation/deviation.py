"""The deviation metric m_theta of the MinorSFT paper (Eq. 8):

    m_theta = 1/N * sum_i 1/m_i * ( log pi_theta(y_i|x_i) - log pi_ref(y_i|x_i) )

over a dataset of N (x, y) pairs; y = the answer tokens only (plus the end-of-turn token), m_i = the
number of those tokens, x = the prompt rendered with the chat template. 0 for the reference itself;
> 0: the checkpoint gives its answers a higher per-token log-likelihood than the reference (it moved
towards the data), < 0: lower. The paper uses it as the "LLM deviation" of a fine-tuned model from its
base; a smaller magnitude means the model stayed closer to the base.

Datasets: a JSON list or JSONL of records in alpaca format (``instruction``, optional ``input``,
``output``, optional ``system``), sharegpt / OpenAI messages (``conversations`` or ``messages``; the
last assistant turn is y, the turns before it form x; only single-turn records are used), or
preference records (``chosen`` is y).
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path

from .errors import EvalError


@dataclass
class DeviationSample:
    prompt: str
    answer: str
    system: str | None = None


def _record_pair(record: dict, where: str) -> DeviationSample | None:
    if not isinstance(record, dict):
        raise EvalError(f"{where}: expected an object, got {type(record).__name__}")
    if "instruction" in record and "output" in record:
        prompt = str(record["instruction"])
        if record.get("input"):
            prompt = prompt + "\n" + str(record["input"])
        output = record["output"]
        if isinstance(output, list):  # ranking alpaca: [chosen, rejected]
            output = output[0]
        return DeviationSample(prompt, str(output), record.get("system") or None)
    turns = record.get("messages") or record.get("conversations")
    if isinstance(turns, list) and turns:
        norm = []
        for t in turns:
            role = t.get("role", t.get("from"))
            content = t.get("content", t.get("value"))
            role = {"human": "user", "gpt": "assistant", "model": "assistant"}.get(role, role)
            norm.append((role, content))
        system = next((c for r, c in norm if r == "system"), None) or record.get("system")
        norm = [(r, c) for r, c in norm if r != "system"]
        chosen = record.get("chosen")
        if chosen is not None:
            answer = chosen.get("value", chosen.get("content")) if isinstance(chosen, dict) else str(chosen)
            users = [c for r, c in norm if r == "user"]
            if len(norm) == 1 and users:
                return DeviationSample(users[0], answer, system)
            return None
        if len(norm) == 2 and norm[0][0] == "user" and norm[1][0] == "assistant":
            return DeviationSample(norm[0][1], norm[1][1], system)
        return None
    if "prompt" in record and ("response" in record or "output" in record or "completion" in record):
        answer = record.get("response", record.get("output", record.get("completion")))
        return DeviationSample(str(record["prompt"]), str(answer), record.get("system") or None)
    raise EvalError(
        f"{where}: record has none of the known layouts (alpaca instruction/input/output, messages or "
        f"conversations, prompt/response); keys: {', '.join(map(str, record))}"
    )


def load_deviation_data(path: str, limit: int | None = None, seed: int = 42) -> list[DeviationSample]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise EvalError(f"deviation dataset {path} does not exist")
    text = file.read_text(encoding="utf-8-sig")
    records = []
    if file.suffix.lower() == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((f"{file}:line {lineno}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise EvalError(f"{file}: line {lineno} is not valid JSON ({exc.msg})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvalError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, list):
            raise EvalError(f"{file}: expected a JSON list of records")
        records = [(f"{file}: record {i}", r) for i, r in enumerate(data)]
    samples = [s for s in (_record_pair(r, where) for where, r in records) if s is not None and s.answer.strip()]
    if limit is not None and len(samples) > limit:
        keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
        samples = [samples[i] for i in keep]
    if not samples:
        raise EvalError(f"deviation dataset {path}: no usable (prompt, answer) pairs")
    return samples


def m_theta(policy: list[float], reference: list[float], lengths: list[int]) -> float:
    """Eq. 8: mean over samples of (log pi_theta(y|x) - log pi_ref(y|x)) / m -- the training metric's own
    implementation (``llamafactory_minor_core.metrics``; imported here, so that loading data needs no torch)."""
    from llamafactory_minor_core.metrics import m_theta as core_m_theta

    return core_m_theta(policy, reference, lengths)


# ----------------------------------------------------------------------------------------------------
# the pass over the dataset, per model, and the m_theta of each checkpoint against its reference


def run_deviation(cfg, store, unit, samples: list[DeviationSample], backend, encoder, log) -> None:
    """The answer log-probs of every pair under ``unit``'s model, written to its ``deviation.json`` (store.py)."""
    import time

    from .scoring import progress_bar

    pairs, lengths = [], []
    for s in samples:
        x, y = encoder.encode_pair(s.prompt, s.answer, s.system)
        y = y[: cfg.deviation_max_length]
        x = x[-max(1, cfg.deviation_max_length - len(y)) :] if len(x) + len(y) > cfg.deviation_max_length else x
        pairs.append((x, y))
        lengths.append(len(y))
    bar, tick = progress_bar(cfg, len(pairs), f"{unit.ckpt.name} | deviation")
    t0 = time.time()
    try:
        logps = backend.sequence_logprobs(pairs, progress=tick)
    finally:
        if bar is not None:
            bar.close()
    store.write_deviation(
        unit,
        {
            "model": unit.ckpt.name,
            "n": len(pairs),
            "logprobs": [round(v, 6) for v in logps],
            "lengths": lengths,
            "mean_logprob_per_token": sum(v / m for v, m in zip(logps, lengths)) / len(lengths),
            "elapsed_s": round(time.time() - t0, 2),
        },
    )
    log(f"[deviation] {unit.ckpt.name}: answer log-probs of {len(pairs)} pairs written")


def deviation_values(cfg, store, units, refs, errors: list[str]) -> dict[str, dict[str, object]]:
    """m_theta of every checkpoint whose own and reference passes are stored; a tokenizer mismatch is added to
    ``errors``."""
    out: dict[str, dict[str, object]] = {}
    for ckpt in cfg.checkpoints:
        ref = refs.get(ckpt.name)
        unit = next(u for u in units if u.is_checkpoint and u.ckpt.name == ckpt.name)
        if ref is None or not store.deviation_done(unit) or not store.deviation_done(ref):
            continue
        mine, theirs = store.read_deviation(unit), store.read_deviation(ref)
        if mine["lengths"] != theirs["lengths"]:
            errors.append(
                f"{ckpt.name}: m_theta needs the same tokenizer as its reference {ref.ckpt.name} "
                "(answer lengths differ)"
            )
            continue
        value = 0.0 if ref is unit else m_theta(mine["logprobs"], theirs["logprobs"], mine["lengths"])
        out[ckpt.name] = {"m_theta": value, "reference": ref.ckpt.name, "n": mine["n"]}
    return out

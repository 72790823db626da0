"""Answering and scoring the questions of one (checkpoint, benchmark) pair.

Each question becomes its benchmark's prompt (with few-shot turns), the backend answers (generation, or for
multiple choice option likelihood: the most likely of the letters A-D after the prompt), the benchmark's
``score`` reads a generated answer, and its ``metrics`` summarise the records (benchmarks.py). Records are
stored chunk by chunk, so an interrupted pair resumes from its answered questions (store.py).
"""

import math
import sys
import time
from collections.abc import Callable

from . import __version__
from .config import RunConfig
from .data import shots_for
from .parsing import LETTERS
from .plan import Unit
from .samples import BenchmarkData, Sample
from .store import ResultStore


def progress_bar(cfg: RunConfig, total: int, desc: str):
    """(bar, tick) of a tqdm bar on stderr, or (None, None) with ``--no-progress`` or nothing to do."""
    if not cfg.progress or total == 0:
        return None, None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None, None
    bar = tqdm(total=total, desc=desc, unit="q", dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    return bar, bar.update


def answer_mode(cfg: RunConfig, d: BenchmarkData) -> str:
    """``--mc-mode`` for multiple choice; benchmarks with one answer mode (GSM8K: generation) use it."""
    return cfg.mc_mode if cfg.mc_mode in d.info.modes else d.info.modes[0]


def run_pair(
    cfg: RunConfig, store: ResultStore, unit: Unit, d: BenchmarkData, backend, encoder, log: Callable[[str], None]
) -> None:
    name = d.info.name
    folder, done = store.start_pair(unit, name, d.samples)
    todo = [s for s in d.samples if s.key not in done]
    if done:
        log(f"[resume] {unit.ckpt.name} | {name}: {len(done)} answered before, {len(todo)} to go")
    mode = answer_mode(cfg, d)
    t0 = time.time()
    bar, tick = progress_bar(cfg, len(todo), f"{unit.ckpt.name} | {d.info.title}")
    chunk = max(cfg.batch_size * 4, 32)
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            records = answer(cfg, part, d, mode, backend, encoder, tick)
            store.append_answered(folder, records)
            for rec in records:
                done[rec["key"]] = rec
    finally:
        if bar is not None:
            bar.close()
    records = [done[s.key] for s in d.samples]
    metrics = d.info.metrics(records)
    metrics.update(
        checkpoint=unit.ckpt.name,
        benchmark=name,
        title=d.info.title,
        split=d.split,
        pool=d.n_pool,
        mode=mode,
        few_shot=cfg.few_shot,
        backend=backend.describe(),
        elapsed_s=round(time.time() - t0, 2),
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        version=__version__,
    )
    store.finish_pair(folder, records, metrics)
    log(
        f"[result] {unit.ckpt.name} | {d.info.title}: {100 * metrics['accuracy']:.2f}% micro, "
        f"{100 * metrics['macro_accuracy']:.2f}% macro over {metrics['n']} ({mode}"
        + (f", {metrics['unparsed']} unparsed" if mode == "generation" else "")
        + ")"
    )


def answer(cfg: RunConfig, samples: list[Sample], d: BenchmarkData, mode: str, backend, encoder, tick) -> list[dict]:
    """One record per question: its prompt and model input, the answer, the parsed answer and whether it is right."""
    info = d.info
    prompts, inputs, ids = [], [], []
    for s in samples:
        prompt = info.prompt(s.question, s.options)
        shots = [(info.prompt(x.question, x.options), info.shot_answer(x)) for x in shots_for(s, d, cfg.few_shot)]
        text, tok = encoder.encode(prompt, shots)
        prompts.append(prompt)
        inputs.append(text)
        ids.append(tok)
    records = []
    if mode == "likelihood":
        scores = backend.choice_logprobs(ids, encoder.letter_token_ids(), progress=tick)
        for s, prompt, text, sc in zip(samples, prompts, inputs, scores):
            best = max(range(len(LETTERS)), key=lambda i: (sc[i], -i))
            parsed = LETTERS[best]
            records.append(
                record(
                    cfg,
                    s,
                    prompt,
                    text,
                    parsed,
                    parsed,
                    parsed == s.gold,
                    mode,
                    {k: round(v, 6) if math.isfinite(v) else None for k, v in zip(LETTERS, sc)},
                )
            )
        return records
    outputs = backend.generate(ids, getattr(cfg, info.max_new_tokens_setting), progress=tick)
    for s, prompt, text, output in zip(samples, prompts, inputs, outputs):
        scored = info.score(output, s)
        rec = record(cfg, s, prompt, text, output, scored.pop("parsed"), scored.pop("correct"), mode)
        rec.update(scored)  # parser, parse_rule; GSM8K: parsed_flexible, correct_flexible
        records.append(rec)
    return records


def record(cfg: RunConfig, s: Sample, prompt, text, output, parsed, correct, mode, scores=None) -> dict:
    rec = {
        "key": s.key,
        "benchmark": s.benchmark,
        "subject": s.subject,
        "id": s.id,
        "prompt": prompt,
        "input": text,
        "output": output,
        "parsed": parsed,
        "gold": s.gold,
        "correct": bool(correct),
        "mode": mode,
    }
    if s.category:
        rec["category"] = s.category
    if scores is not None:
        rec["scores"] = scores
    if cfg.few_shot:
        rec["few_shot"] = cfg.few_shot
    return rec

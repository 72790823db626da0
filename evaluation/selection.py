"""Which questions are asked: ``--subjects``, ``--limit`` / ``--limit-per-subject`` (a seeded sample or the
first N) and the few-shot examples of each question."""

import random
from collections.abc import Sequence

from .errors import EvalError
from .samples import BenchmarkData, Sample

LIMIT_MODES = ("random", "first")


def select(
    samples: list[Sample],
    benchmark: str,
    subjects: Sequence[str] | None = None,
    limit: int | None = None,
    limit_per_subject: int | None = None,
    seed: int = 42,
    limit_mode: str = "random",
) -> list[Sample]:
    """Filter by subject, then keep ``limit_per_subject`` per subject and ``limit`` in all: a seeded
    uniform sample (``limit_mode="random"``) or the first ones in file order (``"first"``). The chosen
    samples keep file order either way."""
    if limit_mode not in LIMIT_MODES:
        raise EvalError(f"limit_mode must be one of {', '.join(LIMIT_MODES)}, got {limit_mode!r}")
    if subjects:
        available = sorted({s.subject for s in samples})
        wanted = []
        for subject in subjects:
            if subject not in available:
                raise EvalError(
                    f"{benchmark}: unknown subject {subject!r}; subjects in this split: {', '.join(available)}"
                )
            wanted.append(subject)
        samples = [s for s in samples if s.subject in set(wanted)]
    if limit_per_subject is not None:
        by_subject: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            by_subject.setdefault(s.subject, []).append(i)
        keep = []
        for subject in sorted(by_subject):
            idx = by_subject[subject]
            if len(idx) <= limit_per_subject:
                keep.extend(idx)
            elif limit_mode == "first":
                keep.extend(idx[:limit_per_subject])
            else:
                keep.extend(random.Random(f"{seed}/{subject}").sample(idx, limit_per_subject))
        samples = [samples[i] for i in sorted(keep)]
    if limit is not None and len(samples) > limit:
        if limit_mode == "first":
            samples = samples[:limit]
        else:
            keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
            samples = [samples[i] for i in keep]
    if not samples:
        raise EvalError(f"{benchmark}: no questions left after filtering (subjects={subjects}, limit={limit})")
    return samples


def shots_for(sample: Sample, data: BenchmarkData, k: int) -> list[Sample]:
    """Up to ``k`` few-shot examples of the sample's subject, in file order, never the sample itself."""
    if k <= 0:
        return []
    pool = data.shots.get(sample.subject) or (
        data.shots.get(data.info.name, []) if data.info.layout == "single" else []
    )
    return [s for s in pool if s.question != sample.question][:k]

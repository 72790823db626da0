"""Accuracy of one (checkpoint, benchmark) pair: micro and macro, per subject and C-Eval category,
unparsed counts, which parser rule answered, and 95% confidence intervals.

* micro accuracy = correct / all questions; its 95% interval is the **Wilson score interval** of a
  binomial proportion (z = 1.96), which stays inside [0, 1] and is sensible for small n.
* macro accuracy = mean of the per-subject accuracies; its 95% interval is a **percentile bootstrap**
  stratified by subject: each subject's questions are resampled with replacement (2000 resamples,
  seed 0; resampling n 0/1 outcomes with replacement is a binomial draw, which is how it is computed).
* GSM8K has two answers per output (strict and flexible, see parsing.py); ``accuracy`` is the strict
  one, ``flexible`` holds the same numbers for the flexible one.
"""

import math
from collections import OrderedDict
from collections.abc import Sequence

Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
CI_METHODS = {
    "accuracy": "Wilson score interval, 95%",
    "macro_accuracy": f"percentile bootstrap within subjects, {BOOTSTRAP_RESAMPLES} resamples, seed 0, 95%",
}


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 0.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if correct == 0 else lo), (1.0 if correct == n else hi)  # exact at the ends (no 5e-17)


def bootstrap_macro_interval(
    groups: Sequence[tuple[int, int]], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the mean of per-group accuracies; ``groups`` = [(correct, n)]."""
    groups = [(c, n) for c, n in groups if n > 0]
    if not groups:
        return 0.0, 0.0
    import numpy as np

    rng = np.random.RandomState(seed)
    draws = np.zeros(resamples)
    for c, n in groups:
        draws += rng.binomial(n, c / n, size=resamples) / n
    draws /= len(groups)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def _accumulate(records: list[dict], correct_key: str, parsed_key: str):
    subjects: OrderedDict[str, dict[str, object]] = OrderedDict()
    categories: OrderedDict[str, dict[str, object]] = OrderedDict()
    for rec in records:
        ok = bool(rec.get(correct_key))
        sub = subjects.setdefault(rec["subject"], {"n": 0, "correct": 0, "unparsed": 0})
        sub["n"] += 1
        sub["correct"] += int(ok)
        sub["unparsed"] += int(rec.get(parsed_key) is None)
        if rec.get("category"):
            cat = categories.setdefault(rec["category"], {"n": 0, "correct": 0, "subjects": OrderedDict()})
            cat["n"] += 1
            cat["correct"] += int(ok)
            s = cat["subjects"].setdefault(rec["subject"], [0, 0])
            s[0] += int(ok)
            s[1] += 1
    for entry in subjects.values():
        entry["accuracy"] = entry["correct"] / entry["n"] if entry["n"] else 0.0
    for entry in categories.values():
        entry["accuracy"] = entry["correct"] / entry["n"] if entry["n"] else 0.0
        per = [c / n for c, n in entry["subjects"].values()]
        entry["macro_accuracy"] = sum(per) / len(per)
        entry["n_subjects"] = len(per)
        entry["ci95"] = list(wilson_interval(entry["correct"], entry["n"]))
        entry["macro_ci95"] = list(bootstrap_macro_interval(list(entry["subjects"].values())))
        del entry["subjects"]
    n = sum(s["n"] for s in subjects.values())
    correct = sum(s["correct"] for s in subjects.values())
    out = {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "macro_accuracy": sum(s["accuracy"] for s in subjects.values()) / len(subjects) if subjects else 0.0,
        "unparsed": sum(s["unparsed"] for s in subjects.values()),
        "ci95": list(wilson_interval(correct, n)),
        "macro_ci95": list(bootstrap_macro_interval([(s["correct"], s["n"]) for s in subjects.values()])),
    }
    return out, subjects, categories


def compute_metrics(records: list[dict]) -> dict[str, object]:
    """Micro accuracy (share of all questions), macro accuracy (mean of the per-subject accuracies),
    unparsed count, 95% intervals, per subject and per category; GSM8K also ``flexible``."""
    top, subjects, categories = _accumulate(records, "correct", "parsed")
    top.update(
        n_subjects=len(subjects), subjects=dict(subjects), categories=dict(categories), ci_method=dict(CI_METHODS)
    )
    parsers = sorted({str(r["parser"]) for r in records if r.get("parser")})
    if parsers:
        top["parser"] = parsers[0] if len(parsers) == 1 else parsers
    rules: dict[str, int] = {}
    for r in records:
        if r.get("parse_rule"):
            rules[r["parse_rule"]] = rules.get(r["parse_rule"], 0) + 1
    if rules:
        top["parse_rules"] = rules
    if any("correct_flexible" in r for r in records):
        flex, _, _ = _accumulate(records, "correct_flexible", "parsed_flexible")
        flex["parser"] = "flexible (lm-eval)"
        top["flexible"] = flex
    return top


def chance_level(benchmark_kind: str) -> float | None:
    """Accuracy of guessing: 1/4 for four-option multiple choice, none for GSM8K."""
    return 0.25 if benchmark_kind == "mc" else None

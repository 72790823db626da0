"""``llamafactory-minor plot RUN_DIR... --metrics m_theta normalized_rewards/chosen``: overlay training runs.

Reads each run's ``trainer_state.json`` (``log_history``, written by every LF training run; falls back to
``trainer_log.jsonl``, which LF's LogCallback writes while a run is still going), and draws one panel per
metric with one line per run, as the papers' figures do (m_theta per step for SFT / SFT using DPO / MinorSFT;
the beta-free rewards of chosen and rejected answers for DPO / DPOP / MinorDPO). Legends come from the run's
``minor_run.json`` (written by ``llamafactory-minor sweep``: method, lr, beta ...) or else the folder name, or
``--labels``. Writes one PNG (``--out``, default ``runs.png``) and prints a table of each metric's first and last
value per run.
"""

from __future__ import annotations

import json
import math
import os

RUN_INFO = "minor_run.json"


class PlotError(ValueError):
    """Bad input for the plot command: the message names the run or the metric."""


def json_lines(path: str):
    """The JSON objects of a JSONL file, skipping a line that is not one (e.g. being written)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                yield row


HISTORY_FILES = ("trainer_state.json", "trainer_log.jsonl")  # read in this order by read_history


def has_history(run_dir: str) -> bool:
    """Whether ``run_dir`` holds a training log :func:`read_history` reads."""
    return any(os.path.isfile(os.path.join(run_dir, name)) for name in HISTORY_FILES)


def read_history(run_dir: str) -> list[dict]:
    """The logged training steps of one LF run (``loss`` entries of ``log_history``), in step order."""
    state, live = (os.path.join(run_dir, name) for name in HISTORY_FILES)
    if os.path.isfile(state):
        try:
            with open(state, encoding="utf-8") as f:
                history = json.load(f).get("log_history") or []
        except (OSError, ValueError) as e:
            raise PlotError(f"{state} cannot be read ({e})") from None
        return [h for h in history if "step" in h and "train_runtime" not in h and "eval_loss" not in h]
    if os.path.isfile(live):
        return [dict(row, step=row["current_steps"]) for row in json_lines(live) if "current_steps" in row]
    raise PlotError(f"{run_dir} is not an LF training run (no trainer_state.json or trainer_log.jsonl)")


def run_label(run_dir: str) -> str:
    info = os.path.join(run_dir, RUN_INFO)
    if os.path.isfile(info):
        try:
            with open(info, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("name"):
                return str(data["name"])
            values = data.get("values") or {}
            if values:
                return " ".join(f"{k}={v}" if k not in ("method",) else str(v) for k, v in values.items())
        except (OSError, ValueError):
            pass
    return os.path.basename(os.path.normpath(run_dir))


def _value(h: dict, metric: str):
    """A logged metric, or a derived margin: ``<prefix>/margin`` = ``<prefix>/chosen - <prefix>/rejected`` when not
    logged itself (``normalized_rewards/margin``: the beta-free margin of the MinorDPO paper's figures)."""
    if metric in h or not metric.endswith("/margin"):
        return h.get(metric)
    prefix = metric[: -len("/margin")]
    chosen, rejected = h.get(prefix + "/chosen"), h.get(prefix + "/rejected")
    if isinstance(chosen, (int, float)) and isinstance(rejected, (int, float)):
        return chosen - rejected
    return None


def series(history: list[dict], metric: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for h in history:
        v = _value(h, metric)
        if isinstance(v, (int, float)) and math.isfinite(v):
            steps.append(int(h["step"]))
            values.append(float(v))
    return steps, values


def plot_runs(
    run_dirs: list[str],
    metrics: list[str],
    out: str = "runs.png",
    labels: list[str] | None = None,
    title: str | None = None,
) -> dict:
    """Draw the PNG; returns {label: {metric: (first, last, n_points)}}."""
    if not run_dirs:
        raise PlotError("give at least one run folder")
    if not metrics:
        raise PlotError("give at least one metric, e.g. --metrics loss m_theta")
    if labels and len(labels) != len(run_dirs):
        raise PlotError(f"--labels gives {len(labels)} names for {len(run_dirs)} runs")
    runs = [(labels[i] if labels else run_label(d), read_history(d)) for i, d in enumerate(run_dirs)]
    available = sorted({k for _, h in runs for row in h for k, v in row.items() if isinstance(v, (int, float))})
    for m in metrics:
        if not any(series(h, m)[0] for _, h in runs):
            raise PlotError(f"no run logged `{m}`; logged metrics: {', '.join(k for k in available if k != 'step')}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    summary = {}
    for ax, metric in zip(axes[0], metrics):
        for label, history in runs:
            steps, values = series(history, metric)
            if steps:
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
                summary.setdefault(label, {})[metric] = (values[0], values[-1], len(values))
        if metric in ("m_theta",) or metric.startswith(("normalized_rewards/", "rewards/")):
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(out)}")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, out)
    return summary


def format_summary(summary: dict, metrics: list[str]) -> str:
    lines = ["| run | " + " | ".join(f"{m} (first -> last)" for m in metrics) + " |", "|---|" + "---|" * len(metrics)]
    for label, per_metric in summary.items():
        cells = []
        for m in metrics:
            if m in per_metric:
                first, last, n = per_metric[m]
                cells.append(f"{first:.4g} -> {last:.4g} ({n} pts)")
            else:
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score_rewards(path: str) -> dict[str, list[float]]:
    """Per-row rewards ``r = sum_logp / num_tokens`` (PoFT Eq. 6's length-normalised log-likelihood) of a score
    folder (``llamafactory-minor score``; per section / model) or of one score-cache entry (``<cache>/<key>/``)."""
    from ..scores.file_format import MANIFEST, ScoreFileError, read_score_folder

    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, MANIFEST)):
        rows_path = os.path.join(path, "scores.jsonl")
        if not os.path.isfile(rows_path):
            raise PlotError(f"{path} is not a score-cache folder (no scores.jsonl) nor a score folder (no {MANIFEST})")
        out = [row["sum_logp"] / row["num_tokens"] for row in json_lines(rows_path) if row.get("num_tokens")]
        return {os.path.basename(os.path.normpath(path)): out}
    try:
        _, sections = read_score_folder(path)
    except ScoreFileError as e:
        raise PlotError(str(e)) from None
    out = {}
    for sec in sections:
        label = f"{os.path.basename(str(sec['model']))} ({sec['template']}, {sec['split']})"
        out[label] = [r["sum_logp"] / r["num_tokens"] for r in sec["rows"].values() if r["num_tokens"]]
    return out


def plot_score_histograms(
    paths: list[str],
    out: str = "scores.png",
    labels: list[str] | None = None,
    bins: int = 40,
    title: str | None = None,
) -> dict:
    """Overlaid, density-normalised histograms of the rewards of each score folder / cache folder (as PoFT's
    Fig. 2 and 3d show the preference-score distributions of clean and noisy data); returns per-series stats."""
    if labels and len(labels) != len(paths):
        raise PlotError(f"--labels gives {len(labels)} names for {len(paths)} score folders")
    series_ = []
    for i, p in enumerate(paths):
        sections = score_rewards(p)
        for label, values in sections.items():
            if labels:  # the user's name for the source; its sections (if several) keep theirs after it
                label = labels[i] if len(sections) == 1 else f"{labels[i]}: {label}"
            series_.append((label, values))
    if not series_ or not any(v for _, v in series_):
        raise PlotError("no scores to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = min(min(v) for _, v in series_ if v)
    hi = max(max(v) for _, v in series_ if v)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    stats = {}
    for label, values in series_:
        if values:
            ax.hist(values, bins=bins, range=(lo, hi), density=True, alpha=0.5, label=f"{label} (n={len(values)})")
            ordered = sorted(values)
            stats[label] = {"n": len(values), "mean": sum(values) / len(values), "median": ordered[len(values) // 2]}
    ax.set_xlabel("r = log p(y|x) / |y|  (per-token log-likelihood)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".tmp-{os.getpid()}-{os.path.basename(out)}")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, out)
    return stats

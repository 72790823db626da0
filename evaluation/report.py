"""Summary outputs: CSV, markdown table (rows = checkpoints, columns = benchmarks, like the MinorSFT
paper's Fig. 2a), a PNG bar chart (like its Fig. 2b and the MinorDPO paper's Fig. 6), subjects.csv."""

import csv
import io
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text


def _pct(value: Optional[float]) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _cell(metrics: Optional[dict], table_metric: str) -> str:
    if not metrics:
        return "-"
    if table_metric == "micro":
        return _pct(metrics["accuracy"])
    if table_metric == "macro":
        return _pct(metrics["macro_accuracy"])
    return f"{_pct(metrics['accuracy'])} ({_pct(metrics['macro_accuracy'])})"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def write_reports(
    out: Path,
    rows: List[dict],
    benchmarks: List[str],
    titles: Dict[str, str],
    mc_mode: str = "generation",
    table_metric: str = "micro",
    chart: bool = True,
    deviation_data: Optional[str] = None,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, object]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    has_dev = deviation_data is not None
    meta_keys: List[str] = []
    for row in rows:
        for key in row["checkpoint"].meta:
            if key not in meta_keys:
                meta_keys.append(key)

    # ---- summary.csv (wide) -------------------------------------------------------------------------
    header = ["checkpoint", "path", "kind", "base"] + meta_keys
    for name in benchmarks:
        header += [name, f"{name}_macro", f"{name}_n", f"{name}_correct", f"{name}_unparsed", f"{name}_mode"]
    if has_dev:
        header += ["m_theta", "m_theta_reference", "m_theta_n"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    summary_rows = []
    for row in rows:
        ckpt = row["checkpoint"]
        line = [ckpt.name, ckpt.path, ckpt.kind, ckpt.base or ""] + [ckpt.meta.get(k, "") for k in meta_keys]
        entry = {"checkpoint": ckpt.name, "path": ckpt.path, "kind": ckpt.kind, "base": ckpt.base, "meta": ckpt.meta,
                 "benchmarks": {}}
        for name in benchmarks:
            m = row["metrics"].get(name)
            if m:
                line += [_pct(m["accuracy"]), _pct(m["macro_accuracy"]), m["n"], m["correct"], m["unparsed"], m["mode"]]
                entry["benchmarks"][name] = {k: m[k] for k in ("accuracy", "macro_accuracy", "n", "correct",
                                                               "unparsed", "mode", "split")}
            else:
                line += ["", "", "", "", "", ""]
        dev = row.get("deviation")
        if has_dev:
            line += [f"{dev['m_theta']:.6f}" if dev else "", dev["reference"] if dev else "", dev["n"] if dev else ""]
            entry["m_theta"] = dev
        writer.writerow(line)
        summary_rows.append(entry)
    atomic_write_text(out / "summary.csv", buf.getvalue())

    # ---- subjects.csv (long) -----------------------------------------------------------------------
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["checkpoint", "benchmark", "level", "subject", "n", "correct", "accuracy", "unparsed"])
    for row in rows:
        for name in benchmarks:
            m = row["metrics"].get(name)
            if not m:
                continue
            for subject, s in m["subjects"].items():
                writer.writerow([row["checkpoint"].name, name, "subject", subject, s["n"], s["correct"],
                                 _pct(s["accuracy"]), s.get("unparsed", "")])
            for cat, s in (m.get("categories") or {}).items():
                writer.writerow([row["checkpoint"].name, name, "category", cat, s["n"], s["correct"],
                                 _pct(s["accuracy"]), ""])
    atomic_write_text(out / "subjects.csv", buf.getvalue())

    # ---- summary.md --------------------------------------------------------------------------------
    modes = {}
    for row in rows:
        for name, m in row["metrics"].items():
            modes.setdefault(name, set()).add(m["mode"])
    cols = []
    for name in benchmarks:
        title = titles.get(name, name)
        mode = modes.get(name)
        if mode and len(mode) == 1:
            title += " (gen)" if "generation" in mode else " (lik)"
        cols.append(title)
    lines = ["| checkpoint | " + " | ".join(_md_escape(c) for c in cols) + (" | m_theta |" if has_dev else " |")]
    lines.append("|---|" + "---:|" * len(cols) + ("---:|" if has_dev else ""))
    for row in rows:
        cells = [_cell(row["metrics"].get(name), table_metric) for name in benchmarks]
        if has_dev:
            dev = row.get("deviation")
            cells.append(f"{dev['m_theta']:.4f}" if dev else "-")
        lines.append(f"| {_md_escape(row['checkpoint'].name)} | " + " | ".join(cells) + " |")
    metric_text = {
        "micro": "micro accuracy (% of all questions answered correctly)",
        "macro": "macro accuracy (mean over subjects of the per-subject accuracy, %)",
        "both": "micro accuracy % (macro accuracy %)",
    }[table_metric]
    notes = [f"Cells: {metric_text}. '-' = not evaluated (yet)."]
    mc_names = [n for n in benchmarks if n != "gsm8k"]
    if mc_names:
        notes.append(
            "(gen) = answered by generation: the first standalone A-D letter of the output, an output without "
            "one is wrong (unparsed); (lik) = option likelihood: the most likely of the letters A-D. "
            "GSM8K: generation, the number after 'So the answer is'."
            if mc_mode == "generation" or any("likelihood" in m for m in modes.values())
            else ""
        )
    if has_dev:
        refs = sorted({r["deviation"]["reference"] for r in rows if r.get("deviation")})
        notes.append(
            f"m_theta (MinorSFT Eq. 8): mean over the pairs of {os.path.basename(str(deviation_data))} of "
            f"(log pi_theta(y|x) - log pi_ref(y|x)) / |y|, against {', '.join(refs) if refs else 'the reference'}."
        )
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n\n" + "\n".join(n for n in notes if n) + "\n")
    atomic_write_json(out / "summary.json", {"rows": summary_rows, "benchmarks": benchmarks})

    # ---- summary.png -------------------------------------------------------------------------------
    if chart:
        try:
            png = bar_chart(rows, benchmarks, titles, table_metric, has_dev)
            if png is not None:
                atomic_write_bytes(out / "summary.png", png)
        except ImportError:
            if log:
                log("[warn] matplotlib is not installed: no summary.png")
    return {"rows": summary_rows, "output_dir": str(out)}


def bar_chart(rows: List[dict], benchmarks: List[str], titles: Dict[str, str], table_metric: str = "micro",
              has_dev: bool = False) -> Optional[bytes]:
    """Grouped bars: one group per benchmark, one bar per checkpoint (accuracy %); m_theta beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "macro_accuracy" if table_metric == "macro" else "accuracy"
    names = [r["checkpoint"].name for r in rows]
    if not rows or (not benchmarks and not has_dev):
        return None
    dev_values = [r["deviation"]["m_theta"] if r.get("deviation") else None for r in rows]
    show_dev = has_dev and any(v is not None for v in dev_values)
    n_groups, n_bars = max(1, len(benchmarks)), max(1, len(rows))
    width_main = max(6.0, 1.0 + n_groups * (0.5 + 0.35 * n_bars))
    fig_w = width_main + (max(3.0, 0.5 + 0.45 * n_bars) if show_dev else 0)
    ratios = [width_main] + ([fig_w - width_main] if show_dev else [])
    fig, axes = plt.subplots(1, len(ratios), figsize=(fig_w, 4.8), gridspec_kw={"width_ratios": ratios}, squeeze=False)
    ax = axes[0][0]
    cmap = plt.get_cmap("tab10" if n_bars <= 10 else "tab20")
    bar_w = 0.8 / n_bars
    for j, row in enumerate(rows):
        xs, ys = [], []
        for i, name in enumerate(benchmarks):
            m = row["metrics"].get(name)
            if m:
                xs.append(i - 0.4 + bar_w * (j + 0.5))
                ys.append(100 * m[key])
        bars = ax.bar(xs, ys, bar_w, label=row["checkpoint"].name, color=cmap(j % cmap.N))
        if n_bars <= 8:
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(range(len(benchmarks)))
    ax.set_xticklabels([titles.get(b, b) for b in benchmarks])
    ax.set_ylabel(("macro" if table_metric == "macro" else "micro") + " accuracy (%)")
    ax.set_ylim(0, min(100, max([100 * r["metrics"][b][key] for r in rows for b in benchmarks if b in r["metrics"]]
                                 + [10]) * 1.15 + 2))
    ax.set_title("Accuracy by benchmark")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.1), ncol=min(4, n_bars), frameon=False)
    if show_dev:
        ax2 = axes[0][1]
        vals = [v if v is not None else 0.0 for v in dev_values]
        bars = ax2.bar(range(n_bars), vals, 0.7, color=[cmap(j % cmap.N) for j in range(n_bars)])
        ax2.bar_label(bars, labels=[f"{v:.3f}" if v is not None else "-" for v in dev_values], fontsize=7, padding=1)
        ax2.axhline(0, color="black", linewidth=0.8)
        ax2.margins(y=0.15)
        ax2.set_xticks(range(n_bars))
        ax2.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax2.set_title("Deviation m_theta")
        ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()

"""Summary outputs: CSV, markdown tables (rows = checkpoints, columns = benchmarks, like the MinorSFT
paper's Fig. 2a), a PNG bar chart (like its Fig. 2b and the MinorDPO paper's Fig. 6), subjects.csv.

Every multiple-choice benchmark shows micro (all questions) and macro (mean of the subject
accuracies) side by side, GSM8K its strict and flexible answers, each with its 95% interval (see
metrics.py); a "run details" table gives each cell's number of questions (and of the pool they were
drawn from), selection, split, answer mode and parser. The results are those of every
(checkpoint, benchmark) folder under the output folder, not only of the last command. The grid runs that
``skip_missing`` left out are recorded in the output folder (``skipped_runs.json``) and named in summary.md and
summary.json, also when ``--report-only`` rebuilds them.
"""

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path

from .benchmarks import BENCHMARKS
from .io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from .metrics import chance_level
from .models import Checkpoint, safe_name

CATEGORY_ORDER = ("STEM", "Social Sciences", "Humanities", "Other")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


LMEVAL_PREFIX = "lm-"  # lm-eval-harness task columns (lmeval_suite.py): lm-arc_challenge, lm-gsm8k ...


def _kind(name: str) -> str:
    if is_lmeval(name):
        return "lmeval"
    info = BENCHMARKS.get(name)
    return info.kind if info else "mc"


def is_lmeval(name: str) -> bool:
    return str(name).startswith(LMEVAL_PREFIX)


def _lmeval_order() -> dict[str, int]:
    from .lmeval_suite import POFT_SUITE

    return {t.column: 100 + i for i, t in enumerate(POFT_SUITE)}


def _result_folders(folder: Path) -> list[str]:
    """The finished result columns of a checkpoint folder: our benchmarks, then lm-eval tasks."""
    ours = [b for b in BENCHMARKS if (folder / b / "metrics.json").is_file()]
    order = _lmeval_order()
    lm = (
        sorted(
            (p.name for p in folder.iterdir() if p.is_dir() and is_lmeval(p.name) and (p / "metrics.json").is_file()),
            key=lambda b: (order.get(b, 999), b),
        )
        if folder.is_dir()
        else []
    )
    return ours + lm


# ----------------------------------------------------------------------------------------------------
# what a cell is made of


def parser_of(m: dict) -> str:
    """The parser that produced a cell (results of the first version carry no parser field)."""
    if m.get("mode") == "likelihood":
        return "likelihood (argmax of A-D)"
    parser = m.get("parser")
    if isinstance(parser, list):
        return "mixed: " + ", ".join(parser)
    if parser:
        return str(parser)
    return "first-letter-v1" if _kind(m.get("benchmark", "")) == "mc" else "cue-or-last-v1"


def _ci(m: dict, key: str) -> tuple[float, float] | None:
    ci = m.get("ci95" if key == "accuracy" else "macro_ci95")
    if ci:
        return ci[0], ci[1]
    if m.get("source") == "lm-eval":  # scores need not be 0/1 (TruthfulQA mc2): only the stored interval
        return None
    # results of the first version carry no interval: computed here from their counts
    if key == "accuracy" and m.get("n"):
        from .metrics import wilson_interval

        return wilson_interval(int(m["correct"]), int(m["n"]))
    if key == "macro_accuracy" and m.get("subjects"):
        from .metrics import bootstrap_macro_interval

        return bootstrap_macro_interval([(int(s["correct"]), int(s["n"])) for s in m["subjects"].values()])
    return None


def _value(m: dict, column: str) -> tuple[float | None, tuple[float, float] | None]:
    """(accuracy, interval) of one column: micro, macro, strict or flexible."""
    if column in ("micro", "strict", "lmeval"):
        return m["accuracy"], _ci(m, "accuracy")
    if column == "macro":
        return m.get("macro_accuracy"), _ci(m, "macro_accuracy")
    flex = m.get("flexible")
    if not flex:
        return None, None
    return flex["accuracy"], (tuple(flex["ci95"]) if flex.get("ci95") else None)


def _cell(m: dict | None, column: str, with_n: bool = False) -> str:
    if not m:
        return "-"
    value, ci = _value(m, column)
    if value is None:
        return "n/a"
    text = _pct(value)
    if ci:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    if with_n:
        text += f" n={m['n']}"
    return text


def columns_for(name: str, table_metric: str) -> list[str]:
    if _kind(name) == "lmeval":
        return ["lmeval"]  # one score: lm-eval's own metric (the title names it)
    if _kind(name) == "math":
        return ["strict", "flexible"]
    return {"micro": ["micro"], "macro": ["macro"], "both": ["micro", "macro"]}[table_metric]


def selection_of(m: dict) -> str:
    """How the questions of a cell were chosen: "100 of 1346 (seeded sample, seed 42)"."""
    fp = m.get("_fingerprint") or {}
    pool = m.get("pool")
    n = m["n"]
    if m.get("source") == "lm-eval":
        limit = fp.get("limit")
        subs = m.get("n_subjects") or 1
        return (
            f"{n} (--lmeval-limit {limit}: the first {limit} of each {'subject' if subs > 1 else 'task'})"
            if limit
            else f"all {n}"
        )
    limit, per = fp.get("limit"), fp.get("limit_per_subject")
    if not limit and not per:
        return f"all {n}"
    if limit and not per and (n < limit or pool == n):
        return f"all {n} (--limit {limit} is not smaller)"
    how = "first in file order" if fp.get("limit_mode") == "first" else f"seeded sample, seed {fp.get('seed', 42)}"
    caps = ", ".join(
        x for x in ((f"--limit {limit}" if limit else ""), (f"--limit-per-subject {per}" if per else "")) if x
    )
    return f"{n}{f' of {pool}' if pool else ''} ({caps}; {how})"


# ----------------------------------------------------------------------------------------------------
# collecting the results of an output folder


def collect_rows(
    out: Path, checkpoints: list[Checkpoint], benchmarks: list[str], deviation: dict[str, dict] | None = None
) -> tuple[list[dict], list[str]]:
    """Rows of the summary: the given checkpoints first, then every other checkpoint folder under
    ``out`` holding finished results; columns: the given benchmarks, then every other benchmark any
    of those folders holds. A cell's metrics.json gets its fingerprint.json as ``_fingerprint``."""
    out = Path(out)
    deviation = deviation or {}
    previous = {}
    if (out / "summary.json").is_file():
        try:
            previous = {r["checkpoint"]: r for r in read_json(out / "summary.json").get("rows", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            previous = {}
    names = list(benchmarks)
    known = {safe_name(c.name) for c in checkpoints}
    extra: list[tuple[str, Path]] = []
    if out.is_dir():
        for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            done = _result_folders(folder)
            if not done:
                continue
            if folder.name not in known:
                extra.append((folder.name, folder))
    ckpts = list(checkpoints)
    for _name, folder in extra:
        ckpts.append(_checkpoint_from_folder(folder, previous))
    rows = []
    for ckpt in ckpts:
        folder = out / safe_name(ckpt.name)
        cells = {}
        for name in _result_folders(folder) if folder.is_dir() else []:
            path = folder / name / "metrics.json"
            if path.is_file() and (folder / name / "samples.jsonl").is_file():
                m = read_json(path)
                m.setdefault("benchmark", name)
                fp_path = folder / name / "fingerprint.json"
                m["_fingerprint"] = read_json(fp_path) if fp_path.is_file() else {}
                cells[name] = m
                if name not in names:
                    names.append(name)
        dev = deviation.get(ckpt.name)
        if dev is None and ckpt.name in previous and previous[ckpt.name].get("m_theta"):
            dev = dict(previous[ckpt.name]["m_theta"], from_previous_summary=True)
        rows.append({"checkpoint": ckpt, "metrics": cells, "deviation": dev})
    order = {b: i for i, b in enumerate(BENCHMARKS)}
    order.update(_lmeval_order())
    given = [b for b in benchmarks]
    names = given + sorted((b for b in names if b not in given), key=lambda b: order.get(b, 99))
    return rows, names


def _checkpoint_from_folder(folder: Path, previous: dict[str, dict]) -> Checkpoint:
    name, ident = folder.name, {}
    for bench in _result_folders(folder):
        if (folder / bench / "metrics.json").is_file():
            name = read_json(folder / bench / "metrics.json").get("checkpoint", name)
            if (folder / bench / "fingerprint.json").is_file():
                ident = read_json(folder / bench / "fingerprint.json").get("checkpoint") or {}
            break
    prev = previous.get(name, {})
    adapter = ident.get("adapter")
    path = prev.get("path") or adapter or ident.get("model") or ""
    return Checkpoint(
        name=name,
        path=path,
        base=ident.get("model") if adapter else prev.get("base"),
        adapter=adapter,
        meta=dict(prev.get("meta") or {}),
    )


# ----------------------------------------------------------------------------------------------------
# grid runs left out by skip_missing: recorded in the output folder, where the reports read them

SKIPPED_FILE = "skipped_runs.json"


def store_skipped(out: str | Path, skipped: list[dict], config: str | None = None) -> None:
    """Record the grid runs ``skip_missing`` left out (``[{"name", "path"}]``, from the config ``config``) in
    ``out/skipped_runs.json`` (written atomically), which ``write_reports`` reads, also under ``--report-only``.
    The list replaces the one stored before; an empty list removes the file (every run of the grid was found)."""
    path = Path(os.path.expanduser(str(out))) / SKIPPED_FILE
    entries = [{"name": str(s["name"]), "path": str(s["path"])} for s in skipped]
    if entries:
        atomic_write_json(path, {"config": config, "skipped": entries})
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_skipped(out: str | Path, log: Callable[[str], None] | None = None) -> dict[str, object]:
    """``{"config", "skipped": [{"name", "path"}]}`` of ``out/skipped_runs.json`` (none recorded: an empty list)."""
    path = Path(os.path.expanduser(str(out))) / SKIPPED_FILE
    if not path.is_file():
        return {"config": None, "skipped": []}
    try:
        data = read_json(path)
        entries = [{"name": str(e["name"]), "path": str(e.get("path") or "")} for e in data["skipped"]]
        return {"config": data.get("config"), "skipped": entries}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if log:
            log(f"[warn] {path} is not readable ({type(exc).__name__}: {exc}); the skipped runs are not reported")
        return {"config": None, "skipped": []}


def skipped_markdown(skipped: list[dict], config: str | None = None, rows: list[dict] | None = None) -> str:
    """The summary's line naming the runs ``skip_missing`` left out (worded as ``sweep --evaluate``'s report.md);
    a run whose row holds results (of an earlier evaluation) says so. '' when none was left out."""
    if not skipped:
        return ""
    with_results = {r["checkpoint"].name for r in rows or [] if r.get("metrics") or r.get("deviation")}
    where = f" in {config}" if config else ""
    named = [
        f"{s['name']} (`{s['path']}`"
        + ("; its row holds results of an earlier evaluation" if s["name"] in with_results else "")
        + ")"
        for s in skipped
    ]
    return (
        f"Skipped: {len(skipped)} run(s) without a checkpoint were left out of the evaluation "
        f"(`skip_missing: true`{where}): " + ", ".join(named) + "."
    )


def write_reports(
    out: Path,
    rows: list[dict],
    benchmarks: list[str],
    titles: dict[str, str],
    mc_mode: str = "generation",
    table_metric: str = "both",
    chart: bool = True,
    deviation_data: str | None = None,
    log: Callable[[str], None] | None = None,
    skipped: dict[str, object] | None = None,
) -> dict[str, object]:
    """summary.csv, subjects.csv, summary.md, summary.json and summary.png of ``rows``. ``skipped``: the grid runs
    left out by skip_missing as ``read_skipped`` returns them (default: read from ``out``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    skipped = read_skipped(out, log) if skipped is None else skipped
    titles = {
        b: titles.get(b) or (BENCHMARKS[b].title if b in BENCHMARKS else _stored_title(rows, b)) for b in benchmarks
    }
    has_dev = deviation_data is not None or any(r.get("deviation") for r in rows)
    meta_keys: list[str] = []
    for row in rows:
        for key in row["checkpoint"].meta:
            if key not in meta_keys:
                meta_keys.append(key)

    # ---- summary.csv (wide) -------------------------------------------------------------------------
    header = ["checkpoint", "path", "kind", "base"] + meta_keys
    for name in benchmarks:
        header += [
            name,
            f"{name}_ci_low",
            f"{name}_ci_high",
            f"{name}_macro",
            f"{name}_macro_ci_low",
            f"{name}_macro_ci_high",
            f"{name}_n",
            f"{name}_pool",
            f"{name}_selection",
            f"{name}_correct",
            f"{name}_unparsed",
            f"{name}_mode",
            f"{name}_parser",
        ]
        if _kind(name) == "math":
            header += [
                f"{name}_flexible",
                f"{name}_flexible_ci_low",
                f"{name}_flexible_ci_high",
                f"{name}_flexible_unparsed",
            ]
    if has_dev:
        header += ["m_theta", "m_theta_reference", "m_theta_n"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    summary_rows = []
    for row in rows:
        ckpt = row["checkpoint"]
        line = [ckpt.name, ckpt.path, ckpt.kind, ckpt.base or ""] + [ckpt.meta.get(k, "") for k in meta_keys]
        entry = {
            "checkpoint": ckpt.name,
            "path": ckpt.path,
            "kind": ckpt.kind,
            "base": ckpt.base,
            "meta": ckpt.meta,
            "benchmarks": {},
        }
        for name in benchmarks:
            m = row["metrics"].get(name)
            width = 13 + (4 if _kind(name) == "math" else 0)
            if not m:
                line += [""] * width
                continue
            ci = _ci(m, "accuracy") or ("", "")
            mci = _ci(m, "macro_accuracy") or (None, None)
            line += [
                _pct(m["accuracy"]),
                _pct(ci[0]) if ci[0] != "" else "",
                _pct(ci[1]) if ci[1] != "" else "",
                _pct(m.get("macro_accuracy")),
                _pct(mci[0]),
                _pct(mci[1]),
                m["n"],
                m.get("pool", ""),
                selection_of(m),
                m["correct"],
                m["unparsed"],
                m["mode"],
                parser_of(m),
            ]
            flex = m.get("flexible") or {}
            if _kind(name) == "math":
                fci = flex.get("ci95") or (None, None)
                line += [_pct(flex.get("accuracy")), _pct(fci[0]), _pct(fci[1]), flex.get("unparsed", "")]
            entry["benchmarks"][name] = {
                k: m.get(k)
                for k in (
                    "accuracy",
                    "macro_accuracy",
                    "ci95",
                    "macro_ci95",
                    "n",
                    "pool",
                    "correct",
                    "unparsed",
                    "mode",
                    "split",
                    "flexible",
                    "categories",
                )
            }
            entry["benchmarks"][name]["parser"] = parser_of(m)
            entry["benchmarks"][name]["selection"] = selection_of(m)
            entry["benchmarks"][name].update(
                {k: m[k] for k in ("source", "title", "metric", "filter", "few_shot") if k in m and is_lmeval(name)}
            )
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
    writer.writerow(
        ["checkpoint", "benchmark", "level", "subject", "n", "correct", "accuracy", "unparsed", "macro_accuracy"]
    )
    for row in rows:
        for name in benchmarks:
            m = row["metrics"].get(name)
            if not m:
                continue
            for subject, s in m["subjects"].items():
                writer.writerow(
                    [
                        row["checkpoint"].name,
                        name,
                        "subject",
                        subject,
                        s["n"],
                        s["correct"],
                        _pct(s["accuracy"]),
                        s.get("unparsed", ""),
                        "",
                    ]
                )
            for cat, s in (m.get("categories") or {}).items():
                writer.writerow(
                    [
                        row["checkpoint"].name,
                        name,
                        "category",
                        cat,
                        s["n"],
                        s["correct"],
                        _pct(s["accuracy"]),
                        "",
                        _pct(s.get("macro_accuracy")),
                    ]
                )
    atomic_write_text(out / "subjects.csv", buf.getvalue())

    # ---- summary.md --------------------------------------------------------------------------------
    skipped_runs = list(skipped.get("skipped") or [])
    atomic_write_text(
        out / "summary.md",
        summary_markdown(rows, benchmarks, titles, table_metric, deviation_data, skipped=skipped),
    )
    atomic_write_json(
        out / "summary.json",
        {
            "rows": summary_rows,
            "benchmarks": benchmarks,
            "skipped": skipped_runs,
            "skipped_config": skipped.get("config"),
        },
    )

    # ---- summary.png -------------------------------------------------------------------------------
    if chart:
        try:
            png = bar_chart(rows, benchmarks, titles, table_metric, has_dev)
            if png is not None:
                atomic_write_bytes(out / "summary.png", png)
        except ImportError:
            if log:
                log("[warn] matplotlib is not installed: no summary.png")
        except Exception as exc:  # noqa: BLE001 - a chart problem must not lose the tables
            if log:
                log(f"[warn] summary.png not written ({type(exc).__name__}: {exc}); the tables are complete")
    return {"rows": summary_rows, "output_dir": str(out), "benchmarks": benchmarks, "skipped": skipped_runs}


def _stored_title(rows: list[dict], name: str) -> str:
    """The title a result carries (lm-eval columns: "arc_challenge 25-shot acc_norm [lm-eval]")."""
    found = sorted({r["metrics"][name].get("title") for r in rows if name in r["metrics"]} - {None})
    return " / ".join(found) if found else name


def _mode_tag(rows: list[dict], name: str) -> str:
    if is_lmeval(name):
        return ""  # the title names lm-eval's metric
    modes = {r["metrics"][name]["mode"] for r in rows if name in r["metrics"]}
    if len(modes) != 1:
        return ""
    return " (gen)" if "generation" in modes else " (lik)"


def _uniform_n(rows: list[dict], name: str) -> int | None:
    ns = {r["metrics"][name]["n"] for r in rows if name in r["metrics"]}
    return ns.pop() if len(ns) == 1 else None


def summary_markdown(
    rows: list[dict],
    benchmarks: list[str],
    titles: dict[str, str],
    table_metric: str = "both",
    deviation_data: str | None = None,
    skipped: dict[str, object] | None = None,
) -> str:
    """``skipped``: ``{"config", "skipped": [{"name", "path"}]}`` (``read_skipped``), named under the table."""
    has_dev = deviation_data is not None or any(r.get("deviation") for r in rows)
    label = {"micro": " micro", "macro": " macro", "strict": " strict", "flexible": " flexible", "lmeval": ""}
    cols, heads = [], []
    mixed_n = []
    for name in benchmarks:
        n = _uniform_n(rows, name)
        if n is None and any(name in r["metrics"] for r in rows):
            mixed_n.append(name)
        for column in columns_for(name, table_metric):
            cols.append((name, column))
            heads.append(f"{titles[name]}{label[column]}{_mode_tag(rows, name)}" + (f", n={n}" if n else ""))
    lines = ["| checkpoint | " + " | ".join(_md_escape(h) for h in heads) + (" | m_theta |" if has_dev else " |")]
    lines.append("|---|" + "---:|" * len(cols) + ("---:|" if has_dev else ""))
    for row in rows:
        cells = [_cell(row["metrics"].get(name), column, with_n=name in mixed_n) for name, column in cols]
        if has_dev:
            dev = row.get("deviation")
            cells.append(f"{dev['m_theta']:.4f}" if dev else "-")
        lines.append(f"| {_md_escape(row['checkpoint'].name)} | " + " | ".join(cells) + " |")
    text = ["\n".join(lines), ""]
    skipped_line = skipped_markdown(list((skipped or {}).get("skipped") or []), (skipped or {}).get("config"), rows)
    if skipped_line:
        text += [skipped_line, ""]
    notes = [
        "Cells: accuracy in % with its 95% confidence interval in brackets. **micro** = correct / all questions; "
        "**macro** = mean of the per-subject accuracies (each subject weighs the same; FinanceIQ's official "
        "overall score, C-Eval's average). Interval of micro: Wilson score interval; of macro: percentile "
        "bootstrap within subjects (2000 resamples). '-' = not evaluated (yet)."
    ]
    if any(_kind(b) == "mc" for b in benchmarks):
        notes.append(
            "(gen) = answered by generation, the letter read by the parser named in the run details (an "
            "output without an answer is wrong and counted as unparsed); (lik) = option likelihood: the "
            "most likely of the letters A-D. Chance level of four options: 25%."
        )
    if any(_kind(b) == "math" for b in benchmarks):
        notes.append(
            "GSM8K **strict** = the number of the final-answer line ('So the answer is: N', as the "
            "paper's prompt asks); **flexible** = the last number of the output (lm-eval-harness's "
            "flexible-extract)."
        )
    if any(_kind(b) == "lmeval" for b in benchmarks):
        notes.append(
            "[lm-eval] columns: scores of lm-eval-harness's own tasks (their prompts, few-shot examples and "
            "metrics; no chat template) on the same checkpoints, through lm-eval's HF or vLLM model class: the "
            "header names the task, shots and lm-eval's metric (acc = accuracy of the most likely choice; "
            "acc_norm = the same with log-likelihoods divided by the choice's length in bytes; TruthfulQA's "
            "acc is mc2, the probability mass on the true answers; exact_match (flexible-extract) = GSM8K's "
            "last number in the output) and n the documents scored. Interval: Wilson for 0/1 scores, "
            "normal approximation of the mean for mc2. The chart's chance line: 25% (4 options), "
            "Winogrande 50%."
        )
    if mixed_n:
        notes.append(
            "The number of questions differs between rows for "
            + ", ".join(titles[b] for b in mixed_n)
            + " (pairs run with different limits, see the run details): those cells say n."
        )
    if has_dev:
        refs = sorted({r["deviation"]["reference"] for r in rows if r.get("deviation")})
        data_name = os.path.basename(str(deviation_data)) if deviation_data else "the deviation data"
        notes.append(
            f"m_theta (MinorSFT Eq. 8): mean over the pairs of {data_name} of "
            f"(log pi_theta(y|x) - log pi_ref(y|x)) / |y| against {', '.join(refs) if refs else 'the reference'}: "
            "> 0 the checkpoint finds those answers more likely than its reference does, < 0 less likely "
            "(a damaged model comes out negative), 0 for the reference itself."
        )
    text.append("\n".join(notes))

    # C-Eval categories
    for name in benchmarks:
        cats = []
        for row in rows:
            for cat in (row["metrics"].get(name) or {}).get("categories") or {}:
                if cat not in cats:
                    cats.append(cat)
        if not cats:
            continue
        cats.sort(key=lambda c: CATEGORY_ORDER.index(c) if c in CATEGORY_ORDER else 99)
        head = [f"{c} {k}" for c in cats for k in ("micro", "macro")]
        part = [
            f"### {titles[name]} by category",
            "",
            "| checkpoint | " + " | ".join(head) + " |",
            "|---|" + "---:|" * len(head),
        ]
        for row in rows:
            m = row["metrics"].get(name)
            cells = []
            for c in cats:
                s = ((m or {}).get("categories") or {}).get(c)
                if not s:
                    cells += ["-", "-"]
                    continue
                ci, mci = s.get("ci95"), s.get("macro_ci95")
                cells.append(
                    _pct(s["accuracy"]) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "") + f" n={s['n']}"
                )
                cells.append(
                    _pct(s["macro_accuracy"]) + (f" [{100 * mci[0]:.1f}, {100 * mci[1]:.1f}]" if mci else "")
                    if s.get("macro_accuracy") is not None
                    else "n/a"
                )
            part.append(f"| {_md_escape(row['checkpoint'].name)} | " + " | ".join(cells) + " |")
        text += ["", "\n".join(part)]

    # run details: n, selection, split, mode, parser of every cell
    part = [
        "### Run details",
        "",
        "| checkpoint | benchmark | questions | split | mode | parser | unparsed |",
        "|---|---|---|---|---|---|---:|",
    ]
    for row in rows:
        for name in benchmarks:
            m = row["metrics"].get(name)
            if not m:
                continue
            unparsed = str(m["unparsed"])
            if m.get("flexible"):
                unparsed += f" (flexible {m['flexible']['unparsed']})"
            parser = parser_of(m) + (" / flexible (lm-eval)" if m.get("flexible") else "")
            part.append(
                f"| {_md_escape(row['checkpoint'].name)} | {titles[name]} | {selection_of(m)} | "
                f"{m.get('split', '')} | {m['mode']} | {parser} | {unparsed} |"
            )
    text += ["", "\n".join(part)]
    if any((r.get("deviation") or {}).get("from_previous_summary") for r in rows):
        text += [
            "",
            "m_theta of rows marked in summary.json `from_previous_summary` comes from the previous "
            "summary (--report-only does not recompute it).",
        ]
    return "\n".join(text) + "\n"


# ----------------------------------------------------------------------------------------------------


def _chance(rows: list[dict], name: str) -> float | None:
    """Chance level of a column: our benchmark's declared one (25% for four options), the stored one of an lm-eval
    task."""
    if name in BENCHMARKS:
        return BENCHMARKS[name].chance
    if _kind(name) == "mc":
        return chance_level("mc")
    if _kind(name) == "lmeval":
        found = {r["metrics"][name].get("chance") for r in rows if name in r["metrics"]}
        return found.pop() if len(found) == 1 else None
    return None


def bar_chart(
    rows: list[dict], benchmarks: list[str], titles: dict[str, str], table_metric: str = "both", has_dev: bool = False
) -> bytes | None:
    """Grouped bars: one group per benchmark, per checkpoint a solid bar (micro; GSM8K strict) and a
    hatched one (macro; GSM8K flexible) with 95% error bars; a dashed chance line at 25% over the
    multiple-choice groups; under each group the answer mode and number of questions; m_theta beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows or (not benchmarks and not has_dev):
        return None
    names = [r["checkpoint"].name for r in rows]
    dev_values = [r["deviation"]["m_theta"] if r.get("deviation") else None for r in rows]
    show_dev = has_dev and any(v is not None for v in dev_values)
    n_groups, n_bars = max(1, len(benchmarks)), max(1, len(rows))
    per_group = [columns_for(b, table_metric) for b in benchmarks]
    slots = max([len(c) for c in per_group] + [1]) * n_bars
    width_main = max(7.0, 1.5 + n_groups * (0.6 + 0.28 * slots))
    fig_w = width_main + (max(3.0, 0.5 + 0.45 * n_bars) if show_dev else 0)
    ratios = [width_main] + ([fig_w - width_main] if show_dev else [])
    fig, axes = plt.subplots(1, len(ratios), figsize=(fig_w, 5.2), gridspec_kw={"width_ratios": ratios}, squeeze=False)
    ax = axes[0][0]
    cmap = plt.get_cmap("tab10" if n_bars <= 10 else "tab20")
    top = 10.0
    for i, name in enumerate(benchmarks):
        cols = per_group[i]
        w = 0.8 / (n_bars * len(cols))
        for j, row in enumerate(rows):
            m = row["metrics"].get(name)
            if not m:
                continue
            for k, column in enumerate(cols):
                value, ci = _value(m, column)
                if value is None:
                    continue
                x = i - 0.4 + w * (j * len(cols) + k + 0.5)
                # a percentile bootstrap interval need not contain its estimate; rounding can put the
                # Wilson bound a hair past it: error bars are clipped at 0
                err = [[max(0.0, 100 * (value - ci[0]))], [max(0.0, 100 * (ci[1] - value))]] if ci else None
                bar = ax.bar(
                    [x],
                    [100 * value],
                    w,
                    color=cmap(j % cmap.N),
                    hatch="//" if k else None,
                    edgecolor="white" if k else None,
                    yerr=err,
                    capsize=2,
                    error_kw={"elinewidth": 0.7},
                    label=row["checkpoint"].name
                    if (k == 0 and i == next(ii for ii, b in enumerate(benchmarks) if b in row["metrics"]))
                    else None,
                )
                if n_bars * len(cols) <= 8:
                    ax.bar_label(bar, fmt="%.1f", fontsize=6, padding=1)
                top = max(top, 100 * (ci[1] if ci else value))
        chance = _chance(rows, name)
        if chance is not None:
            levels = sorted({c for c in (_chance(rows, b) for b in benchmarks) if c is not None})
            ax.hlines(
                100 * chance,
                i - 0.45,
                i + 0.45,
                colors="black",
                linestyles="--",
                linewidth=0.9,
                label="chance (" + ", ".join(f"{100 * c:.0f}%" for c in levels) + ")"
                if i == next(ii for ii, b in enumerate(benchmarks) if _chance(rows, b) is not None)
                else None,
            )
    labels = []
    for i, name in enumerate(benchmarks):
        ns = sorted({r["metrics"][name]["n"] for r in rows if name in r["metrics"]})
        n_text = "" if not ns else (f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]}")
        modes = sorted({r["metrics"][name]["mode"] for r in rows if name in r["metrics"]})
        mode = "/".join({"generation": "gen", "likelihood": "lik"}.get(x, x) for x in modes)
        if is_lmeval(name):
            mode = "lm-eval"
        what = " | ".join(columns_for(name, table_metric)) if len(per_group[i]) > 1 else per_group[i][0]
        if is_lmeval(name):  # "arc_challenge 25-shot" / "acc_norm" / "lm-eval n=..."
            title = titles.get(name, name).replace(" [lm-eval]", "")
            head, _, what = title.partition("-shot ")
            what = what.replace(" (flexible", "\n(flexible")
            labels.append(f"{head}-shot\n{what}\n{mode} {n_text}".strip() if what else f"{title}\n{mode} {n_text}")
            continue
        labels.append(f"{titles.get(name, name)}\n{what}\n{mode} {n_text}".strip())
    ax.set_xticks(range(len(benchmarks)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("accuracy (%) with 95% interval")
    ax.set_ylim(0, min(100, top * 1.12 + 3))
    ax.set_title(
        "Accuracy by benchmark: solid = micro (GSM8K strict), hatched = macro (GSM8K flexible)"
        + ("; lm-eval tasks: their metric" if any(is_lmeval(b) for b in benchmarks) else ""),
        fontsize=9,
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.2), ncol=min(4, n_bars + 1), frameon=False)
    if show_dev:
        ax2 = axes[0][1]
        vals = [v if v is not None else 0.0 for v in dev_values]
        bars = ax2.bar(range(n_bars), vals, 0.7, color=[cmap(j % cmap.N) for j in range(n_bars)])
        ax2.bar_label(bars, labels=[f"{v:.3f}" if v is not None else "-" for v in dev_values], fontsize=7, padding=1)
        ax2.axhline(0, color="black", linewidth=0.8)
        ax2.margins(y=0.15)
        ax2.set_xticks(range(n_bars))
        ax2.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax2.set_title("m_theta: > 0 answers more likely than\nunder the reference, < 0 less likely", fontsize=8)
        ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()

"""README.md's option table of the `llamafactory-minor` experiment commands is the argument parser's: every
option of sweep / reproduce / plot / plot-scores / noise / make-task / import-scores has a row, every row is an
option, and a default the parser fixes is the default the row states. Also `plot-scores --labels`."""

import argparse
import re

import pytest
from conftest import REPO_ROOT

from llamafactory_minor import cli
from llamafactory_minor.experiments import plot

TABLED = ("sweep", "reproduce", "plot", "plot-scores", "noise", "make-task", "import-scores")


def _parser_options() -> dict[tuple[str, str], object]:
    out = {}
    for action in cli._parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name not in TABLED:
                    continue
                for a in sub._actions:
                    for opt in a.option_strings:
                        if opt.startswith("--") and opt != "--help":
                            out[(name, opt)] = a.default
    return out


def _readme_rows() -> dict[tuple[str, str], str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("**Every option of these commands**")
    rows = {}
    for line in text[start:].splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        m = re.match(r"\| `([a-z-]+)` \| `(--[a-z-]+)` \| ([^|]*) \|", line)
        if m:
            key = (m.group(1), m.group(2))
            assert key not in rows, f"README option table lists {key} twice"
            rows[key] = m.group(3).strip()
    return rows


def test_readme_option_table_is_the_parser():
    options, rows = _parser_options(), _readme_rows()
    assert len(options) > 40  # the parser was read (a broken walk would compare two empty sets)
    missing = sorted(set(options) - set(rows))
    extra = sorted(set(rows) - set(options))
    assert not missing, f"options without a README row: {missing}"
    assert not extra, f"README rows that are no option: {extra}"
    for key, default in options.items():
        cell = rows[key]
        if default in (None, [], "") or isinstance(default, bool):
            continue  # the row says it in words (required, off, the experiment's default, ...)
        if key[0] == "reproduce" and key[1] in ("--batch", "--lr", "--train", "--test"):
            continue
        shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        assert re.search(rf"(^|[\s/`]){re.escape(shown)}($|[\s/`])", cell), (
            f"README default of {key[0]} {key[1]} is {cell!r}, the parser's is {default!r}"
        )


def test_readme_per_experiment_defaults_are_the_clis():
    rows = _readme_rows()
    for option, field in (("--batch", "batch"), ("--lr", "lr"), ("--train", "train"), ("--test", "test")):
        want = [cli.REPRODUCE_DEFAULTS[e][field] for e in ("minorsft", "minordpo", "poft")]
        got = [float(x) for x in rows[("reproduce", option)].split(" / ")]
        assert got == want, f"README default of reproduce {option}: {got}, the CLI's {want}"


def test_plot_scores_labels_name_sources_and_a_wrong_count_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(
        plot,
        "score_rewards",
        lambda p: {"m (t, train)": [-1.0, -2.0], "m (t, eval)": [-3.0]} if p == "two" else {"x": [-1.0]},
    )
    stats = plot.plot_score_histograms(["two", "one"], out=str(tmp_path / "h.png"), labels=["run", "base"])
    assert set(stats) == {"run: m (t, train)", "run: m (t, eval)", "base"}
    with pytest.raises(plot.PlotError, match="--labels gives 1 names for 2 score folders"):
        plot.plot_score_histograms(["two", "one"], out=str(tmp_path / "h2.png"), labels=["run"])
    assert not (tmp_path / "h2.png").exists()

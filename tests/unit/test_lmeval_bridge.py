"""Pieces of the lm-eval cross-check that need no model: stop strings, lm-eval's flexible-extract as we
apply it, and our rendering of lm-eval's C-Eval prompt against lm-eval's own (its task YAML, read from the
installed package) on real C-Eval rows (tests/fixtures/eval)."""

from pathlib import Path

import pytest

from llamafactory_minor_eval.backends.base import cut_at_stop
from llamafactory_minor_eval.lmeval_bridge import ceval_lmeval_prompt, clean_answer, flexible_extract

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "eval" / "ceval"


def test_cut_at_stop_takes_the_earliest_stop():
    assert cut_at_stop("12 apples\nQuestion: next", ["</s>", "Question:"]) == "12 apples\n"
    assert cut_at_stop("a</s>b Question:", ["Question:", "</s>"]) == "a"
    assert cut_at_stop("nothing here", ["Question:"]) == "nothing here"
    assert cut_at_stop("x", None) == "x" and cut_at_stop("x", ["", None][:1]) == "x"


@pytest.mark.parametrize(
    "text,want",
    [
        ("She has 3 + 4 = 7 apples. #### 7", "7"),
        ("The total is $1,234.", "1234"),
        ("Step 1: 5 * 3 = 15\nSo she pays 15.50 dollars.", "15.50"),
        ("no digits", None),
        ("-3 degrees", "-3"),
    ],
)
def test_flexible_extract_is_the_last_match_cleaned(text, want):
    assert flexible_extract(text) == want


def test_gold_cleanup_matches_lm_evals_exact_match_rules():
    assert clean_answer("Natalia sold 48 clips.\n#### 72") == "72"
    assert clean_answer("1,000.") == "1000"


def test_our_ceval_prompt_is_lm_evals(lm_eval_harness):
    from llamafactory_minor_eval.ceval_subjects import CEVAL_SUBJECTS
    from llamafactory_minor_eval.data import load_split
    from llamafactory_minor_eval.lmeval_bridge import ceval_task_spec, group_spec, task_manager

    rows = [s for s in load_split("ceval", FIX, "val") if s.subject == "accountant"]
    assert rows
    tm = task_manager(["ceval"])
    spec = ceval_task_spec("accountant", FIX / "val" / "accountant_val.csv", FIX / "dev" / "accountant_dev.csv")
    task = tm.load([group_spec("t", [spec])])["tasks"]["ceval-valid_accountant"]
    docs = list(task.validation_docs())
    assert len(docs) == len(rows)
    for doc, s in zip(docs, rows):
        theirs = task.config.description + task.doc_to_text(doc)
        assert ceval_lmeval_prompt(s.question, s.options, CEVAL_SUBJECTS["accountant"][0]) == theirs
        assert task.doc_to_choice(doc)[task.doc_to_target(doc)] == s.gold
    assert task.config.target_delimiter == " "  # why our candidates are the " A" .. " D" tokens

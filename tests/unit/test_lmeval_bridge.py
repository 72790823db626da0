"""Pieces of the lm-eval cross-check that need no model: stop strings, lm-eval's flexible-extract as we
apply it (the evaluation's regex, which lmeval_bridge shares, and both clean-ups, against each other and
against lm-eval's own filter and clean-up on every output of the labelled parser fixture), and our rendering of lm-eval's
C-Eval prompt against lm-eval's own (its task YAML, read from the installed package) on real C-Eval rows
(tests/fixtures/eval)."""

import json
import re
from pathlib import Path

import pytest

from llamafactory_minor_eval.backends.base import cut_at_stop
from llamafactory_minor_eval.lmeval_bridge import ceval_lmeval_prompt, clean_answer, flexible_extract
from llamafactory_minor_eval.parsing import flexible_match

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "eval" / "ceval"
LABELLED = FIX.parent / "parsing_labelled.jsonl"
# Strings the fixture's outputs lack that tell variants of the regex or of its clean-up apart (".5" needs
# {2,} in the first group, "-1,000" its "-?", "$5." the "$" and final-"." removal, "3.." one "." only).
FLEXIBLE_EDGE_CASES = [
    "costs .5 dollars",
    "owes -1,000 now",
    "pay $5.",
    "Step 3..",
    "a 1,000. b $2.",
    "30 - 12",
    "x --3",
    "$,",
    "1.2.3",
    "no digits",
    "",
]


def flexible_inputs() -> list[str]:
    """Every output of the labelled fixture (406 real and hand-written outputs, all four benchmarks), then
    the edge cases above."""
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["output"] for r in rows] + FLEXIBLE_EDGE_CASES


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


def test_both_copies_of_flexible_extract_agree_on_the_labelled_outputs():
    """parsing.flexible_match (the evaluation's "GSM8K flexible" column) and lmeval_bridge.flexible_extract
    (the cross-check's side of lm-eval's gsm8k) share lm-eval's flexible-extract regex and clean its match each
    their own way: they must give the same answer for every output."""
    texts = flexible_inputs()
    ours = [flexible_match(t) for t in texts]
    assert sum(v is not None for v in ours) >= 150  # not vacuous: 156 of the fixture's 406 outputs hold a number
    differ = [(t, a, b) for t, a, b in zip(texts, ours, (flexible_extract(t) for t in texts)) if a != b]
    assert not differ, f"{len(differ)} outputs extracted differently (text, parsing, lmeval_bridge): {differ[:5]}"


def test_flexible_extract_is_lm_evals_filter_and_exact_match_clean_up(lm_eval_harness):
    """Both copies against lm-eval itself: its gsm8k task's "flexible-extract" filter steps (read from the
    installed task YAML, run through lm-eval's filter registry: RegexFilter, take_first), then the clean-up
    its exact_match applies to a prediction (lm_eval.api.metrics.exact_match_hf_evaluate: the task's
    regexes_to_ignore in order, then ignore_case). lm-eval's "[invalid]" fallback is our None."""
    import yaml
    from lm_eval.filters import get_filter  # importing lm_eval.filters registers the filters

    task_yaml = Path(lm_eval_harness.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    cfg = yaml.safe_load(task_yaml.read_text(encoding="utf-8"))
    steps = next(f["filter"] for f in cfg["filter_list"] if f["name"] == "flexible-extract")
    filters = [get_filter(s["function"])(**{k: v for k, v in s.items() if k != "function"}) for s in steps]
    assert [type(f).__name__ for f in filters] == ["RegexFilter", "TakeFirstFilter"]
    metric = next(m for m in cfg["metric_list"] if m["metric"] == "exact_match")
    assert not metric.get("ignore_punctuation") and not metric.get("ignore_numbers")  # else clean() is incomplete

    def clean(text: str) -> str:
        for rx in metric.get("regexes_to_ignore") or []:
            text = re.sub(rx, "", text)
        return text.lower() if metric.get("ignore_case") else text

    texts = flexible_inputs()
    resps = [[t] for t in texts]
    for f in filters:
        resps = f.apply(resps, [{} for _ in texts])
    theirs = [clean(r) for r in resps]
    invalid = clean(filters[0].fallback)
    for name, fn in (("parsing.flexible_match", flexible_match), ("lmeval_bridge.flexible_extract", flexible_extract)):
        ours = [invalid if v is None else v for v in map(fn, texts)]
        differ = [(t, a, b) for t, a, b in zip(texts, ours, theirs) if a != b]
        assert not differ, f"{name}: {len(differ)} outputs differ from lm-eval (text, ours, lm-eval): {differ[:5]}"


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

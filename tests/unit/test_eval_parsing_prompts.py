"""Prompt wording (against the papers' text) and answer parsing of the evaluation suite."""

import os
from decimal import Decimal

import pytest
from conftest import require_shared_dir

from llamafactory_minor_eval import prompts
from llamafactory_minor_eval.errors import EvalError
from llamafactory_minor_eval.parsing import (
    extract_gsm8k_answer,
    extract_gsm8k_flexible,
    extract_gsm8k_strict,
    flexible_match,
    format_number,
    gsm8k_gold,
    normalize_choice,
    numbers_equal,
    parse_choice,
    parse_number,
)

CEVAL_PAPER = (
    "You need to choose one of the four options A, B, C, and D as the most appropriate answer to the question. "
    "You can only output one character, and this character must be one of A, B, C, and D. The question content "
    "is: <question> The four options are: A. <A> B. <B> C. <C> D. <D> Your answer is: "
)
FIN_PAPER = (
    "Please answer the questions based on the context provided. Please ensure that the original information "
    "(such as numbers, time, entities, opinions, etc.) is accurately cited when answering. If the user\u2019s "
    "question cannot be answered based on the given context, please briefly explain why. If the answer involves "
    "mathematical calculations, please give priority to calling tools; if it involves numerical comparison, please "
    "give the comparison process; if it involves analysis or reasoning, please give the reasoning and analysis process"
)
GSM8K_ISSUE = (
    "You are a helpful assistant. Please answer follow question step by step and give final answer in a separate "
    "line using the brief format So the answer is: . Below is the question:"
)
OPTS = {"A": "<A>", "B": "<B>", "C": "<C>", "D": "<D>"}


def test_ceval_prompt_is_the_papers_wording():
    assert prompts.ceval_prompt("<question>", OPTS) == CEVAL_PAPER
    filled = prompts.build_prompt("ceval", "1+1=____", {"A": "1", "B": "2", "C": "3", "D": "4"})
    assert filled.endswith(
        "The question content is: 1+1=____ The four options are: A. 1 B. 2 C. 3 D. 4 Your answer is: "
    )


def test_fin_prompt_is_the_instruction_then_the_ceval_format():
    for name in ("financeiq", "fineval"):
        text = prompts.build_prompt(name, "<question>", OPTS)
        assert text == FIN_PAPER + "\n" + CEVAL_PAPER


def test_gsm8k_prompt_is_the_minordpo_wording():
    assert prompts.build_prompt("gsm8k", "How many?") == GSM8K_ISSUE + " How many?"


def _paper(name):
    path = os.path.join(require_shared_dir(), "papers", name)  # no shared/: skip, or fail under CI=true
    if not os.path.isfile(path):
        pytest.fail(f"paper text {path} is missing from shared/papers", pytrace=False)
    return open(path, encoding="utf-8").read()


def test_prompts_match_the_paper_texts_when_available():
    minorsft = _paper("000_59c82f81b9b773eb.txt")
    assert '""' + CEVAL_PAPER + '""' in minorsft
    assert '""' + FIN_PAPER + '""' in minorsft
    minordpo = _paper("001_a12bbda415854fe1.txt")
    # the paper text sets the prompt in italics: *You are a helpful assistant*. *Please ... is:* . *Below is the question:*
    flat = minordpo.replace("*", "")
    assert GSM8K_ISSUE in flat


def test_messages_and_plain_rendering():
    msgs = prompts.build_messages("Q2", [("Q1", "A")], system="sys")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert prompts.render_plain("Q2", [("Q1", "A")]) == "Q1A\n\nQ2"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("B", "B"),
        ("  C.", "C"),
        ("答案是D", "D"),
        ("The answer is: A", "A"),
        ("Based on the context, C", "C"),  # the B of "Based" is not an answer
        ("ｂ", None),
        ("Ｂ", "B"),
        ("(D) because", "D"),
        ("E", None),
        ("", None),
        (None, None),
        ("I cannot answer", None),
        ("A and B", None),  # two letters, no answer statement: ambiguous, unparsed
        # the failing examples of issue 12
        ("The four options are: A. 1. 2. 3.", None),  # an echoed prompt chooses nothing
        ("A good choice is C", "C"),
        ("选项A和B都不对，正确答案为C", "C"),
        # more of the cascade
        ("Your answer is: B", "B"),
        ("You need to choose one of the four options A, B, C, and D ... Your answer is: D", "D"),
        ("A, B, C, and D", None),
        ("A company must record the asset at cost.", None),  # the article "A"
        ("I would choose option (C) here", "C"),
        ("Option B is correct because A is wrong", "B"),
        ("答案：Ｃ", "C"),
        ("故选B。", "B"),
        ("所以答案为 A", "A"),
        ("**D**", "D"),
        ("A. 100\nB. 200\nC. 300\nD. 400", None),  # lists options, chooses none
        ("The correct answer is B. A is wrong.", "B"),
    ],
)
def test_parse_choice(text, expected):
    assert parse_choice(text) == expected


@pytest.mark.parametrize(
    "raw,expected", [("A", "A"), (" b ", "B"), ("C  ", "C"), ("Ｄ", "D"), ("E", None), ("", None)]
)
def test_normalize_choice(raw, expected):
    assert normalize_choice(raw) == expected


@pytest.mark.parametrize(
    "text,strict,flexible",
    [
        ("So the answer is: 72", "72", "72"),
        ("So the answer is: $1,234.", "1234", "1234"),
        ("so the answer is -5 degrees", "-5", "-5"),
        ("So the answer is: 3.75 dollars", "3.75", "3.75"),
        ("So the answer is: \u22128", "-8", "8"),  # lm-eval's regex knows only "-"
        ("So the answer is $-12.50.", "-12.5", "-12.5"),
        ("First 3 + 4 = 7.\nSo the answer is: 7\nQuestion: 99 apples", "7", "99"),
        ("We get 10 and then 12.", None, "12"),  # no final-answer line: strict unparsed
        ("It costs $1,000,000 in total", None, "1000000"),
        ("So the answer is: . Final: 42", "42", "42"),
        ("So the answer is: 5\nSo the answer is: 6", "5", "6"),
        ("no numbers here", None, None),
        ("", None, None),
        ("So the answer is: 0.5", "0.5", "0.5"),
        ("The total is 1,234,567.", None, "1234567"),
        ("numbers 1,2,3", None, "123"),  # lm-eval reads "1,2,3" as one number
        # the failing examples of issue 12
        ("So the answer is: 12 * 3 * 2 * 6 = 180 * 2 = 360 cents.", "360", "360"),
        ("So the answer is: 5 + 3 = 8", "8", "8"),
        ("So, the answer is 3/4.", "0.75", "4"),
        ("He has 30 - 12", None, "12"),  # never -12
        ("Step 14: Add.\nStep 15: Determine", None, "15"),
        ("... so we get 5 * 5", None, "5"),
        ("So the answer is: 5 * 5", None, "5"),  # an expression, no result stated
        ("So the answer is:\n\n18", "18", "18"),  # the number on the next line
        ("The final answer is 20.", "20", "20"),
        ("#### 1,200", "1200", "1200"),
        ("So the answer is ... 7", "7", "7"),
        ("Step 3...", None, None),  # lm-eval's last match is "..." : not a number
    ],
)
def test_gsm8k_strict_and_flexible(text, strict, flexible):
    assert format_number(extract_gsm8k_strict(text)) == strict
    assert format_number(extract_gsm8k_flexible(text)) == flexible
    assert extract_gsm8k_answer(text) == extract_gsm8k_strict(text)


def test_flexible_is_lm_eval_regex_last_match():
    assert flexible_match("a 1,000. b $2.") == "2"
    assert flexible_match("x 3/4.") == "4"
    assert flexible_match("Step 3...") == "3.."  # the match "3...", one final "." removed, as lm-eval does
    assert flexible_match("none") is None


def test_gsm8k_gold_and_numeric_comparison():
    assert gsm8k_gold("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == Decimal(72)
    assert gsm8k_gold("...\n#### 1,234") == Decimal(1234)
    assert gsm8k_gold("...\n#### -3") == Decimal(-3)
    assert numbers_equal(Decimal("72.0"), Decimal("72"))
    assert numbers_equal(parse_number("$1,234."), Decimal(1234))
    assert not numbers_equal(Decimal("72.5"), Decimal("72"))
    assert not numbers_equal(None, Decimal("1"))
    with pytest.raises(EvalError, match="####"):
        gsm8k_gold("no final line")

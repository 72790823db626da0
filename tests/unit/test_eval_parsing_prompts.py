"""Prompt wording (against the papers' text) and answer parsing of the evaluation suite."""

import os
from decimal import Decimal

import pytest

from llamafactory_minor_eval import prompts
from llamafactory_minor_eval.errors import EvalError
from llamafactory_minor_eval.parsing import (
    extract_gsm8k_answer,
    format_number,
    gsm8k_gold,
    normalize_choice,
    numbers_equal,
    parse_choice,
    parse_number,
)

PAPERS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "papers")

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
    assert filled.endswith("The question content is: 1+1=____ The four options are: A. 1 B. 2 C. 3 D. 4 Your answer is: ")


def test_fin_prompt_is_the_instruction_then_the_ceval_format():
    for name in ("financeiq", "fineval"):
        text = prompts.build_prompt(name, "<question>", OPTS)
        assert text == FIN_PAPER + "\n" + CEVAL_PAPER


def test_gsm8k_prompt_is_the_minordpo_wording():
    assert prompts.build_prompt("gsm8k", "How many?") == GSM8K_ISSUE + " How many?"


def _paper(name):
    path = os.path.join(PAPERS, name)
    if not os.path.isfile(path):
        pytest.skip(f"paper text {path} not present (../shared/papers is not checked out)")
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
        ("A and B", "A"),
    ],
)
def test_parse_choice(text, expected):
    assert parse_choice(text) == expected


@pytest.mark.parametrize("raw,expected", [("A", "A"), (" b ", "B"), ("C  ", "C"), ("Ｄ", "D"), ("E", None), ("", None)])
def test_normalize_choice(raw, expected):
    assert normalize_choice(raw) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("So the answer is: 72", "72"),
        ("So the answer is: $1,234.", "1234"),
        ("so the answer is -5 degrees", "-5"),
        ("So the answer is: 3.75 dollars", "3.75"),
        ("So the answer is: \u22128", "-8"),
        ("So the answer is $-12.50.", "-12.5"),
        ("First 3 + 4 = 7.\nSo the answer is: 7\nQuestion: 99 apples", "7"),
        ("We get 10 and then 12.", "12"),  # no cue: the last number
        ("It costs $1,000,000 in total", "1000000"),
        ("So the answer is: . Final: 42", "42"),  # cue without a number in its paragraph: fallback
        ("So the answer is: 5\nSo the answer is: 6", "5"),
        ("no numbers here", None),
        ("", None),
        ("So the answer is: 0.5", "0.5"),
        ("The total is 1,234,567.", "1234567"),
        ("numbers 1,2,3", "3"),
    ],
)
def test_extract_gsm8k_answer(text, expected):
    assert format_number(extract_gsm8k_answer(text)) == expected


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

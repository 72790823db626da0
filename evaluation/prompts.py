"""The papers' prompts, verbatim, and how a question becomes chat messages.

* C-Eval: the MinorSFT paper (Xie et al., "Minor SFT loss for LLM fine-tune ...", Sec. 4) quotes it
  word for word; ``<question>``, ``<A>`` ... ``<D>`` are filled in. It ends with "Your answer is: ".
* FinanceIQ and FinEval: the MinorSFT paper gives one instruction for both (FIN_INSTRUCTION below,
  verbatim, it has no final full stop). It carries no answer format, and both benchmarks are
  four-option multiple choice, so the instruction is followed by the C-Eval answer format (the
  C-Eval prompt above, verbatim, with the question and options). This is our choice, see README.
* GSM8K: the MinorDPO paper's zero-shot prompt, verbatim, followed by one space and the question
  ("... to concat the question content").
"""

import re
from collections.abc import Sequence

CEVAL_TEMPLATE = (
    "You need to choose one of the four options A, B, C, and D as the most appropriate answer to the "
    "question. You can only output one character, and this character must be one of A, B, C, and D. "
    "The question content is: {question} The four options are: A. {A} B. {B} C. {C} D. {D} "
    "Your answer is: "
)

FIN_INSTRUCTION = (
    "Please answer the questions based on the context provided. Please ensure that the original "
    "information (such as numbers, time, entities, opinions, etc.) is accurately cited when answering. "
    "If the user\u2019s question cannot be answered based on the given context, please briefly explain why. "
    "If the answer involves mathematical calculations, please give priority to calling tools; if it "
    "involves numerical comparison, please give the comparison process; if it involves analysis or "
    "reasoning, please give the reasoning and analysis process"
)

GSM8K_PREFIX = (
    "You are a helpful assistant. Please answer follow question step by step and give final answer in a "
    "separate line using the brief format So the answer is: . Below is the question:"
)

# Which text goes between the FinanceIQ/FinEval instruction and the C-Eval-style question block.
FIN_SEPARATOR = "\n"

PROMPT_VERSION = "1"  # bump when any prompt text changes: finished results with another version re-run


def ceval_prompt(question: str, options: dict[str, str]) -> str:
    return CEVAL_TEMPLATE.format(question=question, A=options["A"], B=options["B"], C=options["C"], D=options["D"])


def fin_prompt(question: str, options: dict[str, str]) -> str:
    return FIN_INSTRUCTION + FIN_SEPARATOR + ceval_prompt(question, options)


def gsm8k_prompt(question: str, options: dict[str, str] | None = None) -> str:
    return GSM8K_PREFIX + " " + question


def build_prompt(benchmark: str, question: str, options: dict[str, str] | None = None) -> str:
    """The prompt of a question of ``benchmark``: the ``prompt`` of its declaration (benchmarks.py)."""
    from .benchmarks import BENCHMARKS

    if benchmark not in BENCHMARKS:
        raise KeyError(benchmark)
    return BENCHMARKS[benchmark].prompt(question, options)


# the assistant turn of a few-shot example (the ``shot_answer`` of a benchmark's declaration)


def letter_answer(sample) -> str:
    """Multiple choice: the gold letter."""
    return sample.gold


_CALC_RE = re.compile(r"<<[^<>]*>>")


def gsm8k_answer(sample) -> str:
    """GSM8K: the worked solution without its calculator marks, then the prompt's answer line."""
    body = _CALC_RE.sub("", sample.solution or "").rsplit("####", 1)[0].strip()
    return f"{body}\nSo the answer is: {sample.gold}"


def build_messages(
    prompt: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None
) -> list[dict[str, str]]:
    """Chat messages: optional system, then each few-shot example as a user/assistant turn, then the prompt."""
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    for shot_prompt, shot_answer in shots:
        messages.append({"role": "user", "content": shot_prompt})
        messages.append({"role": "assistant", "content": shot_answer})
    messages.append({"role": "user", "content": prompt})
    return messages


def render_plain(prompt: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None) -> str:
    """The same conversation as plain text, for models without a chat template (or --no-chat-template)."""
    parts = []
    if system:
        parts.append(system + "\n\n")
    for shot_prompt, shot_answer in shots:
        parts.append(shot_prompt + shot_answer + "\n\n")
    parts.append(prompt)
    return "".join(parts)

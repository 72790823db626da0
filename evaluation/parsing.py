"""Answer parsing, shared by every backend.

Multiple choice (generation): the first standalone letter A, B, C or D of the output (full-width
letters count; a letter inside a Latin word such as the "B" of "Based" does not). No such letter: the
answer is wrong and counted as "unparsed".

GSM8K: the first number after "So the answer is" (case-insensitive); if there is none, the last number
of the output. Numbers may carry a sign, a dollar sign, thousands commas and decimals
("So the answer is: $1,234." -> 1234). Compared numerically with the number after "####" of the gold
solution.
"""

import re
from decimal import Decimal, InvalidOperation
from typing import Optional

from .errors import EvalError

LETTERS = ("A", "B", "C", "D")
_FULLWIDTH = str.maketrans({"\uff21": "A", "\uff22": "B", "\uff23": "C", "\uff24": "D"})
_CHOICE_RE = re.compile(r"(?<![A-Za-z])([ABCD])(?![A-Za-z])")

# sign, optional "$", then 1,234,567.89 | 1234.5 | .5 ; a unicode minus counts as a minus
_NUMBER_RE = re.compile(
    r"(?P<sign>[-\u2212])?\s?\$?\s?(?P<sign2>[-\u2212])?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\d])"
)
_ANSWER_CUE_RE = re.compile(r"so\s+the\s+answer\s+is", re.IGNORECASE)


def parse_choice(text: Optional[str]) -> Optional[str]:
    """First standalone A-D letter of a generated answer, or None (unparsed)."""
    if not text:
        return None
    match = _CHOICE_RE.search(text.translate(_FULLWIDTH))
    return match.group(1) if match else None


def normalize_choice(value: object) -> Optional[str]:
    """A gold answer cell ("B", " b ", "Ｂ") as one of A-D, or None when it is not one of them."""
    text = str(value).strip().translate(_FULLWIDTH).upper()
    return text if text in LETTERS else None


def _to_decimal(match: "re.Match") -> Optional[Decimal]:
    num = match.group("num").replace(",", "")
    try:
        value = Decimal(num)
    except InvalidOperation:  # pragma: no cover - the regex only lets numbers through
        return None
    if match.group("sign") or match.group("sign2"):
        value = -value
    return value


def find_numbers(text: str):
    return [v for v in (_to_decimal(m) for m in _NUMBER_RE.finditer(text)) if v is not None]


def parse_number(text: Optional[str]) -> Optional[Decimal]:
    """The first number in ``text`` ("$1,234." -> 1234, "-3.5" -> -3.5), or None."""
    if not text:
        return None
    numbers = find_numbers(text)
    return numbers[0] if numbers else None


def extract_gsm8k_answer(text: Optional[str]) -> Optional[Decimal]:
    """The number after the first "So the answer is" that is followed by one, else the last number."""
    if not text:
        return None
    for cue in _ANSWER_CUE_RE.finditer(text):
        rest = text[cue.end():]
        first_line = rest.lstrip(" :：\t*").split("\n\n", 1)[0]
        numbers = find_numbers(first_line)
        if numbers:
            return numbers[0]
    numbers = find_numbers(text)
    return numbers[-1] if numbers else None


def gsm8k_gold(solution: str, where: str = "GSM8K") -> Decimal:
    """The final answer of a GSM8K solution: the number after "####"."""
    if "####" not in solution:
        raise EvalError(f"{where}: the gold answer has no '####' line: {solution[-80:]!r}")
    value = parse_number(solution.rsplit("####", 1)[1])
    if value is None:
        raise EvalError(f"{where}: no number after '####' in the gold answer: {solution[-80:]!r}")
    return value


def numbers_equal(a: Optional[Decimal], b: Optional[Decimal]) -> bool:
    if a is None or b is None:
        return False
    return abs(a - b) <= Decimal("1e-6") * max(Decimal(1), abs(b))


def format_number(value: Optional[Decimal]) -> Optional[str]:
    """Decimal -> compact string for the JSONL ("1234", "-3.5")."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text

"""Answer extraction, shared by every backend. Measured on a labelled set of real model outputs
(tests/fixtures/eval/parsing_labelled.jsonl, see its PROVENANCE.md): ``python -m
llamafactory_minor_eval.parsing --labelled FILE`` prints the accuracy.

Multiple choice (generation), ``parse_choice`` -- a deterministic cascade in the spirit of the
benchmarks' own extractors (FinanceIQ's ``extract_choice``, FinEval's answer patterns), reimplemented
here and never with their random fallback:

1. an **explicit answer statement**, the earliest in the text: Chinese ``答案是/答案为/答案：/正确答案是/
   选/选择/应选/故选 X`` (``选项 X`` alone is *not* one: "选项A和B都不对" names options), English "the
   (correct) answer is (option) X", "answer: X", "the correct option/choice is X", "I choose X",
   "X is correct", "a good choice is X";
2. the **first-letter rule**: the output starts with a letter, such as "B", "B.", "(B)", "B: text",
   "Option B", "选项B", "**B**";
3. the **only letter**: exactly one distinct standalone letter A-D in the whole output (an English
   article "A " before a lower-case word does not count);
4. **option text**: the text after "the answer is:" is one option's text (or the start of exactly
   one, as in an answer cut by the token budget), or the whole output is, or exactly one option's
   text (2 characters or more) appears in the output; a numbered list "1. ... 2. ..." gets none.

Before steps 2-4, an echo of the prompt ("You need to choose ...", "The question content is ...",
"The four options are: ...", up to "Your answer is:") and enumerations such as "A, B, C, and D" are
cut out ("A and B" too: it names two options and chooses none), and an output that recites options
itself (markers "A." / "B、" ... of three letters, or of two consecutive ones as in "A. text\nB. text")
gets no answer from steps 2-4. Full-width
letters count as letters. Nothing found: the answer is wrong and counted as **unparsed**.

GSM8K gives two answers per output, as lm-eval-harness reports two filters:

* **strict** (``extract_gsm8k_strict``): the final-answer statement the paper's prompt asks for, "So
  the answer is: N", also "the (final) answer is", "Final answer:", "#### N" and "答案是/答案为/答案：" (the first such cue
  followed by a number, case-insensitive; regex ``GSM8K_CUE``). On the rest of that line (up to the
  line end), the arithmetic chain starting at the first number is read: after an "=" the number
  after the last "=" is the answer ("12 * 3 * 2 * 6 = 180 * 2 = 360 cents" -> 360, "5 + 3 = 8" -> 8),
  a chain without "=" that still has operators, or "20% of $5", states no result (unparsed), a
  fraction "3/4" is 0.75.
  No such cue: unparsed (a loop "Step 15: ..." is not scored by its step number).
* **flexible** (``extract_gsm8k_flexible``): lm-eval-harness's ``flexible-extract`` filter of its
  ``gsm8k`` task: the **last** match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` in the output, then, as its
  ``exact_match`` does, commas, "$" and one final "." removed; a match that is then not a number
  (such as "...") is unparsed.

Numbers are compared numerically with the gold number after "####" (tolerance 1e-6 relative). A minus
counts as a sign only when it is attached to the number and not preceded by a number ("30 - 12" is
30 and 12, never -12).
"""

import json
import re
import sys
from decimal import Decimal, InvalidOperation

from .errors import EvalError

LETTERS = ("A", "B", "C", "D")
PARSER_VERSION = "2"  # stored with every result; bump when any extraction rule changes
MC_PARSER = f"cascade-v{PARSER_VERSION}"
GSM8K_STRICT_PARSER = f"strict-v{PARSER_VERSION}"
GSM8K_FLEXIBLE_PARSER = "flexible (lm-eval)"

_FULLWIDTH = str.maketrans(
    {
        "\uff21": "A",
        "\uff22": "B",
        "\uff23": "C",
        "\uff24": "D",
        "\uff08": "(",
        "\uff09": ")",
        "\uff0e": ".",
        "\uff1a": ":",
        "\uff0c": ",",
    }
)
_L = r"(?<![A-Za-z])([ABCD])(?![A-Za-z])"  # a standalone letter

# 1. explicit answer statements (earliest match wins)
_CUE_PATTERNS = [
    # Chinese
    r"(?:正确)?答案(?:应该|应|可能)?(?:是|为|选|：|:)\s*(?:选项|选)?\s*[（(\"'“「【]?\s*" + _L,
    r"(?:故|应|所以|因此|我)?选择?\s*[（(\"'“「【]?\s*" + _L + r"(?![\u4e00-\u9fff]*?[和与或、,，][ABCD])",
    r"选项\s*" + _L + r"\s*(?:是|为)?\s*(?:正确|对)(?!.{0,2}不)",
    # English
    r"(?i:(?:the\s+)?(?:correct\s+|right\s+|final\s+|best\s+)?(?:answer|option|choice)\s+(?:is|would\s+be|should\s+be)"
    r"\s*:?\s*(?:(?i:option|choice)\s+)?[(\"'*]*\s*)" + _L,
    r"(?i:\banswer\s*:\s*(?:(?i:option|choice)\s+)?[(\"'*]*\s*)" + _L,
    r"(?i:\bI\s+(?:would\s+|will\s+)?(?:choose|pick|select|go\s+with)\s+(?:(?i:option|choice)\s+)?[(\"'*]*\s*)" + _L,
    r"(?i:(?:option|choice)\s+)?" + _L + r"(?i:[)\"'*]*\s+is\s+(?:the\s+)?(?:correct|right|best)\b)",
]
_CUE_RES = [re.compile(p) for p in _CUE_PATTERNS]
_ECHO_START_RE = re.compile(
    r"You need to choose one of the four options|The question content is|The four options are", re.IGNORECASE
)
_ECHO_END_RE = re.compile(r"Your answer is\s*:?", re.IGNORECASE)
_OPTION_MARK_RE = re.compile(r"(?<![A-Za-z])([ABCD])\s*[.、:)](?=\s*\S|\s*$)|(?<=\n)([ABCD])\s*$")
_LEAD_RE = re.compile(
    r"^[\s\"'“”‘’「」【】\[*#>]*(?:(?i:option|choice|answer)\s*:?\s*|选项\s*|答案\s*[:：]?\s*)?[(（\[]?\s*([ABCD])"
    r"(?![A-Za-z])"
)
_ARTICLE_RE = re.compile(r"(?<![A-Za-z])A\s+(?=[a-z])(?!(?:and|or|nor|is|was|seems|would|should|could|because)\b)")


def _strip_echo(text: str) -> str:
    """Cut echoes of the prompt: from its first sentence to "Your answer is:" (or the end)."""
    out = []
    pos = 0
    while True:
        m = _ECHO_START_RE.search(text, pos)
        if not m:
            out.append(text[pos:])
            break
        out.append(text[pos : m.start()])
        end = _ECHO_END_RE.search(text, m.end())
        if not end:
            break
        pos = end.end()
    return "".join(out)


_ENUM_RE = re.compile(
    r"(?<![A-Za-z])[ABCD](?:\s*(?:[,、/]\s*(?:and\s+|or\s+)?|and\s+|or\s+|和|或|与)\s*[ABCD])+(?![A-Za-z])"
)


def _option_listing(text: str) -> bool:
    """The output recites options: markers of three letters, or two consecutive ones ("A. x\nB. y")."""
    marks = [m.group(1) or m.group(2) for m in _OPTION_MARK_RE.finditer(text)]  # (2): a cut "\nB" at the end
    if len(set(marks)) >= 3:
        return True
    return any(ord(b) == ord(a) + 1 for a, b in zip(marks, marks[1:]))


def explain_choice(text: str | None, options: dict[str, str] | None = None) -> tuple[str | None, str]:
    """(letter or None, the rule that gave it: "cue", "first", "only", "option-text" or "none")."""
    if not text:
        return None, "none"
    text = text.translate(_FULLWIDTH)
    # 1. explicit statements, also inside an echoed prompt's "Your answer is: X"
    best = None
    for cue in _CUE_RES:
        m = cue.search(text)
        if m and (best is None or m.start() < best.start()):
            best = m
    m = re.search(r"(?i:Your\s+answer\s+is\s*:?\s*[(\"'*]*\s*)" + _L, text)
    if m and (best is None or m.start() < best.start()):
        best = m
    if best:
        return best.group(best.lastindex), "cue"
    body = _ENUM_RE.sub(" ", _strip_echo(text))  # "A, B, C, and D" names the options, chooses none
    if _option_listing(body):
        return None, "none"
    # 2. first letter
    m = _LEAD_RE.match(body)
    if m and not _ARTICLE_RE.match(body.lstrip(" \"'*(")):
        return m.group(1), "first"
    # 3. the only letter
    letters = {m.group(1) for m in re.finditer(_L, _ARTICLE_RE.sub(" ", body))}
    if len(letters) == 1:
        return letters.pop(), "only"
    if letters:
        return None, "none"
    # 4. option text
    if options:
        letter = _option_text(body, {k: str(options.get(k, "")).strip() for k in LETTERS})
        if letter:
            return letter, "option-text"
    return None, "none"


_STATED_RE = re.compile(r"answer(?:\s+to\s+the\s+question)?\s+is\s*:?\s*(.*)", re.IGNORECASE)


def _option_text(body: str, options: dict[str, str]) -> str | None:
    """The option whose text the output gives: the text after "the answer is:" (a leading "1." dropped)
    equal to one option or the start of exactly one; else the whole output equal to one; else exactly
    one option text (2 characters or more) inside the output. A numbered list ("1. ...", "2. ...")
    recites options and gets none."""
    if re.search(r"(?m)^\s*1\s*[.、]", body) and re.search(r"(?m)^\s*2\s*[.、]", body):
        return None
    stated = [m.group(1).split("\n", 1)[0] for m in _STATED_RE.finditer(body)]
    for text in stated + [body]:
        text = re.sub(r"^\s*\d+\s*[.、]\s+", "", text).strip().rstrip("。.")
        if not text:
            continue
        equal = [k for k, v in options.items() if v and text == v]
        if len(equal) == 1:
            return equal[0]
        if text is not body and len(text) >= 2:
            starts = [k for k, v in options.items() if v.startswith(text)]
            if len(starts) == 1:
                return starts[0]
    hits = [k for k, v in options.items() if len(v) >= 2 and v in body]
    hits = [k for k in hits if not any(k != j and options[k] in options[j] for j in hits)]
    return hits[0] if len(hits) == 1 else None


def parse_choice(text: str | None, options: dict[str, str] | None = None) -> str | None:
    """The letter a generated multiple-choice answer gives (see the module doc), or None (unparsed)."""
    return explain_choice(text, options)[0]


def normalize_choice(value: object) -> str | None:
    """A gold answer cell ("B", " b ", "Ｂ") as one of A-D, or None when it is not one of them."""
    text = str(value).strip().translate(_FULLWIDTH).upper()
    return text if text in LETTERS else None


# ---------------------------------------------------------------------------------------------------
# numbers

# optional sign (attached to the number), optional "$", then 1,234,567.89 | 1234.5 | .5
_NUMBER_RE = re.compile(
    r"(?P<sign>[-\u2212](?=\$?\d))?\$?\s?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\d])"
)
GSM8K_CUE = r"(?:so,?\s+)?the\s+(?:final\s+)?answer\s+is|final\s+answer\s*(?:is)?\s*:|####|答案(?:是|为|：|:)"
_ANSWER_CUE_RE = re.compile(GSM8K_CUE, re.IGNORECASE)
# lm-eval-harness gsm8k "flexible-extract" (also the lm-eval cross-check's, lmeval_bridge.FLEXIBLE_RE)
GSM8K_FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_OP_RE = re.compile(r"\s*([+\-\u2212*x×/÷=])\s*")


def _to_decimal(match: "re.Match") -> Decimal | None:
    num = match.group("num").replace(",", "")
    try:
        value = Decimal(num)
    except InvalidOperation:  # pragma: no cover - the regex only lets numbers through
        return None
    if match.group("sign"):
        before = match.string[: match.start()].rstrip()
        if not (before and (before[-1].isdigit() or before[-1] == ")")):  # "30-12", "(3)-2": a minus, not a sign
            value = -value
    return value


def find_numbers(text: str) -> list[Decimal]:
    return [v for v in (_to_decimal(m) for m in _NUMBER_RE.finditer(text)) if v is not None]


def parse_number(text: str | None) -> Decimal | None:
    """The first number in ``text`` ("$1,234." -> 1234, "-3.5" -> -3.5), or None."""
    if not text:
        return None
    numbers = find_numbers(text)
    return numbers[0] if numbers else None


def _chain_result(line: str) -> Decimal | None:
    """The answer an answer line states: the arithmetic chain from its first number."""
    first = _NUMBER_RE.search(line)
    if not first:
        return None
    if re.match(r"\s*%\s*of\b", line[first.end() :]):
        return None  # "20% of $5": an expression, no stated result
    items: list[object] = [_to_decimal(first)]
    pos = first.end()
    while True:
        op = _OP_RE.match(line, pos)
        if not op:
            break
        nxt = _NUMBER_RE.match(line, op.end())
        if not nxt:
            break
        items += [op.group(1), _to_decimal(nxt)]
        pos = nxt.end()
    ops = items[1::2]
    if "=" in ops:
        last_eq = len(items) - 1 - items[::-1].index("=")
        return items[last_eq + 1]
    if not ops:
        return items[0]
    if ops == ["/"] and items[2] != 0:
        return items[0] / items[2]
    return None  # "5 * 5": an expression, no stated result


def extract_gsm8k_strict(text: str | None) -> Decimal | None:
    """The number of the first final-answer statement ("So the answer is: N", see the module doc)."""
    if not text:
        return None
    for cue in _ANSWER_CUE_RE.finditer(text):
        lines = text[cue.end() :].split("\n")
        line = lines[0]
        if not line.strip(" :\uff1a\t*"):  # "So the answer is:" and the number on the next line
            line = next((x for x in lines[1:] if x.strip()), "")
        line = line.lstrip(" :\uff1a\t*").replace("\\boxed{", "").replace("**", "")
        if not _NUMBER_RE.search(line):
            continue
        return _chain_result(line)
    return None


def flexible_match(text: str | None) -> str | None:
    """lm-eval's flexible-extract: the last regex match, commas, "$" and one final "." removed."""
    if not text:
        return None
    matches = GSM8K_FLEXIBLE_RE.findall(text)
    if not matches:
        return None
    raw = next(m for m in matches[-1] if m)
    return re.sub(r"\.$", "", raw.replace(",", "").replace("$", ""))


def extract_gsm8k_flexible(text: str | None) -> Decimal | None:
    raw = flexible_match(text)
    if raw is None:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:
        return None


def extract_gsm8k_answer(text: str | None) -> Decimal | None:
    """Kept for callers of the first version: the strict answer."""
    return extract_gsm8k_strict(text)


def gsm8k_gold(solution: str, where: str = "GSM8K") -> Decimal:
    """The final answer of a GSM8K solution: the number after "####"."""
    if "####" not in solution:
        raise EvalError(f"{where}: the gold answer has no '####' line: {solution[-80:]!r}")
    value = parse_number(solution.rsplit("####", 1)[1])
    if value is None:
        raise EvalError(f"{where}: no number after '####' in the gold answer: {solution[-80:]!r}")
    return value


def numbers_equal(a: Decimal | None, b: Decimal | None) -> bool:
    if a is None or b is None:
        return False
    return abs(a - b) <= Decimal("1e-6") * max(Decimal(1), abs(b))


def format_number(value: Decimal | None) -> str | None:
    """Decimal -> compact string for the JSONL ("1234", "-3.5", "0.75")."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return format(value.to_integral_value(), "f")
    return format(value.quantize(Decimal("1e-9")).normalize(), "f")


# ---------------------------------------------------------------------------------------------------
# scoring of one record (used by the runner) and the measured accuracy on a labelled set


def score_mc(output: str, gold: str, options: dict[str, str] | None = None) -> dict[str, object]:
    letter, rule = explain_choice(output, options)
    return {"parsed": letter, "correct": letter == gold, "parse_rule": rule, "parser": MC_PARSER}


def score_gsm8k(output: str, gold: str) -> dict[str, object]:
    strict = extract_gsm8k_strict(output)
    flexible = extract_gsm8k_flexible(output)
    g = Decimal(gold)
    return {
        "parsed": format_number(strict),
        "correct": numbers_equal(strict, g),
        "parsed_flexible": format_number(flexible),
        "correct_flexible": numbers_equal(flexible, g),
        "parser": GSM8K_STRICT_PARSER,
    }


def _label_number(text: str) -> Decimal:
    if "/" in text:
        num, den = text.split("/", 1)
        return Decimal(num) / Decimal(den)
    return Decimal(text)


def labelled_accuracy(path: str) -> dict[str, dict[str, object]]:
    """Agreement of the parsers with the human labels of a labelled set (JSONL: ``kind`` mc|gsm8k,
    ``output``, ``options`` (optional), ``human`` = the letter / number a careful reader extracts, or
    null). Returns {part: {n, agree, accuracy, misses}} for "all", each kind and each ``source``."""
    parts: dict[str, dict[str, object]] = {}
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        if row["kind"] == "mc":
            got = parse_choice(row["output"], row.get("options"))
            ok = got == row["human"]
        else:
            value = extract_gsm8k_strict(row["output"])
            want = None if row["human"] is None else _label_number(str(row["human"]))
            got = format_number(value)
            ok = (value is None and want is None) or numbers_equal(value, want)
        for part in ("all", row["kind"], f"{row['kind']}/{row['source']}"):
            entry = parts.setdefault(part, {"n": 0, "agree": 0, "misses": []})
            entry["n"] += 1
            entry["agree"] += int(ok)
            if not ok:
                entry["misses"].append({"id": row["id"], "human": row["human"], "parser": got})
    for entry in parts.values():
        entry["accuracy"] = entry["agree"] / entry["n"]
    return parts


def _main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m llamafactory_minor_eval.parsing",
        description="accuracy of the answer parsers on a labelled set",
    )
    p.add_argument("--labelled", required=True, help="JSONL with kind, output, options, human, source")
    args = p.parse_args(argv)
    parts = labelled_accuracy(args.labelled)
    for name in sorted(parts, key=lambda k: (k != "all", k)):
        e = parts[name]
        print(f"{name:32s} {e['agree']:4d}/{e['n']:<4d} {100 * e['accuracy']:6.2f}%")
    for miss in parts["all"]["misses"]:
        print(f"  miss {miss['id']}: human {miss['human']!r}, parser {miss['parser']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())

"""A task a 135M model learns in minutes on a CPU: two-digit addition / subtraction word problems.

The papers' benchmarks are out of reach at CPU scale (SmolLM2-135M-Instruct: GSM8K ~2.5%, C-Eval at chance),
so the CPU-scale experiments pair the papers' formats with this task:

- every problem is ``(a, op, b)`` with ``a, b`` in 10..99, ``op`` in ``+ -`` (``a > b`` for ``-``), told as a short
  word problem; the answer is written as the MinorDPO paper's GSM8K prompt asks: the working, then a separate
  line ``So the answer is: N``;
- train and test are disjoint **by underlying problem** (the same ``(a, op, b)`` never appears in both, whatever
  the wording), drawn from one seeded shuffle of all problems;
- files (``write_task``): ``arith_sft.json`` (LF alpaca: the instruction is the evaluation's GSM8K prompt, so
  training and evaluation see the same format), ``arith_dpo.json`` (LF alpaca ranking: chosen = the correct
  solution, rejected = the same solution with its one calculation corrupted so the final answer is wrong, as
  MetaMath_DPO_FewShot's rejected answers are), ``arith_test.jsonl`` (GSM8K format: ``question`` and ``answer``
  ending in ``#### N``, read by ``llamafactory-minor-eval -b gsm8k``) and a ``dataset_info.json`` for both
  training files.
"""

from __future__ import annotations

import json
import os
import random

NAMES = ["Tom", "Anna", "Li Wei", "Sara", "Omar", "Mia", "Ken", "Lena", "Ravi", "Zoe", "Ivan", "Nora"]
ITEMS = ["apples", "stamps", "marbles", "books", "coins", "pencils", "cards", "shells", "stickers", "cookies"]
ADD = [
    (
        "{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?",
        "{name} starts with {a} {item} and gets {b} more, so {name} has {a} + {b} = {c} {item}.",
    ),
    (
        "A box holds {a} {item}. Someone puts in another {b} {item}. How many {item} are in the box?",
        "The box had {a} {item} and {b} were added: {a} + {b} = {c}.",
    ),
    (
        "{name} collected {a} {item} on Monday and {b} {item} on Tuesday. How many {item} in total?",
        "In total {name} collected {a} + {b} = {c} {item}.",
    ),
]
SUB = [
    (
        "{name} has {a} {item} and gives away {b} of them. How many {item} does {name} have left?",
        "{name} had {a} {item} and gave away {b}, so {a} - {b} = {c} {item} are left.",
    ),
    (
        "A shop had {a} {item} and sold {b}. How many {item} does the shop have now?",
        "The shop had {a} {item} and sold {b}: {a} - {b} = {c}.",
    ),
    (
        "{name} needs {a} {item} and already has {b}. How many more {item} does {name} need?",
        "{name} still needs {a} - {b} = {c} {item}.",
    ),
]
ANSWER_LINE = "So the answer is: {c}"


def all_problems() -> list[tuple[int, str, int]]:
    out = [(a, "+", b) for a in range(10, 100) for b in range(10, 100)]
    out += [(a, "-", b) for a in range(10, 100) for b in range(10, 100) if a > b]
    return out


def _value(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b


def wording(problem, rng: random.Random) -> tuple[int, str, str]:
    """A random telling of ``problem``: (template index, name, item)."""
    templates = ADD if problem[1] == "+" else SUB
    return rng.randrange(len(templates)), rng.choice(NAMES), rng.choice(ITEMS)


def render(problem, words, answer: int | None = None) -> tuple[str, str, int]:
    """(question, solution, correct answer) of ``problem`` told with ``words``; ``answer`` replaces the result of
    the calculation (a corrupted solution: same question, same working, wrong number)."""
    a, op, b = problem
    c = _value(a, op, b)
    index, name, item = words
    question_t, working_t = (ADD if op == "+" else SUB)[index]
    shown = c if answer is None else answer
    question = question_t.format(name=name, item=item, a=a, b=b)
    solution = working_t.format(name=name, item=item, a=a, b=b, c=shown) + "\n" + ANSWER_LINE.format(c=shown)
    return question, solution, c


def corrupt(c: int, rng: random.Random) -> int:
    """A wrong result near the right one (a slip in the one calculation), never negative, never ``c``."""
    while True:
        wrong = c + rng.choice([-10, -2, -1, 1, 2, 10, 9, -9, 11])
        if wrong >= 0 and wrong != c:
            return wrong


def make_splits(n_train: int, n_test: int, seed: int = 0):
    """(train problems, test problems): one seeded shuffle of every problem, disjoint by construction."""
    problems = all_problems()
    if n_train + n_test > len(problems):
        raise ValueError(f"only {len(problems)} distinct problems exist; asked for {n_train} + {n_test}")
    random.Random(seed).shuffle(problems)
    return problems[n_test : n_test + n_train], problems[:n_test]


def write_task(out_dir: str, n_train: int = 2000, n_test: int = 300, seed: int = 0) -> dict:
    """Write the task files into ``out_dir``; returns {file: number of rows}."""
    from llamafactory_minor_eval.prompts import gsm8k_prompt

    train, test = make_splits(n_train, n_test, seed)
    rng = random.Random(seed + 1)
    sft, dpo = [], []
    for p in train:
        words = wording(p, rng)
        question, solution, c = render(p, words)
        _, rejected, _ = render(p, words, answer=corrupt(c, rng))
        sft.append({"instruction": gsm8k_prompt(question), "input": "", "output": solution})
        dpo.append({"instruction": gsm8k_prompt(question), "input": "", "chosen": solution, "rejected": rejected})
    tests = []
    for p in test:
        question, solution, c = render(p, wording(p, rng))
        body = solution.rsplit("\n", 1)[0]
        tests.append({"question": question, "answer": f"{body}\n#### {c}"})
    os.makedirs(out_dir, exist_ok=True)
    files = {"arith_sft.json": sft, "arith_dpo.json": dpo}
    for name, rows in files.items():
        _write_json(os.path.join(out_dir, name), rows)
    with open(os.path.join(out_dir, "arith_test.jsonl.tmp"), "w", encoding="utf-8") as f:
        for row in tests:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(os.path.join(out_dir, "arith_test.jsonl.tmp"), os.path.join(out_dir, "arith_test.jsonl"))
    info_path = os.path.join(out_dir, "dataset_info.json")
    info = {}
    if os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    info.update(
        {
            "arith_sft": {"file_name": "arith_sft.json"},
            "arith_dpo": {
                "file_name": "arith_dpo.json",
                "ranking": True,
                "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
            },
        }
    )
    _write_json(info_path, info)
    return {"arith_sft.json": len(sft), "arith_dpo.json": len(dpo), "arith_test.jsonl": len(tests)}


def _write_json(path: str, data) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
    os.replace(tmp, path)

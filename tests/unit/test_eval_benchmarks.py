"""Every benchmark is declared once (evaluation/benchmarks.py) and each declaration is complete; everything
else (loading, prompts, scoring, metrics, --list-benchmarks, the report's chance line) derives from it, so a
benchmark added by a declaration alone is loaded, prompted, scored and listed."""

import dataclasses
import os
import re
from pathlib import Path

import pytest

from llamafactory_minor_eval import benchmarks, cli, data, prompts, report
from llamafactory_minor_eval.benchmarks import BENCHMARKS, DECLARATIONS, KINDS, LAYOUTS, BenchmarkInfo
from llamafactory_minor_eval.errors import EvalError

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "eval")
PARTS = [f.name for f in dataclasses.fields(BenchmarkInfo) if f.name != "aliases"]


@pytest.mark.parametrize("info", DECLARATIONS, ids=lambda b: b.name)
def test_each_declared_benchmark_has_every_part(info):
    for part in PARTS:
        assert getattr(info, part) is not None or part == "chance", (info.name, part)
    assert info.kind in KINDS and info.layout in LAYOUTS
    for part in ("read", "prompt", "shot_answer", "score", "metrics"):
        assert callable(getattr(info, part)), (info.name, part)
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", info.hub) and info.folder and info.title
    assert info.modes[0] == "generation" and info.description
    assert (info.chance == 0.25) if info.kind == "mc" else (info.chance is None)

    # its reader reads the committed fixture of its few-shot split; prompt, few-shot answer, score and metrics
    # work on those real rows
    samples = data.load_split(info.name, Path(FIX) / info.folder, info.shots_split)
    assert samples and all(s.benchmark == info.name for s in samples)
    s = samples[0]
    prompt = info.prompt(s.question, s.options)
    assert s.question in prompt and prompt == prompts.build_prompt(info.name, s.question, s.options)
    if info.kind == "mc":
        assert all(text in prompt for text in s.options.values())
    answer = info.shot_answer(s)
    assert answer.endswith(s.gold) and data.shot_answer(s) == answer
    right, wrong = info.score(answer, s), info.score("no answer here", s)
    assert right["correct"] is True and right["parsed"] == s.gold and right["parser"]
    assert wrong["correct"] is False
    metrics = info.metrics([{**right, "subject": s.subject}, {**wrong, "subject": s.subject}])
    assert metrics["n"] == 2 and metrics["accuracy"] == 0.5


def test_names_and_aliases_are_unique_and_resolve():
    names = [b.name for b in DECLARATIONS]
    aliases = [a for b in DECLARATIONS for a in b.aliases]
    assert len(set(names)) == len(names) and len(set(aliases)) == len(aliases) and not set(names) & set(aliases)
    for b in DECLARATIONS:
        for alias in b.aliases:
            assert benchmarks.benchmark_info(alias.upper()) is b
    with pytest.raises(EvalError, match="unknown benchmark 'nope'; valid benchmarks: ceval, financeiq"):
        benchmarks.benchmark_info("nope")


def test_a_benchmark_added_by_its_declaration_alone_is_loaded_prompted_scored_and_listed(monkeypatch, tmp_path):
    """A new four-option benchmark in FinEval's file format: one declaration, nothing else edited."""
    root = tmp_path / "toy"
    (root / "test").mkdir(parents=True)
    (root / "test" / "colours_test.csv").write_text(
        "id,question,A,B,C,D,answer\r\n0,Which colour is the sky?,red,blue,green,black,B\r\n"
        "1,Which colour is grass?,red,blue,green,black,C\r\n",
        encoding="utf-8",
    )
    toy = BenchmarkInfo(
        name="toy",
        title="Toy",
        kind="mc",
        hub="someone/toy",
        folder="toy",
        default_split="test",
        shots_split="test",
        layout="subjects",
        read=benchmarks.read_choice_split,
        prompt=lambda question, options: f"Q: {question} " + " ".join(f"{k}. {v}" for k, v in options.items()),
        shot_answer=prompts.letter_answer,
        score=benchmarks.score_choice,
        metrics=benchmarks.compute_metrics,
        chance=0.25,
        aliases=("toy-bench",),
    )
    monkeypatch.setitem(BENCHMARKS, "toy", toy)
    monkeypatch.setitem(benchmarks.ALIASES, "toy-bench", "toy")

    d = data.load_benchmark("toy-bench", data_dir=str(tmp_path), few_shot=1)
    assert d.info is toy and d.split == "test" and [s.gold for s in d.samples] == ["B", "C"]
    sky, grass = d.samples
    assert data.shots_for(sky, d, 1) == [grass] and data.shot_answer(grass) == "C"
    assert prompts.build_prompt("toy", sky.question, sky.options) == (
        "Q: Which colour is the sky? A. red B. blue C. green D. black"
    )
    assert toy.score("The answer is B.", sky)["correct"] is True
    assert "toy (Toy): hub someone/toy; default split test; few-shot from test; four-option multiple choice" in (
        cli.list_benchmarks()
    )
    assert report._chance([], "toy") == 0.25


def test_a_benchmark_in_gsm8ks_format_and_layout_by_its_declaration_alone(monkeypatch, tmp_path):
    root = tmp_path / "arith"
    root.mkdir()
    rows = [
        '{"question": "What is 2 + 3?", "answer": "2 + 3 = <<2+3=5>>5\\n#### 5"}',
        '{"question": "7 - 4?", "answer": "#### 3"}',
    ]
    (root / "test.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    arith = dataclasses.replace(BENCHMARKS["gsm8k"], name="arith", title="Arith", hub="someone/arith", folder="arith")
    arith = dataclasses.replace(arith, aliases=(), default_split="test", shots_split="test")
    monkeypatch.setitem(BENCHMARKS, "arith", arith)

    d = data.load_benchmark("arith", data_dir=str(tmp_path), few_shot=1)
    assert [(s.benchmark, s.subject, s.gold) for s in d.samples] == [("arith", "arith", "5"), ("arith", "arith", "3")]
    first, second = d.samples
    assert data.shots_for(second, d, 1) == [first]
    assert data.shot_answer(first) == "2 + 3 = 5\nSo the answer is: 5"
    assert arith.score("So the answer is: 3", second)["correct"] is True
    with pytest.raises(EvalError, match=r"arith: no 'dev' split under .*looked for .*/dev\.jsonl"):
        data.load_split("arith", root, "dev")

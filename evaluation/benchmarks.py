"""Every benchmark, declared once: where its data is and how it is read, its prompt, how an answer is
extracted and scored, its metrics and chance level.

Everything else is derived from these declarations: the loaders (data.py), the prompts of the runner and of
``--list-benchmarks``, the scoring of generated answers, the answer modes, the option help texts (options.py),
the report's columns and chance line (report.py). Adding a benchmark is one :class:`BenchmarkInfo` here (and
its reader in readers.py when its file format is new); ``tests/unit/test_eval_benchmarks.py`` checks that
every declaration is complete.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import EvalError
from .metrics import chance_level, compute_metrics
from .parsing import score_gsm8k, score_mc
from .prompts import ceval_prompt, fin_prompt, gsm8k_answer, gsm8k_prompt, letter_answer
from .readers import read_ceval_split, read_choice_split, read_gsm8k_split
from .samples import Sample

KINDS = {
    # kind: (description, answer modes (the first is the default), the setting with the generation budget)
    "mc": ("four-option multiple choice", ("generation", "likelihood"), "mc_max_new_tokens"),
    "math": ("math word problems", ("generation",), "gsm8k_max_new_tokens"),
}
LAYOUTS = ("subjects", "single")  # locate.py: one file per subject in <root>/<split>/, or <root>/<split>.jsonl


@dataclass(frozen=True)
class BenchmarkInfo:
    name: str
    title: str
    kind: str  # "mc" (four options, answered by generation or option likelihood) or "math" (GSM8K)
    hub: str  # dataset repository on the Hugging Face hub
    folder: str  # sub-folder name under --data-dir
    default_split: str  # the split the papers report (one with public answers)
    shots_split: str  # where few-shot examples come from
    layout: str  # where a split's files are (LAYOUTS, locate.py)
    read: Callable[[str, Path, list[tuple[str, Path]]], list[Sample]]  # (name, root, (subject, file)s) -> samples
    prompt: Callable[[str, dict[str, str] | None], str]  # (question, options) -> the paper's prompt (prompts.py)
    shot_answer: Callable[[Sample], str]  # the assistant turn of a few-shot example
    score: Callable[[str, Sample], dict[str, object]]  # generated output -> parsed, correct, parser ... (parsing.py)
    metrics: Callable[[list[dict]], dict[str, object]]  # per-question records -> metrics.json (metrics.py)
    chance: float | None  # accuracy of a uniform guess (the chart's chance line); None: no fixed options
    aliases: tuple[str, ...] = ()  # other spellings accepted for the name

    @property
    def description(self) -> str:
        return KINDS[self.kind][0]

    @property
    def modes(self) -> tuple[str, ...]:
        """How questions are answered: generation (and, for multiple choice, option likelihood)."""
        return KINDS[self.kind][1]

    @property
    def max_new_tokens_setting(self) -> str:
        """The RunConfig setting with the token budget of a generated answer."""
        return KINDS[self.kind][2]


def score_choice(output: str, sample: Sample) -> dict[str, object]:
    """parsed letter, correct, the parser and the rule of its cascade that answered (parsing.py)."""
    return score_mc(output, sample.gold, sample.options)


def score_number(output: str, sample: Sample) -> dict[str, object]:
    """strict and flexible answers and whether each is right (parsing.py)."""
    return score_gsm8k(output, sample.gold)


def four_option(**fields) -> BenchmarkInfo:
    """A four-option multiple-choice benchmark with one file per subject: the fields its declaration does not set
    are the ones every such benchmark shares (few-shot from dev, a letter answer, the choice cascade, chance 1/4)."""
    shared = dict(
        kind="mc",
        shots_split="dev",
        layout="subjects",
        read=read_choice_split,
        prompt=fin_prompt,
        shot_answer=letter_answer,
        score=score_choice,
        metrics=compute_metrics,
        chance=chance_level("mc"),
    )
    return BenchmarkInfo(**{**shared, **fields})


DECLARATIONS: tuple[BenchmarkInfo, ...] = (
    four_option(
        name="ceval",
        title="C-Eval",
        hub="ceval/ceval-exam",
        folder="ceval",
        default_split="val",
        read=read_ceval_split,
        prompt=ceval_prompt,
        aliases=("c-eval", "ceval-exam", "c_eval"),
    ),
    four_option(
        name="financeiq",
        title="FinanceIQ",
        hub="Duxiaoman-DI/FinanceIQ",
        folder="financeiq",
        default_split="test",
        aliases=("finance-iq", "finance_iq"),
    ),
    four_option(
        name="fineval",
        title="FinEval",
        hub="djdropthebit/fineval",
        folder="fineval",
        default_split="val",
        aliases=("fin-eval", "fin_eval"),
    ),
    BenchmarkInfo(
        name="gsm8k",
        title="GSM8K",
        kind="math",
        hub="openai/gsm8k",
        folder="gsm8k",
        default_split="test",
        shots_split="train",
        layout="single",
        read=read_gsm8k_split,
        prompt=gsm8k_prompt,
        shot_answer=gsm8k_answer,
        score=score_number,
        metrics=compute_metrics,
        chance=None,
        aliases=("gsm-8k", "gsm_8k"),
    ),
)

BENCHMARKS: dict[str, BenchmarkInfo] = {b.name: b for b in DECLARATIONS}
ALIASES: dict[str, str] = {alias: b.name for b in DECLARATIONS for alias in b.aliases}


def benchmark_info(name: str) -> BenchmarkInfo:
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in BENCHMARKS:
        raise EvalError(f"unknown benchmark {name!r}; valid benchmarks: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]

"""The records every other module passes around: one question (:class:`Sample`) and one loaded benchmark
split (:class:`BenchmarkData`)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .benchmarks import BenchmarkInfo


@dataclass
class Sample:
    benchmark: str
    subject: str
    id: str
    question: str
    gold: str  # "A".."D" for multiple choice, the number (as text) for GSM8K
    options: dict[str, str] | None = None
    solution: str | None = None  # GSM8K worked solution (used for few-shot answers)
    category: str | None = None  # C-Eval category (STEM, Social Sciences, Humanities, Other)
    source: str = ""  # file:row, for error messages

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.id}"


@dataclass
class BenchmarkData:
    info: "BenchmarkInfo"
    split: str
    root: Path
    samples: list[Sample]
    shots: dict[str, list[Sample]] = field(default_factory=dict)  # subject -> candidate few-shot examples
    n_before_sampling: int = 0  # questions in the split
    n_pool: int = 0  # questions left after --subjects, before --limit / --limit-per-subject
    notes: list[str] = field(default_factory=list)  # what was found under the root but not read

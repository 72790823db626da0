"""Progress of a scoring pass (``scores.scoring.score_sequences``): the CLI log and LlamaBoard's progress bar.

- Log: LF's logger (``llamafactory.extras.logging``, so LlamaBoard's running log shows the lines too) says
  which model is scoring ("model j/M") and how far it is, every ``logging_steps`` batches (LF's cadence for
  training logs; the parsed ``training_args`` are handed over by ``integration.dispatch`` via ``set_run_args``), plus the start and the last batch.
- LlamaBoard: LF's runner starts the training process with ``LLAMABOARD_ENABLED=1`` and
  ``LLAMABOARD_WORKDIR=<output_dir>``. There each batch also rewrites ``<output_dir>/minor_scoring_progress.json``
  (atomically); the web UI (``webui.scoring_progress_bar``) turns it into LF's progress bar while no training
  step has been logged yet. LF's ``trainer_log.jsonl`` is left to LF: its records are training steps.

Nothing here imports torch or LF at import time.
"""

import datetime
import json
import os
import re
import tempfile
import threading
import time
from typing import Any

PROGRESS_FILE = "minor_scoring_progress.json"
_run = threading.local()


def set_run_args(parsed: tuple | None) -> None:
    """The parsed arguments of this training process (``integration.dispatch`` calls it; None between runs)."""
    _run.parsed = parsed


def _parsed_args():
    """``(model_args, data_args, training_args, finetuning_args, generating_args)`` of this training process, or None."""
    return getattr(_run, "parsed", None)


def which_model(desc: str, parsed: tuple | None = None) -> tuple[int | None, int | None, str | None]:
    """``(j, M, name)`` of the model scoring in the pass ``desc`` (``j``/``M`` None when unknown)."""
    match = re.search(r"\bmodel (\d+)\s*(?:/|of)\s*(\d+)", desc)
    if match:
        return int(match.group(1)), int(match.group(2)), None
    # `llamafactory-minor score`'s passes (scores.standalone): "Scores i/N: <role> <model> (<template>, <split>)",
    # i/N counting sections (model x split), not models; no parsed training arguments there to count the models
    match = re.match(r"Scores \d+/\d+: (?:aligned|reference) (.+) \([^()]*\)$", desc)
    if match:
        return None, None, match.group(1)
    parsed = parsed if parsed is not None else _parsed_args()
    if not parsed:
        return None, None, None
    model_args, finetuning_args = parsed[0], parsed[3]
    aligned = list(getattr(finetuning_args, "poft_aligned_models", None) or [])
    if desc.startswith("Aligned") and aligned:
        hits = [i for i, path in enumerate(aligned) if f" {path} " in f" {desc} "]
        if hits:
            i = max(hits, key=lambda k: len(aligned[k]))  # the longest path that matches
            return i + 1, len(aligned), aligned[i]
    if desc.startswith("Reference"):
        name = getattr(finetuning_args, "ref_model", None) or getattr(model_args, "model_name_or_path", None)
        return 1, 1, name
    return None, None, None


def _logging_every(num_batches: int, parsed=None) -> int:
    parsed = parsed if parsed is not None else _parsed_args()
    steps = getattr(parsed[2], "logging_steps", None) if parsed else None
    if isinstance(steps, (int, float)) and steps > 0:
        return max(1, int(steps) if steps >= 1 else int(num_batches * steps))  # HF: < 1 is a fraction
    return max(1, num_batches // 10)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(0.0, seconds))))


def _webui_dir():
    if os.environ.get("LLAMABOARD_ENABLED", "").lower() in ("1", "true", "y", "yes"):
        return os.environ.get("LLAMABOARD_WORKDIR") or None
    return None


class ScoringProgress:
    """``update(n)`` after each batch of ``total`` sequences (``batch_size`` per batch), ``close()`` at the end."""

    def __init__(self, total: int, batch_size: int, desc: str, pairwise: bool = False, logger: Any = None):
        parsed = _parsed_args()
        self.total, self.desc, self.done, self.batches = total, desc, 0, 0
        self.unit = "sequences (chosen + rejected)" if pairwise else "rows"
        self.num_batches = max(1, -(-total // max(1, batch_size)))
        self.every = _logging_every(self.num_batches, parsed)
        self.model_index, self.model_count, self.model = which_model(desc, parsed)
        self.start = time.time()
        self.logger = logger
        workdir = _webui_dir()
        self.path = os.path.join(workdir, PROGRESS_FILE) if workdir else None
        self._report(log=True)

    @property
    def prefix(self) -> str:
        who = f" [model {self.model_index}/{self.model_count}]" if self.model_index else ""
        return f"{self.desc}{who}"

    def record(self) -> dict:
        elapsed = time.time() - self.start
        remaining = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        return {
            "desc": self.desc,
            "model": self.model,
            "model_index": self.model_index,
            "model_count": self.model_count,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "percentage": round(100.0 * self.done / self.total, 2) if self.total else 100.0,
            "elapsed_time": _clock(elapsed),
            "remaining_time": _clock(remaining),
            "finished": self.done >= self.total,
            "time": time.time(),
            "pid": os.getpid(),
        }

    def _report(self, log: bool) -> None:
        rec = self.record()
        if log and self.logger is not None:
            self.logger.info_rank0(
                f"{self.prefix}: scored {rec['done']}/{rec['total']} {self.unit} ({rec['percentage']:.0f}%), "
                f"{rec['elapsed_time']} elapsed, {rec['remaining_time']} left"
            )
        if self.path:
            try:
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".scoring-", suffix=".tmp")
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(rec, f)
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.path)
            except OSError:  # the bar is a convenience: never fail a pass for it
                pass

    def update(self, n: int) -> None:
        self.done += n
        self.batches += 1
        last = self.done >= self.total
        self._report(log=last or self.batches % self.every == 0)

    def close(self) -> None:
        if self.done < self.total:  # an error ended the pass early: the file says where it stopped
            self._report(log=False)

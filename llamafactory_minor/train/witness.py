"""The run-time proof that the plugin's trainer computed the loss of a plugin configuration.

Every plugin trainer calls :func:`loss_computed` from its loss computation. A plugin workflow runs inside
:func:`expect_plugin_loss`, which also adds a callback to LF's trainer: after the first optimizer step (and
after the workflow, for evaluation-only runs) it checks that the plugin's loss ran. When it did not -- LF's
stock trainer ran in its place, e.g. because LF moved the import the plugin swaps its trainer into
(``lf.TRAINER_SLOTS``) -- the run stops with :class:`~llamafactory_minor.errors.ObjectiveNotApplied`
instead of silently training LF's stock loss under the plugin objective's name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import lf
from ..errors import ObjectiveNotApplied

_state = threading.local()


def loss_computed() -> None:
    """Called by every plugin trainer each time it computes its loss (train or eval)."""
    _state.calls = getattr(_state, "calls", 0) + 1


def calls() -> int:
    return getattr(_state, "calls", 0)


def _error(what: str) -> ObjectiveNotApplied:
    return ObjectiveNotApplied(
        f"{what} was configured, but llamafactory-minor's trainer never computed the loss: LLaMA-Factory's stock "
        "trainer ran instead, so this run would train LF's stock objective under that name. Stopped. "
        "(LF changed where its workflow builds the trainer: llamafactory_minor.lf.TRAINER_SLOTS needs updating.)"
    )


def _callback_class():
    base = lf.symbol("TrainerCallback")

    class WitnessCallback(base):
        """Checks, at the end of the first optimizer step, that the plugin's loss ran."""

        def __init__(self, what: str, start: int):
            self.what, self.start, self.checked, self.worked = what, start, False, False

        def on_step_end(self, args, state, control, **kwargs):
            self.worked = True
            if not self.checked:
                self.checked = True
                if calls() <= self.start:
                    raise _error(self.what)

        def on_evaluate(self, args, state, control, **kwargs):
            self.worked = True

    return WitnessCallback


@contextmanager
def expect_plugin_loss(what: str, callbacks: list | None, training_args: Any) -> Iterator[None]:
    """Run a plugin workflow; fail loudly if the plugin's trainer never computed the loss.

    ``what`` names the configuration (`` `pref_loss: minordpo` ``). ``callbacks`` (LF's list, handed to the
    trainer) gets the first-step check; after the workflow, a run that took a training step or evaluated (a run
    resumed at its last step takes none) must have called :func:`loss_computed` at least once.
    """
    start = calls()
    callback = _callback_class()(what, start)
    if callbacks is not None:
        callbacks.append(callback)
    try:
        yield
    finally:
        if callbacks is not None and callback in callbacks:
            callbacks.remove(callback)
    if callbacks is not None:
        ran = callback.worked
    else:  # no callback list to watch the trainer with: any run that trains or evaluates
        ran = getattr(training_args, "do_train", False) or getattr(training_args, "do_eval", False)
    if ran and calls() <= start:
        raise _error(what)

"""issue 9: the run-time check that the plugin's trainer computed the loss (``train.witness``).

The trainer is played by the test: it calls the callback the witness adds to LF's list as HF's Trainer would
(``on_step_end`` after each optimizer step, ``on_evaluate`` after an evaluation) and ``loss_computed`` where a
plugin trainer computes its loss. The real bypass (LF's stock trainer running) is ``tests/e2e/test_registry_cli.py``.
"""

from types import SimpleNamespace

import pytest

from llamafactory_minor.errors import ObjectiveNotApplied, PluginError
from llamafactory_minor.train import witness

TRAIN = SimpleNamespace(do_train=True, do_eval=False)


def _run(steps, plugin_loss, evaluate=False):
    callbacks = []
    with witness.expect_plugin_loss("`pref_loss: minordpo`", callbacks, TRAIN):
        (callback,) = callbacks
        for _ in range(steps):
            if plugin_loss:
                witness.loss_computed()
            callback.on_step_end(None, None, None)
        if evaluate:
            if plugin_loss:
                witness.loss_computed()
            callback.on_evaluate(None, None, None)
    assert callbacks == []  # LF's list is left as it was


def test_the_plugin_loss_ran():
    _run(steps=3, plugin_loss=True)
    _run(steps=0, plugin_loss=True, evaluate=True)


def test_a_stock_loss_stops_the_run_at_its_first_step():
    with pytest.raises(ObjectiveNotApplied, match=r"`pref_loss: minordpo` was configured.*stock") as info:
        _run(steps=3, plugin_loss=False)
    assert isinstance(info.value, PluginError)  # one line and exit code 2 under the CLI


def test_an_evaluation_only_run_is_checked_too():
    with pytest.raises(ObjectiveNotApplied):
        _run(steps=0, plugin_loss=False, evaluate=True)


def test_a_run_resumed_at_its_last_step_computes_nothing_and_passes():
    _run(steps=0, plugin_loss=False)


def test_without_a_callback_list_any_training_run_must_have_computed_the_loss():
    with pytest.raises(ObjectiveNotApplied):
        with witness.expect_plugin_loss("`stage: minorsft`", None, TRAIN):
            pass
    with witness.expect_plugin_loss("`stage: minorsft`", None, TRAIN):
        witness.loss_computed()

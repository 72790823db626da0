"""Route plugin objectives through LF's own dispatch: each runs on its carrier stage (``sft`` / ``dpo``).

One path for every plugin configuration, independent of LF's error texts:

1. ``get_train_args`` (of ``llamafactory.train.tuner``, wrapped): LF parses and checks the configuration as
   given (``stage: minorsft`` included); then, for a registered stage, ``finetuning_args.stage`` is set to the
   objective's carrier (``registry``: ``sft`` for single-answer stages) and the objective's name is kept in
   ``finetuning_args.minor_stage``. LF's ``_training_function`` then sets up its callbacks, calls its own
   ``run_sft`` / ``run_dpo`` and tears down (process group, Ray) itself.
2. ``run_sft`` / ``run_dpo`` (wrapped): a configuration the plugin trains (``plugin_trains``) restores its
   stage and goes to the plugin workflow (``train.workflows``); every other one calls LF's function unchanged.
3. Every plugin workflow runs under ``train.witness``: if the plugin's trainer never computed the loss (LF's
   stock trainer ran in its place), the run stops with ``ObjectiveNotApplied``.

``_training_function`` is wrapped only to turn a ``PluginError`` into one line and exit code 2 under the CLI.
LF symbols: ``lf.PATCH_POINTS["llamafactory.train.tuner"]``.
"""

import functools
import os
import sys
import threading
from contextlib import contextmanager

from .. import registry
from ..scores.progress import set_run_args
from . import PluginError, check_lf_version

_state = threading.local()


def _carry(finetuning_args) -> None:
    """A registered stage runs on its carrier stage: LF's dispatch calls ``run_sft`` / ``run_dpo`` for it."""
    objective = registry.get(finetuning_args.stage, "stage")
    if objective is not None:
        finetuning_args.minor_stage = objective.name
        finetuning_args.stage = objective.carrier


@contextmanager
def _own_stage(finetuning_args):
    """Within the plugin workflow the stage is the objective's again (the plugin's and LF's code read it)."""
    carried = getattr(finetuning_args, "minor_stage", None)
    if carried is None:
        yield
        return
    carrier = finetuning_args.stage
    finetuning_args.stage = carried
    try:
        yield
    finally:
        finetuning_args.stage = carrier


def _fail(error: Exception):
    """One clear message, no traceback (the message names the key to change); exit code 2."""
    print(f"[llamafactory-minor] error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _in_cli() -> bool:
    """True in ``llamafactory-cli`` (its ``launch``) and in the torchrun workers it starts (``launcher.py`` as main).

    Only there does a ``PluginError`` become exit code 2; Python callers (``llamafactory_minor.run_exp``,
    LF's ``run_exp`` called from a script) get the exception and keep their process.
    """
    if getattr(_state, "raise_errors", False):
        return False
    if getattr(_state, "cli", False):
        return True
    main = sys.modules.get("__main__")
    main_file = os.path.abspath(getattr(main, "__file__", "") or "")
    return main_file.endswith(os.path.join("llamafactory", "launcher.py"))


@contextmanager
def raising_errors():
    """Within: plugin errors raise ``PluginError`` even under the CLI (``llamafactory_minor.run_exp``)."""
    prev = getattr(_state, "raise_errors", False)
    _state.raise_errors = True
    try:
        yield
    finally:
        _state.raise_errors = prev


def patch_launcher(launcher) -> None:
    """``llamafactory-cli``: plugin errors (raised anywhere in ``launch``) print one line and exit with code 2.

    Before LF re-launches ``train`` under torchrun, a plugin configuration is validated once here, so a bad
    config stops with one message instead of one traceback-laden failure per worker.
    """
    original_launch = launcher.launch

    def launch():
        _state.cli = True
        try:
            if len(sys.argv) > 1 and sys.argv[1] == "train" and _will_torchrun():
                _prevalidate(sys.argv[2:])
            return original_launch()
        except PluginError as e:
            _fail(e)

    launcher.launch = launch


def patch_v1_launcher(v1_launcher) -> None:
    """``USE_V1=1``: LF's experimental v1 trainers are not patched; a plugin config stops with one message."""
    original_launch = v1_launcher.launch

    def launch():
        from .validate import is_plugin_config

        argv = (
            sys.argv[2:]
            if len(sys.argv) > 1 and not sys.argv[1].endswith((".yaml", ".yml", ".json"))
            else sys.argv[1:]
        )
        if argv and str(argv[0]).endswith((".yaml", ".yml", ".json")):
            try:
                import yaml

                with open(argv[0], encoding="utf-8") as f:
                    raw = yaml.safe_load(f) or {}
                raw.update(dict(a.split("=", 1) for a in argv[1:] if "=" in a and not a.startswith("-")))
            except Exception:
                raw = {}
            if isinstance(raw, dict) and is_plugin_config(raw):
                _fail(
                    PluginError(
                        "USE_V1=1 runs LLaMA-Factory's v1 trainers, which llamafactory-minor does not "
                        "patch: this config would not train what it names. Unset USE_V1."
                    )
                )
        return original_launch()

    v1_launcher.launch = launch


def _will_torchrun() -> bool:
    from .. import lf

    return (
        lf.is_env_enabled("FORCE_TORCHRUN")
        or lf.is_env_enabled("USE_MCA")
        or (lf.get_device_count() > 1 and not lf.use_ray() and not lf.use_kt())
    )


def _prevalidate(argv) -> None:
    from .validate import is_plugin_config, validate_train_args

    saved = sys.argv
    try:
        sys.argv = [saved[0]] + list(argv)
        from .. import lf

        args = lf.read_args()
    except Exception:  # LF reports an unreadable config itself
        return
    finally:
        sys.argv = saved
    if isinstance(args, dict) and is_plugin_config(args):
        validate_train_args(args)


def patch_tuner(tuner) -> None:
    check_lf_version()
    original_get_train_args = tuner.get_train_args
    original_training_function = tuner._training_function
    original_run_sft = tuner.run_sft
    original_run_dpo = tuner.run_dpo

    @functools.wraps(original_get_train_args)
    def get_train_args(args=None):
        from .. import lf
        from .validate import check_data, is_plugin_config

        raw = lf.read_args(args)
        try:
            parsed = original_get_train_args(raw)  # LF's, with the plugin-wrapped parse (validate.parse_checked)
        except PluginError:
            raise
        except ValueError as e:  # LF's own checks: one line for plugin configurations
            if not is_plugin_config(raw):
                raise
            raise PluginError(str(e)) from None
        check_data(*parsed[:4])  # the same cheap data checks validate_train_args runs
        _state.parsed = parsed
        set_run_args(parsed)  # the scoring pass's log cadence and model names (scores.progress)
        _carry(parsed[3])
        return parsed

    @functools.wraps(original_run_sft)
    def run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks=None):
        if getattr(finetuning_args, "plugin_trains", False):
            from ..train.workflows import run_plugin

            with _own_stage(finetuning_args):
                return run_plugin(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)
        return original_run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)

    @functools.wraps(original_run_dpo)
    def run_dpo(model_args, data_args, training_args, finetuning_args, callbacks=None):
        if getattr(finetuning_args, "plugin_trains", False):
            from ..train.workflows import run_plugin

            with _own_stage(finetuning_args):
                return run_plugin(model_args, data_args, training_args, finetuning_args, None, callbacks)
        return original_run_dpo(model_args, data_args, training_args, finetuning_args, callbacks)

    @functools.wraps(original_training_function)
    def _training_function(config):
        _state.parsed = None
        set_run_args(None)
        try:
            return original_training_function(config)
        except PluginError as e:
            if _in_cli():
                _fail(e)
            raise

    tuner.get_train_args = get_train_args
    tuner.run_sft = run_sft
    tuner.run_dpo = run_dpo
    tuner._training_function = _training_function

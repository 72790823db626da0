"""Route plugin stages and losses; leave LF's own stages exactly as they are.

LF symbols (module ``llamafactory.train.tuner``): ``get_train_args`` (wrapped to remember the parsed
arguments), ``_training_function`` (wrapped: LF's dispatch raises ``ValueError("Unknown task: ...")``
for a stage it does not know, after it has set up its callbacks; for the plugin stages the wrapper then
runs the plugin workflow with those same callbacks and tears down the process group as LF does),
``run_sft`` and ``run_dpo`` (wrapped: ``stage: sft`` with ``track_m_theta`` and ``stage: dpo`` with
``pref_loss`` minordpo / dpop / hinge / ipo go to the plugin; every other configuration calls LF's
function unchanged).
"""

import os
import sys
import threading
from contextlib import contextmanager

from . import NEW_STAGES, PluginError, check_lf_version

_state = threading.local()


def _plugin_workflow(stage: str, finetuning_args):
    if stage == "minorsft":
        from ..train.minorsft.workflow import run_minorsft as run
    elif stage == "sftdpo":
        from ..train.sftdpo.workflow import run_sftdpo as run
    elif stage == "poft":
        from ..train.poft.workflow import run_poft as run
    elif stage == "dpo":
        from ..train.dpo.workflow import run_dpo as run
    elif stage == "sft":
        from ..train.sft.workflow import run_sft as run
    else:  # pragma: no cover
        raise PluginError(f"no plugin workflow for stage {stage}")
    return run


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

        argv = sys.argv[2:] if len(sys.argv) > 1 and not sys.argv[1].endswith((".yaml", ".yml", ".json")) else sys.argv[1:]
        if argv and str(argv[0]).endswith((".yaml", ".yml", ".json")):
            try:
                import yaml

                with open(argv[0], encoding="utf-8") as f:
                    raw = yaml.safe_load(f) or {}
                raw.update(dict(a.split("=", 1) for a in argv[1:] if "=" in a and not a.startswith("-")))
            except Exception:
                raw = {}
            if isinstance(raw, dict) and is_plugin_config(raw):
                _fail(PluginError("USE_V1=1 runs LLaMA-Factory's v1 trainers, which llamafactory-minor does not "
                                  "patch: this config would not train what it names. Unset USE_V1."))
        return original_launch()

    v1_launcher.launch = launch


def _will_torchrun() -> bool:
    from llamafactory.extras.misc import get_device_count, is_env_enabled, use_kt, use_ray

    return is_env_enabled("FORCE_TORCHRUN") or is_env_enabled("USE_MCA") or (
        get_device_count() > 1 and not use_ray() and not use_kt())


def _prevalidate(argv) -> None:
    from .validate import is_plugin_config, validate_train_args

    saved = sys.argv
    try:
        sys.argv = [saved[0]] + list(argv)
        from llamafactory.hparams.parser import read_args

        args = read_args()
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

    def get_train_args(args=None):
        from llamafactory.hparams.parser import read_args

        from .validate import check_data, is_plugin_config

        raw = read_args(args)
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
        return parsed

    def run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks=None):
        if getattr(finetuning_args, "plugin_trains", False):
            return _plugin_workflow("sft", finetuning_args)(
                model_args, data_args, training_args, finetuning_args, generating_args, callbacks
            )
        return original_run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)

    def run_dpo(model_args, data_args, training_args, finetuning_args, callbacks=None):
        if getattr(finetuning_args, "plugin_trains", False):
            return _plugin_workflow("dpo", finetuning_args)(
                model_args, data_args, training_args, finetuning_args, callbacks
            )
        return original_run_dpo(model_args, data_args, training_args, finetuning_args, callbacks)

    def _training_function(config):
        _state.parsed = None
        try:
            try:
                return original_training_function(config)
            except ValueError as e:
                parsed = getattr(_state, "parsed", None)
                if isinstance(e, PluginError) or parsed is None or not str(e).startswith("Unknown task"):
                    raise
                model_args, data_args, training_args, finetuning_args, generating_args = parsed
                if finetuning_args.stage not in NEW_STAGES:
                    raise
            # LF set up its callbacks in config["callbacks"] before it reached its unknown-stage error.
            run = _plugin_workflow(finetuning_args.stage, finetuning_args)
            run(model_args, data_args, training_args, finetuning_args, config.get("callbacks"))
        except PluginError as e:
            if _in_cli():
                _fail(e)
            raise
        _teardown_process_group()

    tuner.get_train_args = get_train_args
    tuner.run_sft = run_sft
    tuner.run_dpo = run_dpo
    tuner._training_function = _training_function


def _teardown_process_group():
    import torch.distributed as dist

    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception as e:  # same tolerance as LF's own teardown
        print(f"[llamafactory-minor] warning: failed to destroy process group: {e}", file=sys.stderr)

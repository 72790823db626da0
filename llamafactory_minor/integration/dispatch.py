"""Route plugin stages and losses; leave LF's own stages exactly as they are.

LF symbols (module ``llamafactory.train.tuner``): ``get_train_args`` (wrapped to remember the parsed
arguments), ``_training_function`` (wrapped: LF's dispatch raises ``ValueError("Unknown task: ...")``
for a stage it does not know, after it has set up its callbacks; for the plugin stages the wrapper then
runs the plugin workflow with those same callbacks and tears down the process group as LF does),
``run_sft`` and ``run_dpo`` (wrapped: ``stage: sft`` with ``track_m_theta`` and ``stage: dpo`` with
``pref_loss`` minordpo / dpop / hinge / ipo go to the plugin; every other configuration calls LF's
function unchanged).
"""

import sys
import threading

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
    """One clear message, no traceback (the message names the key to change)."""
    print(f"[llamafactory-minor] error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def patch_tuner(tuner) -> None:
    check_lf_version()
    original_get_train_args = tuner.get_train_args
    original_training_function = tuner._training_function
    original_run_sft = tuner.run_sft
    original_run_dpo = tuner.run_dpo

    def get_train_args(args=None):
        parsed = original_get_train_args(args)
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
            _fail(e)
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

"""llamafactory-minor: new stages and losses for LLaMA-Factory 0.9.5.

Importing this package activates the plugin (the same lazy hook the installed ``.pth`` file
registers). The training entry point mirrors LF's: ``llamafactory_minor.run_exp(dict)``.
"""

__version__ = "0.1.0"

from . import _hook

_hook.install()


def run_exp(args=None, callbacks=None):
    """Run a training job exactly as ``llamafactory-cli train`` would, with the plugin active.

    A bad configuration raises ``llamafactory_minor.integration.PluginError`` (a ``ValueError``) naming the
    key to change; unlike the CLI (exit code 2) the calling process keeps running.
    """
    from .integration import activate

    activate()
    from llamafactory.train.tuner import run_exp as _lf_run_exp

    from .integration.dispatch import raising_errors

    with raising_errors():
        return _lf_run_exp(args, callbacks)

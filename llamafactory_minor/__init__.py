"""llamafactory-minor: new stages and losses for LLaMA-Factory 0.9.5.

Importing this package activates the plugin (the same lazy hook the installed ``.pth`` file
registers). The training entry point mirrors LF's: ``llamafactory_minor.run_exp(dict)``.
"""

from . import _hook
from .version import __version__  # noqa: F401

_hook.install()


def run_exp(args=None, callbacks=None):
    """Run a training job exactly as ``llamafactory-cli train`` would, with the plugin active.

    A bad configuration raises ``llamafactory_minor.errors.PluginError`` (a ``ValueError``) naming the
    key to change; unlike the CLI (exit code 2) the calling process keeps running.
    """
    from .integration import activate

    activate()
    from . import lf
    from .integration.dispatch import raising_errors

    with raising_errors():
        return lf.run_exp(args, callbacks)

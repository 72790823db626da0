"""The plugin's exceptions (base layer: imports nothing of the plugin, nothing of LF)."""


class PluginError(ValueError):
    """A bad configuration: the message says which key to change."""


class ObjectiveNotApplied(PluginError):
    """A plugin objective was configured, but the plugin's trainer never computed the loss.

    Raised by the run-time check of ``train.witness``: LF's stock trainer ran in its place (for instance
    because LF moved the import the plugin swaps its trainer into), so the run would have silently trained
    LF's stock loss under the plugin objective's name.
    """

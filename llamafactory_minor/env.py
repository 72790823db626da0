"""The plugin's environment switches (base layer; read by the start-up hook, so nothing heavy here)."""

import os

DISABLE_ENV = "LLAMAFACTORY_MINOR_DISABLE"


def disabled() -> bool:
    """``LLAMAFACTORY_MINOR_DISABLE=1``: LF runs unpatched (only the raw-config guard is installed)."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")

"""``python -m llamafactory_minor_eval ...`` (same as the llamafactory-minor-eval command)."""

import sys

from .cli import main

if __name__ == "__main__":  # guarded: vLLM's spawned engine process re-imports the main module
    sys.exit(main())

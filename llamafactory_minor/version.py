"""The plugin's version (base layer)."""

__version__ = "0.1.0"

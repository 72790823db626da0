"""The one exception type that the command line turns into ``error: ...`` (exit code 2)."""


class EvalError(Exception):
    """A user-facing problem (bad input, missing files, unknown names): printed without a traceback."""

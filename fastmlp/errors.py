"""The one exception type a user ever sees, and the helpers that keep it one line.

A one-line message and exit code 2."""

# Defined with the kernels, the bottom of the stack, so that the backend
# registry raises the same class without importing the engine.
from fastmlp.kernels.errors import FastmlpError, one_line

__all__ = ["FastmlpError", "one_line", "error_at"]


def error_at(where, problem) -> FastmlpError:
    """The error "<where>: <problem>" (where: a path, a flag, "canvas"), on one
    line whatever the path or an exception's text holds."""
    return FastmlpError(one_line(f"{where}: {problem}"))

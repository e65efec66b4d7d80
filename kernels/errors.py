"""The one exception type a user ever sees.

Defined at the bottom of the stack so the kernels can raise it too.

The kernels import nothing of the engine (fastmlp.*), yet the backend
registry's failures (an unknown name, a backend that does not import) must
reach the user like every other mistake: one line, exit code 2. So the class
lives here, and fastmlp.errors, where the engine and its users import it,
re-exports it with the message helpers.
"""


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines too) collapsed to one space."""
    return " ".join(str(text).split())


class FastmlpError(Exception):
    """A user mistake or bad input. The CLI prints ``fastmlp: error: <message>``
    and exits non-zero; it never shows a traceback for these."""

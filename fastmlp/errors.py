"""The one exception type a user ever sees: a one-line message, exit code 2."""


class FastmlpError(Exception):
    """A user mistake or bad input. The CLI prints ``fastmlp: error: <message>``
    and exits non-zero; it never shows a traceback for these."""

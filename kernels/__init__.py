"""Kernels behind one interface.

``get_backend(name)`` returns a module that implements every op of the contract
(see contract.py).

- ``numpy``: the reference, written to be read (numpy_backend.py).
- ``numba``: the compiled twin, written to be fast (numba_backend.py).

A new backend is a module implementing contract.OPS, added to BACKENDS.
"""

import importlib
import os

from . import contract
from .errors import FastmlpError, one_line

# name -> module (relative to this package)
BACKENDS = {"numpy": ".numpy_backend", "numba": ".numba_backend"}

DEFAULT_BACKEND_ENV = "FASTMLP_BACKEND"


def default_backend_name() -> str:
    """FASTMLP_BACKEND if set, else the reference."""
    return os.environ.get(DEFAULT_BACKEND_ENV, "numpy")


def get_backend(name: str | None = None):
    """The backend module called ``name`` (default: default_backend_name()).
    Unknown names and backends that fail to import raise a one-line FastmlpError."""
    name = name or default_backend_name()
    if name not in BACKENDS:
        raise FastmlpError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(BACKENDS[name], __name__)
    except Exception as exc:  # ImportError, or a broken numba/llvmlite install
        reason = one_line(exc) or type(exc).__name__
        raise FastmlpError(f"backend {name!r} is unavailable: {reason}") from None
    missing = contract.missing_ops(module)
    if missing:
        raise FastmlpError(f"backend {name!r} does not implement: {', '.join(missing)}")
    return module

"""How the Numba backend compiles: one decorator, and a cache that sees edits.

One decorator for every kernel, and a cache that notices when any kernel
source changes.

Numba's cache checks only the file that defines a function, and by its
modification time and size: a kernel whose callee lives in another file
(batch_worker calls product_rows, which inlines tile_fma from numba_ir.py)
would be loaded stale after an edit to that other file. So every kernel's
cache entry is stamped with a digest of all the backend's kernel sources
instead (``SOURCES_DIGEST``): an edit anywhere recompiles everything once,
nothing stale is ever loaded, and an entry compiled from the same sources
on another machine (for the same CPU level, numba_target.py; the shipped
bundle, compiled_bundle.py) is as good as one compiled here.
"""

import hashlib
import os

import numpy as np
from numba import njit
from numba.core import caching

from . import numba_target  # noqa: F401  (chooses the CPU before anything compiles)

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))


def _kernel_sources():
    """The files whose code the compiled kernels are made of."""
    return sorted(name for name in os.listdir(KERNEL_DIR)
                  if name.endswith(".py") and (name.startswith("numba_") or name == "augment_numba.py"))


def sources_digest() -> str:
    """SHA-256 of every kernel source (names and contents), as they are now."""
    digest = hashlib.sha256()
    for name in _kernel_sources():
        with open(os.path.join(KERNEL_DIR, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()


SOURCES_DIGEST = sources_digest()


class _KernelSourcesLocator(caching._CacheLocator):
    """Numba's own locator for a function of this directory (the first that
    applies: in-tree __pycache__, the user-wide cache, NUMBA_CACHE_DIR...),
    with SOURCES_DIGEST as its source stamp."""

    # How the locators of this kind know each other: the same file imported
    # under a second name (``kernels`` from the source tree beside
    # ``fastmlp.kernels``; a cached function's pickle can bring it in) is a
    # second class, and by class identity each would wrap the other forever.
    wraps_kernel_sources = True

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        # whatever else Numba reads of a locator (_py_file, for its "cannot
        # cache" warning) is the inner one's
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return SOURCES_DIGEST

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) != KERNEL_DIR:
            return None   # not ours: Numba's locators decide as usual
        for locator in caching.CacheImpl._locator_classes:
            if not getattr(locator, "wraps_kernel_sources", False):
                inner = locator.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
        return None


if not any(getattr(k, "wraps_kernel_sources", False) for k in caching.CacheImpl._locator_classes):
    caching.CacheImpl._locator_classes.insert(0, _KernelSourcesLocator)


def read_only(a):
    """A read-only C-contiguous view of ``a`` (a copy only if ``a`` is not
    C-contiguous): a kernel's inputs then have one Numba type whether the
    caller's arrays are writable or not (Numba types the two apart, and each
    type is another compile)."""
    view = np.ascontiguousarray(a).view()
    view.flags.writeable = False
    return view


def jit(parallel=False, inline=False):
    """njit(cache=True, nogil=True), falling back to cache=False when Numba finds
    no usable cache directory (it raises RuntimeError at decoration then).
    error_model="numpy": x / 0 gives inf/NaN as in NumPy instead of raising.
    No fastmath: the only fused multiply-adds are the explicit ones of the
    micro-kernel. inline: small helpers are inlined into their callers'
    Numba IR instead of being compiled on their own. Every helper called per
    row or per group of rows is: a call to a kernel compiled on its own costs
    ~50 ns (measured 2026-12-03: row_bits over 128 rows of 64 values, 6.8 µs
    called once a row, 0.3 µs inlined; 10k-image inference 8.3-8.6 ms ->
    7.5-7.9 ms once row_bits, kept_ks and the row kernels of numba_rows were
    inlined)."""
    def decorate(fn):
        options = dict(nogil=True, parallel=parallel, error_model="numpy",
                       inline="always" if inline else "never")
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:
            return njit(cache=False, **options)(fn)
    return decorate

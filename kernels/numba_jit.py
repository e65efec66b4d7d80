"""How the Numba backend compiles: one decorator for every kernel."""

from numba import njit


def jit(parallel=False, inline=False):
    """njit(cache=True, nogil=True), falling back to cache=False when Numba finds
    no usable cache directory (it raises RuntimeError at decoration then).
    error_model="numpy": x / 0 gives inf/NaN as in NumPy instead of raising.
    No fastmath: the only fused multiply-adds are the explicit ones of the
    micro-kernel. inline: small helpers are inlined into their callers'
    Numba IR instead of being compiled on their own."""
    def decorate(fn):
        options = dict(nogil=True, parallel=parallel, error_model="numpy",
                       inline="always" if inline else "never")
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:
            return njit(cache=False, **options)(fn)
    return decorate

"""Keep freed memory for reuse, so that an answer does not page-fault.

Each answer makes a few dozen short-lived arrays of 100-400 KB (the 280x280
canvas in float32 through preprocessing, the pictures, the Numba backend's
packed weights). glibc's malloc serves blocks that large with mmap, or trims
the top of its heap back to the system once they are freed, so the next
answer gets fresh pages from the kernel: ~450 minor page faults per answer,
~0.5 ms of a ~3.5 ms refresh on a fast machine (bench/gui_latency.py; more
on a virtual machine, where a fault costs more). Raising the mmap and trim
thresholds keeps that memory in the heap between answers: the faults go to
~0, at the price of up to TRIM_BYTES of freed memory the process keeps.

glibc only (Linux); elsewhere, or if the C library refuses, nothing changes.
No Tk here.
"""

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_BYTES = 32 << 20  # blocks below this come from the heap (glibc's default: 128 KB, adaptive)
TRIM_BYTES = 64 << 20  # free memory at the heap's top kept for reuse (default: 128 KB, adaptive)


def keep_freed_memory() -> bool:
    """Set glibc's malloc thresholds for this process (once is enough; again
    is harmless). True if set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, ValueError, AttributeError):  # no glibc (musl), no confstr name
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))

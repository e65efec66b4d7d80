"""Memory estimates: refuse, with the figure, what would not fit before allocating it.

Every input that decides how much fastmlp allocates (an IDX header, a
checkpoint's layer sizes, an image's dimensions, --epochs, --hidden,
--batch-size) is checked here first, so a hostile or mistyped value ends in
one line naming the figure instead of a MemoryError traceback, a swapping
machine or the OOM killer.

The limit is what the process may still take: the smaller of the memory the
kernel reports available (``MemAvailable``) and the address space left under
``RLIMIT_AS`` (a user or a test that sets ``ulimit -v`` gets the refusal, not
a MemoryError). Estimates count the large arrays only; interpreter, library
and small temporaries are in ``HEADROOM``.
"""

from __future__ import annotations

import os
import re
import resource

from fastmlp.errors import FastmlpError

# Kept free for everything the estimates leave out (the interpreter, NumPy,
# Numba's compiled code, small temporaries): measured ~0.7 GB of address
# space for a process with Numba loaded, most of it reserved, not resident.
HEADROOM = 64 * 2**20


def _proc_status_kib(field: str, path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def available_bytes() -> int:
    """Bytes this process may still allocate (best effort; see module doc)."""
    limits = []
    available = _proc_status_kib("MemAvailable", "/proc/meminfo")
    if available is not None:
        limits.append(available * 1024)
    else:  # not Linux: total physical memory is the best figure there is
        try:
            limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _proc_status_kib("VmSize", "/proc/self/status")
        limits.append(soft - (used or 0) * 1024)
    return max(0, min(limits) - HEADROOM) if limits else 2**63


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'; any size, in the largest unit that keeps it >= 1."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def require(nbytes: int, what: str) -> None:
    """Raise a one-line FastmlpError when ``what`` needs more than ``available_bytes()``.

    ``nbytes`` is an exact Python int (no overflow for absurd values).
    """
    available = available_bytes()
    if nbytes > available:
        raise FastmlpError(f"{what} needs about {format_bytes(nbytes)} of memory, "
                           f"more than the {format_bytes(available)} available")

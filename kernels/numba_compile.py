"""Cold start on two cores: a helper process compiles the side kernels into Numba's cache meanwhile.

Numba compiles one function at a time per process (its compiler holds a
lock), and on a fresh cache ``prepare`` spends its seconds in three
independent jobs: the fused worker that training runs (numba_train.py), the
one-image kernels of the GUI and of predict (forward_few, linear_few,
backward_few), and, with augmentation, the augment op. The worker is the
longest; the other two together are about as long again. So when the side
kernels are not cached yet, ``CompileHelper`` starts a second Python process
that compiles them into the cache (the same files: the cache key is the
kernel sources' digest, numba_jit.py) while this process compiles the worker;
this process then waits for it and loads them from the cache. Nothing it
does changes a result; if it fails or is not there, this process compiles
them itself, as before.
"""

import atexit
import os
import subprocess
import sys


def _cached(dispatcher) -> bool:
    """Whether ``dispatcher`` has a cache index on disk (it was compiled and
    cached before; a stale index is recompiled over, which is still right)."""
    try:
        return os.path.exists(dispatcher._cache._cache_file._index_path)
    except AttributeError:   # caching off (NullCache), or another Numba: no helper
        return True


class CompileHelper:
    """``python -c "<module>.prepare_side(dtype, augment, pen)"`` in the
    background, started only when some of ``dispatchers`` (the side kernels
    the helper would compile) are not cached and a second core exists.
    ``wait()`` before using them: then they load from the cache."""

    TIMEOUT = 300   # seconds: a helper that hangs is killed, never waited on for ever

    def __init__(self, module: str, dtype, augment: bool, pen: bool, dispatchers):
        self.process = None
        if (os.cpu_count() or 1) < 2 or all(_cached(d) for d in dispatchers):
            return
        code = (f"import {module} as m; "
                f"m.prepare_side({str(dtype)!r}, {bool(augment)}, {bool(pen)})")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        try:
            self.process = subprocess.Popen([sys.executable, "-c", code], env=env,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        except OSError:   # no interpreter to start: compile here, as before
            self.process = None
            return
        # A process that exits first (a bad flag, the window closed) takes the
        # helper with it: Numba writes each cache file whole (a rename), so a
        # kill leaves no half-written entry.
        atexit.register(self._stop)

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def wait(self) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=self.TIMEOUT)
        except subprocess.TimeoutExpired:
            self._stop()

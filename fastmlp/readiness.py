"""Getting kernels ready off the critical path: ``backend.prepare(dtype)`` in a background thread.

No printing and no Tk here.

A compiled backend's prepare takes 5-35 s where it must compile (a Numba
cache that neither holds the kernels nor could be seeded with the shipped
ones, kernels/compiled_bundle.py), well under 1 s otherwise. Run where the user waits for it, that is a frozen window or
a silent pause, and run inside a timed epoch it inflates the epoch's seconds.
So the CLI starts it while it loads data and announces any wait that is left,
and the GUI keeps answering with NumPy until it is done. Both see a failure
as one FastmlpError line, like every other fastmlp error.
"""

import threading
import time

import numpy as np

from fastmlp.errors import FastmlpError


def prepare(backend, dtype, augment=False, pen=False) -> None:
    """``backend.prepare(dtype, augment=augment, pen=pen)``, any failure (a Numba compile
    error is many lines) raised as a one-line FastmlpError naming the backend."""
    dtype = np.dtype(dtype)
    try:
        # only the options asked for: a backend that needs neither may take dtype alone
        options = {name: True for name, wanted in (("augment", augment), ("pen", pen)) if wanted}
        backend.prepare(dtype, **options)
    except FastmlpError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise FastmlpError(f"backend {backend.name!r} failed to get its {dtype} kernels ready: "
                           f"{type(exc).__name__}{': ' + reason if reason else ''}") from None


class Preparation:
    """One backend getting ready for ``dtype`` in a daemon thread, started at
    construction: ``load()`` returns the backend (the GUI loads it there too:
    importing numba alone takes ~0.5 s), then :func:`prepare` runs.

    Watch it with ``done`` (never blocks: for a Tk ``after`` loop) or
    ``wait(timeout)``; once done, ``result()`` is the ready backend or raises
    the FastmlpError, and ``seconds`` how long getting ready took. The thread
    is a daemon: a process that exits early (a bad flag, the window closed)
    does not wait for a compile it no longer needs."""

    def __init__(self, name: str, dtype, load, augment=False, pen=False):
        self.name, self.dtype, self.augment, self.pen = name, np.dtype(dtype), augment, pen
        self.backend = None  # set once ready
        self.error: FastmlpError | None = None
        self.seconds: float | None = None
        self._done = threading.Event()
        self._started = time.monotonic()
        threading.Thread(target=self._run, args=(load,), name=f"fastmlp-prepare-{name}",
                         daemon=True).start()

    def _run(self, load) -> None:
        try:
            backend = load()
            prepare(backend, self.dtype, self.augment, self.pen)
            self.backend = backend
        except FastmlpError as exc:  # from load (an import failure) or prepare
            self.error = exc
        except Exception as exc:  # a failing load that is a bug: still end visibly
            self.error = FastmlpError(f"backend {self.name!r} failed to load: "
                                      f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        finally:
            self.seconds = time.monotonic() - self._started
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done or ``timeout`` seconds passed; True if done."""
        return self._done.wait(timeout)

    def result(self):
        """The ready backend (call once done); raises the failure as FastmlpError."""
        if not self.done:
            raise RuntimeError("Preparation.result() before it is done")
        if self.error is not None:
            raise self.error
        return self.backend

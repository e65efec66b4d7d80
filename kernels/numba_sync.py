"""Threads for the Numba backend without Numba's parallel regions.

Every thread runs the same compiled worker over fixed parts and they meet at a
barrier between the phases of a batch.

Why not ``prange``: a parallel region costs a thread-pool launch per phase
(two per batch), and its gufunc links and re-optimizes every kernel it
calls once more, which tripled the cold compile. Here each worker is one
ordinary nogil function; a barrier is two atomic operations and a spin.
Results never depend on the thread count: threads claim fixed parts from a
counter (next_part); every result is computed by exactly one part.
"""

import os
import queue
import threading

import numpy as np

from .numba_ir import atomic_add, atomic_load, atomic_store, spin_pause, yield_cpu
from .numba_jit import jit

# Spins (each a CPU pause, ~30-100 ns) before a waiting thread yields its
# core: enough to cover a phase's imbalance, short enough that a thread
# preempted by another process gets its core back soon.
_SPINS = 1 << 12


def barrier_state():
    """The state the threads of one call share: [threads arrived, generation,
    next part of phase 0, next part of phase 1]."""
    return np.zeros(4, np.int64)


@jit()
def next_part(sync, phase):
    """Claim the next part of ``phase`` (0 or 1): 0, 1, 2, ... across all
    threads, each once. Which thread computes a part never changes its
    result, so claiming parts as threads come free balances the load
    without touching determinism."""
    return atomic_add(sync, 2 + phase, 1)


@jit()
def barrier(sync, threads, phase):
    """Wait until all ``threads`` threads have finished ``phase``. The last
    to arrive resets that phase's part counter (no one claims from it again
    before the next barrier) and opens the next generation."""
    if threads == 1:
        atomic_store(sync, 2 + phase, 0)
        return
    generation = atomic_load(sync, 1)
    if atomic_add(sync, 0, 1) == threads - 1:
        atomic_store(sync, 2 + phase, 0)
        atomic_store(sync, 0, 0)
        atomic_add(sync, 1, 1)
        return
    spins = 0
    while atomic_load(sync, 1) == generation:
        spin_pause()
        spins += 1
        if spins >= _SPINS:
            yield_cpu()
            spins = 0


class _Helpers:
    """Threads 1..k of a call, started once and kept waiting for work.

    A thread started per call cost ~0.2 ms (start, join, the other core
    waking up): 40% of a batch, which made a short threaded segment look
    slower than one thread to the thread policy. A waiting helper takes a
    call in a few microseconds. One call at a time uses the helpers (the GUI
    may infer while it trains); a second concurrent call starts threads of
    its own, as before. Helpers are started by the calling thread and so
    share its CPU priority (Linux keeps a nice value per thread; the GUI
    trains at a lower one): each priority has helpers of its own
    (``helpers_for``). After os.fork the child starts with none."""

    def __init__(self):
        self.lock = threading.Lock()
        self.inboxes = []   # one queue per helper thread: (worker, tid, threads, args, done)

    def ensure(self, count):
        while len(self.inboxes) < count:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), daemon=True,
                             name=f"fastmlp-numba-{len(self.inboxes) + 1}").start()
            self.inboxes.append(inbox)

    @staticmethod
    def _serve(inbox):
        while True:
            worker, tid, threads, args, done = inbox.get()
            try:
                worker(tid, threads, *args)
                done.put(None)
            except BaseException as exc:  # surfaced in the caller, never lost in a thread
                done.put(exc)


_HELPERS = {}   # the calling thread's nice value -> its _Helpers
_HELPERS_LOCK = threading.Lock()


def _nice() -> int:
    """The calling thread's nice value (per thread on Linux); 0 where unknown."""
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except (AttributeError, OSError):
        return 0


def helpers_for(nice: int) -> _Helpers:
    with _HELPERS_LOCK:
        if nice not in _HELPERS:
            _HELPERS[nice] = _Helpers()
        return _HELPERS[nice]


def _forget_helpers():
    global _HELPERS_LOCK
    _HELPERS.clear()
    _HELPERS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def run_threads(worker, threads, *args):
    """worker(tid, threads, *args) on ``threads`` threads (this one is tid 0);
    returns thread 0's result. The worker must release the GIL (nogil)."""
    if threads == 1:
        return worker(0, 1, *args)
    helpers = helpers_for(_nice())
    if not helpers.lock.acquire(blocking=False):
        return _run_on_new_threads(worker, threads, args)
    try:
        helpers.ensure(threads - 1)
        done = queue.SimpleQueue()
        for tid in range(1, threads):
            helpers.inboxes[tid - 1].put((worker, tid, threads, args, done))
        try:
            result = worker(0, threads, *args)
        finally:   # the helpers are free again only once all have finished
            errors = [e for e in (done.get() for _ in range(1, threads)) if e is not None]
    finally:
        helpers.lock.release()
    if errors:
        raise errors[0]
    return result


def _run_on_new_threads(worker, threads, args):
    """run_threads on threads of this call's own (the helpers are busy)."""
    errors = []

    def other(tid):
        try:
            worker(tid, threads, *args)
        except BaseException as exc:  # surfaced below, never lost in a thread
            errors.append(exc)

    pool = [threading.Thread(target=other, args=(tid,), daemon=True) for tid in range(1, threads)]
    for t in pool:
        t.start()
    result = worker(0, threads, *args)
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return result

"""Threads for the Numba backend without Numba's parallel regions: every
thread runs the same compiled worker over fixed parts and they meet at a
barrier between the phases of a batch.

Why not ``prange``: a parallel region costs a thread-pool launch per phase
(two per batch), and its gufunc links and re-optimizes every kernel it
calls once more, which tripled the cold compile. Here each worker is one
ordinary nogil function; a barrier is two atomic operations and a spin.
Results never depend on the thread count: threads claim fixed parts from a
counter (next_part); every result is computed by exactly one part.
"""

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


def run_threads(worker, threads, *args):
    """worker(tid, threads, *args) on ``threads`` threads (this one is tid 0);
    returns thread 0's result. The worker must release the GIL (nogil)."""
    if threads == 1:
        return worker(0, 1, *args)
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

"""Host-side thread policy of the Numba backend: all threads or one.

How many threads a compiled call may use, and whether training is faster on
all of them or on one right now (another process, or another library in this
one, may hold a core). Never changes results: the kernels cut work into
fixed parts (kernels/numba_train.py)."""

import time

import numba


class ThreadPolicy:
    """Whether train_batches runs a batch's parts on all threads or one.
    The results are the same bits either way; only the speed differs, and
    not always in favour of threads: the threads synchronise twice per batch,
    and when something else holds the other core each synchronisation waits
    for a scheduler time slice (measured: an epoch 3-40x slower than on one
    thread). Contention comes and goes: a BLAS call elsewhere in the process
    leaves OpenBLAS's threads spinning for a while after it returns, another
    process may run for a second or for good.

    So the batches run in timed segments of SEGMENT batches, each in the mode
    that is faster per batch, judged by the best of its last RECENT segments
    (contention only ever slows a segment down, so the best is the honest
    figure and one unlucky segment does not flip the choice). The mode not in
    use is re-measured on PROBE batches once its back-off has passed: it
    starts at MIN_BACKOFF seconds and doubles, up to MAX_BACKOFF, each time
    the probe loses, and returns to MIN_BACKOFF when one wins. The back-off is
    wall-clock time, not calls: a brief contention that pushed training onto
    one thread is left behind within a fraction of a second (measured before
    this: an epoch stuck on one thread, 1.4x slower, for many epochs after a
    burst of BLAS calls), while contention that stays costs one slow probe
    every MAX_BACKOFF seconds (at most a few percent)."""

    SEGMENT = 16
    RECENT = 3
    PROBE = 4
    MIN_BACKOFF, MAX_BACKOFF = 0.05, 2.0

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.recent = {True: [], False: []}   # seconds per batch, newest last
        self.backoff = self.MIN_BACKOFF
        self.next_probe = clock()

    @staticmethod
    def count():
        """Threads a call may use: numba.get_num_threads() (NUMBA_NUM_THREADS,
        or what numba.set_num_threads chose), so the usual knob limits it."""
        return numba.get_num_threads()

    def available(self):
        return self.count() >= 2

    def seconds_per_batch(self, threads):
        return min(self.recent[threads]) if self.recent[threads] else None

    def preferred(self):
        if not self.available():
            return False
        threaded, single = self.seconds_per_batch(True), self.seconds_per_batch(False)
        return threaded is None or single is None or threaded < single

    def segments(self, first, stop):
        """Yield (lo, hi, threads) covering batches first..stop-1; the caller
        reports each segment's time with record() before taking the next."""
        lo = first
        while lo < stop:
            best = self.preferred()
            if self.available() and self.clock() >= self.next_probe:
                hi = min(stop, lo + self.PROBE)
                yield lo, hi, not best
                self._after_probe(won=self.preferred() != best)
            else:
                hi = min(stop, lo + self.SEGMENT)
                yield lo, hi, best
            lo = hi

    def _after_probe(self, won):
        self.backoff = self.MIN_BACKOFF if won else min(2 * self.backoff, self.MAX_BACKOFF)
        self.next_probe = self.clock() + self.backoff

    def record(self, threads, seconds_per_batch):
        self.recent[threads] = (self.recent[threads] + [seconds_per_batch])[-self.RECENT:]


THREADS = ThreadPolicy()

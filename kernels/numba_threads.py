"""Host-side thread policy of the Numba backend: how many threads a compiled
call may use, and whether training is faster on all of them or on one right
now (another process may hold a core). Never changes results: the kernels
cut work into fixed parts (kernels/numba_train.py)."""

import numba


class ThreadPolicy:
    """Whether train_batches runs a batch's parts on all threads or one.
    The results are the same bits either way; only the speed differs, and
    not always in favour of threads: the threads synchronise twice per batch,
    and when another process holds the other core each synchronisation waits
    for a scheduler time slice (measured: an epoch 3-40x slower than on one
    thread). So the batches run in timed segments, each in the mode that is
    faster per batch, judged by the best of its last RECENT segments
    (contention only ever slows a segment down, so the best is the honest
    figure and one unlucky segment does not flip the choice). Threaded
    segments are SEGMENT batches long, so a core lost to another process
    for good is noticed within RECENT * SEGMENT batches. The mode not in use
    is re-measured on PROBE batches every `interval` calls; the interval
    doubles (up to MAX_INTERVAL) each time the probe loses, so a busy machine
    pays for few slow probes."""

    SEGMENT = 8
    RECENT = 3
    PROBE = 4
    MIN_INTERVAL, MAX_INTERVAL = 4, 32

    def __init__(self):
        self.recent = {True: [], False: []}   # seconds per batch, newest last
        self.calls = 0
        self.interval = self.MIN_INTERVAL

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
        self.calls += 1
        lo = first
        if self.available() and self.calls % self.interval == 1:
            best = self.preferred()
            hi = min(stop, lo + self.PROBE)
            yield lo, hi, not best
            self.interval = (self.MIN_INTERVAL if self.preferred() != best
                             else min(2 * self.interval, self.MAX_INTERVAL))
            lo = hi
        while lo < stop:
            threads = self.preferred()
            hi = min(stop, lo + self.SEGMENT) if threads else stop
            yield lo, hi, threads
            lo = hi

    def record(self, threads, seconds_per_batch):
        self.recent[threads] = (self.recent[threads] + [seconds_per_batch])[-self.RECENT:]


THREADS = ThreadPolicy()


"""Host-side thread policy of the Numba backend: how a training call runs.

How many threads a compiled call may use, and which way of running a call's
batches is fastest right now: on one thread, or on all of them with the work
cut one of two ways (another process, or another library in this one, may
hold a core; how far apart the cores are changes too). Never changes
results: the kernels cut work into fixed parts (kernels/numba_train.py)."""

import time

import numba

# The ways a call can run its batches; the same bits in every one.
ONE = 0      # on one thread
ROWS = 1     # on all threads, each batch's rows shared out (every thread reads all of W[0])
STRIPS = 2   # on all threads, W[0]'s strips owned by one thread each (numba_train.owned_strips)
MODES = (ONE, ROWS, STRIPS)


class ThreadPolicy:
    """Which mode (ONE, ROWS, STRIPS) train_batches runs a batch in.
    The results are the same bits in every mode; only the speed differs, and
    not always in favour of threads: the threads synchronise at every phase
    of a batch, and when something else holds the other core each
    synchronisation waits for a scheduler time slice (measured: an epoch 3-40x
    slower than on one thread). Contention comes and goes: a BLAS call
    elsewhere in the process leaves OpenBLAS's threads spinning for a while
    after it returns, another process may run for a second or for good. And
    which threaded cut wins depends on what a cache line costs to move
    between the cores, which a virtual machine's host changes from one second
    to the next (measured on a Zen 5 guest: ROWS 150 us a batch and STRIPS
    165 while the cores were close, 250-290 and 210 while they were far).

    So the batches run in timed segments of SEGMENT batches, each in the mode
    that is fastest per batch, judged by the best of its last RECENT segments
    (contention only ever slows a segment down, so the best is the honest
    figure and one unlucky segment does not flip the choice). The other modes
    are re-measured, the least recently measured first, on PROBE batches once
    the back-off has passed, after one batch that is not judged (it pays for
    moving the weights into the caches the new mode uses). A mode that loses
    its lead in its own segments is probed again after MIN_BACKOFF: the host
    also stalls a core for a few milliseconds now and then (measured: a
    segment or three at 2-3x its time, once or twice an epoch), and such a
    stall must not keep training off the fastest mode for seconds. The back-off
    starts at MIN_BACKOFF seconds and doubles, up to MAX_BACKOFF, each time a
    probe loses, and returns to MIN_BACKOFF when one wins. It is wall-clock
    time, not calls: a brief contention that pushed training onto one thread
    is left behind within a fraction of a second (measured before this: an
    epoch stuck on one thread, 1.4x slower, for many epochs after a burst of
    BLAS calls), while contention that stays costs one slow probe every
    MAX_BACKOFF seconds (at most a few percent)."""

    SEGMENT = 16
    RECENT = 3
    PROBE = 4
    MIN_BACKOFF, MAX_BACKOFF = 0.05, 2.0

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.recent = {mode: [] for mode in MODES}   # seconds per batch, newest last
        self.measured_at = {mode: float("-inf") for mode in MODES}
        self.backoff = self.MIN_BACKOFF
        self.next_probe = clock()
        self.recheck = None   # a mode that lost its lead without a probe: probed next
        self._warming = False

    @staticmethod
    def count():
        """Threads a call may use: numba.get_num_threads() (NUMBA_NUM_THREADS,
        or what numba.set_num_threads chose), so the usual knob limits it."""
        return numba.get_num_threads()

    def available(self):
        return self.count() >= 2

    def modes(self, strips):
        """The modes a call can run when W[0] has ``strips`` strips: STRIPS
        only where every thread can own one."""
        if not self.available():
            return (ONE,)
        return MODES if self.count() <= strips else (ONE, ROWS)

    def seconds_per_batch(self, mode):
        return min(self.recent[mode]) if self.recent[mode] else None

    def preferred(self, modes=MODES):
        """A threaded mode of ``modes`` not yet measured (ROWS first), else
        the fastest."""
        if not self.available() or modes == (ONE,):
            return ONE
        for mode in (ROWS, STRIPS):
            if mode in modes and not self.recent[mode]:
                return mode
        return min(modes, key=self.seconds_per_batch)

    def segments(self, first, stop, modes=MODES):
        """Yield (lo, hi, mode) covering batches first..stop-1; the caller
        reports each segment's time with record() before taking the next."""
        lo = first
        while lo < stop:
            best = self.preferred(modes)
            others = [m for m in modes if m != best]
            if others and self.clock() >= self.next_probe:
                probe = self.recheck if self.recheck in others else min(
                    others, key=self.measured_at.__getitem__)
                self.recheck = None
                if stop - lo > 1:   # one batch to settle in, not judged
                    self._warming = True
                    yield lo, lo + 1, probe
                    self._warming = False
                    lo += 1
                hi = min(stop, lo + self.PROBE)
                yield lo, hi, probe
                self._after_probe(won=self.preferred(modes) == probe)
            else:
                hi = min(stop, lo + self.SEGMENT)
                yield lo, hi, best
                if self.preferred(modes) != best:   # it slowed down: maybe for a moment
                    self.recheck = best
                    self.next_probe = min(self.next_probe, self.clock() + self.MIN_BACKOFF)
            lo = hi

    def _after_probe(self, won):
        self.backoff = self.MIN_BACKOFF if won else min(2 * self.backoff, self.MAX_BACKOFF)
        self.next_probe = self.clock() + self.backoff

    def record(self, mode, seconds_per_batch):
        if self._warming:
            return
        self.recent[mode] = (self.recent[mode] + [seconds_per_batch])[-self.RECENT:]
        self.measured_at[mode] = self.clock()


THREADS = ThreadPolicy()

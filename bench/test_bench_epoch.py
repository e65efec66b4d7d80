"""One training epoch per backend, and the textbook yardstick.

The default recipe (TrainConfig(): batch 128, Nesterov momentum 0.9, lr 0.05
cosine, weight decay 1e-3), 784-128-64-10 float32, 60000 MNIST rows (6000 with
FASTMLP_BENCH_QUICK=1).

Timed: the epoch's permutation plus every train_batches call over all batches,
chunked as fastmlp.train.run does; not timed: evaluation, model init, the
lr schedule, compilation (benchlib.run_epoch). Before timing, an untimed epoch
from the same initial model must give the reference's mean loss within
rtol 1e-3, and every timed round must too.

test_epoch_textbook times bench/textbook.py (the plain-NumPy MLP a typical
user writes, one call per epoch; benchlib.TEXTBOOK) the same way, in the same
benchmark group as the backends, so the table shows the yardstick beside them.
"""

import pytest

import benchlib


def _bench_epoch(benchmark, backend, epoch_setup, reference_epoch, quick):
    benchlib.warm_up_epoch(backend, epoch_setup)
    if backend.name == benchlib.REFERENCE:
        checked = reference_epoch  # the fixture's epoch is the reference's own check run
    else:
        checked = benchlib.run_epoch(backend, epoch_setup, benchlib.fresh_state(epoch_setup))
    benchlib.check_epoch_loss(backend.name, checked, reference_epoch)

    results = []

    def setup():
        return (backend, epoch_setup, benchlib.fresh_state(epoch_setup)), {}

    def epoch(*args):
        results.append(benchlib.run_epoch(*args))

    benchmark.group = f"epoch {epoch_setup.n} rows batch {epoch_setup.config.batch_size}"
    benchmark.pedantic(epoch, setup=setup, rounds=1 if quick else 3, iterations=1)
    for result in results:
        benchlib.check_epoch_loss(backend.name, result, reference_epoch)
    best = min(r.seconds for r in results)
    benchmark.extra_info.update(
        backend=backend.name, rows=epoch_setup.n, loss=results[0].loss,
        samples_per_s=epoch_setup.n / best, gflops_dense=epoch_setup.flops / best / 1e9)


def test_epoch(benchmark, backend, epoch_setup, reference_epoch, quick):
    _bench_epoch(benchmark, backend, epoch_setup, reference_epoch, quick)


def test_epoch_textbook(benchmark, epoch_setup, reference_epoch, quick):
    _bench_epoch(benchmark, benchlib.TEXTBOOK, epoch_setup, reference_epoch, quick)


class _Pinned:
    """The Numba backend's thread policy held to one of its modes
    (kernels/numba_threads.py: ONE, ROWS, STRIPS), where the call can run it."""

    def __init__(self, policy, mode):
        self.policy, self.mode = policy, mode

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def segments(self, first, stop, modes):
        yield first, stop, self.mode if self.mode in modes else modes[-1]

    def record(self, mode, seconds_per_batch):
        pass


@pytest.mark.parametrize("mode", ["ONE", "ROWS", "STRIPS"])
def test_epoch_numba_mode(benchmark, epoch_setup, reference_epoch, quick, monkeypatch, mode):
    """The numba backend in each mode its thread policy chooses among (one
    thread; threads by rows; threads by W[0]'s strips), in the same group:
    which one wins here, and by how much, is what the policy measures."""
    fast, reason = benchlib.load_backend("numba")
    if fast is None:
        pytest.skip(reason)
    from fastmlp.kernels import numba_threads
    monkeypatch.setattr(fast, "THREADS", _Pinned(fast.THREADS, getattr(numba_threads, mode)))
    _bench_epoch(benchmark, fast, epoch_setup, reference_epoch, quick)
    benchmark.extra_info.update(mode=mode)

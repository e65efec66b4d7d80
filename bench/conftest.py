"""Fixtures of the benchmarks (pytest-benchmark).

Not part of the default test run (pyproject's testpaths is tests/); run them by
naming the folder:

    .venv/bin/python -m pytest bench                    # full: timed
    FASTMLP_BENCH_QUICK=1 .venv/bin/python -m pytest bench -q --benchmark-disable
                                                        # CI: checks + one call each

FASTMLP_BENCH_QUICK=1 shrinks the epoch to the first 6000 training rows (one
timed round). Every benchmark first checks its backend's output against the
NumPy reference on the same inputs (tolerances in benchlib), then makes a
warm-up call (so compilation is never timed), then times.

A backend that fails to load (e.g. numba_backend.py not there yet) is skipped
with the reason, shown in the -ra summary.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402


def pytest_report_header(config):
    if not any("bench" in str(a) for a in config.args):
        return None
    info = benchlib.machine_info()
    lines = benchlib.header_lines(info, benchlib.blas_info())
    mode = f"quick ({benchlib.QUICK_ENV}=1: {benchlib.QUICK_ROWS} rows)" if benchlib.quick_mode() \
        else "full (60000 rows)"
    return [f"fastmlp bench: {mode}"] + lines


@pytest.fixture(autouse=True)
def _no_default_backend_env(monkeypatch):
    # Benchmarks name their backend; a developer's FASTMLP_BACKEND must not leak in.
    monkeypatch.delenv("FASTMLP_BACKEND", raising=False)


@pytest.fixture(scope="session")
def quick():
    return benchlib.quick_mode()


@pytest.fixture(scope="session")
def mnist():
    from fastmlp.data import load_dataset
    return load_dataset()


@pytest.fixture(scope="session")
def reference():
    return benchlib.get_backend(benchlib.REFERENCE)


_loaded = {}


def _backend(name):
    if name not in _loaded:
        _loaded[name] = benchlib.load_backend(name)
        module, reason = _loaded[name]
        if module is None:
            print(f"\nbench: skipping backend {name}: {reason}", file=sys.stderr)
    module, reason = _loaded[name]
    if module is None:
        pytest.skip(reason)
    return module


@pytest.fixture(params=benchlib.backend_names())
def backend(request):
    """Each registered backend in turn (skipped with the reason if it fails to load)."""
    return _backend(request.param)


@pytest.fixture(scope="session")
def model(mnist):
    """784-128-64-10 float32 after one reference epoch on 6000 rows (realistic
    activations/gradients for the op and inference benchmarks)."""
    return benchlib.trained_model(mnist)


@pytest.fixture(scope="session")
def epoch_setup(mnist, quick):
    """The default recipe (batch 128, Nesterov momentum lr 0.05, cosine, wd 1e-3)
    on 60000 rows, or the first 6000 in quick mode."""
    return benchlib.make_epoch_setup(mnist, benchlib.QUICK_ROWS if quick else None)


@pytest.fixture(scope="session")
def reference_epoch(reference, epoch_setup):
    """The reference's epoch from the fresh model: what every backend must reproduce."""
    benchlib.warm_up_epoch(reference, epoch_setup)
    return benchlib.run_epoch(reference, epoch_setup, benchlib.fresh_state(epoch_setup))

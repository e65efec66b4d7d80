"""Dropout (--dropout RATE): the masks, the gradient through them, the
compiled backend against the reference, and training with it.

The mask of a row is a function of (key, the row's position in the epoch,
the unit) alone (kernels/numpy_backend.py, dropout_factors), so both backends
draw the same units and the gradient is a deterministic function of the
weights: central differences apply unchanged. Tolerances are those of
tests/test_backends.py (float64 1e-12, float32 1e-5 relative to the
tensor's largest entry; finite differences 1e-6)."""

import numpy as np
import pytest

from fastmlp.errors import FastmlpError
from fastmlp.kernels import get_backend
from fastmlp.kernels.numpy_backend import dropout_factors
from fastmlp.model import MLP
from fastmlp.optim import OptimizerConfig, init_state
from fastmlp.train import TrainConfig, TrainState, dropout_key, run

from test_backends import FD_TOLERANCE, TOL, _fd_check, assert_close, sparse_images

REFERENCE = get_backend("numpy")
SIZES = [784, 128, 64, 10]


@pytest.fixture(params=["numba"])
def fast(request):
    pytest.importorskip("numba")
    return get_backend(request.param)


def test_factors_drop_about_rate_and_scale_the_rest():
    F = dropout_factors((0.3, 12345), np.arange(4000), SIZES)
    assert [f.shape for f in F] == [(4000, 128), (4000, 64)]
    for f in F:
        assert set(np.unique(f)) == {0.0, 1 / 0.7}
        # 512000 and 256000 Bernoulli(0.3) draws: the standard error of the
        # fraction is ~1e-3, so 0.005 is ~5 standard errors.
        assert abs((f == 0).mean() - 0.3) < 0.005
    # Rate 0 keeps everything at factor 1.
    assert all((f == 1).all() for f in dropout_factors((0.0, 1), np.arange(10), SIZES))


def test_factors_depend_on_key_position_and_unit_only():
    positions = np.arange(100, 300)
    F = dropout_factors((0.5, 7), positions, SIZES)
    # The same positions in any grouping: the same factors.
    parts = [dropout_factors((0.5, 7), positions[k:k + 33], SIZES) for k in range(0, 200, 33)]
    for l in range(2):
        np.testing.assert_array_equal(F[l], np.concatenate([p[l] for p in parts]))
    # Another key, other positions, or the other layer: another mask.
    other_key = dropout_factors((0.5, 8), positions, SIZES)[0]
    other_rows = dropout_factors((0.5, 7), positions + 1, SIZES)[0]
    assert (F[0] != other_key).mean() > 0.4 and (F[0] != other_rows).mean() > 0.4
    assert (F[0][:, :64] != F[1]).mean() > 0.4


def test_dropout_key_is_a_function_of_seed_and_epoch():
    assert dropout_key(0, 3) == dropout_key(0, 3)
    assert len({dropout_key(0, 3), dropout_key(0, 4), dropout_key(1, 3)}) == 3
    assert 0 <= dropout_key(5, 9) < 2**63


def test_reference_forward_backward_drops_the_masked_units():
    # One row: a dropped hidden unit passes no gradient back, so its column of
    # dW[0] and its entry of db[0] are exactly zero; kept active ones are not.
    model = MLP.init(seed=3)
    rng = np.random.default_rng(3)
    X = sparse_images(rng, 1, 784, np.float32)
    y = rng.integers(0, 10, 1)
    dW = [np.empty_like(w) for w in model.W]
    db = [np.empty_like(b) for b in model.b]
    REFERENCE.forward_backward(model.W, model.b, X, y, dW, db, 0.0, (0.5, 11), position=64)
    dropped = dropout_factors((0.5, 11), np.array([64]), SIZES)[0][0] == 0
    assert 30 < dropped.sum() < 98
    assert (dW[0][:, dropped] == 0).all() and (db[0][dropped] == 0).all()
    active = (X @ model.W[0] + model.b[0])[0] > 0
    assert (db[0][~dropped & active] != 0).all() and (~dropped & active).sum() > 10


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hidden", [(128, 64), (37, 13)])
def test_forward_backward_with_dropout_matches_reference(fast, dtype, hidden):
    model = MLP.init(hidden, seed=5, dtype=dtype)
    rng = np.random.default_rng(5)
    X = sparse_images(rng, 61, 784, np.dtype(dtype), zero_rows=[7])
    y = rng.integers(0, 10, 61)
    results = []
    for backend in (REFERENCE, fast):
        dW = [np.full_like(w, np.nan) for w in model.W]
        db = [np.full_like(b, np.nan) for b in model.b]
        loss, correct = backend.forward_backward(model.W, model.b, X, y, dW, db, 0.1,
                                                 (0.3, 424242), position=1000)
        results.append((loss, correct, dW + db))
    assert results[1][0] == pytest.approx(results[0][0], rel=TOL[dtype])
    assert results[1][1] == results[0][1]
    for got, want in zip(results[1][2], results[0][2]):
        assert_close(got, want, np.dtype(dtype))


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_gradient_with_dropout_matches_finite_differences(backend_name):
    backend = get_backend(backend_name)

    class Dropped:  # forward_backward with a fixed mask: a smooth function of W
        @staticmethod
        def forward_backward(W, b, X, y, dW, db, smoothing=0.0):
            return backend.forward_backward(W, b, X, y, dW, db, smoothing, (0.4, 99), position=5)

    model = MLP.init((16, 12), seed=6, dtype="float64", n_inputs=20)
    rng = np.random.default_rng(6)
    X = sparse_images(rng, 9, 20, np.float64, density=0.6)
    y = rng.integers(0, 10, 9)
    assert _fd_check(Dropped, model, X, y, 10_000, rng) < FD_TOLERANCE


def _train_batches(backend, dropout, batches=12):
    rng = np.random.default_rng(8)
    X = sparse_images(rng, 1500, 784, np.float32)
    y = rng.integers(0, 10, 1500)
    model = MLP.init(seed=8)
    opt = OptimizerConfig("momentum", momentum=0.9, nesterov=True)
    state = init_state(opt, model.W, model.b)
    order = rng.permutation(1500).astype(np.int64)
    loss, _ = backend.train_batches(model.W, model.b, state.slots, 0, X, y, order, 128, 0, batches,
                                    np.full(batches, 0.05), opt, 0.0, dropout)
    return model, loss


def test_train_batches_with_dropout_matches_reference(fast):
    m_ref, l_ref = _train_batches(REFERENCE, (0.2, 31))
    m_fast, l_fast = _train_batches(fast, (0.2, 31))
    # 12 float32 momentum steps: the measured drift is ~1e-7, as without dropout.
    assert l_fast == pytest.approx(l_ref, rel=1e-5)
    for got, want in zip(m_fast.W + m_fast.b, m_ref.W + m_ref.b):
        assert_close(got, want, np.dtype("float32"), tol=1e-4)
    # ... and it is not training without dropout.
    m_plain, l_plain = _train_batches(fast, None)
    assert abs(l_plain - l_fast) > 1e-3 * abs(l_plain)


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_dropout_run_is_reproducible_and_resumable(backend_name):
    from fastmlp.data import load_dataset
    data = load_dataset()
    backend = get_backend(backend_name)
    config = TrainConfig(epochs=2, limit=1200, dropout=0.25, seed=4)
    whole = TrainState.fresh(config)
    run(config, data, backend, whole)
    again = TrainState.fresh(config)
    run(config, data, backend, again)
    # Stopped after the first backend call (mid-epoch on numpy; numba's call
    # of 64 batches ends the epoch), then resumed: same weights.
    stopped = TrainState.fresh(config)
    calls = []
    run(config, data, backend, stopped, on_chunk=lambda *a: calls.append(1),
        should_stop=lambda: len(calls) == 1)
    assert stopped.epoch < 2
    run(config, data, backend, stopped)
    without = TrainState.fresh(TrainConfig(epochs=2, limit=1200, seed=4))
    run(TrainConfig(epochs=2, limit=1200, seed=4), data, backend, without)
    for a, b, c, d in zip(whole.model.W, again.model.W, stopped.model.W, without.model.W):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        assert not np.array_equal(a, d)


def test_dropout_rate_is_validated():
    for rate in (-0.1, 1.0):
        with pytest.raises(FastmlpError, match="--dropout"):
            TrainConfig(dropout=rate)

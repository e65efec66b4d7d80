"""The compiled backends cross-checked against the NumPy reference, op by op
and end to end, in float32 and float64.

Tolerances: fastmlp/tolerances.py, one table shared with ``fastmlp
gradcheck`` and the benchmarks, each number beside its reason (the relative
error max|a - r| / max|r| over a tensor; the optimizer updates bit for bit).
"""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from fastmlp import gradcheck
from fastmlp.kernels import contract, get_backend
from fastmlp.model import MLP
from fastmlp.optim import OptimizerConfig, init_state
from fastmlp.tolerances import ANALYTIC_VS_FD, BACKEND_VS_REFERENCE, relative_error

pytest.importorskip("numba")

REFERENCE = get_backend("numpy")
CANDIDATES = ["numba"]
DTYPES = ["float32", "float64"]
TOL = BACKEND_VS_REFERENCE

OPTIMIZERS = {
    "sgd": OptimizerConfig("sgd", weight_decay=1e-3),
    "momentum": OptimizerConfig("momentum", momentum=0.9),
    "nesterov": OptimizerConfig("momentum", momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": OptimizerConfig("adam", weight_decay=1e-3),
    "adamw": OptimizerConfig("adamw", weight_decay=0.05),
}


@pytest.fixture(params=CANDIDATES)
def fast(request):
    return get_backend(request.param)


@pytest.fixture(params=DTYPES)
def dtype(request):
    return np.dtype(request.param)


def rel_error(actual, expected):
    """max |actual - expected| / max |expected| (absolute if expected is all 0)."""
    assert np.shape(actual) == np.shape(expected)
    return relative_error(actual, expected)


def assert_close(actual, expected, dtype, tol=None):
    err = rel_error(actual, expected)
    assert err <= (tol or TOL[np.dtype(dtype).name]), f"relative error {err:.3e}"


def sparse_images(rng, n, width=784, dtype=np.float32, density=0.19, zero_rows=()):
    """Rows like MNIST: ~81% exact zeros, the rest in (0, 1]; chosen rows all zero."""
    X = rng.random((n, width)) * (rng.random((n, width)) < density)
    X[list(zero_rows)] = 0
    return X.astype(dtype)


NETS = {  # name -> (hidden, n_inputs)
    "784-128-64-10": ((128, 64), 784),
    "784-37-13-10": ((37, 13), 784),
    "784-32-10": ((32,), 784),
}


# ------------------------------------------------------------------ contract

def test_numba_backend_implements_the_whole_contract(fast):
    assert contract.missing_ops(fast) == []
    assert fast.name == "numba"


# ------------------------------------------------------------- layer ops

@pytest.mark.parametrize("n, i, o", [(1, 784, 128), (37, 784, 37), (129, 128, 64), (5, 13, 10)])
@pytest.mark.parametrize("relu", [False, True])
def test_linear_forward(fast, dtype, n, i, o, relu):
    rng = np.random.default_rng(n + i + o)
    X = sparse_images(rng, n, i, dtype, zero_rows=[0])
    W = rng.standard_normal((i, o)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    b[: o // 3] = 0  # a zero row of X gives exactly b: relu(0) == 0 in both
    expected = REFERENCE.linear_forward(X, W, b, np.empty((n, o), dtype), relu)
    out = np.full((n, o), np.nan, dtype)
    assert fast.linear_forward(X, W, b, out, relu) is out
    assert_close(out, expected, dtype)
    if relu:
        np.testing.assert_array_equal(out == 0, expected == 0)


@pytest.mark.parametrize("n", [1, 37])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy(fast, dtype, n, smoothing):
    rng = np.random.default_rng(n)
    logits = (rng.standard_normal((n, 10)) * 3).astype(dtype)
    y = rng.integers(0, 10, n)
    expected = [np.empty_like(logits), np.empty_like(logits)]
    loss_ref = REFERENCE.softmax_cross_entropy(logits, y, *expected, smoothing)
    probs, dlogits = np.empty_like(logits), np.empty_like(logits)
    loss = fast.softmax_cross_entropy(logits, y, probs, dlogits, smoothing)
    assert isinstance(loss, float)
    assert loss == pytest.approx(loss_ref, rel=TOL[dtype.name])
    assert_close(probs, expected[0], dtype)
    assert_close(dlogits, expected[1], dtype)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_rows_of_no_class_train_like_the_reference(fast, dtype, smoothing):
    """NO_CLASS rows (outlier exposure: pictures of no digit), mixed with
    labelled ones: the loss op, a batch's gradients, its count of rows
    classified right (never a NO_CLASS row), and the gradient against
    central finite differences."""
    rng = np.random.default_rng(11)
    n = 37
    logits = (rng.standard_normal((n, 10)) * 3).astype(dtype)
    y = rng.integers(0, 10, n)
    y[::3] = contract.NO_CLASS
    want = [np.empty_like(logits), np.empty_like(logits)]
    loss_ref = REFERENCE.softmax_cross_entropy(logits, y, *want, smoothing)
    probs, dlogits = np.empty_like(logits), np.empty_like(logits)
    assert fast.softmax_cross_entropy(logits, y, probs, dlogits, smoothing) == pytest.approx(
        loss_ref, rel=TOL[dtype.name])
    assert_close(dlogits, want[1], dtype)
    model = MLP.init((16, 12), seed=3, dtype=dtype.name)
    X = sparse_images(rng, n, 784, dtype)
    got = {}
    for name, backend in (("ref", REFERENCE), ("fast", fast)):
        dW, db = [np.empty_like(w) for w in model.W], [np.empty_like(b) for b in model.b]
        got[name] = backend.forward_backward(model.W, model.b, X, y, dW, db, smoothing), dW + db
    (loss, correct), grads = got["fast"]
    assert loss == pytest.approx(got["ref"][0][0], rel=TOL[dtype.name])
    assert correct == got["ref"][0][1] <= int((y != contract.NO_CLASS).sum())
    for g, w in zip(grads, got["ref"][1]):
        assert_close(g, w, dtype)
    if dtype == np.float64:
        small = MLP.init((9,), seed=6, dtype="float64", n_inputs=20)
        Xs = sparse_images(rng, 9, 20, np.float64, density=0.6)
        ys = rng.integers(0, 10, 9)
        ys[[1, 4]] = contract.NO_CLASS
        assert _fd_check(fast, small, Xs, ys, 10_000, rng, smoothing) < FD_TOLERANCE


def test_softmax_is_stable_for_huge_logits(fast, dtype):
    # exp(1e4) overflows both dtypes: only the max shift keeps this finite.
    logits = np.array([[1e4, -1e4, 0.0, 0, 0, 0, 0, 0, 0, 0],
                       [-1e4] * 10,
                       [1e4] * 5 + [-1e4] * 5], dtype)
    y = np.array([0, 2, 9])
    probs, dlogits = np.empty_like(logits), np.empty_like(logits)
    loss = fast.softmax_cross_entropy(logits, y, probs, dlogits, 0.1)
    assert np.isfinite(loss) and np.isfinite(probs).all() and np.isfinite(dlogits).all()
    expected = [np.empty_like(logits), np.empty_like(logits)]
    assert loss == pytest.approx(REFERENCE.softmax_cross_entropy(logits, y, *expected, 0.1),
                                 rel=TOL[dtype.name])
    assert_close(probs, expected[0], dtype)
    assert_close(dlogits, expected[1], dtype)
    # forward's own softmax, on logits of order 1e4 from an overscaled last layer
    model = MLP.init(seed=0, dtype=dtype.name)
    model.W[-1] *= 1e4
    X = sparse_images(np.random.default_rng(0), 5, 784, dtype)
    probs = fast.forward(model.W, model.b, X)
    # (logits this large carry absolute errors ~1e4 * eps: compare the
    # decision and the normalisation, not the probabilities digit by digit)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=1),
                                  REFERENCE.forward(model.W, model.b, X).argmax(axis=1))


def test_relu_backward_treats_zero_as_inactive(fast, dtype):
    rng = np.random.default_rng(0)
    A = np.maximum(rng.standard_normal((37, 13)), 0).astype(dtype)  # half exactly 0
    A[0, :3] = [0.0, -0.0, 1e-30]
    dA = rng.standard_normal((37, 13)).astype(dtype)
    expected = REFERENCE.relu_backward(dA, A, np.empty_like(dA))
    dZ = np.empty_like(dA)
    assert fast.relu_backward(dA, A, dZ) is dZ
    np.testing.assert_array_equal(dZ, expected)  # a product by 0 or 1: exact
    assert dZ[0, 0] == 0 and dZ[0, 1] == 0 and dZ[0, 2] == dA[0, 2]
    in_place = dA.copy()
    fast.relu_backward(in_place, A, in_place)  # dZ may be dA itself
    np.testing.assert_array_equal(in_place, expected)


@pytest.mark.parametrize("n, i, o", [(1, 784, 128), (37, 784, 37), (129, 128, 64), (37, 13, 10)])
def test_linear_backward(fast, dtype, n, i, o):
    rng = np.random.default_rng(n * i + o)
    X = sparse_images(rng, n, i, dtype, zero_rows=[n - 1])
    W = rng.standard_normal((i, o)).astype(dtype)
    dY = rng.standard_normal((n, o)).astype(dtype)
    expected = [np.empty((i, o), dtype), np.empty(o, dtype), np.empty((n, i), dtype)]
    REFERENCE.linear_backward(X, W, dY, *expected)
    dW, db, dX = np.empty((i, o), dtype), np.empty(o, dtype), np.empty((n, i), dtype)
    fast.linear_backward(X, W, dY, dW, db, dX)
    for got, want in zip((dW, db, dX), expected):
        assert_close(got, want, dtype)
    dW[:] = np.nan
    fast.linear_backward(X, W, dY, dW, db, None)  # first layer: no input gradient
    assert_close(dW, expected[0], dtype)


@pytest.mark.parametrize("relu", [True, False])
def test_linear_forward_of_a_few_rows_has_the_bits_of_a_batch(fast, dtype, relu):
    """Below FEW_ROWS rows a compiled backend may read W in place (the GUI's
    trace of one image) instead of packing it: each row must still get the
    bits it gets inside a batch (rows are independent)."""
    rng = np.random.default_rng(6)
    n, i, o = 12, 784, 128
    X = sparse_images(rng, n, i, dtype, zero_rows=[n - 1])
    W = rng.standard_normal((i, o)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    batch = fast.linear_forward(X, W, b, np.empty((n, o), dtype), relu)
    for r in range(n):
        one = fast.linear_forward(X[r:r + 1], W, b, np.empty((1, o), dtype), relu)
        np.testing.assert_array_equal(one[0], batch[r])
    few = fast.linear_forward(X[:3], W, b, np.empty((3, o), dtype), relu)
    np.testing.assert_array_equal(few, batch[:3])


def test_linear_backward_of_a_few_rows_has_the_bits_of_a_batch(fast, dtype):
    """Below FEW_ROWS rows a compiled backend may read W in place (a saliency
    map, one image) instead of packing it: it must still give a batch's bits.
    dX is per row, so each row of an 8-row batch's dX equals a 1-row call's;
    dW of 3 rows equals the batch's dW over those 3 rows padded with zero rows
    (a zero row adds exact zeros)."""
    rng = np.random.default_rng(5)
    n, i, o = 8, 784, 128
    X = sparse_images(rng, n, i, dtype, zero_rows=[n - 1])
    W = rng.standard_normal((i, o)).astype(dtype)
    dY = rng.standard_normal((n, o)).astype(dtype)
    dW, db, dX = np.empty((i, o), dtype), np.empty(o, dtype), np.empty((n, i), dtype)
    fast.linear_backward(X, W, dY, dW, db, dX)
    for r in range(n):
        dW1, db1, dX1 = np.empty((i, o), dtype), np.empty(o, dtype), np.empty((1, i), dtype)
        fast.linear_backward(X[r:r + 1], W, dY[r:r + 1], dW1, db1, dX1)
        np.testing.assert_array_equal(dX1[0], dX[r])
    padded_X, padded_dY = np.zeros_like(X), np.zeros_like(dY)
    padded_X[:3], padded_dY[:3] = X[:3], dY[:3]
    fast.linear_backward(padded_X, W, padded_dY, dW, db, dX)
    dW3, db3 = np.empty((i, o), dtype), np.empty(o, dtype)
    fast.linear_backward(X[:3], W, dY[:3], dW3, db3, None)
    np.testing.assert_array_equal(dW3, dW)
    np.testing.assert_array_equal(db3, db)


# --------------------------------------------------------- optimizer ops

def _params_and_grads(rng, dtype):
    shapes = [(784, 37), (37,), (13, 10)]
    return ([rng.standard_normal(s).astype(dtype) for s in shapes],
            [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)])


def test_sgd_and_momentum_updates_match_bit_for_bit(fast, dtype):
    rng = np.random.default_rng(1)
    params, grads = _params_and_grads(rng, dtype)
    for nesterov in (False, True):
        p_ref, p_fast = [p.copy() for p in params], [p.copy() for p in params]
        v_ref, v_fast = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
        for step_grads in grads:
            for k, g in enumerate(step_grads):
                REFERENCE.sgd_update(p_ref[k], g, 0.1, 1e-3)
                fast.sgd_update(p_fast[k], g, 0.1, 1e-3)
                REFERENCE.momentum_update(p_ref[k], g, v_ref[k], 0.05, 0.9, nesterov, 1e-3)
                fast.momentum_update(p_fast[k], g, v_fast[k], 0.05, 0.9, nesterov, 1e-3)
        for a, b in zip(p_fast + v_fast, p_ref + v_ref):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_update_matches_bit_for_bit(fast, dtype, decoupled):
    rng = np.random.default_rng(2)
    params, grads = _params_and_grads(rng, dtype)
    state = {name: ([p.copy() for p in params], [np.zeros_like(p) for p in params],
                    [np.zeros_like(p) for p in params]) for name in ("ref", "fast")}
    for step, step_grads in enumerate(grads, start=1):
        for name, backend in (("ref", REFERENCE), ("fast", fast)):
            p, m, v = state[name]
            for k, g in enumerate(step_grads):
                backend.adam_update(p[k], g, m[k], v[k], 1e-2, 0.9, 0.999, 1e-8, 0.01, step,
                                    decoupled)
    for a, b in zip(sum(state["fast"], []), sum(state["ref"], [])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_optimizer_step_matches_bit_for_bit(fast, dtype, opt_name):
    opt = OPTIMIZERS[opt_name]
    rng = np.random.default_rng(3)
    models = [MLP.init((37, 13), seed=3, dtype=dtype.name) for _ in range(2)]
    states = [init_state(opt, m.W, m.b) for m in models]
    for step in (1, 2, 3):   # the update's number: Adam's bias correction
        dW = [rng.standard_normal(w.shape).astype(dtype) for w in models[0].W]
        db = [rng.standard_normal(b.shape).astype(dtype) for b in models[0].b]
        REFERENCE.optimizer_step(models[0].W, models[0].b, dW, db, states[0].slots, step, 0.01, opt)
        fast.optimizer_step(models[1].W, models[1].b, dW, db, states[1].slots, step, 0.01, opt)
    for a, b in zip(models[1].W + models[1].b, models[0].W + models[0].b):
        np.testing.assert_array_equal(a, b)
    for key in states[0].slots:
        for a, b in zip(states[1].slots[key], states[0].slots[key]):
            np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------- whole network

@pytest.mark.parametrize("net, n", [(net, n) for net in NETS for n in (1, 37)]
                         + [("784-128-64-10", 300)])  # 300 rows: the multi-threaded path
def test_forward(fast, dtype, net, n):
    hidden, n_inputs = NETS[net]
    model = MLP.init(hidden, seed=4, dtype=dtype.name, n_inputs=n_inputs)
    X = sparse_images(np.random.default_rng(n), n, n_inputs, dtype, zero_rows=[0])
    probs = fast.forward(model.W, model.b, X)
    assert probs.shape == (n, 10) and probs.dtype == dtype
    assert_close(probs, REFERENCE.forward(model.W, model.b, X), dtype)
    # rows are independent: any split into calls (and threads) gives the same bits
    np.testing.assert_array_equal(
        probs, np.concatenate([fast.forward(model.W, model.b, X[k:k + 7]) for k in range(0, n, 7)]))


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("n", [1, 37, 129])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_forward_backward(fast, dtype, net, n, smoothing):
    hidden, n_inputs = NETS[net]
    model = MLP.init(hidden, seed=5, dtype=dtype.name, n_inputs=n_inputs)
    rng = np.random.default_rng(n)
    X = sparse_images(rng, n, n_inputs, dtype, zero_rows=[n // 2])
    y = rng.integers(0, 10, n)
    grads = {}
    for name, backend in (("ref", REFERENCE), ("fast", fast)):
        dW = [np.full_like(w, np.nan) for w in model.W]
        db = [np.full_like(b, np.nan) for b in model.b]
        loss, correct = backend.forward_backward(model.W, model.b, X, y, dW, db, smoothing)
        grads[name] = (loss, correct, dW + db)
    loss, correct, g = grads["fast"]
    assert isinstance(loss, float) and isinstance(correct, int)
    assert loss == pytest.approx(grads["ref"][0], rel=TOL[dtype.name])
    assert correct == grads["ref"][1]
    for got, want in zip(g, grads["ref"][2]):
        assert_close(got, want, dtype)


def _fd_check(fast, model, X, y, entries_per_tensor, rng, smoothing=0.0, h=1e-6):
    """Max relative error of fast.forward_backward's gradient against central
    differences of its own loss (fastmlp.gradcheck's), over a random subset of
    every tensor. Biases are made nonzero first: with b = 0 a zero input row
    puts every unit exactly on the ReLU kink, where central differences
    average the two one-sided slopes and no gradient formula can match them."""
    for b in model.b:
        b[:] = rng.uniform(0.05, 0.2, b.shape) * rng.choice([-1, 1], b.shape)
    picks = [np.arange(p.size) if p.size <= entries_per_tensor
             else rng.choice(p.size, entries_per_tensor, replace=False)
             for p in model.W + model.b]
    L = len(model.W)
    entries = [picks[k] for l in range(L) for k in (l, L + l)]  # gradcheck's order: W0, b0, W1, ...
    numeric = gradcheck.numerical_gradients(fast, model, X, y, entries, smoothing, step=h)
    _, analytic = gradcheck.analytic_gradients(fast, model, X, y, smoothing)
    return max(rel_error(g.reshape(-1)[where], d) for g, where, d in zip(analytic, entries, numeric))


FD_TOLERANCE = ANALYTIC_VS_FD["float64"]


@pytest.mark.parametrize("hidden", [(16, 12), (9,)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_gradient_matches_finite_differences_small_net(fast, hidden, smoothing):
    model = MLP.init(hidden, seed=6, dtype="float64", n_inputs=20)
    rng = np.random.default_rng(6)
    X = sparse_images(rng, 9, 20, np.float64, density=0.6, zero_rows=[3])
    y = rng.integers(0, 10, 9)
    assert _fd_check(fast, model, X, y, 10_000, rng, smoothing) < FD_TOLERANCE


def test_gradient_matches_finite_differences_mnist_sized(fast):
    model = MLP.init((128, 64), seed=7, dtype="float64")
    rng = np.random.default_rng(7)
    X = sparse_images(rng, 16, 784, np.float64, zero_rows=[5])
    y = rng.integers(0, 10, 16)
    assert _fd_check(fast, model, X, y, 12, rng) < FD_TOLERANCE


# ---------------------------------------------------------------- training

def _mnist_subset(n):
    try:
        from fastmlp.data import load_dataset
        data = load_dataset()
        return data.X_train[:n], data.y_train[:n]
    except Exception:  # data module unavailable: synthetic sparse digits
        rng = np.random.default_rng(8)
        return sparse_images(rng, n), rng.integers(0, 10, n)


def _train(backend, opt, X, y, epochs_batches, seed=0, dtype="float32", per_call=None,
           smoothing=0.0, hidden=(128, 64)):
    """Train from MLP.init(seed); returns (model, state, per-call losses)."""
    model = MLP.init(hidden, seed=seed, dtype=dtype)
    state = init_state(opt, model.W, model.b)
    X = np.ascontiguousarray(X, dtype=dtype)
    order = np.random.default_rng(seed).permutation(len(X)).astype(np.int64)
    lrs = np.full(epochs_batches, 1e-3 if opt.name.startswith("adam") else 0.05)
    per_call = per_call or epochs_batches
    losses = []
    for first in range(0, epochs_batches, per_call):
        stop = min(first + per_call, epochs_batches)
        loss_sum, correct = backend.train_batches(model.W, model.b, state.slots, state.step, X,
                                                  y, order, 128, first, stop, lrs[first:stop],
                                                  opt, smoothing)
        state.step += stop - first   # the engine counts the updates (fastmlp.train)
        assert isinstance(loss_sum, float) and isinstance(correct, int)
        losses.append(loss_sum)
    return model, state, losses


# Per-step loss tolerance for 50 float32 steps. With momentum the two runs
# stay within ~1e-7 (measured 1.3e-7): each step adds float32 rounding of
# ~1e-7 and nothing amplifies it. Adam amplifies: a gradient that is a
# cancelling sum (true value ~0) gets its sign from rounding, and Adam turns
# any sign into a step of size ~lr, so a few weights diverge by ~lr per step;
# the loss then drifts by up to ~1e-4 relative by step 50 (measured 1.0e-4).
# A wrong update rule moves the loss by percents within a few steps.
TRAJECTORY_RTOL = {"nesterov": 1e-5, "adam": 1e-3}


@pytest.mark.parametrize("opt_name", list(TRAJECTORY_RTOL))
def test_trajectory_matches_reference_for_50_steps(fast, opt_name):
    """llm.c style: same seed and data order, one batch per call, and the
    loss of every step compared (float32, label smoothing 0.1)."""
    X, y = _mnist_subset(6400)
    opt = OPTIMIZERS[opt_name]
    _, s_ref, ref = _train(REFERENCE, opt, X, y, 50, per_call=1, smoothing=0.1)
    _, s_fast, got = _train(fast, opt, X, y, 50, per_call=1, smoothing=0.1)
    assert s_fast.step == s_ref.step == 50
    np.testing.assert_allclose(got, ref, rtol=TRAJECTORY_RTOL[opt_name])


def test_one_epoch_on_6000_mnist_rows_matches_reference(fast):
    """47 batches (the last one partial) of AdamW in float32, in chunks of 10:
    after the epoch every tensor agrees to 1e-3 of its largest magnitude
    (measured 2e-5 at worst, in W0: float32 rounding compounded over 47 steps,
    with Adam's sign amplification described above) and the summed loss to
    1e-4 (measured 2e-9)."""
    X, y = _mnist_subset(6000)
    opt = OPTIMIZERS["adamw"]
    m_ref, s_ref, l_ref = _train(REFERENCE, opt, X, y, 47, per_call=10)
    m_fast, s_fast, l_fast = _train(fast, opt, X, y, 47, per_call=10)
    assert s_fast.step == s_ref.step == 47
    np.testing.assert_allclose(sum(l_fast), sum(l_ref), rtol=1e-4)
    for got, want in zip(m_fast.W + m_fast.b, m_ref.W + m_ref.b):
        assert rel_error(got, want) < 1e-3


def test_chunking_does_not_change_training(fast):
    """One call for 12 batches or 12 calls of one: the same bits (each batch
    is the same computation, and step/lrs are carried exactly)."""
    X, y = _mnist_subset(2000)
    opt = OPTIMIZERS["adam"]
    m_one, _, l_one = _train(fast, opt, X, y, 12, per_call=12)
    m_many, _, l_many = _train(fast, opt, X, y, 12, per_call=1)
    assert sum(l_many) == pytest.approx(l_one[0], rel=1e-12)
    for a, b in zip(m_one.W + m_one.b, m_many.W + m_many.b):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_every_optimizer_trains_like_the_reference(fast, dtype, opt_name):
    X, y = _mnist_subset(1000)
    opt = OPTIMIZERS[opt_name]
    m_ref, _, l_ref = _train(REFERENCE, opt, X[:700], y[:700], 6, dtype=dtype.name,
                             hidden=(37, 13), per_call=3)
    m_fast, _, l_fast = _train(fast, opt, X[:700], y[:700], 6, dtype=dtype.name,
                               hidden=(37, 13), per_call=3)
    np.testing.assert_allclose(l_fast, l_ref, rtol=1e-4 if dtype == np.float32 else 1e-10)
    for got, want in zip(m_fast.W + m_fast.b, m_ref.W + m_ref.b):
        assert rel_error(got, want) < (1e-3 if dtype == np.float32 else 1e-9)


def test_training_is_bit_reproducible(fast):
    X, y = _mnist_subset(3000)
    opt = OPTIMIZERS["adamw"]
    runs = [_train(fast, opt, X, y, 24, per_call=8)[0] for _ in range(2)]
    for a, b in zip(runs[0].W + runs[0].b, runs[1].W + runs[1].b):
        np.testing.assert_array_equal(a, b)


_SUBPROCESS = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from fastmlp.kernels import get_backend
    from fastmlp.model import MLP
    from fastmlp.optim import OptimizerConfig, init_state
    fast = get_backend("numba")
    rng = np.random.default_rng(9)
    X = (rng.random((1000, 784)) * (rng.random((1000, 784)) < 0.19)).astype(np.float32)
    y = rng.integers(0, 10, 1000)
    model = MLP.init(seed=9)
    opt = OptimizerConfig("adam")
    state = init_state(opt, model.W, model.b)
    order = rng.permutation(1000).astype(np.int64)
    fast.train_batches(model.W, model.b, state.slots, 0, X, y, order, 128, 0, 8, np.full(8, 1e-3),
                       opt)
    probs = fast.forward(model.W, model.b, X)   # 1000 rows: the threaded path
    digest = hashlib.sha256()
    for a in model.W + model.b + [probs]:
        digest.update(a.tobytes())
    print(digest.hexdigest())
""")


def _run(env_extra):
    # The parent's NUMBA_CACHE_DIR, if any, is kept: the child then loads what
    # this process compiled instead of compiling again.
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env.update(env_extra)
    result = subprocess.run([sys.executable, "-c", _SUBPROCESS], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class _FixedThreads:
    """A stand-in for numba_threads.ThreadPolicy that always runs ``count``
    threads (more than this machine's cores is fine: the parts are the same),
    in ``mode`` (numba_threads.ROWS or STRIPS) where the call can."""

    def __init__(self, count, mode=None):
        from fastmlp.kernels import numba_threads
        self.threads = count
        self.mode = numba_threads.ROWS if mode is None else mode

    def count(self):
        return self.threads

    def modes(self, strips):
        from fastmlp.kernels import numba_threads
        return numba_threads.ThreadPolicy.modes(self, strips)

    def available(self):
        return self.threads >= 2

    def segments(self, first, stop, modes):
        from fastmlp.kernels.numba_threads import ONE
        return [(first, stop, self.mode if self.threads > 1 and self.mode in modes else ONE)]

    def record(self, mode, seconds_per_batch):
        pass


@pytest.mark.parametrize("opt", ["adam", "momentum"])
def test_any_thread_count_trains_the_same_bits(fast, monkeypatch, opt):
    """A batch is cut in fixed parts (rows for the forward and deltas, input
    units for dW and the update; or W[0]'s strips, each owned by one thread),
    each result computed by one part in a fixed order; threads only decide
    who computes which part. 1, 2, 3, 8 and 16 threads (more than the parts of
    a small batch, and than W[0] has strips, too), in both threaded modes,
    give one result."""
    from fastmlp.kernels.numba_threads import ROWS, STRIPS
    X, y = _mnist_subset(3000)
    runs = []
    for threads in (1, 2, 3, 8, 16):
        for mode in (ROWS, STRIPS):
            monkeypatch.setattr(fast, "THREADS", _FixedThreads(threads, mode))
            runs.append(_train(fast, OPTIMIZERS[opt], X, y, 20, per_call=7)[0])
    for run in runs[1:]:
        for a, b in zip(runs[0].W + runs[0].b, run.W + run.b):
            np.testing.assert_array_equal(a, b)


def test_dropout_trains_the_same_bits_by_rows_and_by_strips(fast, monkeypatch):
    """With dropout the strips cut draws each hidden unit's factor from the
    same counter as the rows cut (its columns offset by where its strips
    start): 1 thread, and 2 and 3 threads in both modes, give one result."""
    from fastmlp.kernels.numba_threads import ROWS, STRIPS
    X, y = _mnist_subset(1000)
    X = np.ascontiguousarray(X, np.float32)
    order = np.random.default_rng(0).permutation(len(X)).astype(np.int64)
    runs = []
    for threads, mode in [(1, ROWS), (2, ROWS), (2, STRIPS), (3, STRIPS)]:
        monkeypatch.setattr(fast, "THREADS", _FixedThreads(threads, mode))
        model = MLP.init((128, 64), seed=0)
        state = init_state(OPTIMIZERS["momentum"], model.W, model.b)
        fast.train_batches(model.W, model.b, state.slots, 0, X, y, order, 100, 0, 10,
                           np.full(10, 0.05), OPTIMIZERS["momentum"], dropout=(0.3, 12345))
        runs.append(model)
    for run in runs[1:]:
        for a, b in zip(runs[0].W + runs[0].b, run.W + run.b):
            np.testing.assert_array_equal(a, b)


def test_any_thread_count_infers_the_same_bits(fast, monkeypatch):
    X, _ = _mnist_subset(1000)
    model = MLP.init(seed=3)
    probs = []
    for threads in (1, 2, 5):
        monkeypatch.setattr(fast, "THREADS", _FixedThreads(threads))
        probs.append(fast.forward(model.W, model.b, X))
    for p in probs[1:]:
        np.testing.assert_array_equal(probs[0], p)


class _Clock:
    """A wall clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _run_policy(policy, clock, first, stop, seconds_per_batch):
    """Run one train_batches chunk through ``policy``; each segment takes
    seconds_per_batch(threads) per batch of the fake clock. Returns the
    batches covered and the modes used, in order."""
    covered, modes = [], []
    for lo, hi, threads in policy.segments(first, stop):
        assert first <= lo < hi <= stop
        covered.extend(range(lo, hi))
        modes.append(threads)
        clock.now += (hi - lo) * seconds_per_batch(threads)
        policy.record(threads, seconds_per_batch(threads))
    assert covered == list(range(first, stop))
    return modes


@pytest.fixture
def two_threads(monkeypatch):
    from fastmlp.kernels import numba_threads
    monkeypatch.setattr(numba_threads.numba, "get_num_threads", lambda: 2)
    return numba_threads


def test_thread_policy_covers_every_batch_once_and_follows_the_timings(two_threads, monkeypatch):
    clock = _Clock()
    policy = two_threads.ThreadPolicy(clock)
    for first, stop in [(0, 64), (64, 128), (3, 4), (0, 469)] * 5:
        # threads "lose" on this machine: the policy must settle on one thread
        _run_policy(policy, clock, first, stop, lambda threads: 2e-3 if threads else 1e-3)
    assert policy.preferred() == two_threads.ONE
    assert policy.backoff > policy.MIN_BACKOFF   # lost probes: probe less often
    monkeypatch.setattr(two_threads.numba, "get_num_threads", lambda: 1)
    assert all(mode == two_threads.ONE for _, _, mode in policy.segments(0, 100))


def test_thread_policy_returns_to_threads_soon_after_contention_ends(two_threads):
    """A burst of contention (another library's threads spinning, a process
    that runs for a while) makes threads lose for a time; once it is over,
    the policy is back on threads within about MAX_BACKOFF seconds of wall
    time, however long the burst lasted, and however few batches a call has."""
    clock = _Clock()
    policy = two_threads.ThreadPolicy(clock)
    contended = lambda threads: 5e-3 if threads else 0.5e-3  # noqa: E731
    calm = lambda threads: 0.4e-3 if threads else 0.5e-3     # noqa: E731
    while clock.now < 30.0:   # 30 s of contention
        _run_policy(policy, clock, 0, 64, contended)
    assert policy.preferred() == two_threads.ONE
    probes_start = clock.now
    while policy.preferred() == two_threads.ONE:
        _run_policy(policy, clock, 0, 4, calm)
    assert clock.now - probes_start <= policy.MAX_BACKOFF + 0.1


def test_thread_policy_probes_cost_little_under_lasting_contention(two_threads):
    """While threads keep losing, the time spent in threaded probes is a small
    share of the run: at most PROBE batches per MAX_BACKOFF seconds once the
    back-off has grown (here threads are 10x slower)."""
    clock = _Clock()
    policy = two_threads.ThreadPolicy(clock)
    slow = lambda threads: 5e-3 if threads else 0.5e-3  # noqa: E731
    spent = {True: 0.0, False: 0.0}
    for _ in range(2000):   # ~64 s of training
        for lo, hi, threads in policy.segments(0, 64):
            spent[bool(threads)] += (hi - lo) * slow(threads)
            clock.now += (hi - lo) * slow(threads)
            policy.record(threads, slow(threads))
    assert spent[True] / (spent[True] + spent[False]) < 0.05


def test_thread_policy_runs_the_fastest_of_three_modes_and_follows_a_flip(two_threads):
    """Which threaded cut wins depends on the host (how far apart the cores
    are): the policy measures every mode, settles on the fastest, and when
    the fastest changes it follows within a few back-offs."""
    ONE, ROWS, STRIPS = two_threads.ONE, two_threads.ROWS, two_threads.STRIPS
    clock = _Clock()
    policy = two_threads.ThreadPolicy(clock)
    near = {ONE: 230e-6, ROWS: 150e-6, STRIPS: 165e-6}.__getitem__   # measured on Zen 5
    far = {ONE: 230e-6, ROWS: 260e-6, STRIPS: 210e-6}.__getitem__
    used = []
    while clock.now < 10.0:
        used += _run_policy(policy, clock, 0, 64, near)
    assert policy.preferred() == ROWS
    assert {ONE, ROWS, STRIPS} <= set(used)   # every mode was measured
    flipped = clock.now
    while policy.preferred() != STRIPS:
        _run_policy(policy, clock, 0, 64, far)
    assert clock.now - flipped <= 2 * policy.MAX_BACKOFF + 0.1
    batches = {m: 0 for m in (ONE, ROWS, STRIPS)}
    while clock.now < flipped + 30.0:
        for lo, hi, mode in policy.segments(0, 64):
            batches[mode] += hi - lo
            clock.now += (hi - lo) * far(mode)
            policy.record(mode, far(mode))
    assert batches[STRIPS] > 0.95 * sum(batches.values())


def test_thread_policy_does_not_judge_a_probe_by_its_first_batch(two_threads):
    """A mode switched to pays once for moving the weights into other caches
    (measured: a probe's first batch 2-3x its later ones); a probe that is
    faster after that first batch wins."""
    ONE, ROWS = two_threads.ONE, two_threads.ROWS
    clock = _Clock()
    policy = two_threads.ThreadPolicy(clock)
    policy.record(ROWS, 300e-6)   # threads looked slow once (contention), now on one
    policy.record(ONE, 230e-6)
    assert policy.preferred((ONE, ROWS)) == ONE
    last, winners = [None], []
    for _ in range(200):
        for lo, hi, mode in policy.segments(0, 64, (ONE, ROWS)):
            spb = 150e-6 if mode == ROWS else 230e-6
            if mode != last[0]:   # the switch: the first batch costs 4x
                spb = (3 * spb + spb * (hi - lo)) / (hi - lo)
            last[0] = mode
            clock.now += (hi - lo) * spb
            policy.record(mode, spb)
        winners.append(policy.preferred((ONE, ROWS)))
    assert winners[-1] == ROWS
    assert policy.seconds_per_batch(ROWS) == 150e-6   # a settled-in figure


def test_thread_policy_returns_soon_to_a_mode_after_a_stall(two_threads):
    """A stall of a few segments (the host taking a core for milliseconds)
    moves the policy off the fastest mode; it is back on it within about
    MIN_BACKOFF and a probe, not after MAX_BACKOFF."""
    ONE, ROWS, STRIPS = two_threads.ONE, two_threads.ROWS, two_threads.STRIPS
    clock = _Clock()
    policy = two_threads.ThreadPolicy(clock)
    near = {ONE: 230e-6, ROWS: 150e-6, STRIPS: 165e-6}.__getitem__
    while clock.now < 10.0:   # settled on ROWS, the back-off grown by lost probes
        _run_policy(policy, clock, 0, 64, near)
    assert policy.preferred() == ROWS and policy.backoff == policy.MAX_BACKOFF
    stalled = lambda mode: 450e-6 if mode == ROWS else near(mode)  # noqa: E731
    for _ in range(policy.RECENT):
        _run_policy(policy, clock, 0, policy.SEGMENT, stalled)
    assert policy.preferred() != ROWS
    left = clock.now
    while policy.preferred() != ROWS:
        _run_policy(policy, clock, 0, 64, near)
    assert clock.now - left <= policy.MIN_BACKOFF + 0.02


def test_thread_policy_offers_strips_only_where_every_thread_owns_one(two_threads, monkeypatch):
    policy = two_threads.ThreadPolicy(_Clock())
    assert policy.modes(4) == two_threads.MODES
    assert policy.modes(1) == (two_threads.ONE, two_threads.ROWS)
    monkeypatch.setattr(two_threads.numba, "get_num_threads", lambda: 1)
    assert policy.modes(4) == (two_threads.ONE,)


def test_run_threads_reuses_its_helpers_and_surfaces_their_errors():
    from fastmlp.kernels import numba_sync

    seen = []

    def worker(tid, threads, out):
        seen.append((threading.current_thread().name, tid, threads))
        out[tid] = tid + 1
        return "thread 0"

    for _ in range(3):
        out = np.zeros(3)
        assert numba_sync.run_threads(worker, 3, out) == "thread 0"
        np.testing.assert_array_equal(out, [1, 2, 3])
    helpers = {name for name, tid, _ in seen if tid > 0}
    assert len(helpers) == 2   # the same two helper threads every call

    def failing(tid, threads):
        if tid == 1:
            raise ValueError("helper failed")

    with pytest.raises(ValueError, match="helper failed"):
        numba_sync.run_threads(failing, 2)
    out = np.zeros(2)   # the helpers still serve after an error
    numba_sync.run_threads(worker, 2, out)
    np.testing.assert_array_equal(out, [1, 2])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values: Linux")
def test_run_threads_helpers_share_the_callers_cpu_priority():
    """The GUI trains in a thread at a lower priority (nice) so that drawing
    stays smooth: the helper threads that call runs on must be as nice as
    it is, and a normal caller's helpers as normal as it is."""
    from fastmlp.kernels import numba_sync

    def nice():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def worker(tid, threads, seen):
        seen[tid] = nice()

    normal = {}
    numba_sync.run_threads(worker, 2, normal)
    lowered = {}

    def niced_caller():
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, nice() + 5))
        numba_sync.run_threads(worker, 2, lowered)

    t = threading.Thread(target=niced_caller)
    t.start()
    t.join()
    assert normal[0] == normal[1]
    assert lowered[0] == lowered[1] == min(19, normal[0] + 5)


def test_concurrent_calls_train_the_same_bits_as_one_at_a_time(fast):
    """Two Python threads training at once (the GUI trains while it infers)
    share the helpers or start their own threads; neither changes a result."""
    X, y = _mnist_subset(1500)
    alone = _train(fast, OPTIMIZERS["momentum"], X, y, 12, per_call=3)[0]
    results = [None, None]

    def train(i):
        results[i] = _train(fast, OPTIMIZERS["momentum"], X, y, 12, per_call=3)[0]

    pool = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for run in results:
        for a, b in zip(alone.W + alone.b, run.W + run.b):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("sizes", [(784, 128, 64, 10), (784, 37, 13, 10), (5, 3, 2)])
@pytest.mark.parametrize("n", [1, 37, 128])
def test_every_block_of_the_training_buffers_starts_on_a_cache_line(dtype, sizes, n):
    """The micro-kernel's vector loads of weights, transposes and deltas stay
    inside one cache line only if each block starts at a multiple of 64
    bytes: every view the worker takes (numba_train's weight_strips, bias,
    transposed_strips, rows_of, delta_strips) must, and must not overlap
    the next block."""
    from fastmlp.kernels import numba_backend as nb, numba_train as t

    lay = t.layout(sizes, n, dtype)
    buf = t.buffers(lay, dtype)
    W = [np.ones((i, o), dtype) for i, o in zip(sizes[:-1], sizes[1:])]
    P = nb._pack(W, [np.full(o, 2, dtype) for o in sizes[1:]], lay)
    L = len(sizes) - 1
    views = [(P, lay.w_at[l], lay.strips[l] * sizes[l] * lay.nr) for l in range(L)]
    views += [(P, lay.b_at[l], sizes[l + 1]) for l in range(L)]
    views += [(buf.T, lay.t_at[l], -(-sizes[l] // lay.nr) * sizes[l + 1] * lay.nr)
              for l in range(1, L)]
    views += [(buf.act, lay.a_at[a], n * sizes[a]) for a in range(1, L + 1)]
    views += [(buf.dstrips, lay.d_at[l], lay.strips[l] * n * lay.nr) for l in range(L)]
    ends = {}
    for array, start, size in views:
        assert array[start:].ctypes.data % t.ALIGN_BYTES == 0
        assert start + size <= array.size
        ends.setdefault(id(array), []).append((start, start + size))
    for spans in ends.values():   # no two blocks overlap
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    # the padding between blocks holds nothing: the weights and biases are all there is
    assert P.sum() == sum(w.size for w in W) + 2 * sum(sizes[1:])


def test_forward_gives_a_block_of_rows_to_every_thread(monkeypatch):
    """Inference cuts each block of _FORWARD_BLOCK rows into parts that every
    thread claims: 1,000 rows (one block, four parts) run on two threads,
    256 rows (one part) on one. (Until 2026-12-03 it started one thread per
    block, so up to 2,048 rows ran on one, slower than NumPy.)"""
    from fastmlp.kernels import numba_backend as nb
    from fastmlp.model import MLP
    m = MLP.init(seed=0)
    seen = []
    real = nb.run_threads
    monkeypatch.setattr(nb.THREADS, "count", lambda: 2)
    monkeypatch.setattr(nb, "run_threads", lambda worker, threads, *args: (
        seen.append(threads), real(worker, threads, *args))[1])
    rng = np.random.default_rng(0)
    for rows in (1000, 256):
        X = rng.random((rows, 784)).astype(np.float32)
        probs = nb.forward(m.W, m.b, X)
        np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert seen == [2, 1]


def test_results_do_not_depend_on_the_thread_count():
    """The same in fresh processes: NUMBA_NUM_THREADS=1 against the default
    (forward's threaded blocks are rows computed independently)."""
    assert _run({"NUMBA_NUM_THREADS": "1"}) == _run({})


def test_runs_when_the_cache_directory_is_unusable(tmp_path):
    """NUMBA_CACHE_DIR under a regular file cannot be created (even by root):
    Numba skips that location and falls back to another; the backend still
    imports and computes."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(blocker / "cache"))
    code = ("import numpy as np; from fastmlp.kernels import get_backend; "
            "from fastmlp.model import MLP; m = MLP.init(seed=0); "
            "print(get_backend('numba').forward(m.W, m.b, np.zeros((1, 784), np.float32)).sum())")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == pytest.approx(1.0)


def test_jit_falls_back_to_no_cache_without_a_cache_location():
    """A function with no source file has no cache location at all: Numba
    refuses cache=True, and the backend's decorator compiles it uncached."""
    from fastmlp.kernels import numba_jit
    namespace = {}
    exec("def double(x):\n    return 2 * x\n", namespace)
    assert numba_jit.jit()(namespace["double"])(21) == 42


def test_kernel_cache_locator_answers_for_its_inner_locator():
    """Numba reads more of a locator than the methods the backend's wraps
    (``_py_file`` when it warns that a function cannot be cached, which with
    NUMBA_OPT=0 it does): the wrapper answers with Numba's own locator's."""
    from fastmlp.kernels import numba_jit, numba_rows
    py_func = numba_rows.softmax_row.py_func
    locator = numba_jit._KernelSourcesLocator.from_function(py_func, py_func.__code__.co_filename)
    assert locator is not None
    assert locator._py_file == py_func.__code__.co_filename
    assert locator.get_source_stamp() == numba_jit.SOURCES_DIGEST


def test_kernel_cache_locator_tolerates_a_second_copy_of_itself(monkeypatch):
    """The kernel sources imported under a second name (``kernels`` from the
    source tree beside ``fastmlp.kernels``; a cached function's pickle can
    import it) register a second locator class: each must skip the other
    and wrap one of Numba's own, not call the other without end."""
    from numba.core import caching
    from fastmlp.kernels import numba_jit, numba_rows
    original = numba_jit._KernelSourcesLocator
    copy = type("_KernelSourcesLocator", (caching._CacheLocator,), dict(original.__dict__))
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes",
                        [copy] + list(caching.CacheImpl._locator_classes))
    py_func = numba_rows.softmax_row.py_func
    for cls in (original, copy):
        locator = cls.from_function(py_func, py_func.__code__.co_filename)
        assert isinstance(locator, cls)
        assert not getattr(type(locator._inner), "wraps_kernel_sources", False)


@pytest.mark.slow
def test_on_a_cold_cache_the_side_kernels_compile_in_a_helper_process(tmp_path):
    """kernels/numba_compile.py: prepare() on a fresh cache compiles the
    training worker here while a second process compiles the one-image
    kernels into the cache, so this process loads those (a cache hit, no
    compile of its own) instead of compiling them after the worker."""
    code = ("import numpy as np; from fastmlp.kernels import numba_backend as nb, numba_train as t; "
            "nb.prepare(np.float32); "
            "print([(sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())) "
            "for d in (t.forward_few, t.linear_few, t.backward_few, t.batch_worker)])")
    # seeding off: on a fresh cache with the shipped bundle nothing compiles at all
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTMLP_NUMBA_BUNDLE="0")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    *side, worker = eval(done.stdout.strip().splitlines()[-1])
    assert side == [(1, 0)] * 3      # loaded from what the helper compiled
    assert worker == (0, 1)          # compiled here


@pytest.mark.slow
def test_an_edited_callee_in_another_file_is_recompiled(tmp_path):
    """Numba's cache checks only the file defining a function; the backend's
    stamp covers every kernel source. batch_worker (numba_train.py) calls
    softmax_row (numba_rows.py): after an edit to numba_rows.py alone, a
    fresh process must run the edited code, not the cached old one."""
    import shutil
    from fastmlp.kernels import numba_jit
    package = tmp_path / "kernels_copy"
    shutil.copytree(numba_jit.KERNEL_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("import numpy as np; from kernels_copy import numba_backend as nb; "
            "from fastmlp.model import MLP; m = MLP.init(seed=0); "
            "print(float(nb.forward(m.W, m.b, np.zeros((2, 784), np.float32)).sum()))")

    def total():
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return float(result.stdout)

    assert total() == pytest.approx(2.0)          # compiled, cached
    assert total() == pytest.approx(2.0)          # loaded from the cache
    rows = package / "numba_rows.py"
    source = rows.read_text()
    edited = source.replace("        p[k] = p[k] / total\n", "        p[k] = 2 * p[k] / total\n")
    assert edited != source
    rows.write_text(edited)
    assert total() == pytest.approx(4.0)          # the edit is compiled in

"""Each NumPy reference kernel on small cases computed by hand."""

import math

import numpy as np
import pytest

from fastmlp.kernels import contract, get_backend
from fastmlp.optim import OptimizerConfig, init_state

ref = get_backend("numpy")


def test_reference_implements_the_whole_contract():
    assert contract.missing_ops(ref) == []


def test_linear_forward_by_hand():
    X = np.array([[1.0, 2.0], [0.0, -1.0]])
    W = np.array([[1.0, -1.0, 0.5], [2.0, 0.0, -1.0]])
    b = np.array([0.5, -3.0, 0.0])
    out = np.empty((2, 3))
    # row 0: [1+4, -1+0, 0.5-2] + b = [5.5, -4, -1.5];  row 1: [-2, 0, 1] + b = [-1.5, -3, 1]
    ref.linear_forward(X, W, b, out, relu=False)
    np.testing.assert_array_equal(out, [[5.5, -4.0, -1.5], [-1.5, -3.0, 1.0]])
    ref.linear_forward(X, W, b, out, relu=True)
    np.testing.assert_array_equal(out, [[5.5, 0.0, 0.0], [0.0, 0.0, 1.0]])


def test_softmax_cross_entropy_by_hand():
    # Two classes only, to compute by hand: logits (0, ln 3) -> p = (1/4, 3/4).
    logits = np.array([[0.0, math.log(3.0)], [0.0, 0.0]])
    y = np.array([1, 0])
    probs, dlogits = np.empty((2, 2)), np.empty((2, 2))
    loss = ref.softmax_cross_entropy(logits, y, probs, dlogits)
    np.testing.assert_allclose(probs, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-15)
    # loss = mean(-ln 3/4, -ln 1/2); dlogits = (p - onehot) / n
    assert loss == pytest.approx((-math.log(0.75) - math.log(0.5)) / 2, rel=1e-15)
    np.testing.assert_allclose(dlogits, [[0.125, -0.125], [-0.25, 0.25]], rtol=1e-15)


def test_label_smoothing_by_hand():
    logits = np.zeros((1, 2))
    probs, dlogits = np.empty((1, 2)), np.empty((1, 2))
    # targets (1 - 0.2) * (1, 0) + 0.2 / 2 = (0.9, 0.1); p = (0.5, 0.5)
    loss = ref.softmax_cross_entropy(logits, np.array([0]), probs, dlogits, smoothing=0.2)
    assert loss == pytest.approx(math.log(2.0), rel=1e-15)
    np.testing.assert_allclose(dlogits, [[-0.4, 0.4]], rtol=1e-15)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_a_row_of_no_class_is_trained_towards_the_uniform_answer(smoothing):
    # logits (0, ln 3): p = (1/4, 3/4); NO_CLASS's targets are (1/2, 1/2)
    # whatever the smoothing: loss -(ln 1/4 + ln 3/4) / 2, dlogits p - 1/2.
    logits = np.array([[0.0, math.log(3.0)]])
    probs, dlogits = np.empty((1, 2)), np.empty((1, 2))
    loss = ref.softmax_cross_entropy(logits, np.array([contract.NO_CLASS]), probs, dlogits,
                                     smoothing=smoothing)
    assert loss == pytest.approx(-(math.log(0.25) + math.log(0.75)) / 2, rel=1e-15)
    np.testing.assert_allclose(dlogits, [[-0.25, 0.25]], rtol=1e-15)
    # beside a labelled row, each keeps its own targets (the mean over both rows)
    two = np.array([[0.0, math.log(3.0)], [0.0, 0.0]])
    probs, dlogits = np.empty((2, 2)), np.empty((2, 2))
    ref.softmax_cross_entropy(two, np.array([contract.NO_CLASS, 1]), probs, dlogits, smoothing)
    t1 = 1 - smoothing + smoothing / 2
    np.testing.assert_allclose(dlogits, [[-0.125, 0.125], [(0.5 - (1 - t1)) / 2, (0.5 - t1) / 2]],
                               rtol=1e-15)


def test_softmax_is_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    probs, dlogits = np.empty_like(logits), np.empty_like(logits)
    loss = ref.softmax_cross_entropy(logits, np.array([0, 2]), probs, dlogits)
    assert np.isfinite(loss) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    assert loss == pytest.approx(math.log(3.0) / 2, rel=1e-6)


def test_relu_backward_treats_zero_as_inactive():
    A = np.array([[0.0, 2.0, 0.5]])
    dA = np.array([[7.0, -1.0, 3.0]])
    dZ = np.empty_like(dA)
    ref.relu_backward(dA, A, dZ)
    np.testing.assert_array_equal(dZ, [[0.0, -1.0, 3.0]])


def test_linear_backward_by_hand():
    X = np.array([[1.0, 2.0], [3.0, 0.0]])
    W = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    dY = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    dW, db, dX = np.empty((2, 3)), np.empty(3), np.empty((2, 2))
    ref.linear_backward(X, W, dY, dW, db, dX)
    # dW = X.T dY: [[1 + 1.5, 6, -1], [2, 0, -2]]; db = column sums; dX = dY W.T
    np.testing.assert_array_equal(dW, [[2.5, 6.0, -1.0], [2.0, 0.0, -2.0]])
    np.testing.assert_array_equal(db, [1.5, 2.0, -1.0])
    np.testing.assert_array_equal(dX, [[-1.0, 1.0], [0.5, 2.0]])
    ref.linear_backward(X, W, dY, dW, db, None)  # first layer: no input gradient


def test_sgd_update_by_hand():
    param, grad = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    ref.sgd_update(param, grad, lr=0.1, weight_decay=0.5)
    # param - 0.1 * (grad + 0.5 * param) = [1 - 0.1, -2 - 0.1 * (0.5 - 1)]
    np.testing.assert_allclose(param, [0.9, -1.95], rtol=1e-15)


@pytest.mark.parametrize("nesterov, expected", [(False, 1.0 - 0.1 * 1.9), (True, 1.0 - 0.1 * (1.0 + 0.9 * 1.9))])
def test_momentum_update_by_hand(nesterov, expected):
    param, velocity = np.array([1.0]), np.array([1.0])
    ref.momentum_update(param, np.array([1.0]), velocity, 0.1, 0.9, nesterov, 0.0)
    # velocity = 0.9 * 1 + 1 = 1.9
    np.testing.assert_allclose(velocity, [1.9], rtol=1e-15)
    np.testing.assert_allclose(param, [expected], rtol=1e-15)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_first_step_by_hand(decoupled):
    # After one step the bias-corrected m_hat = g and v_hat = g^2, so the step
    # is lr * g / (|g| + eps) = lr * sign(g): Adam's first move is exactly lr.
    param, grad = np.array([1.0, 1.0]), np.array([0.3, -2.0])
    m, v = np.zeros(2), np.zeros(2)
    ref.adam_update(param, grad, m, v, 0.01, 0.9, 0.999, 0.0, 0.0, 1, decoupled)
    np.testing.assert_allclose(param, [0.99, 1.01], rtol=1e-14)
    np.testing.assert_allclose(m, 0.1 * grad, rtol=1e-14)
    np.testing.assert_allclose(v, 0.001 * grad**2, rtol=1e-14)


def test_adamw_decays_without_touching_the_moments():
    param, m, v = np.array([2.0]), np.zeros(1), np.zeros(1)
    ref.adam_update(param, np.array([0.0]), m, v, 0.1, 0.9, 0.999, 1e-8, 0.5, 1, True)
    # zero gradient: only the decoupled decay acts, param * (1 - lr * wd)
    np.testing.assert_allclose(param, [2.0 * (1 - 0.05)], rtol=1e-12)
    assert m[0] == 0.0 and v[0] == 0.0


def test_optimizer_step_decays_weights_but_not_biases():
    W, b = [np.ones((2, 2))], [np.ones(2)]
    dW, db = [np.zeros((2, 2))], [np.zeros(2)]
    opt = OptimizerConfig(name="sgd", weight_decay=0.1)
    state = init_state(opt, W, b)
    ref.optimizer_step(W, b, dW, db, state.slots, 1, 1.0, opt)
    np.testing.assert_allclose(W[0], 0.9)
    np.testing.assert_array_equal(b[0], 1.0)

"""fastmlp.insight: activations and saliency, checked against the equations,
central finite differences (float64) and across backends.

Tolerances:
- Saliency vs finite differences, float64, h = 1e-6: the logit is piecewise
  linear in x (ReLU network), so a central difference is exact unless a ReLU
  kink lies within h of x (probability ~ h per unit, negligible); what is left
  is rounding, eps * |logit| / h ~ 1e-16 * 10 / 1e-6 = 1e-9 absolute. The bar,
  1e-6 relative to the largest gradient entry, is fastmlp gradcheck's.
- numba vs numpy: test_backends.py's bars (float64 1e-12, float32 1e-5):
  the same sums in another order.
"""

import numpy as np
import pytest

from fastmlp import insight
from fastmlp.data import load_dataset
from fastmlp.kernels import get_backend
from fastmlp.model import MLP

REF = get_backend("numpy")
H = 1e-6
TOL = {"float32": 1e-5, "float64": 1e-12}


def _digit(index=0, dtype=np.float64):
    return load_dataset(dtype=dtype).X_test[index]


def rel_error(actual, expected):
    return np.abs(np.asarray(actual, np.float64) - expected).max() / np.abs(expected).max()


def test_trace_is_the_forward_pass_and_matches_the_backend_forward():
    model = MLP.init((32, 16), seed=1, dtype="float64")
    x = _digit()
    t = insight.trace(model, REF, x)
    hidden1 = np.maximum(x @ model.W[0] + model.b[0], 0)
    hidden2 = np.maximum(hidden1 @ model.W[1] + model.b[1], 0)
    np.testing.assert_allclose(t.hidden[0], hidden1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t.hidden[1], hidden2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t.logits, hidden2 @ model.W[2] + model.b[2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(t.probs, REF.forward(model.W, model.b, x[None])[0], rtol=0, atol=1e-12)
    assert [h.shape for h in t.hidden] == [(32,), (16,)] and t.x.shape == (784,)


@pytest.mark.parametrize("hidden, digit", [((128, 64), 3), ((20,), 7), ((40, 30, 20), 0)])
def test_saliency_matches_central_finite_differences_in_float64(hidden, digit):
    model = MLP.init(hidden, seed=2, dtype="float64")
    x = _digit(5).copy()
    grad = insight.saliency(model, REF, insight.trace(model, REF, x), digit)
    rng = np.random.default_rng(0)
    # Half the probes on ink, half anywhere: most pixels are blank.
    probes = np.concatenate([rng.choice(np.flatnonzero(x > 0), 50, replace=False),
                             rng.choice(784, 50, replace=False)])
    fd = np.empty(len(probes))
    for k, i in enumerate(probes):
        plus, minus = x.copy(), x.copy()
        plus[i] += H
        minus[i] -= H
        fd[k] = (insight.trace(model, REF, plus).logits[digit]
                 - insight.trace(model, REF, minus).logits[digit]) / (2 * H)
    assert np.abs(grad[probes] - fd).max() / np.abs(fd).max() < 1e-6
    assert np.abs(fd).max() > 1e-3  # the comparison is not between two zeros


def test_saliency_of_each_class_differs_and_sums_like_the_logits():
    # Linearity: the logits' gradients summed over classes are the gradient of
    # the summed logits, so saliency(sum) == sum of saliencies; and two classes
    # do not share a gradient (a wrong index would make them equal).
    model = MLP.init((24,), seed=4, dtype="float64")
    t = insight.trace(model, REF, _digit(1))
    grads = np.array([insight.saliency(model, REF, t, d) for d in range(10)])
    mask = (t.hidden[0] > 0).astype(np.float64)
    expected = model.W[0] @ (mask[:, None] * model.W[1])  # (784, 10): d logits / d x
    np.testing.assert_allclose(grads.T, expected, rtol=0, atol=1e-12)
    assert not np.allclose(grads[0], grads[1])


def test_saliency_rejects_a_digit_out_of_range():
    model = MLP.init((8,), seed=0, dtype="float64")
    with pytest.raises(ValueError, match="digit 10"):
        insight.saliency(model, REF, insight.trace(model, REF, _digit()), 10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_trace_and_saliency_match_numpy(dtype):
    pytest.importorskip("numba")
    fast = get_backend("numba")
    model = MLP.init((128, 64), seed=5, dtype=dtype)
    x = _digit(2, dtype)
    ref_t, fast_t = insight.trace(model, REF, x), insight.trace(model, fast, x)
    for a, r in zip(fast_t.layers[1:], ref_t.layers[1:]):
        assert rel_error(a, r) < TOL[dtype]
    for digit in (0, 9):
        assert rel_error(insight.saliency(model, fast, fast_t, digit),
                         insight.saliency(model, REF, ref_t, digit)) < TOL[dtype]

"""Backpropagation against central finite differences, float64, through the
whole network (see fastmlp/tolerances.py for the error measure and why
1e-6 is the right bar)."""

import numpy as np
import pytest

from fastmlp import gradcheck
from fastmlp.data import load_dataset
from fastmlp.kernels import get_backend
from fastmlp.model import MLP
from fastmlp.tolerances import ANALYTIC_VS_FD

ref = get_backend("numpy")


def _mnist_batch(n, seed):
    data = load_dataset(dtype=np.float64)
    rows = np.random.default_rng(seed).choice(len(data.X_train), n, replace=False)
    return np.ascontiguousarray(data.X_train[rows]), data.y_train[rows]


@pytest.mark.parametrize("hidden, smoothing", [((128, 64), 0.0), ((37, 13), 0.1), ((20,), 0.0)])
def test_whole_network_gradient_matches_finite_differences(hidden, smoothing):
    X, y = _mnist_batch(8, seed=len(hidden))
    model = MLP.init(hidden, seed=3, dtype="float64")
    rows = gradcheck.check({"numpy": ref}, model, X, y, per_tensor=60, seed=1, smoothing=smoothing)
    assert len(rows) == 2 * len(model.W)
    for row in rows:
        assert row.max_rel < ANALYTIC_VS_FD["float64"], row


def test_gradient_check_catches_a_wrong_gradient():
    # The check must be able to fail: halve one bias gradient and it does.
    class Broken:
        @staticmethod
        def forward_backward(W, b, X, y, dW, db, smoothing=0.0):
            out = ref.forward_backward(W, b, X, y, dW, db, smoothing)
            db[1] *= 0.5
            return out

    X, y = _mnist_batch(8, seed=0)
    model = MLP.init((16,), seed=0, dtype="float64")
    rows = gradcheck.check({"numpy": ref, "broken": Broken}, model, X, y, per_tensor=30)
    failed = {(r.tensor, r.against) for r in rows if not r.passed}
    assert failed == {("b1", "broken vs FD"), ("b1", "broken vs numpy")}

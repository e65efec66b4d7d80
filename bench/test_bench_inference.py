"""Inference per backend: single-image latency and the 10k test set.

Single images as `fastmlp predict` calls model.predict_proba; the 10k test set
as `fastmlp evaluate` and the per-epoch test accuracy call
fastmlp.evaluate.predict_proba.

Probabilities are checked against the reference (relative error within
fastmlp.tolerances.BACKEND_VS_REFERENCE) first, then one warm-up call, then
timing.
"""

import numpy as np
import pytest

import benchlib
from fastmlp.evaluate import predict_proba


def _single(model, mnist, backend):
    x = mnist.X_test[0]
    return lambda: model.predict_proba(x[None, :], backend)


def _test_set(model, mnist, backend):
    return lambda: predict_proba(model, mnist.X_test, backend)


@pytest.mark.parametrize("kind", ["single-image", "test-10k"])
def test_inference(benchmark, backend, reference, model, mnist, kind):
    make = _single if kind == "single-image" else _test_set
    want = make(model, mnist, reference)()
    call = make(model, mnist, backend)
    got = call()  # also the warm-up
    assert benchlib.relative_error(got, want) <= benchlib.BACKEND_VS_REFERENCE[str(want.dtype)]
    assert got.shape == (1 if kind == "single-image" else len(mnist.X_test), 10)
    benchmark.group = f"inference {kind}"
    benchmark.extra_info.update(backend=backend.name, rows=len(got))
    benchmark(call)

"""How closely two computations of one quantity must agree.

One table, per dtype, each number beside its reason.

Used by the tests (tests/test_backends.py, tests/test_gradients.py),
``fastmlp gradcheck`` (fastmlp/gradcheck.py) and the benchmarks' checks
before timing (bench/opcheck.py, bench/workload.py).

The error of a tensor is ``relative_error``: max |a - r| / max |r|, measured
against the tensor's largest entry, because entries that are almost zero
(dead ReLUs, pixels that are always 0) make an entry-wise ratio meaningless.
A wrong formula is off by O(1), so every bar below fails it by orders of
magnitude.
"""

import numpy as np

# A backend against the reference on the same inputs: one op, or one
# forward_backward, on the test's networks (sums of at most ~800 terms).
# float64: both compute the same sums and only the summation order differs
# (a sparse chain of fused multiply-adds against BLAS blocking), which moves
# a sum of ~800 terms by a few ulps of its largest terms, ~1e-15.
# float32: the same argument with eps = 1.2e-7: a few hundred terms in other
# orders drift by ~sqrt(n) to n ulps, ~1e-6; 1e-5 leaves a factor 10.
# The optimizer updates are elementwise with no sums: they agree bit for bit.
BACKEND_VS_REFERENCE = {"float64": 1e-12, "float32": 1e-5}

# The same comparison as ``fastmlp gradcheck`` makes it: for whatever network
# and batch it is asked for (--hidden, --batch-size up to 60000 rows), so
# sums of up to ~1e5 terms, whose order-only drift is n * eps ~ 1e-11 in
# float64; float32 as above.
GRADCHECK_BETWEEN = {"float64": 1e-10, "float32": 1e-5}

# The analytic gradient against central differences of the float64 loss,
# dL/dp ~ (L(p + h) - L(p - h)) / 2h with h = 1e-6: truncation error O(h^2)
# ~1e-12 and rounding error ~eps * |L| / h ~1e-10, against gradients of
# ~1e-3..1, so 1e-6 passes any correct gradient. float32 analytic gradients
# carry their own rounding, ~eps32 per layer of depth: 1e-3.
ANALYTIC_VS_FD = {"float64": 1e-6, "float32": 1e-3}

# One float32 training epoch against the reference's (the benchmarks check
# each timed epoch): the mean loss within 1e-3 relative. Hundreds of steps
# compound float32 rounding, and Adam turns the sign of a cancelling sum into
# a step of ~lr; a wrong update moves the loss by percents within a few steps.
EPOCH_LOSS_RTOL = 1e-3

# Rows classified right in one batch: a near-tie between two logits may
# round either way in either backend, so one row may flip.
CORRECT_SLACK = 1


def relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected| (the absolute error if expected
    is all 0; 0 for empty tensors). Shapes must match."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    if expected.size == 0:
        return 0.0
    scale = float(np.max(np.abs(expected)))
    error = float(np.max(np.abs(actual - expected)))
    return error / scale if scale > 0 else error

"""The floors an epoch is measured against.

Its FLOP count and the machine's SGEMM rate, at the peak and at each GEMM shape
of a step."""

import numpy as np

from fastmlp.model import layer_sizes
from timing import time_call


def network_name(sizes) -> str:
    """(784, 128, 64, 10) -> "784-128-64-10"."""
    return "-".join(map(str, sizes))


def epoch_flops(n: int, sizes=None) -> int:
    """Dense-equivalent FLOPs of one training epoch over n rows of the network
    ``sizes`` ((784, *hidden, 10); None: the default 784-128-64-10): the GEMMs only.

        forward    Y_l  = X_l @ W_l         2 n i_l o_l   every layer
        weights    dW_l = X_l.T @ dY_l      2 n i_l o_l   every layer
        inputs     dX_l = dY_l @ W_l.T      2 n i_l o_l   every layer but the
                                                          first (no dX for the pixels)

        total = 2 n (3 * sum_l i_l o_l  -  i_0 o_0)

    For 784-128-64-10: sum i o = 100352 + 8192 + 640 = 109184, so
    total = 2 n (327552 - 100352) = 2 n * 227200 = 454400 n, i.e.
    27.264e9 for n = 60000 (forward 13.10e9 + dW 13.10e9 + dX 1.06e9).
    Counting dX of the first layer too would give 3 * 13.10e9 = 39.31e9.
    Not counted (O(n * o) or O(params) per step, about 2% together): bias
    adds, ReLU and its mask, softmax/cross-entropy, and the optimizer update
    (~8 flops per parameter per step: 109386 * 8 * 469 = 0.41e9 per epoch).
    """
    sizes = sizes or layer_sizes()
    io = [i * o for i, o in zip(sizes[:-1], sizes[1:])]
    return 2 * n * (3 * sum(io) - io[0])


def sgemm_rate(m: int, k: int, n: int, transpose_a: bool = False, **timing) -> float:
    """GFLOP/s of np.matmul for float32 (m, k) @ (k, n) with the BLAS's threads
    (transpose_a: A is a transposed view, as the reference's X.T @ dY)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((k, m) if transpose_a else (m, k), dtype=np.float32)
    A = A.T if transpose_a else A
    B = rng.standard_normal((k, n), dtype=np.float32)
    C = np.empty((m, n), np.float32)
    seconds = time_call(lambda: np.matmul(A, B, out=C), **timing)
    return 2 * m * k * n / seconds / 1e9


def layer_gemms(batch: int, sizes=None) -> list[tuple]:
    """The GEMMs of one training step: (label, m, k, n, transpose_a)."""
    sizes = sizes or layer_sizes()
    gemms = []
    for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        gemms.append((f"fwd X@W {batch}x{i}@{i}x{o}", batch, i, o, False))
        gemms.append((f"dW X.T@dY {i}x{batch}@{batch}x{o}", i, batch, o, True))
        if l > 0:
            gemms.append((f"dX dY@W.T {batch}x{o}@{o}x{i}", batch, o, i, False))
    return gemms


def sgemm_timing(quick: bool = False) -> dict:
    return {"min_time": 0.1, "repeats": 3} if quick else {"min_time": 0.5, "repeats": 5}


def sgemm_peak(quick: bool = False) -> dict:
    """The machine's SGEMM peak: the best rate of float32 square np.matmul
    1024^3, 2048^3 and 4096^3 (quick: no 4096), each the best of 5 samples
    (quick: 3), with the BLAS's own threads."""
    timing = sgemm_timing(quick)
    square = {s: sgemm_rate(s, s, s, **timing) for s in ((1024, 2048) if quick else (1024, 2048, 4096))}
    return {"peak_gflops": max(square.values()),
            "square_gflops": {f"{s}^3": r for s, r in square.items()}}


def gemm_floors(n_rows: int, batch: int, sizes, peak_gflops: float, quick: bool = False,
                rates: dict | None = None) -> dict:
    """The floors of one epoch of the network ``sizes`` at ``batch`` on
    ``n_rows`` rows: the dense floor (epoch_flops / SGEMM peak), and the rate
    at each GEMM shape of a training step with the floor those rates imply
    (the same GEMMs, each at its shape's best rate). ``rates``: a cache
    {(m, k, n, transpose_a): GFLOP/s} shared across calls, so a shape is
    measured once per run."""
    timing = sgemm_timing(quick)
    rates = {} if rates is None else rates
    flops = epoch_flops(n_rows, sizes)
    layers = []
    step_seconds = 0.0
    for label, m, k, n, ta in layer_gemms(batch, sizes):
        if (m, k, n, ta) not in rates:
            rates[(m, k, n, ta)] = sgemm_rate(m, k, n, ta, **timing)
        rate = rates[(m, k, n, ta)]
        layers.append({"gemm": label, "gflops": rate})
        step_seconds += 2 * m * k * n / (rate * 1e9)
    steps = n_rows / batch  # the last partial batch counted pro rata
    return {
        "network": network_name(sizes),
        "epoch_flops": flops,
        "dense_floor_seconds": flops / (peak_gflops * 1e9),
        "layer_shapes": layers,
        "layer_shape_floor_seconds": step_seconds * steps,
        "batch": batch,
        "rows": n_rows,
    }

"""The packing steps' two variants.

Validated then timed (llm.c's dev/cuda pattern, as bench/test_bench_tiles.py
does for the micro-kernel): variant 1 is plain Numba (kernels/numba_tiles.py
``row_bits_plain``, ``pack_cols_plain``), variant 2 the one built on LLVM IR
helpers (``row_bits`` on numba_ir.nonzero_bits: 64 compares as one vector
compare; ``pack_cols`` on numba_ir.move_group: a group's MR values as one
vector move and test).

Each variant's output must equal NumPy's formulation exactly (packing copies
and compares, it does no arithmetic) before it is timed.

Inputs: a batch of 128 real MNIST rows in the epoch's random order, the
first layer's case (row_bits of every row: the forward's nonzero lists;
pack_cols over all 784 pixels: the weight gradient's panels).
"""

import numpy as np
import pytest
from numba import njit

from fastmlp.kernels.numba_ir import MR
from fastmlp.kernels.numba_tiles import KC, pack_cols, pack_cols_plain, row_bits, row_bits_plain



def _every_row(row_bits_variant):
    """bits[r] = row_bits_variant(X[rows[r]]) for every r, in one compiled
    loop (a Python loop would time 128 dispatches instead)."""
    @njit(nogil=True)
    def run(X, rows, bits):
        for r in range(rows.shape[0]):
            row_bits_variant(X[rows[r]], bits[r])
    return run


ROW_BITS = {"plain": _every_row(row_bits_plain), "ir": _every_row(row_bits)}
PACK_COLS = {"plain": pack_cols_plain, "ir": pack_cols}


def _batch(mnist):
    rows = np.random.default_rng(0).permutation(len(mnist.X_train))[:128].astype(np.int64)
    X = mnist.X_train   # read-only, as training passes it
    rows.flags.writeable = False
    return X, rows


@pytest.mark.parametrize("variant", list(ROW_BITS))
def test_row_bits(benchmark, mnist, variant):
    X, rows = _batch(mnist)
    K = X.shape[1]
    bits = np.zeros((len(rows), (K + 63) // 64), np.uint64)
    ROW_BITS[variant](X, rows, bits)
    padded = np.zeros((len(rows), bits.shape[1] * 64), bool)
    padded[:, :K] = X[rows] != 0
    want = (padded.reshape(len(rows), -1, 64).astype(np.uint64)
            << np.arange(64, dtype=np.uint64)).sum(axis=2, dtype=np.uint64)
    np.testing.assert_array_equal(bits, want)
    benchmark.group = "row_bits: 128 MNIST rows"
    benchmark(ROW_BITS[variant], X, rows, bits)


@pytest.mark.parametrize("variant", list(PACK_COLS))
def test_pack_cols(benchmark, mnist, variant):
    X, rows = _batch(mnist)
    n, K = len(rows), X.shape[1]
    groups = -(-K // MR)
    ks = np.zeros((groups, KC), np.int32)
    Ap = np.zeros((groups, KC * MR), X.dtype)
    counts = np.zeros(groups, np.int64)
    PACK_COLS[variant](X, rows, 0, n, 0, K, ks, Ap, counts)
    # NumPy's formulation: group g keeps the rows where one of its MR pixels is nonzero.
    panels = X[rows].reshape(n, groups, MR).transpose(1, 0, 2)
    for g in range(groups):
        kept = np.flatnonzero((panels[g] != 0).any(axis=1))
        assert counts[g] == len(kept)
        np.testing.assert_array_equal(ks[g, :len(kept)], kept)
        np.testing.assert_array_equal(Ap[g, :len(kept) * MR], panels[g, kept].reshape(-1))
    benchmark.group = "pack_cols: 128 MNIST rows x 784 pixels"
    benchmark.extra_info["kept_row_fraction"] = float(counts.sum() / (groups * n))
    benchmark(PACK_COLS[variant], X, rows, 0, n, 0, K, ks, Ap, counts)

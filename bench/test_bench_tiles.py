"""The micro-kernel's two variants, validated then timed (llm.c's dev/cuda pattern).

Variant 1 is plain Numba (kernels/numba_tiles.py ``tile_plain``), variant 2 the
LLVM IR kernel with its sums in registers (kernels/numba_ir.py ``tile_fma``).

Both compute C = A @ B over packed panels; each is checked against NumPy's A @
B (float32, rtol 1e-4 / atol 1e-5: sums of up to 1024 products of O(1) terms,
each rounding ~6e-8 relative) before it is timed. The backend keeps the variant
that wins here.

Shapes: the seed network's first layer on real MNIST rows (sparse: k
skipped per row group), its second layer (dense, small), and a wide dense
layer (the 784-1024-1024-10 workload; smaller in quick mode).
"""

import numpy as np
import pytest
from numba import njit

from fastmlp.kernels.numba_ir import MR, tile_fma
from fastmlp.kernels.numba_tiles import KC, NR32, pack_rows, pack_strips, row_bits, tile_plain

RTOL, ATOL = 1e-4, 1e-5


def _harness(tile):
    @njit(nogil=True)
    def run(A, Bp, bias, C, ks, Ap, counts):
        """C = A @ B + bias with ``tile``, given every group's packed panels."""
        n, K = A.shape
        for kb in range(counts.shape[1]):
            for s in range(Bp.shape[0]):
                for g in range(counts.shape[0]):
                    r0 = g * MR
                    tile(Ap[g, kb], counts[g, kb], Bp[s], ks[g, kb], C, r0, min(MR, n - r0),
                         s * NR32, bias, False, kb > 0)
    return run


VARIANTS = {"plain": _harness(tile_plain), "ir": _harness(tile_fma)}


@njit
def _pack_all(A, ks, Ap, counts):
    """Every group's panels, as product_rows packs them (untimed here)."""
    n, K = A.shape
    rows = np.arange(n)
    bits = np.empty((n, (K + 63) // 64), np.uint64)
    for r in range(n):
        row_bits(A[r], bits[r])
    for g in range(counts.shape[0]):
        for kb in range(counts.shape[1]):
            k0 = kb * KC
            counts[g, kb] = pack_rows(A, rows, g * MR, min(MR, n - g * MR), k0, min(K, k0 + KC),
                                      ks[g, kb], Ap[g, kb], bits)


def _problem(name, mnist, quick):
    rng = np.random.default_rng(0)
    if name == "mnist-layer1-sparse":
        A = np.ascontiguousarray(mnist.X_train[rng.permutation(60000)[:128]], np.float32)
        o = 128
    elif name == "dense-128x128x64":
        A, o = np.maximum(rng.standard_normal((128, 128)), 0).astype(np.float32), 64
    else:
        width = 256 if quick else 1024
        A, o = rng.standard_normal((128, width)).astype(np.float32), width
    n, K = A.shape
    B = (rng.standard_normal((K, o)) / np.sqrt(K)).astype(np.float32)
    Bp = np.empty((-(-o // NR32), K, NR32), np.float32)
    pack_strips(B, Bp)
    groups, blocks = -(-n // MR), -(-K // KC)
    ks = np.empty((groups, blocks, KC), np.int32)
    Ap = np.empty((groups, blocks, KC * MR), np.float32)
    counts = np.empty((groups, blocks), np.int64)
    _pack_all(A, ks, Ap, counts)
    return A, B, Bp, np.zeros(o, np.float32), ks, Ap, counts


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("shape", ["mnist-layer1-sparse", "dense-128x128x64", "dense-wide"])
def test_tile(benchmark, mnist, quick, shape, variant):
    A, B, Bp, bias, ks, Ap, counts = _problem(shape, mnist, quick)
    C = np.full((A.shape[0], B.shape[1]), np.nan, np.float32)
    run = VARIANTS[variant]
    run(A, Bp, bias, C, ks, Ap, counts)     # compiles, and is the result checked
    np.testing.assert_allclose(C, A @ B, rtol=RTOL, atol=ATOL)
    benchmark.group = f"tile {shape}"
    benchmark.extra_info["kept_k_fraction"] = float(counts.sum() / (counts.shape[0] * A.shape[1]))
    benchmark(run, A, Bp, bias, C, ks, Ap, counts)

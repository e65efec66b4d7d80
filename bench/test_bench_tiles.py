"""The micro-kernel's variants, validated then timed (llm.c's dev/cuda pattern).

Two tiles, each twice: variant 1 plain Numba (kernels/numba_tiles.py
``tile_rows_plain``, ``tile_plain``), variant 2 the LLVM IR kernel with its
sums in registers (kernels/numba_ir.py ``tile_rows_fma``, ``tile_fma``). The
rows tile reads A's rows in place (X @ W and dY @ W.T); the panel tile reads
a k-major panel Ap (X.T @ dY, whose panels pack_cols builds; here they are
built by NumPy from the same kept k, untimed).

All compute C = A @ B over the kept k of each row group; each is checked against NumPy's A @
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

from fastmlp.kernels.numba_ir import MR, set_bit_indices, tile_fma, tile_rows_fma
from fastmlp.kernels.numba_tiles import (KC, NR32, kept_ks, pack_strips, product_rows, row_bits,
                                         set_bit_indices_plain, tile_plain, tile_rows_plain)

RTOL, ATOL = 1e-4, 1e-5


def _panel_harness(tile):
    @njit(nogil=True)
    def run(A, rows, Bp, bias, C, ks, Ap, counts):
        """C = A @ B + bias with the panel ``tile``, given every group's panels."""
        n, K = A.shape
        for kb in range(counts.shape[1]):
            for s in range(Bp.shape[0]):
                for g in range(counts.shape[0]):
                    r0 = g * MR
                    tile(Ap[g, kb], counts[g, kb], Bp[s], ks[g, kb], C, r0, min(MR, n - r0),
                         s * NR32, bias, False, kb > 0)
    return run


def _rows_harness(tile):
    @njit(nogil=True)
    def run(A, rows, Bp, bias, C, ks, Ap, counts):
        """C = A @ B + bias with the rows ``tile`` (Ap unused: it reads A)."""
        n, K = A.shape
        for kb in range(counts.shape[1]):
            for s in range(Bp.shape[0]):
                for g in range(counts.shape[0]):
                    r0 = g * MR
                    tile(A, rows, counts[g, kb], Bp[s], ks[g, kb], C, r0, min(MR, n - r0),
                         s * NR32, bias, False, kb > 0)
    return run


VARIANTS = {"rows-plain": _rows_harness(tile_rows_plain), "rows-ir": _rows_harness(tile_rows_fma),
            "panel-plain": _panel_harness(tile_plain), "panel-ir": _panel_harness(tile_fma)}


@njit
def _kept_all(A, ks, counts):
    """Every group's kept k per block, as product_rows finds them (untimed)."""
    n, K = A.shape
    bits = np.empty((n, (K + 63) // 64), np.uint64)
    for r in range(n):
        row_bits(A[r], bits[r])
    for g in range(counts.shape[0]):
        for kb in range(counts.shape[1]):
            k0 = kb * KC
            counts[g, kb] = kept_ks(bits, g * MR, min(MR, n - g * MR), k0, min(K, k0 + KC),
                                    ks[g, kb])


def _panels(A, ks, counts):
    """Ap[g, kb, t*MR + q] = A[g*MR + q, ks[g, kb, t]] (0 past the last row)."""
    n = A.shape[0]
    Ap = np.zeros(ks.shape[:2] + (KC * MR,), A.dtype)
    for g, kb in np.ndindex(*counts.shape):
        rows = np.arange(g * MR, min(n, g * MR + MR))
        block = A[np.ix_(rows, ks[g, kb, :counts[g, kb]])]      # (rows, count)
        Ap[g, kb, :counts[g, kb] * MR].reshape(-1, MR)[:, :len(rows)] = block.T
    return Ap


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
    counts = np.empty((groups, blocks), np.int64)
    _kept_all(A, ks, counts)
    return A, B, Bp, np.zeros(o, np.float32), ks, _panels(A, ks, counts), counts


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("shape", ["mnist-layer1-sparse", "dense-128x128x64", "dense-wide"])
def test_tile(benchmark, mnist, quick, shape, variant):
    A, B, Bp, bias, ks, Ap, counts = _problem(shape, mnist, quick)
    rows = np.arange(A.shape[0], dtype=np.int64)
    C = np.full((A.shape[0], B.shape[1]), np.nan, np.float32)
    run = VARIANTS[variant]
    run(A, rows, Bp, bias, C, ks, Ap, counts)     # compiles, and is the result checked
    np.testing.assert_allclose(C, A @ B, rtol=RTOL, atol=ATOL)
    benchmark.group = f"tile {shape}"
    benchmark.extra_info["kept_k_fraction"] = float(counts.sum() / (counts.shape[0] * A.shape[1]))
    benchmark(run, A, rows, Bp, bias, C, ks, Ap, counts)


# --- the whole product X @ W: tiles reading A in place vs a packed panel ---

@njit(nogil=True)
def _pack_values(A, rows, r0, nrows, count, ks, Ap):
    """Ap[t*MR + q] = A[rows[r0 + q], ks[t]] (rows past nrows repeat row r0):
    the copy that product_rows made before its tiles read A in place."""
    for t in range(count):
        for q in range(MR):
            Ap[t * MR + q] = A[rows[r0 + min(q, nrows - 1)], ks[t]]


@njit(nogil=True)
def product_rows_panel(A, rows, lo, hi, Bp, bias, C, relu):
    """kernels/numba_tiles.product_rows as it was, each group's values first
    copied into a k-major panel (shared by the S strips) for tile_fma."""
    K, nr = A.shape[1], Bp.shape[2]
    groups = (hi - lo + MR - 1) // MR
    ks = np.empty((groups, KC), np.int32)
    Ap = np.empty((groups, KC * MR), A.dtype)
    counts = np.empty(groups, np.int64)
    bits = np.empty((hi, (K + 63) // 64), np.uint64)
    for r in range(lo, hi):
        row_bits(A[rows[r]], bits[r])
    for k0 in range(0, K, KC):
        k1 = min(K, k0 + KC)
        for g in range(groups):
            r0 = lo + g * MR
            counts[g] = kept_ks(bits, r0, min(MR, hi - r0), k0, k1, ks[g])
            _pack_values(A, rows, r0, min(MR, hi - r0), counts[g], ks[g], Ap[g])
        for s in range(Bp.shape[0]):
            for g in range(groups):
                r0 = lo + g * MR
                tile_fma(Ap[g], counts[g], Bp[s], ks[g], C, r0, min(MR, hi - r0), s * nr, bias,
                         relu and k1 == K, k0 > 0)


PRODUCTS = {"in-place": product_rows, "panel": product_rows_panel}


@pytest.mark.parametrize("variant", list(PRODUCTS))
@pytest.mark.parametrize("shape", ["mnist-layer1-sparse", "dense-128x128x64", "dense-wide"])
def test_product_rows(benchmark, mnist, quick, shape, variant):
    """The whole of X @ W + bias, ReLU, as training's forward runs it: both
    variants add the same products in the same order, so they must agree to
    the bit (and with NumPy within RTOL / ATOL) before either is timed."""
    A, B, Bp, bias, _, _, _ = _problem(shape, mnist, quick)
    rows = np.arange(A.shape[0], dtype=np.int64)
    A = np.ascontiguousarray(A)
    A.flags.writeable = False
    C, C_other = (np.full((A.shape[0], B.shape[1]), np.nan, np.float32) for _ in range(2))
    other = next(f for name, f in PRODUCTS.items() if name != variant)
    PRODUCTS[variant](A, rows, 0, len(A), Bp, bias, C, True)
    other(A, rows, 0, len(A), Bp, bias, C_other, True)
    np.testing.assert_array_equal(C, C_other)
    np.testing.assert_allclose(C, np.maximum(A @ B, 0), rtol=RTOL, atol=ATOL)
    benchmark.group = f"product_rows {shape}"
    benchmark(PRODUCTS[variant], A, rows, 0, len(A), Bp, bias, C, True)


# --- where the buffers start: a cache line, or NumPy's 16 bytes past one ---

def _placed(a, offset):
    """A copy of a whose data starts ``offset`` bytes past a 64-byte boundary."""
    raw = np.zeros(a.size + 64, a.dtype)
    skip = ((-raw.ctypes.data % 64) + offset) // a.itemsize
    out = raw[skip:skip + a.size].reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("offset", [0, 16])
@pytest.mark.parametrize("shape", ["mnist-layer1-sparse", "dense-128x128x64", "dense-wide"])
def test_product_rows_alignment(benchmark, mnist, quick, shape, offset):
    """product_rows with the packed weights and the output at a 64-byte
    boundary (offset 0, what numba_train.aligned_zeros gives the worker) or
    16 bytes past one (offset 16, where NumPy's allocator often puts them):
    the same bits, and the time a split vector load costs."""
    A, B, Bp, bias, _, _, _ = _problem(shape, mnist, quick)
    rows = np.arange(A.shape[0], dtype=np.int64)
    A = np.ascontiguousarray(A)
    A.flags.writeable = False
    Bp = _placed(Bp, offset)
    C = _placed(np.full((A.shape[0], B.shape[1]), np.nan, np.float32), offset)
    product_rows(A, rows, 0, len(A), Bp, bias, C, True)
    reference = np.empty_like(C)
    product_rows(A, rows, 0, len(A), _placed(Bp, 0), bias, reference, True)
    np.testing.assert_array_equal(C, reference)
    np.testing.assert_allclose(C, np.maximum(A @ B, 0), rtol=RTOL, atol=ATOL)
    benchmark.group = f"product_rows alignment {shape}"
    benchmark(product_rows, A, rows, 0, len(A), Bp, bias, C, True)


# --- the kept k of a row group: its union's set bits one by one, or 16 at a time ---

def _expand_harness(expand):
    @njit(nogil=True)
    def run(bits, ks, counts):
        """ks[g, :counts[g]] = the k where one of group g's MR rows is nonzero."""
        for g in range(counts.shape[0]):
            count = 0
            for w in range(bits.shape[1]):
                word = np.uint64(0)
                for q in range(min(MR, bits.shape[0] - g * MR)):
                    word |= bits[g * MR + q, w]
                count = expand(word, 64 * w, ks[g], count)
            counts[g] = count
    return run


EXPANDS = {"plain": _expand_harness(set_bit_indices_plain), "ir": _expand_harness(set_bit_indices)}


@pytest.mark.parametrize("variant", list(EXPANDS))
def test_kept_k_expansion(benchmark, mnist, variant):
    """Every 8-row group's kept pixels over 1,024 MNIST rows (the union of a
    group's row_bits, 45% of the pixels), each variant checked against NumPy's
    np.flatnonzero of the group's rows before it is timed."""
    rng = np.random.default_rng(0)
    A = np.ascontiguousarray(mnist.X_train[rng.permutation(60000)[:1024]], np.float32)
    bits = np.empty((len(A), -(-A.shape[1] // 64)), np.uint64)
    for r in range(len(A)):
        row_bits(A[r], bits[r])
    groups = -(-len(A) // MR)
    ks = np.full((groups, bits.shape[1] * 64), -1, np.int32)
    counts = np.zeros(groups, np.int64)
    run = EXPANDS[variant]
    run(bits, ks, counts)
    for g in range(groups):
        expected = np.flatnonzero((A[g * MR:(g + 1) * MR] != 0).any(axis=0))
        np.testing.assert_array_equal(ks[g, :counts[g]], expected)
    benchmark.group = "kept k of a row group"
    benchmark(run, bits, ks, counts)

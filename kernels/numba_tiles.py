"""The Numba backend's product kernels: X @ W, dY @ W.T and X.T @ dY by tiles.

Small typed functions that every product of the network is built from, used
alike by the single ops (kernels/numba_backend.py) and by fused training
(kernels/numba_train.py).

A product C = A @ B is cut into tiles of MR rows of C by NR = NV * lanes
columns. For each group of MR rows, ``kept_ks`` lists the k where one of the
MR rows is nonzero; the micro-kernel (``tile_rows_fma``, LLVM IR in
kernels/numba_ir.py) then runs over those k with the MR x NR sums in
registers, one load of a B row serving MR rows, and reads the rows' values
in place. A dense layer keeps every k and runs at GEMM speed; MNIST's pixels
(81% zero) and ReLU outputs (~50%) skip whole k. The weight gradient X.T @ dY
is the same product with A = X.T: ``pack_cols`` packs MR columns of X
(pixels) into a panel Ap laid out k-major (Ap[t*MR + q] = X[ks[t], c0 + q])
keeping the rows (images) where one of them is nonzero, so X.T is never
formed, and ``tile_fma`` reads the panel.

Arrays are C-contiguous; ``rows`` maps a tile's row r to A[rows[r]], so a
batch is read from X in place, in the epoch's order. ``ks`` is int32, the
panels are of A's dtype; each product allocates its own.
"""

import numpy as np

from .numba_jit import jit
from .numba_ir import (MR, NV, VECTOR_BYTES, bit_count, borrow, lanes, lowest_bit, move_group,
                       nonzero_bits, set_bit_indices, tile_fma, tile_rows_fma)


NR32, NR64 = NV * lanes(4), NV * lanes(8)   # NR for float32 and float64


# The inner dimension is cut in blocks of KC (a multiple of 64, the width of
# a row_bits word): the KC x NR strip of B that a tile walks (32 KB in
# float32 with AVX-512) then stays in L1 while every row group uses it. A last
# block of at most TAIL k joins the one before it (784 = 256 + 256 + 272, not
# + 16): each block is one more pass of tiles, each loading and storing its
# C rows, and a pass over 16 k cost as much as one over 256 on zero rows.
# Same bits: a tile's sums run on in the same order either way.
KC = 256
TAIL = 64
# A row group whose nonzero k are more than this fraction of a block packs
# the whole block (hidden layers: ~93% of k are nonzero in one of 4 rows).
DENSE_FRACTION = 0.75


@jit(inline=True)
def row_bits(a, bits):
    """bits[w] bit j = (a[64w + j] != 0): which of a row's entries are nonzero.
    a: (K,)  bits: (>= ceil(K / 64),) uint64 written."""
    K = a.shape[0]
    w = 0
    while 64 * (w + 1) <= K:
        bits[w] = nonzero_bits(a, 64 * w)
        w += 1
    if 64 * w < K:
        word = np.uint64(0)
        for j in range(K - 64 * w):
            if a[64 * w + j] != 0:
                word |= np.uint64(1) << np.uint64(j)
        bits[w] = word


@jit(inline=True)
def kept_ks(bits, r0, nrows, k0, k1, ks):
    """ks[:count] = the k0 <= k < k1 where one of the rows r0 .. r0 + nrows - 1
    is nonzero, in increasing k; returns count. k0 is a multiple of 64.
    bits: (>= r0 + nrows, ceil(K / 64)) uint64, row r's row_bits
    ks: (>= k1 - k0,) int32 written. The group's nonzero k are the set bits
    of the OR of its rows' words, visited lowest first; where more than
    DENSE_FRACTION of them are set, every k is kept instead (a dense block:
    visiting bits would cost more than the few products it skips)."""
    w0, w1 = k0 // 64, (k1 + 63) // 64
    kept = 0
    for w in range(w0, w1):
        kept += bit_count(union_word(bits, r0, nrows, w))
    count = 0
    if kept > DENSE_FRACTION * (k1 - k0):
        for k in range(k0, k1):
            ks[count] = k
            count += 1
        return count
    for w in range(w0, w1):   # the union again: cheaper than allocating it
        word = union_word(bits, r0, nrows, w)
        count = expand_bits(word, 64 * w, ks, count)
    return count


@jit(inline=True)
def set_bit_indices_plain(word, base, ks, at):
    """ks[at + i] = base + the index of word's i-th lowest set bit, bit by
    bit: numba_ir.set_bit_indices' plain twin. Returns at + their count."""
    while word != 0:
        ks[at] = base + lowest_bit(word)
        at += 1
        word &= word - np.uint64(1)
    return at


# With AVX-512 the kept k of a word come 16 at a time (numba_ir.set_bit_indices,
# vpcompressd): a group's 120-160 k of a block in 20 steps, not one step per k
# (bench/test_bench_tiles.py::test_kept_k_expansion). AVX2 has no such instruction.
expand_bits = set_bit_indices if VECTOR_BYTES == 64 else set_bit_indices_plain


@jit(inline=True)
def union_word(bits, r0, nrows, w):
    """Word w of the OR of rows r0 .. r0 + nrows - 1's row_bits."""
    word = np.uint64(0)
    for q in range(nrows):
        word |= bits[r0 + q, w]
    return word


@jit()
def pack_cols(A, rows, r0, r1, lo, hi, ks, Ap, counts):
    """For each group g of MR columns c0 = lo + g*MR of A (the last one may be
    narrower, up to hi): Ap[g, t*MR + q] = A[rows[ks[g, t]], c0 + q] for the
    r0 <= r < r1 where one of the group's columns is nonzero: MR rows of A.T
    per group, packed without forming A.T.
    counts[g] = how many r were kept. A: (N, K)  rows: (>= r1,) int64
    ks: (groups, >= r1 - r0) int32  Ap: (groups, >= (r1 - r0) * MR)
    counts: (groups,)  all written."""
    groups = (hi - lo + MR - 1) // MR
    full = (hi - lo) // MR
    # Group by group: its writes go to one stream, and the column block of
    # A it reads (rows x 64 bytes) serves the next groups from L1. Row by row
    # would write to every group's stream at once, more lines than L1 holds.
    for g in range(full):
        c0, c = lo + g * MR, 0
        for r in range(r0, r1):
            ks[g, c] = r
            c += move_group(A, rows[r], c0, Ap, g, c)
        counts[g] = c
    if full < groups:   # the last, narrower group: value by value
        counts[full] = pack_group_plain(A, rows, r0, r1, lo + full * MR, hi, ks[full], Ap[full])


@jit(inline=True)
def pack_group_plain(A, rows, r0, r1, c0, hi, ks, Ap):
    """One group of pack_cols, each of its MR values moved and tested one by
    one (columns past hi read as 0): Ap[t*MR + q] = A[rows[ks[t]], c0 + q]
    for the kept r. Returns how many were kept. ks: (>= r1 - r0,) int32
    Ap: (>= (r1 - r0) * MR,), both written."""
    zero = A.dtype.type(0)
    c = 0
    for r in range(r0, r1):
        nonzero = False
        for q in range(MR):
            v = A[rows[r], c0 + q] if c0 + q < hi else zero
            Ap[c * MR + q] = v
            nonzero |= v != zero
        ks[c] = r
        c += nonzero
    return c


@jit()
def tile_plain(Ap, count, Bs, ks, C, c0, nrows, j0, bias, relu, accumulate):
    """Variant 1 of tile_fma, the same tile in plain Numba loops (the sums go
    through memory, so it is load-bound); validated and timed beside it in
    bench/test_bench_tiles.py. Same contract as numba_ir.tile_fma."""
    width = min(Bs.shape[1], C.shape[1] - j0)
    if not accumulate:
        for q in range(nrows):
            c = C[c0 + q]
            for j in range(width):
                c[j0 + j] = bias[j0 + j]
    for t in range(count):
        b = Bs[ks[t]]
        for q in range(nrows):
            a = Ap[t * MR + q]
            c = C[c0 + q]
            for j in range(width):
                c[j0 + j] += a * b[j]
    if relu:
        relu_tile(C, c0, nrows, j0, width)


@jit()
def tile_rows_plain(A, rows, count, Bs, ks, C, c0, nrows, j0, bias, relu, accumulate):
    """Variant 1 of tile_rows_fma: the same tile in plain Numba loops, a read
    from A's rows in place; validated and timed beside it in
    bench/test_bench_tiles.py. Same contract as numba_ir.tile_rows_fma."""
    width = min(Bs.shape[1], C.shape[1] - j0)
    if not accumulate:
        for q in range(nrows):
            C[c0 + q, j0:j0 + width] = bias[j0:j0 + width]
    for t in range(count):
        k = ks[t]
        for q in range(nrows):
            a, c = A[rows[c0 + q], k], C[c0 + q]
            for j in range(width):
                c[j0 + j] += a * Bs[k, j]
    if relu:
        relu_tile(C, c0, nrows, j0, width)


@jit(inline=True)
def relu_tile(C, c0, nrows, j0, width):
    """C[c0:c0 + nrows, j0:j0 + width] = max(., 0): the plain tiles' ReLU."""
    for q in range(nrows):
        c = C[c0 + q]
        for j in range(width):
            if c[j0 + j] < 0:
                c[j0 + j] = 0


@jit()
def row_bits_plain(a, bits):
    """Variant 1 of row_bits, one compare per entry in a plain loop (no
    nonzero_bits IR); validated and timed beside it in bench/test_bench_pack.py."""
    for w in range((a.shape[0] + 63) // 64):
        word = np.uint64(0)
        for j in range(min(64, a.shape[0] - 64 * w)):
            if a[64 * w + j] != 0:
                word |= np.uint64(1) << np.uint64(j)
        bits[w] = word


@jit()
def pack_cols_plain(A, rows, r0, r1, lo, hi, ks, Ap, counts):
    """Variant 1 of pack_cols, each group's MR values moved and tested one by
    one (no move_group IR); same contract, validated and timed beside it in
    bench/test_bench_pack.py."""
    for g in range((hi - lo + MR - 1) // MR):
        counts[g] = pack_group_plain(A, rows, r0, r1, lo + g * MR, hi, ks[g], Ap[g])


@jit()
def pack_strips(B, Bp):
    """Bp[s, k, j] = B[k, s*NR + j], 0 past B's last column: B cut into
    strips of NR columns, each one contiguous block. B: (K, o)
    Bp: (ceil(o / NR), K, NR) written."""
    nr, o = Bp.shape[2], B.shape[1]
    full = o // nr
    # row by row, so B is read in order: strip by strip read each row's
    # lines once per strip, a page apart in wide layers (784-1024-1024-10's
    # weights: 657 us that way, 538 us this way)
    for k in range(B.shape[0]):
        for s in range(full):
            for j in range(nr):
                Bp[s, k, j] = B[k, s * nr + j]
        for s in range(full, Bp.shape[0]):   # the last strip, part past o
            for j in range(nr):
                c = s * nr + j
                Bp[s, k, j] = B[k, c] if c < o else 0


@jit()
def unpack_strips(Bp, B):
    """B[k, c] = Bp[c // NR, k, c % NR]: the inverse of pack_strips."""
    nr = Bp.shape[2]
    for k in range(B.shape[0]):
        for c in range(B.shape[1]):
            B[k, c] = Bp[c // nr, k, c % nr]


@jit(inline=True)
def block_end(k0, K):
    """The end of the block of the inner dimension that starts at k0."""
    k1 = k0 + KC
    return K if K - k1 <= TAIL else k1


@jit()
def product_rows(A, rows, lo, hi, Bp, bias, C, relu):
    """C[r] = A[rows[r]] @ B + bias (then ReLU if relu) for lo <= r < hi: every
    strip of B (product_strips_rows). A: (N, K)  rows: (>= hi,) int64
    Bp: (S, K, NR)  bias: (o,)  C: (>= hi, o) written, o <= S * NR."""
    product_strips_rows(A, rows, lo, hi, Bp, 0, Bp.shape[0], bias, C, relu)


@jit()
def product_strips_rows(A, rows, lo, hi, Bp, s0, s1, bias, C, relu):
    """C[r, s0*NR : s1*NR] = A[rows[r]] @ B[:, those columns] + bias (then
    ReLU if relu) for lo <= r < hi, strips s0..s1-1 of B, in groups of MR
    rows and blocks of KC of the inner dimension, each group's kept k found
    once per block and its tiles reading A in place. A group's sums do not
    depend on which strips a call takes: the same bits for any split.
    A: (N, K)  rows: (>= hi,) int64  Bp: (S, K, NR) packed (pack_strips)
    bias: (o,)  C: (>= hi, o) written there, o <= S * NR."""
    K, nr = A.shape[1], Bp.shape[2]
    groups = (hi - lo + MR - 1) // MR
    ks = np.empty((groups, KC + TAIL), np.int32)
    counts = np.empty(groups, np.int64)
    bits = np.empty((hi, (K + 63) // 64), np.uint64)   # rows lo..hi-1 used
    for r in range(lo, hi):
        row_bits(borrow(A, rows[r]), borrow(bits, r))
    k0 = 0
    while k0 < K:
        k1 = block_end(k0, K)
        for g in range(groups):
            r0 = lo + g * MR
            counts[g] = kept_ks(bits, r0, min(MR, hi - r0), k0, k1, borrow(ks, g))
        for s in range(s0, s1):
            for g in range(groups):
                r0 = lo + g * MR
                tile_rows_fma(A, rows, counts[g], borrow(Bp, s), borrow(ks, g), C, r0,
                              min(MR, hi - r0), s * nr, bias, relu and k1 == K, k0 > 0)
        k0 = k1


@jit()
def product_cols(A, rows, n, lo, hi, Bp, Cp):
    """Cp = (A[rows[:n]].T @ B[:n]) in strips, rows lo..hi-1 of every strip
    (product_strips_cols). A: (N, K)  rows: (>= n,) int64  Bp: (S, >= n, NR),
    B packed  Cp: (S, K, NR) written there."""
    product_strips_cols(A, rows, n, lo, hi, Bp, 0, Bp.shape[0], Cp)


@jit()
def product_strips_cols(A, rows, n, lo, hi, Bp, s0, s1, Cp):
    """Cp[s] = (A[rows[:n]].T @ B[:n]) strip s, rows lo..hi-1, for strips
    s0..s1-1: rows of X.T @ dY with X = A[rows[:n]], in groups of MR columns
    of A and blocks of KC rows (each entry sums over the rows in order,
    whichever strips or rows a call takes). A: (N, K)  rows: (>= n,) int64
    Bp: (S, >= n, NR), B packed  Cp: (S, K, NR) written there."""
    groups = (hi - lo + MR - 1) // MR
    ks = np.empty((groups, KC), np.int32)
    Ap = np.empty((groups, KC * MR), A.dtype)
    counts = np.empty(groups, np.int64)
    zeros = np.zeros(Cp.shape[2], Cp.dtype)
    for r0 in range(0, max(n, 1), KC):
        r1 = min(n, r0 + KC)
        pack_cols(A, rows, r0, r1, lo, hi, ks, Ap, counts)
        for s in range(s0, s1):
            for g in range(groups):
                c0 = lo + g * MR
                tile_fma(borrow(Ap, g), counts[g], borrow(Bp, s), borrow(ks, g), borrow(Cp, s),
                         c0, min(MR, hi - c0), 0, zeros, False, r0 > 0)

"""Fused training and inference for the Numba backend.

Composed only of the op kernels of kernels/numba_tiles.py and
kernels/numba_rows.py (the same ones the single ops run, and the op tests
check).

One batch is two phases over fixed parts, run by every thread of the call
(kernels/numba_sync.py), with a barrier after each:
  rows   (part = ROWS_PER_PART rows of the batch; inference takes larger
         parts, Batches.part_rows): forward through every
         layer, softmax + cross-entropy, and every backward delta of those
         rows, dA = (dY @ W.T) * relu'; a row needs no other.
  params (part = a piece of one layer's input units, see ``layout``): dW
         rows X.T @ dY from all the batch's rows, db, the optimizer update of
         those parameters, and W.T refreshed there for the next batch's deltas.
Training may instead cut layer 0 by W[0]'s strips (Step.by_strips, see
``owned_strips``): each thread computes its strips' columns of layer 1 for
all the batch's rows in a phase of its own before the rows phase, which
then starts at layer 1, and their dW, db and update in the params phase.
Each result is computed by exactly one part, in a fixed order, from a cut
that depends on the batch and layer sizes only: the same bits for any
thread count, with no per-thread gradient copies to add up. (Neither the
params cut nor the strips cut even changes the bits: each entry sums over
the same k, or the same rows, in the same order whichever part holds it, as
parts start at whole groups of MR rows or units.)

The parameters live in one flat vector P during a call, every W[l] packed in
strips of NR columns (numba_tiles.pack_strips), as the micro-kernel reads
them; the gradient G and the optimizer slots share that layout (the updates
are elementwise, so the layout is theirs too). Offsets are in a Layout;
the batch's buffers in a Buffers; see ``layout`` and ``buffers``.
"""

from collections import namedtuple

import numpy as np

from .numba_jit import jit
from .numba_rows import (argmax, column_sums, dropout_row, relu_mask_row, smoothed_targets,
                         softmax_row, softmax_xent_row, update_span)
from .numba_tiles import (NR32, NR64, pack_strips, product_cols, product_rows,
                          product_strips_cols, product_strips_rows)
from .numba_ir import MR, borrow, borrow_block, fma, prefetch_for_read, prefetch_for_write
from .numba_sync import barrier, next_part

# The cuts: a rows part is ROWS_PER_PART rows (whole micro-kernel groups;
# 32 on AVX2: fewer, larger parts reuse each packed weight strip more, and
# batch 128 still has 4 parts, batch 512 16). In the params phase layer l is
# cut in pieces of about WORK_PER_PIECE weights x batch rows (8192 weights at
# batch 128), at most MAX_PIECES: a piece of a small layer costs more in
# setup than in products, and 16 pieces of a wide one keep up to 16 threads
# busy. Fixed numbers, never the thread
# count, so any number of threads gives the same bits.
ROWS_PER_PART = 8 * MR
# Where blocks of the buffers start: one cache line, a whole AVX-512 vector.
ALIGN_BYTES = 64
WORK_PER_PIECE = 8192 * 128
MAX_PIECES = 16
# A literal False or 0 passed to a compiled function compiles it once more
# for that literal type: call sites pass typed values instead.
NO_RELU = np.bool_(False)
ROWS_PHASE, PARAMS_PHASE = np.int64(0), np.int64(1)

# sizes (L+1,): widths i_0, o_0, ..., o_{L-1}; strips (L,): ceil(o_l / NR);
# w_at/b_at (L,): where W[l]'s strips (strips[l], i_l, NR) and b[l] start in
# P; t_at (L,): W[l].T's strips (ceil(i_l / NR), o_l, NR) in the T buffer
# (l >= 1); a_at (L+2,): layer a's (n, sizes[a]) rows in act/delta, a >= 1
# (layer 0 is X itself, read in place: a batch's rows are never copied);
# d_at (L+1,): layer l's output deltas in strips (strips[l], n, NR); n: rows;
# pieces (L,): layer l's pieces in the params phase, jobs their total;
# widest: max(sizes) (given, not computed in a kernel: np.max there costs a
# second of compile).
Layout = namedtuple("Layout", "sizes strips w_at b_at t_at a_at d_at n nr pieces jobs widest")
# act: the activations of layers 1..L; delta: dL/d(activation), same layout;
# act_in, delta_in: read-only views of them, as the products read their
# inputs (X is read-only: one compiled product for both); dstrips: the deltas
# packed in strips; T: W[l].T in strips; G: the gradient, laid out as P;
# ident: 0..n-1; loss, right: (parts,) per rows part.
Buffers = namedtuple("Buffers", "act delta act_in delta_in dstrips T G ident loss right")
# P: the parameters in the Layout's order; S1, S2: the optimizer's slots in
# the same layout (velocity; Adam's m and v), P itself where unused.
Params = namedtuple("Params", "P S1 S2")
# The rows of a call: X (N, i_0), labels y (N,) int64, the epoch's row order
# (int64), batch_size, batches first..stop-1, pos0 the epoch position of
# order[0] (dropout), part_rows the rows of a rows part (ROWS_PER_PART when
# training; inference, with no params phase to balance, takes larger parts
# that stream each weight strip once per more rows).
Batches = namedtuple("Batches", "X y order batch_size first stop pos0 part_rows")
# What a call does with them (mode INFER, GRADIENT or UPDATE), and the update:
# lrs (batches,) float64, hyper an Optimizer, step0 the updates done before,
# label smoothing, a Dropout; by_strips: layer 0 by strips where the threads
# can each own some (owned_strips), else by rows (the same bits either way).
Step = namedtuple("Step", "mode lrs hyper step0 smoothing drop by_strips")
INFER, GRADIENT, UPDATE = 0, 1, 2
# kind: 0 sgd, 1 momentum, 2 adam, 3 adamw (numba_rows.update_span).
Optimizer = namedtuple("Optimizer", "kind momentum nesterov beta1 beta2 eps weight_decay")
# threshold = round(rate * 2^24) (0: no dropout), scale = 1 / (1 - rate), key.
Dropout = namedtuple("Dropout", "threshold scale key")


def starts(lengths, align):
    """Where consecutive blocks of these lengths start in one vector when
    each starts at a multiple of ``align`` elements, and the end of the last:
    (len(lengths) + 1,) int64."""
    padded = -(-np.asarray(lengths, np.int64) // align) * align
    return np.concatenate([[0], np.cumsum(padded)]).astype(np.int64)


def layout(sizes, n, dtype) -> Layout:
    """The Layout of a network of widths ``sizes`` for batches of up to n rows.
    Every block (a layer's strips, its bias, its rows) starts at a multiple of
    ALIGN_BYTES in a buffer that does (``aligned_zeros``)."""
    itemsize = np.dtype(dtype).itemsize
    nr, align = (NR32 if itemsize == 4 else NR64), ALIGN_BYTES // itemsize
    sizes = np.asarray(sizes, np.int64)
    L = len(sizes) - 1
    strips = -(-sizes[1:] // nr)
    w_sizes = strips * sizes[:-1] * nr
    wb = starts(np.stack([w_sizes, sizes[1:]], axis=1).ravel(), align)   # W[0], b[0], W[1], ...
    w_at, b_at = wb[0:2 * L:2], wb[1:2 * L:2]
    t_sizes = np.array([0] + [-(-sizes[l] // nr) * sizes[l + 1] * nr for l in range(1, L)])
    t_at = starts(t_sizes, align)
    a_at = np.concatenate([[0], starts(n * sizes[1:], align)])
    d_at = starts(strips * n * nr, align)
    groups = -(-sizes[:-1] // MR)
    pieces = np.clip(sizes[:-1] * sizes[1:] * n // WORK_PER_PIECE, 1,
                     np.minimum(groups, MAX_PIECES))
    return Layout(sizes, strips, w_at, b_at, t_at, a_at, d_at, int(n), int(nr), pieces,
                  int(pieces.sum()), int(sizes.max()))


def parameter_count(lay: Layout) -> int:
    """The length of P (the parameters and the padding between blocks)."""
    return int(lay.b_at[-1] + lay.sizes[-1])


def aligned_empty(n, dtype, zero=False) -> np.ndarray:
    """np.empty(n, dtype) (np.zeros if ``zero``) whose data starts at a
    multiple of ALIGN_BYTES. NumPy aligns to 16 bytes: a 64-byte vector load
    from such a buffer spans two cache lines, and a tile step then costs
    ~12% more (bench/README.md)."""
    itemsize = np.dtype(dtype).itemsize
    raw = (np.zeros if zero else np.empty)(n + ALIGN_BYTES // itemsize, dtype)
    skip = (-raw.ctypes.data % ALIGN_BYTES) // itemsize
    return raw[skip:skip + n]


def aligned_zeros(n, dtype) -> np.ndarray:
    return aligned_empty(n, dtype, zero=True)


def buffers(lay: Layout, dtype, infer=False) -> Buffers:
    """The Buffers of a call; ``infer``: for mode INFER, which reads and
    writes only act (the others are empty: 5 MB less to zero per forward)."""
    parts = -(-lay.n // ROWS_PER_PART)
    if infer:
        act, none = aligned_empty(lay.a_at[-1], dtype), np.empty(0, dtype)
        act_in, none_in, ident = act.view(), none.view(), np.arange(lay.n, dtype=np.int64)
        # the same types as training's buffers: one compiled worker
        act_in.flags.writeable = none_in.flags.writeable = ident.flags.writeable = False
        return Buffers(act, none, act_in, none_in, none, none, none, ident, np.zeros(parts),
                       np.zeros(parts, np.int64))
    act, delta = aligned_zeros(lay.a_at[-1], dtype), aligned_zeros(lay.a_at[-1], dtype)
    act_in, delta_in, ident = act.view(), delta.view(), np.arange(lay.n, dtype=np.int64)
    act_in.flags.writeable = delta_in.flags.writeable = ident.flags.writeable = False
    return Buffers(act, delta, act_in, delta_in, aligned_zeros(lay.d_at[-1], dtype),
                   aligned_zeros(lay.t_at[-1], dtype), aligned_zeros(parameter_count(lay), dtype),
                   ident,
                   np.zeros(parts), np.zeros(parts, np.int64))


@jit()
def pack_layer(w, b, P, w_at, b_at, end, nr):
    """Layer l into P in the Layout's order: w (i, o) in strips of nr columns
    at P[w_at:] (zero past its last column), b (o,) at P[b_at:], zeros in the
    alignment padding after each up to b_at and ``end`` (the next layer's
    w_at, or P's length): every entry of P[w_at:end] written, so P may start
    uninitialised (no zeroing pass: a third of packing the seed network)."""
    i, o = w.shape
    strips = (o + nr - 1) // nr
    pack_strips(w, borrow_block(P, w_at, (strips, i, nr)))
    for k in range(w_at + strips * i * nr, b_at):
        P[k] = 0
    for j in range(o):
        P[b_at + j] = b[j]
    for k in range(b_at + o, end):
        P[k] = 0


# ------------------------------------------------------------------ views

@jit(inline=True)
def weight_strips(P, lay, l):
    """W[l] in strips: (strips[l], i_l, NR), a view of P (or of G, S1, S2)."""
    return borrow_block(P, lay.w_at[l], (lay.strips[l], lay.sizes[l], lay.nr))


@jit(inline=True)
def bias(P, lay, l):
    return borrow_block(P, lay.b_at[l], (lay.sizes[l + 1],))


@jit(inline=True)
def transposed_strips(T, lay, l):
    """W[l].T in strips: (ceil(i_l / NR), o_l, NR), for l >= 1."""
    i, o = lay.sizes[l], lay.sizes[l + 1]
    s = (i + lay.nr - 1) // lay.nr
    return borrow_block(T, lay.t_at[l], (s, o, lay.nr))


@jit(inline=True)
def rows_of(buf, lay, a):
    """Layer a's (n, sizes[a]) rows in act or delta."""
    return borrow_block(buf, lay.a_at[a], (lay.n, lay.sizes[a]))


@jit(inline=True)
def delta_strips(dstrips, lay, l):
    """Layer l's output deltas in strips: (strips[l], n, NR)."""
    return borrow_block(dstrips, lay.d_at[l], (lay.strips[l], lay.n, lay.nr))


# ------------------------------------------------------------ the two parts

@jit(inline=True)
def hidden_units(lay, upto):
    """The units of hidden layers 1..upto-1 (uint64): where dropout's counter
    for a row starts counting layer upto's units (upto = L: all of them)."""
    units = np.uint64(0)
    for l in range(1, upto):
        units += np.uint64(lay.sizes[l])
    return units


@jit(inline=True)
def forward_rows(P, lay, buf, X, rows, lo, hi, drop, pos, first):
    """buf.act's layers first+1..L for the rows lo..hi-1 of the batch X[rows]:
    relu(A @ W + b) from A = X[rows] (first 0) or layer first's activations
    on (dropout on hidden layers unless drop.threshold is 0, row r at epoch
    position pos + r), and the last layer's logits."""
    L = lay.sizes.shape[0] - 1
    hidden, unit0 = hidden_units(lay, L), hidden_units(lay, first + 1)
    A, at = X, rows   # layer l's input rows: A[at[r]]
    if first > 0:
        A, at = rows_of(buf.act_in, lay, first), buf.ident
    for l in range(first, L):
        out = rows_of(buf.act, lay, l + 1)
        product_rows(A, at, lo, hi, weight_strips(P, lay, l), bias(P, lay, l), out, l < L - 1)
        if drop.threshold > 0 and l < L - 1:
            scale = out.dtype.type(drop.scale)
            for r in range(lo, hi):
                dropout_row(borrow(out, r), np.uint64(drop.key),
                            np.uint64(pos + r) * hidden + unit0, np.uint64(drop.threshold), scale)
            unit0 += np.uint64(lay.sizes[l + 1])
        A, at = rows_of(buf.act_in, lay, l + 1), buf.ident


@jit(inline=True)
def backward_rows(P, lay, buf, y, rows, lo, hi, n_batch, t_off, t_on, drop):
    """Loss terms and every delta of the rows lo..hi-1 (after forward_rows):
    delta of the logits = (softmax - t) / n_batch, then back through each
    layer l >= 1: delta_l = (delta_{l+1} @ W[l].T) * relu' (times the dropout
    scale), each layer's deltas also packed in strips for the params part.
    Returns (sum of t . log p over the rows, rows whose argmax is the label)."""
    L = lay.sizes.shape[0] - 1
    K = lay.sizes[L]
    logits, dlogits = rows_of(buf.act, lay, L), rows_of(buf.delta, lay, L)
    dt = logits.dtype.type
    logp = np.empty(K, logits.dtype)
    tlogp, right = 0.0, 0
    for r in range(lo, hi):
        tlogp += softmax_xent_row(borrow(logits, r), y[rows[r]], logp, borrow(dlogits, r), t_off,
                                  t_on, dt(n_batch))
        right += argmax(borrow(logits, r)) == y[rows[r]]
    scale = dt(drop.scale) if drop.threshold > 0 else dt(1)
    zeros = np.zeros(lay.widest, logits.dtype)
    for l in range(L - 1, -1, -1):
        D = rows_of(buf.delta_in, lay, l + 1)
        strips = delta_strips(buf.dstrips, lay, l)
        for r in range(lo, hi):
            copy_into_strips(borrow(D, r), strips, r)
        if l > 0:
            dA, A = rows_of(buf.delta, lay, l), rows_of(buf.act, lay, l)
            product_rows(D, buf.ident, lo, hi, transposed_strips(buf.T, lay, l), zeros, dA,
                         NO_RELU)
            for r in range(lo, hi):
                relu_mask_row(borrow(dA, r), borrow(A, r), scale)
    return tlogp, right


@jit(inline=True)
def job_piece(lay, job):
    """(layer, piece) of params job ``job``: the pieces of layers L-1, ..., 0
    in turn (the few large pieces of the small top layers first, the many
    small ones of the first layer last, so that the threads end together)."""
    for l in range(lay.pieces.shape[0] - 1, -1, -1):
        if job < lay.pieces[l]:
            return l, job
        job -= lay.pieces[l]
    return -1, 0


@jit(inline=True)
def piece_range(units, piece, pieces, align):
    """[lo, hi) of ``piece`` when units are cut in ``pieces`` pieces of whole
    groups of ``align``."""
    groups = (units + align - 1) // align
    lo = (piece * groups // pieces) * align
    hi = min(units, ((piece + 1) * groups // pieces) * align)
    return lo, hi


@jit(inline=True)
def gradient_piece(lay, buf, A, at, l, piece):
    """Piece ``piece`` of layer l's gradient in G from the batch's rows A[at]
    (layer l's input): its rows of dW = A.T @ dY and its entries of db."""
    n, pieces = at.shape[0], lay.pieces[l]
    lo, hi = piece_range(lay.sizes[l], piece, pieces, MR)
    if hi > lo:
        product_cols(A, at, n, lo, hi, delta_strips(buf.dstrips, lay, l),
                     weight_strips(buf.G, lay, l))
    jlo, jhi = piece_range(lay.sizes[l + 1], piece, pieces, 1)
    column_sums(rows_of(buf.delta, lay, l + 1), jlo, jhi, n, bias(buf.G, lay, l))


@jit(inline=True)
def claim_piece(params, lay, l, piece, kind):
    """Ask ahead, for writing, for the lines update_piece will write: the
    piece's rows of W[l] in P and in the optimizer's slots (kind as in
    Optimizer; the biases are a few lines). Every thread read all of P in
    the rows phase, so each of those lines is in another core's cache too and
    a store to it waits for the other core to give it up; asked for before
    gradient_piece, that happens while the piece's products run (measured on
    two threads: the update 50 -> 27 us of a 380 us batch, README.md "Results")."""
    lo, hi = piece_range(lay.sizes[l], piece, lay.pieces[l], MR)
    for s in range(lay.strips[l]):
        start, stop = strip_rows(lay, l, s, lo, hi)
        prefetch_for_write(params.P, start, stop)
        if kind >= 1:
            prefetch_for_write(params.S1, start, stop)
        if kind >= 2:
            prefetch_for_write(params.S2, start, stop)


@jit(inline=True)
def strip_rows(lay, l, s, lo, hi):
    """[start, stop) in P (and G, S1, S2) of rows lo..hi-1 of W[l]'s strip s:
    one contiguous span, as the strips are (strips[l], i_l, NR)."""
    at = lay.w_at[l] + s * lay.sizes[l] * lay.nr
    return at + lo * lay.nr, at + hi * lay.nr


@jit(inline=True)
def update_piece(params, lay, buf, l, piece, hyper, lr, step):
    """The optimizer update of the parameters gradient_piece computed, weight
    decay on W only; then W.T refreshed there."""
    P, S1, S2 = params
    o, pieces = lay.sizes[l + 1], lay.pieces[l]
    lo, hi = piece_range(lay.sizes[l], piece, pieces, MR)
    for s in range(lay.strips[l]):
        start, stop = strip_rows(lay, l, s, lo, hi)
        update_span(P, buf.G, S1, S2, start, stop, hyper, lr, hyper.weight_decay, step)
    jlo, jhi = piece_range(o, piece, pieces, 1)
    update_span(P, buf.G, S1, S2, lay.b_at[l] + jlo, lay.b_at[l] + jhi, hyper, lr, 0.0, step)
    if l > 0:
        refresh_transpose(P, buf.T, lay, l, lo, hi)


@jit(inline=True)
def copy_into_strips(row, strips, r):
    """strips[s, r, j] = row[s*NR + j], 0 past the row's end: one row in the
    strip layout the params part reads (no division in the loop).
    row: (o,)  strips: (S, n, NR) written at row r."""
    nr = strips.shape[2]
    for s in range(strips.shape[0]):
        for j in range(nr):
            c = s * nr + j
            strips[s, r, j] = row[c] if c < row.shape[0] else 0


@jit(inline=True)
def refresh_transpose(P, T, lay, l, lo, hi):
    """W[l].T's strips at rows lo..hi-1 of W[l] (columns of W.T) from P's."""
    Wp, WTp = weight_strips(P, lay, l), transposed_strips(T, lay, l)
    nr, o = WTp.shape[2], lay.sizes[l + 1]
    for k in range(lo, hi):                 # row k of W is column k of W.T
        sk, jk = k // nr, k % nr            # once per row, not per element
        for s in range(Wp.shape[0]):
            for j in range(min(nr, o - s * nr)):
                WTp[sk, s * nr + j, jk] = Wp[s, k, j]


# ------------------------------------------------------- layer 0 by strips
# When a training call has no more threads than W[0] has strips, each thread
# owns a fixed range of W[0]'s strips for the whole call: it computes those
# columns of layer 1 for every row of a batch (a phase before the rows
# phase, which then starts at layer 1), and their gradient and update in the
# params phase. W[0] (92% of the seed network's weights) then stays in one
# core's cache. Cut by rows, every core read all of W[0] each batch, and each
# fetched the half the other core had just updated: measured on a Zen 5
# guest whose two cores were far apart (a barrier round trip 190-440 ns, not
# 80-110), an epoch took 0.125 s, and 0.090 s with W[0]'s update left out.
# The cut changes which thread computes an entry, never its sums: the same
# bits as the rows cut, for any thread count.

@jit(inline=True)
def owned_strips(lay, tid, threads):
    """[s0, s1): the strips of W[0] thread tid owns (all threads together,
    each strip once)."""
    S = lay.strips[0]
    return tid * S // threads, (tid + 1) * S // threads


@jit(inline=True)
def strip_columns(lay, s0, s1):
    """[c0, c1): the columns of layer 1 that W[0]'s strips s0..s1-1 hold."""
    return s0 * lay.nr, min(lay.sizes[1], s1 * lay.nr)


@jit(inline=True)
def first_layer_strips(P, lay, buf, X, rows, n, part_rows, s0, s1, drop, pos):
    """Layer 1's activations, columns of strips s0..s1-1 of W[0], for the n
    rows of the batch X[rows]: relu(X[rows] @ W[0] + b[0]) there (logits if
    W[0] is the last layer), dropout as forward_rows; part by part, as the
    rows phase groups rows."""
    L = lay.sizes.shape[0] - 1
    out = rows_of(buf.act, lay, 1)
    for lo in range(0, n, part_rows):
        product_strips_rows(X, rows, lo, min(n, lo + part_rows), weight_strips(P, lay, 0), s0, s1,
                            bias(P, lay, 0), out, L > 1)
    c0, c1 = strip_columns(lay, s0, s1)
    if drop.threshold > 0 and L > 1 and c1 > c0:
        hidden, scale = hidden_units(lay, L), out.dtype.type(drop.scale)
        for r in range(n):
            dropout_row(borrow(out, r)[c0:c1], np.uint64(drop.key),
                        np.uint64(pos + r) * hidden + np.uint64(c0), np.uint64(drop.threshold),
                        scale)


@jit(inline=True)
def gradient_strips(lay, buf, X, rows, n, s0, s1):
    """Strips s0..s1-1 of layer 0's gradient in G: dW[0] = X[rows].T @ dY
    there, and db[0] of their columns."""
    product_strips_cols(X, rows, n, 0, lay.sizes[0], delta_strips(buf.dstrips, lay, 0), s0, s1,
                        weight_strips(buf.G, lay, 0))
    c0, c1 = strip_columns(lay, s0, s1)
    column_sums(rows_of(buf.delta, lay, 1), c0, c1, n, bias(buf.G, lay, 0))


@jit(inline=True)
def update_strips(params, lay, buf, s0, s1, hyper, lr, step):
    """The optimizer update of what gradient_strips computed (the strips are
    one span of P), weight decay on W only."""
    P, S1, S2 = params
    start, stop = strip_rows(lay, 0, s0, 0, 0)[0], strip_rows(lay, 0, s1, 0, 0)[0]
    update_span(P, buf.G, S1, S2, start, stop, hyper, lr, hyper.weight_decay, step)
    c0, c1 = strip_columns(lay, s0, s1)
    update_span(P, buf.G, S1, S2, lay.b_at[0] + c0, lay.b_at[0] + c1, hyper, lr, 0.0, step)


@jit(inline=True)
def ask_for_rows(X, rows):
    """Prefetch the rows X[rows] (the next batch's, read from memory in a
    random order the hardware prefetcher cannot guess)."""
    K = X.shape[1]
    for r in range(rows.shape[0]):
        prefetch_for_read(borrow(X, rows[r]), 0, K)


# ------------------------------------------------------------ the worker
# Every thread of a call runs the same worker (numba_sync.run_threads),
# claiming parts as it comes free; they meet at a barrier between phases.
# Training, the gradient op and batched inference are one compiled function:
# they share its forward pass, and the first run compiles it once, not three
# times (a worker of this size costs seconds to compile).

@jit(inline=True)
def shared_pieces(threads, sync, params, lay, buf, data, step, j, rows, jobs):
    """Batch j's params jobs 0..jobs-1 (every layer's pieces, or those of
    layers >= 1 when layer 0 goes by strips), claimed as threads come free:
    each piece's dW and db, then its update (mode UPDATE)."""
    n = rows.shape[0]
    job = next_part(sync, PARAMS_PHASE)
    while job < jobs:
        l, piece = job_piece(lay, job)
        A, at = data.X, rows   # layer 0's input is X itself
        if l > 0:
            A, at = rows_of(buf.act_in, lay, l), buf.ident[:n]
        if step.mode == UPDATE and threads > 1:
            claim_piece(params, lay, l, piece, step.hyper.kind)
        gradient_piece(lay, buf, A, at, l, piece)
        if step.mode == UPDATE:
            update_piece(params, lay, buf, l, piece, step.hyper, step.lrs[j - data.first],
                         step.step0 + j - data.first + 1)
        job = next_part(sync, PARAMS_PHASE)


@jit()
def batch_worker(tid, threads, sync, params, lay, buf, data, step, probs):
    """Batches data.first..data.stop-1: batch j is X[order[j*batch_size:
    (j+1)*batch_size]] (the last may be partial), its rows at epoch positions
    data.pos0 + j*batch_size + r (dropout). By step.mode:
      INFER     probs[order[i]] = softmax of the network at that row (order
                is 0..n-1 here; no loss, no gradient)
      GRADIENT  the batch's gradient in buf.G, no update
      UPDATE    then the step with step.lrs[j - first] as update number
                step.step0 + j - first + 1, on params.P, S1, S2.
    buf written. Returns, on thread 0, (loss summed over rows, rows classified
    right); (0, 0) elsewhere and when inferring."""
    N, size = data.order.shape[0], data.batch_size
    L = lay.sizes.shape[0] - 1
    t_off, t_on = smoothed_targets(step.smoothing, lay.sizes[L], data.X)
    # layer 0 by strips (see owned_strips) where every thread can own one
    owned = step.by_strips and step.mode != INFER and threads <= lay.strips[0]
    s0, s1 = owned_strips(lay, tid, threads)
    first = 1 if owned else 0
    shared_jobs = lay.jobs - lay.pieces[0] if owned else lay.jobs
    loss_sum, right = 0.0, 0
    for j in range(data.first, data.stop):
        rows = data.order[j * size:min((j + 1) * size, N)]
        n = rows.shape[0]
        if owned:
            first_layer_strips(params.P, lay, buf, data.X, rows, n, data.part_rows, s0, s1,
                               step.drop, data.pos0 + j * size)
            barrier(sync, threads, ROWS_PHASE)   # (resets the rows counter: still 0)
        parts = (n + data.part_rows - 1) // data.part_rows
        part = next_part(sync, ROWS_PHASE)
        while part < parts:
            lo, hi = part * data.part_rows, min(n, (part + 1) * data.part_rows)
            forward_rows(params.P, lay, buf, data.X, rows, lo, hi, step.drop,
                         data.pos0 + j * size, first)
            if step.mode == INFER:
                logits = rows_of(buf.act, lay, L)
                for r in range(lo, hi):
                    softmax_row(borrow(logits, r), borrow(probs, rows[r]))
            else:
                buf.loss[part], buf.right[part] = backward_rows(
                    params.P, lay, buf, data.y, rows, lo, hi, n, t_off, t_on, step.drop)
            part = next_part(sync, ROWS_PHASE)
        barrier(sync, threads, ROWS_PHASE)
        if step.mode == INFER:
            continue
        if tid == 0:   # final until the next batch's rows phase, after the next barrier
            for part in range(parts):   # in part order: a fixed sum
                loss_sum -= buf.loss[part]
                right += buf.right[part]
        if j + 1 < data.stop:   # the next batch's rows, while this one's params run
            ask_for_rows(data.X, data.order[(j + 1) * size:min((j + 2) * size, N)])
        if owned:
            gradient_strips(lay, buf, data.X, rows, n, s0, s1)
            if step.mode == UPDATE:
                update_strips(params, lay, buf, s0, s1, step.hyper, step.lrs[j - data.first],
                              step.step0 + j - data.first + 1)
        shared_pieces(threads, sync, params, lay, buf, data, step, j, rows, shared_jobs)
        barrier(sync, threads, PARAMS_PHASE)
    return loss_sum, right


# Below this many rows forward() reads the rows of W directly: for one image
# (the GUI's case) packing W into strips would cost ~5x the product itself.
FEW_ROWS = 8


@jit(inline=True)
def affine_row(x, W, b, out):
    """out = b + x @ W over x's nonzero entries, read from W in place: fused
    multiply-adds in increasing k, which is what a tile computes for that row
    (a skipped zero adds exactly nothing), so the same bits as a batch.
    x: (i,)  W: (i, o)  b: (o,)  out: (o,) written."""
    for j in range(out.shape[0]):
        out[j] = b[j]
    for k in range(x.shape[0]):
        v = x[k]
        if v != 0:
            w = W[k]
            for j in range(out.shape[0]):
                out[j] = fma(v, w[j], out[j])


@jit()
def forward_few(Ws, bs, X, probs):
    """probs[r] = softmax of the network at X[r], row by row, as vector-matrix
    products over X[r]'s nonzero entries: out = b + sum_k x_k W[k, :], fused
    multiply-adds in increasing k, which is what a tile computes for that row
    (a skipped zero adds exactly nothing): the same bits as batch_worker.
    Ws, bs: tuples of W[l]: (i_l, o_l), b[l]: (o_l,)  X: (n, i_0)  probs: (n, K)."""
    L = len(Ws)
    width = 0
    for l in range(L):
        width = max(width, Ws[l].shape[1])
    x = np.empty(max(width, X.shape[1]), X.dtype)
    out = np.empty(width, X.dtype)
    for r in range(X.shape[0]):
        n_in = X.shape[1]
        for k in range(n_in):
            x[k] = X[r, k]
        for l in range(L):
            o = Ws[l].shape[1]
            affine_row(x[:n_in], Ws[l], bs[l], out[:o])
            for j in range(o):
                x[j] = max(out[j], 0) if l < L - 1 else out[j]
            n_in = o
        softmax_row(x[:n_in], probs[r])


@jit()
def linear_few(X, W, b, out, relu):
    """out = X @ W + b (then ReLU if relu) for a few rows, read from W
    directly, as forward_few does each layer (the GUI's activation trace of
    one image: packing W into strips would cost 40x the product): fused
    multiply-adds in increasing k over each row's nonzero entries, the same
    bits as product_rows. X: (n, i)  W: (i, o)  b: (o,)  out: (n, o) written."""
    for r in range(X.shape[0]):
        y = out[r]
        affine_row(X[r], W, b, y)
        if relu:
            for j in range(y.shape[0]):
                y[j] = max(y[j], 0)


@jit()
def backward_few(X, W, dY, dW, dX):
    """dW = X.T @ dY and (if dX has rows) dX = dY @ W.T for a few rows, read
    from W directly, as forward_few does: packing W (or W.T) into strips
    would cost several times these products. Fused multiply-adds in the
    order a tile takes them (rows r increasing for dW, j increasing for dX,
    from 0), so the same bits as the tile path (a skipped zero adds exactly
    nothing). X: (n, i)  W: (i, o)  dY: (n, o)  dW: (i, o)  dX: (n, i) or (0, i)."""
    n, i, o = X.shape[0], W.shape[0], W.shape[1]
    for k in range(i):
        g = dW[k]
        for j in range(o):
            g[j] = 0
        for r in range(n):
            x = X[r, k]
            if x != 0:
                d = dY[r]
                for j in range(o):
                    g[j] = fma(x, d[j], g[j])
    for r in range(dX.shape[0]):
        out, d = dX[r], dY[r]
        for k in range(i):
            out[k] = 0
        for j in range(o):   # column j of W is row j of W.T: strided, independent sums
            v = d[j]
            if v != 0:
                for k in range(i):
                    out[k] = fma(v, W[k, j], out[k])

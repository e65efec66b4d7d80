"""Data augmentation, compiled: the twin of kernels/augment_numpy.py.

Same op, same name, arguments and result; read the reference for the equations,
this file for how they are made fast. tests/test_augment.py checks the two
agree.

Per image: ``_load_source`` (copy into a zero frame, find the ink's box),
``_displacement_field``, ``_source_points`` (the reference's warp() up to the
fetch), ``_sample`` (its bilinear()), ``_thicken`` (its thicken()). The
helpers are private: their signatures are this file's scratch layout, not
the reference's, so they do not take the reference's public names.

How it is fast (60000 images per epoch):
- One compiled call per epoch: images in fixed blocks of BLOCK, blocks on all
  threads (prange). Each image is computed by one thread alone, so results
  never depend on the thread count and are identical run to run. Scratch is
  allocated once per block, never per image.
- Flat, vectorizable passes: every scratch image has rows of STRIDE = 32
  (the 28 pixels plus a zero frame), so a pass over many rows is one loop
  over consecutive memory with one per-pixel formula. Loops index from 0: a
  possibly negative index makes Numba add the array length, and LLVM then
  turns every load into a gather. Only the bilinear fetch, whose addresses
  depend on the data, is scalar (LLVM emits no gathers for this CPU family).
  The source sits in a zero frame and source points are clipped into it, so
  the fetch needs no bounds tests; the warped image has a zero frame too,
  so the 3x3 max/min filters need none either.
- Work skipped where the answer is known to be 0: a source point more than
  a pixel outside the box holding the source's ink samples only zeros, so
  each output row fetches only from its first to its last point inside that
  box (about 350 of 784 pixels for MNIST digits); rows with none, and images
  without ink, are zeros outright. A zero elastic grid skips the field,
  t = 0 the filters.
- Same arithmetic as the reference: its operations in its order, without
  fastmath (no fused multiply-add, no reassociation), so both give the same
  bits. Float32 stays float32: every constant is cast to the images' dtype
  (``dt(...)``), as NEP 50 does next to a float32 array.
- cache=True and nogil everywhere; every kernel that calls another lives in
  this module (Numba's cache does not notice edits to another file).

Measured (2-core AMD EPYC VM, float32, --augment default, 60000 images):
~85-90 ms on two threads (the reference: ~14 s); about 2.6 us of one core
per image, of which the fetch ~35%, the field ~20%, source points ~20%,
thicken ~15%, load ~10%.
"""

import numpy as np
from numba import prange

from .numba_ir import highest_bit, lowest_bit  # bit scans: which pixels to fetch
# The image's size is the contract's (a compiled kernel freezes it as a
# constant: it is the input format, not a tuning knob that could change).
from .contract import IMAGE_SIDE, N_INPUTS
from .numba_jit import jit, read_only

# The point the warp turns about, the middle of the image (as the reference).
PIVOT = (IMAGE_SIDE - 1) / 2
# Row length of every scratch image: image column c is scratch column c + 1,
# columns 0 and 29..31 are a zero frame (32: a whole number of SIMD vectors).
STRIDE = 32
# Scratch images over the 28 image rows: pixel (r, c) at r * STRIDE + c + 1.
PIXELS = IMAGE_SIDE * STRIDE
# The source in a zero frame, rows -1..29 (-1, 28, 29 zero, as the reference
# pads): pixel (r, c) at (r + 1) * STRIDE + c + 1.
SOURCE_ROWS = IMAGE_SIDE + 3
# The warped image in a zero frame, rows -2..29 (two rows above, so the
# filters' flat passes never index below 0): pixel (r, c) at
# (r + 2) * STRIDE + c + 1.
WARPED_ROWS = IMAGE_SIDE + 4
# Images per parallel task: scratch is allocated once per block.
BLOCK = 64


# ------------------------------------------------------ constant tables

@jit()
def _pixel_tables(dtype_of, G):
    """Constants, in dtype_of's dtype, over the PIXELS scratch layout:
    u, v: (PIXELS,) the pixel's row and column minus PIVOT (the reference's
    u and v, same operations); image: (PIXELS,) uint8, 1 on image columns,
    0 on the frame. For the elastic upsampling, with g = p (G - 1) / 27 the
    grid coordinate of pixel line p, k = floor(g), f = g - k (the
    reference's operations), line p mixes control lines k and k + 1 with
    weights 1 - f and f:
    rows: (IMAGE_SIDE, 3), rows[p] = (k, 1 - f, f) with k <= G - 2 (the last line
    uses (G - 2, 0, 1): the same value as the reference's (G - 1, 1, 0));
    col_weights: (G, STRIDE), col_weights[k, p + 1] = weight of control line k at column p
    (0 on the frame)."""
    dt = dtype_of.dtype.type
    u = np.zeros(PIXELS, dtype_of.dtype)
    v = np.zeros(PIXELS, dtype_of.dtype)
    image = np.zeros(PIXELS, np.uint8)
    for r in range(IMAGE_SIDE):
        for j in range(STRIDE):
            u[r * STRIDE + j] = dt(r) - dt(PIVOT)
            v[r * STRIDE + j] = dt(j - 1) - dt(PIVOT)
            image[r * STRIDE + j] = 1 <= j <= IMAGE_SIDE
    rows = np.zeros((IMAGE_SIDE, 3), dtype_of.dtype)
    col_weights = np.zeros((G, STRIDE), dtype_of.dtype)
    for p in range(IMAGE_SIDE):
        g = dt(p) * dt(G - 1) / dt(IMAGE_SIDE - 1)
        k = np.floor(g)
        f = g - k
        if int(k) + 1 < G:
            rows[p, 0], rows[p, 1], rows[p, 2] = k, dt(1) - f, f
            col_weights[int(k), p + 1], col_weights[int(k) + 1, p + 1] = dt(1) - f, f
        else:                # the last line: its "next" point has weight 0
            rows[p, 0], rows[p, 1], rows[p, 2] = k - 1, dt(0), dt(1)
            col_weights[int(k), p + 1] = dt(1) - f
    return u, v, image, rows, col_weights


# ------------------------------------------------------------ per image

@jit()
def _load_source(x, framed, side):
    """Copy x: (side * side,) into the interior of ``framed``, the source in a zero frame:
    (SOURCE_ROWS * STRIDE,) (its frame stays 0) and return the box holding
    its ink, (first row, last row, first col, last col); first row > last
    row when x is all 0. ``side`` is IMAGE_SIDE, passed at run time: LLVM
    vectorizes these short loops only if it has not unrolled them fully."""
    first, last, left, right = side, -1, side, -1
    for r in range(side):
        src = x[r * side:(r + 1) * side]
        dst = framed[(r + 1) * STRIDE + 1:(r + 2) * STRIDE]
        lo, hi = side, -1
        for c in range(side):
            value = src[c]
            dst[c] = value
            ink = value != 0
            lo = min(lo, c if ink else side)
            hi = max(hi, c if ink else -1)
        if hi >= 0:
            first, last = min(first, r), r
            left, right = min(left, lo), max(right, hi)
    return first, last, left, right


@jit()
def _displacement_field(D, rows, col_weights, M, d0, d1, stride):
    """d_a = the elastic displacement (a = 0 rows, 1 cols) of every pixel: D:
    (G, G, 2) upsampled as the reference's displacement_field() does, first
    along columns (M[a, k, j] = sum_l col_weights[l, j] D[k, l, a]: summing all G terms
    adds only exact zeros to the reference's two), then along rows
    (d[r, j] = w0 M[k, j] + w1 M[k + 1, j], (k, w0, w1) = rows[r]).
    rows, col_weights: _pixel_tables()  M: (2, G, STRIDE) scratch  d0, d1: (PIXELS,)
    written. ``stride`` is STRIDE at run time (see load_source)."""
    G = D.shape[0]
    for a in range(2):
        for k in range(G):
            m = M[a, k]
            for j in range(stride):
                m[j] = 0
            for l in range(G):
                w, e = col_weights[l], D[k, l, a]
                for j in range(stride):
                    m[j] += w[j] * e
    for r in range(IMAGE_SIDE):
        k = int(rows[r, 0])
        w0, w1 = rows[r, 1], rows[r, 2]
        top0, bottom0, out0 = M[0, k], M[0, k + 1], d0[r * STRIDE:]
        top1, bottom1, out1 = M[1, k], M[1, k + 1], d1[r * STRIDE:]
        for j in range(stride):
            out0[j] = w0 * top0[j] + w1 * bottom0[j]
            out1[j] = w0 * top1[j] + w1 * bottom1[j]


@jit()
def _source_points(A, u, v, image, d0, d1, box, corner, FR, FC, inside):
    """For every pixel p, the source point (sr, sc) = A [u, v, 1] + PIVOT + d
    (the reference's warp(), in its operations and order), clipped into the
    source's zero frame and stored as ``corner``, the index in the framed source of
    its top-left neighbour (floor(sr), floor(sc)) and FR, FC = the
    fractions; inside = 1 where the point lies strictly within one pixel of
    the ink box (first row, last row, first col, last col): elsewhere the
    sample is 0. A: (2, 3)  u, v, image, d0, d1: (PIXELS,)
    corner: uint32, FR, FC, inside: uint8, all (PIXELS,) written."""
    dt = FR.dtype.type
    lo_clip, hi_clip, centre = dt(-1), dt(IMAGE_SIDE), dt(PIVOT)
    top, bottom = dt(box[0] - 1), dt(box[1] + 1)
    left, right = dt(box[2] - 1), dt(box[3] + 1)
    a00, a01, a02 = A[0, 0], A[0, 1], A[0, 2]
    a10, a11, a12 = A[1, 0], A[1, 1], A[1, 2]
    for q in range(PIXELS):
        sr = a00 * u[q] + a01 * v[q] + a02 + centre + d0[q]
        sc = a10 * u[q] + a11 * v[q] + a12 + centre + d1[q]
        inside[q] = (sr > top) & (sr < bottom) & (sc > left) & (sc < right) & (image[q] != 0)
        # Written so that NaN clips too: every read stays inside the source
        # whatever the parameters.
        sr = sr if sr > lo_clip else lo_clip
        sc = sc if sc > lo_clip else lo_clip
        sr = sr if sr < hi_clip else hi_clip
        sc = sc if sc < hi_clip else hi_clip
        r0, c0 = np.floor(sr), np.floor(sc)
        FR[q] = sr - r0
        FC[q] = sc - c0
        corner[q] = np.uint32(np.int32(r0) + 1) * np.uint32(STRIDE) + np.uint32(np.int32(c0) + 1)


@jit()
def _sample(framed, corner, FR, FC, inside, Y, stride):
    """Y's image pixels = the bilinear samples of the framed source ``framed`` at the
    points (corner, FR, FC) (the reference's bilinear()), fetched only from each
    row's first to its last pixel ``inside``; the rest of Y is 0. Returns
    the (first, last) rows with a pixel inside (first > last if none).
    framed: (SOURCE_ROWS * STRIDE,)  corner, FR, FC, inside: (PIXELS,)
    Y: (WARPED_ROWS * STRIDE,) written. ``stride``: see displacement_field."""
    one = Y.dtype.type(1)
    for q in range(WARPED_ROWS * STRIDE):
        Y[q] = 0
    top, bottom = IMAGE_SIDE, -1
    for r in range(IMAGE_SIDE):
        flags = inside[r * STRIDE:(r + 1) * STRIDE]
        mask = 0                       # bit j: pixel j of the row is inside
        for j in range(stride):
            mask |= np.int64(flags[j]) << j
        if mask == 0:
            continue
        first, last = lowest_bit(mask), highest_bit(mask)
        top, bottom = min(top, r), r
        y = Y[(r + 2) * STRIDE:(r + 3) * STRIDE]
        for j in range(first, last + 1):      # data-dependent loads: scalar
            q = r * STRIDE + j
            k, fr, fc = corner[q], FR[q], FC[q]
            left = (one - fr) * framed[k] + fr * framed[k + STRIDE]
            right = (one - fr) * framed[k + 1] + fr * framed[k + STRIDE + 1]
            y[j] = (one - fc) * left + fc * right
    return top, bottom


@jit()
def _thicken(Y, t, top, bottom, H, out, side):
    """out = clip(y + t (max3x3(y) - y), 0, 1) if t > 0, clip(y + t (y -
    min3x3(y)), 0, 1) if t < 0, clip(y, 0, 1) if t = 0, for y the image in
    the framed Y (its zero frame is the reference's zero padding), which is
    0 outside rows top..bottom. Y: (WARPED_ROWS * STRIDE,) overwritten with
    the unclipped result  H: same shape, scratch  out: (side * side,)
    written. ``side``: see load_source."""
    dt = Y.dtype.type
    zero, one = dt(0), dt(1)
    # Rows that can be nonzero: dilation spreads one row each way.
    lo, hi = (max(top - 1, 0), min(bottom + 1, IMAGE_SIDE - 1)) if t > 0 else (top, bottom)
    if t != 0 and lo <= hi:
        # H = the 1x3 max (min) along rows of Y's rows lo-1..hi+1; then the
        # 3x1 max (min) of H is the 3x3 one. Flat passes over whole rows:
        # frame columns get values too, but are never read as image pixels.
        start, n = (lo + 1) * STRIDE, (hi - lo + 3) * STRIDE
        west, y, east, h = Y[start - 1:], Y[start:], Y[start + 1:], H[start:]
        if t > 0:
            for q in range(n):
                h[q] = max(max(west[q], y[q]), east[q])
        else:
            for q in range(n):
                h[q] = min(min(west[q], y[q]), east[q])
        start, n = (lo + 2) * STRIDE, (hi - lo + 1) * STRIDE
        up, mid, down, y = H[start - STRIDE:], H[start:], H[start + STRIDE:], Y[start:]
        if t > 0:
            for q in range(n):
                y[q] = y[q] + t * (max(max(up[q], mid[q]), down[q]) - y[q])
        else:
            for q in range(n):
                y[q] = y[q] + t * (y[q] - min(min(up[q], mid[q]), down[q]))
    for q in range(lo * side):
        out[q] = 0
    for r in range(lo, hi + 1):
        src = Y[(r + 2) * STRIDE + 1:]
        dst = out[r * side:]
        for c in range(side):
            dst[c] = min(max(src[c], zero), one)
    for q in range(max(hi + 1, lo) * side, side * side):
        out[q] = 0


# --------------------------------------------------------------- the op

@jit()
def _any_nonzero(a):
    """True if any entry of the C-contiguous array a is nonzero."""
    for value in a.ravel():
        if value != 0:
            return True
    return False


@jit(parallel=True)
def _augment(X, A, D, thickness, out, u, v, image, rows, col_weights, side, stride):
    n = X.shape[0]
    dtype = X.dtype
    blocks = (n + BLOCK - 1) // BLOCK
    for b in prange(blocks):
        framed = np.zeros(SOURCE_ROWS * STRIDE, dtype)    # its frame stays 0
        d0, d1 = np.zeros(PIXELS, dtype), np.zeros(PIXELS, dtype)
        M = np.zeros((2, D.shape[1], STRIDE), dtype)
        corner = np.zeros(PIXELS, np.uint32)
        FR, FC = np.zeros(PIXELS, dtype), np.zeros(PIXELS, dtype)
        inside = np.zeros(PIXELS, np.uint8)
        Y, H = np.zeros(WARPED_ROWS * STRIDE, dtype), np.zeros(WARPED_ROWS * STRIDE, dtype)
        elastic = False      # d0 = d1 = 0 while no image had a displacement
        for i in range(b * BLOCK, min((b + 1) * BLOCK, n)):
            box = _load_source(X[i], framed, side)
            if box[0] > box[1]:          # no ink: every sample is 0
                out[i, :] = 0
                continue
            if elastic or _any_nonzero(D[i]):
                _displacement_field(D[i], rows, col_weights, M, d0, d1, stride)
                elastic = True
            _source_points(A[i], u, v, image, d0, d1, box, corner, FR, FC, inside)
            top, bottom = _sample(framed, corner, FR, FC, inside, Y, stride)
            _thicken(Y, thickness[i], top, bottom, H, out[i], side)


def augment(X, A, D, thickness, out):
    """out = thicken(warp(X, A, D), thickness), image by image (the equations
    are in kernels/augment_numpy.py).
    X: (n, 784) float32|float64 in [0, 1]  A: (n, 2, 3)  D: (n, G, G, 2), G >= 2
    thickness: (n,)  out: (n, 784) of X's dtype, WRITTEN; must not overlap X.
    A, D and thickness are cast to X's dtype. Returns out."""
    X = np.asarray(X)
    dt = X.dtype
    if dt not in (np.float32, np.float64):
        raise TypeError(f"augment: float32 or float64 images, not {dt}")
    n = X.shape[0]
    A = np.ascontiguousarray(A, dtype=dt)
    D = np.ascontiguousarray(D, dtype=dt)
    thickness = np.ascontiguousarray(thickness, dtype=dt)
    if (X.shape != (n, N_INPUTS) or A.shape != (n, 2, 3) or D.ndim != 4
            or D.shape[0] != n or D.shape[1] != D.shape[2] or D.shape[1] < 2
            or D.shape[3] != 2 or thickness.shape != (n,)):
        raise ValueError("augment: expected X (n, 784), A (n, 2, 3), D (n, G, G, 2) "
                         "with G >= 2, thickness (n,)")
    if (out.shape != X.shape or out.dtype != dt or not out.flags.c_contiguous
            or not out.flags.writeable):
        raise ValueError("augment: out must be a writeable C-contiguous array "
                         "of X's shape and dtype")
    if np.shares_memory(X, out):
        raise ValueError("augment: out must not overlap X")
    # Read-only views of the inputs: one compiled specialization whether the
    # caller's arrays are writable or not (Numba types the two apart; the
    # training set is read-only, a deskewed copy of it is not).
    X, A, D, thickness = (read_only(a) for a in (X, A, D, thickness))
    u, v, image, rows, col_weights = _pixel_tables(X[:0], D.shape[1])
    _augment(X, A, D, thickness, out, u, v, image, rows, col_weights, IMAGE_SIDE, STRIDE)
    return out

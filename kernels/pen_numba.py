"""Pen strokes, compiled: the twin of kernels/pen_numpy.py.

Same ops, names, arguments and results; read the reference for the
equations, this file for how they are made fast. tests/test_pen.py checks
the two agree to the bit.

How:
- Images in fixed blocks of BLOCK on all threads (prange); each image is
  computed by one thread alone, so the result never depends on the thread
  count. Scratch is allocated once per block.
- ``_thin`` visits only the ink's box (plus its frame), not the whole 56x56
  grid, and each sub-pass lists the pixels it removes, then removes them: the
  reference's all-at-once rule.
- ``_pen`` walks the centre-line points and stamps the pen around each
  (a max, so the order of points does not matter); |p - q| comes from a table
  that pen_numpy.pen_distance filled, the same float64 numbers the
  reference uses.
"""

import numpy as np
from numba import prange

from .contract import IMAGE_SIDE, N_INPUTS
from .numba_jit import jit, read_only
from .pen_numpy import (FINE, INK, MAX_RADIUS, checked_pen_args, checked_skeleton_args,
                        pen_distance, reach)

BLOCK = 64
FRAMED = FINE + 2            # the fine grid in a zero frame: 58 x 58
KMAX = reach(MAX_RADIUS)     # the largest pen's reach (pixels)


def distance_table():
    """(2, 2, 2 KMAX + 1, 2 KMAX + 1) float64: [a, b, k + KMAX, l + KMAX] =
    pen_distance(k, a, l, b), the reference's own numbers."""
    span = range(-KMAX, KMAX + 1)
    return np.array([[[[pen_distance(k, a, l, b) for l in span] for k in span]
                      for b in (0, 1)] for a in (0, 1)])


# ------------------------------------------------------------- skeleton

@jit()
def _upsample_ink(x, tmp, mask):
    """mask (FRAMED * FRAMED,) uint8 = upsample2(x) >= INK in its frame (the
    frame stays 0), the reference's operations in its order: rows, then
    columns. x: (784,)  tmp: (56, 28) scratch of x's dtype.
    Returns the ink's box in framed indices (r0, r1, c0, c1); r0 > r1 if none."""
    dt = x.dtype.type
    three, one, ink = dt(0.75), dt(0.25), dt(INK)
    side = IMAGE_SIDE
    for r in range(side):
        for c in range(side):
            here = x[r * side + c]
            before = x[(r - 1) * side + c] if r > 0 else dt(0)
            after = x[(r + 1) * side + c] if r < side - 1 else dt(0)
            tmp[2 * r, c] = three * here + one * before
            tmp[2 * r + 1, c] = three * here + one * after
    r0, r1, c0, c1 = FRAMED, -1, FRAMED, -1
    for i in range(FINE):
        for c in range(side):
            here = tmp[i, c]
            before = tmp[i, c - 1] if c > 0 else dt(0)
            after = tmp[i, c + 1] if c < side - 1 else dt(0)
            for b in range(2):
                v = three * here + one * (before if b == 0 else after)
                on = v >= ink
                mask[(i + 1) * FRAMED + 2 * c + b + 1] = on
                if on:
                    r0, r1 = min(r0, i + 1), max(r1, i + 1)
                    c0, c1 = min(c0, 2 * c + b + 1), max(c1, 2 * c + b + 1)
    return r0, r1, c0, c1


@jit()
def _removable(m, q, first):
    """Whether set pixel q of the framed mask m goes in this sub-pass: the
    reference's rule (2..6 set neighbours, one 0 -> 1 transition, its side)."""
    W = FRAMED
    p2, p3, p4, p5 = m[q - W], m[q - W + 1], m[q + 1], m[q + W + 1]
    p6, p7, p8, p9 = m[q + W], m[q + W - 1], m[q - 1], m[q - W - 1]
    n_set = p2 + p3 + p4 + p5 + p6 + p7 + p8 + p9
    transitions = ((p2 == 0) & (p3 == 1)) + ((p3 == 0) & (p4 == 1)) + ((p4 == 0) & (p5 == 1)) \
        + ((p5 == 0) & (p6 == 1)) + ((p6 == 0) & (p7 == 1)) + ((p7 == 0) & (p8 == 1)) \
        + ((p8 == 0) & (p9 == 1)) + ((p9 == 0) & (p2 == 1))
    if first:
        side = (p2 & p4 & p6) == 0 and (p4 & p6 & p8) == 0
    else:
        side = (p2 & p4 & p8) == 0 and (p2 & p6 & p8) == 0
    return 2 <= n_set <= 6 and transitions == 1 and side


@jit()
def _thin(m, box, gone):
    """Zhang-Suen thinning of the framed mask m in place, within box (r0, r1,
    c0, c1): thinning only removes pixels, so the box never grows.
    gone: (FRAMED * FRAMED,) int64 scratch for a sub-pass's removals."""
    r0, r1, c0, c1 = box
    changed = True
    while changed:
        changed = False
        for first in (True, False):
            count = 0
            for r in range(r0, r1 + 1):
                for c in range(c0, c1 + 1):
                    q = r * FRAMED + c
                    if m[q] == 1 and _removable(m, q, first):
                        gone[count] = q
                        count += 1
            for g in range(count):
                m[gone[g]] = 0
            changed = changed or count > 0


@jit(parallel=True)
def _skeleton(X, out):
    n = X.shape[0]
    blocks = (n + BLOCK - 1) // BLOCK
    for b in prange(blocks):
        tmp = np.zeros((FINE, IMAGE_SIDE), X.dtype)
        m = np.zeros(FRAMED * FRAMED, np.uint8)
        gone = np.zeros(FRAMED * FRAMED, np.int64)
        for i in range(b * BLOCK, min((b + 1) * BLOCK, n)):
            box = _upsample_ink(X[i], tmp, m)
            if box[0] <= box[1]:
                _thin(m, box, gone)
            for r in range(FINE):
                for c in range(FINE):
                    out[i, r * FINE + c] = m[(r + 1) * FRAMED + c + 1]


# ----------------------------------------------------------------- pen

@jit()
def _ramps(radius, dist, ramps):
    """ramps[a, b, k + KMAX, l + KMAX] = clip(r + 1/2 - dist, 0, 1): the pen's
    value at every offset, once per image (the reference's operations)."""
    dt = ramps.dtype.type
    for a in range(2):
        for b in range(2):
            for k in range(2 * KMAX + 1):
                for l in range(2 * KMAX + 1):
                    ramp = radius + dt(0.5) - dt(dist[a, b, k, l])
                    ramps[a, b, k, l] = min(max(ramp, dt(0)), dt(1))


@jit()
def _pen(line, radius, dist, ramps, out):
    """out (784,) = the max over line's points of clip(r + 1/2 - |p - q|, 0, 1).
    line: (3136,) uint8  dist: distance_table()  radius: of out's dtype
    ramps: (2, 2, 2 KMAX + 1, 2 KMAX + 1) scratch of out's dtype."""
    side = IMAGE_SIDE
    # this image's own reach: the reference takes the batch's largest, whose
    # farther offsets only add zeros to the max
    K = int(np.ceil(float(radius) + 0.75))
    _ramps(radius, dist, ramps)
    out[:] = 0
    for i in range(FINE):
        for j in range(FINE):
            if line[i * FINE + j] == 0:
                continue
            s, a, t, b = i // 2, i % 2, j // 2, j % 2
            l0, l1 = max(-K, -t), min(K, side - 1 - t)
            for k in range(max(-K, -s), min(K, side - 1 - s) + 1):
                ramp = ramps[a, b, k + KMAX]
                row = out[(s + k) * side:(s + k + 1) * side]
                for l in range(l0, l1 + 1):   # indices from 0 up: no wrap-around test
                    row[t + l] = max(row[t + l], ramp[l + KMAX])


@jit(parallel=True)
def _pen_strokes(S, radius, X, out, dist):
    n = X.shape[0]
    blocks = (n + BLOCK - 1) // BLOCK
    for b in prange(blocks):
        ramps = np.zeros((2, 2, 2 * KMAX + 1, 2 * KMAX + 1), X.dtype)
        for i in range(b * BLOCK, min((b + 1) * BLOCK, n)):
            if radius[i] > 0:
                _pen(S[i], radius[i], dist, ramps, out[i])
            else:
                out[i, :] = X[i]


# ----------------------------------------------------------------- ops

_DIST = distance_table()
_DIST.flags.writeable = False


def skeleton(X, out):
    """out = the centre lines of X's images on the 56x56 grid (the reference:
    kernels/pen_numpy.py). X: (n, 784) float32|float64  out: (n, 3136) uint8,
    WRITTEN. Returns out."""
    X = checked_skeleton_args(X, out)
    _skeleton(read_only(X), out)
    return out


def pen_strokes(S, radius, X, out):
    """out[i] = pen(S[i], radius[i]) where radius[i] > 0, X[i] where it is 0
    (the reference: kernels/pen_numpy.py). S: (n, 3136) uint8  radius: (n,)
    in [0, MAX_RADIUS], cast to X's dtype  X: (n, 784)  out: X's shape and
    dtype, WRITTEN; must not overlap X. Returns out."""
    S, radius, X = checked_pen_args(S, radius, X, out)
    _pen_strokes(read_only(S), read_only(radius), read_only(X), out, _DIST)
    return out

"""Pen strokes, the reference: a digit re-drawn along the centre line of its
ink with a round pen of a chosen radius, the way a person draws it in the
app (a mouse or a pen: one stroke width whatever the digit's size).

Two ops:

    skeleton(X, out)             the centre lines, once per training set
    pen_strokes(S, radius, X, out)  each epoch: out = pen(S, r) where r > 0,
                                    X itself where r = 0

``skeleton``: the image upsampled 2x (bilinear, half-pixel centres, 0
outside), ink where that is >= INK, thinned to 1-px lines on the 56x56 grid
(Zhang & Suen 1984). Twice MNIST's resolution because a 2-3 px MNIST stroke
thinned at 28x28 leaves a staircase of whole pixels; at 56x56 the line sits
within a quarter pixel of the stroke's middle.

``pen_strokes``: for output pixel p (28x28, pixel centres at integers) and
centre-line points q (fine pixel i sits at (i - 1/2) / 2 in those units),

    pen(S, r)(p) = max_q clip(r + 1/2 - |p - q|, 0, 1)

a round pen of radius r whose edge is a 1-px linear ramp (the grey rim a
drawn stroke gets when the app shrinks the canvas to 28x28). A max, not a
sum: where strokes cross or a line doubles back the ink stays at 1.

This is the code to read; kernels/pen_numba.py is its compiled twin. Both do
the same IEEE operations (the bilinear weights in the same order, |p - q| in
float64 from exact quarter-pixel offsets, then the pen's ramp in the images'
dtype; max and thinning are exact), so they agree to the last bit
(tests/test_pen.py).
"""

import math

import numpy as np

from .contract import IMAGE_SIDE, N_INPUTS

FINE = 2 * IMAGE_SIDE           # 56: the centre lines' grid side
INK = 0.5                       # upsampled value that counts as ink
MAX_RADIUS = 4.0                # px: the largest pen the op accepts
CHUNK = 512                     # images per pass: bounds the temporaries


def upsample2(images):
    """(n, 28, 28) -> (n, 56, 56), bilinear with half-pixel centres, 0
    outside: fine pixel 2r is 3/4 x[r] + 1/4 x[r - 1], 2r + 1 is
    3/4 x[r] + 1/4 x[r + 1]; rows first, then columns."""
    dt = images.dtype.type
    three, one = dt(0.75), dt(0.25)

    def along(x, axis):
        padded = np.pad(x, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        here = np.take(padded, range(1, IMAGE_SIDE + 1), axis=axis)
        before = np.take(padded, range(0, IMAGE_SIDE), axis=axis)
        after = np.take(padded, range(2, IMAGE_SIDE + 2), axis=axis)
        shape = list(x.shape)
        shape[axis] *= 2
        out = np.empty(shape, x.dtype)
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
        out[tuple(even)] = three * here + one * before
        out[tuple(odd)] = three * here + one * after
        return out

    return along(along(images, 1), 2)


def thin(mask):
    """Zhang-Suen thinning of a batch: (n, h, w) bool -> (n, h, w) bool lines
    1 px wide. Each sub-pass removes, all at once, the set pixels with 2..6
    set neighbours, exactly one 0 -> 1 transition around them (removing them
    keeps the shape connected and keeps line ends), on its side (south-east
    first, then north-west, so the line stays centred); until a pass removes
    nothing. An image whose pass removed nothing is done (another pass would
    remove nothing either), so only the others go round again."""
    img = np.pad(mask.astype(np.uint8), ((0, 0), (1, 1), (1, 1)))
    active = np.arange(len(img))
    while len(active):
        part = img[active]
        changed = np.zeros(len(part), bool)
        for first in (True, False):
            remove = _removable(part, first)
            part[:, 1:-1, 1:-1][remove] = 0
            changed |= remove.any(axis=(1, 2))
        img[active] = part
        active = active[changed]
    return img[:, 1:-1, 1:-1].astype(bool)


def _removable(img, first):
    """The set pixels of img (n, h + 2, w + 2), 0 on its frame, that this
    sub-pass removes: (n, h, w) bool."""
    c = img[:, 1:-1, 1:-1]
    # the neighbours P2..P9, clockwise from north
    p = [img[:, :-2, 1:-1], img[:, :-2, 2:], img[:, 1:-1, 2:], img[:, 2:, 2:],
         img[:, 2:, 1:-1], img[:, 2:, :-2], img[:, 1:-1, :-2], img[:, :-2, :-2]]
    n_set = sum(p[1:], p[0])    # uint8: at most 8
    transitions = sum((p[k] < p[(k + 1) % 8]).view(np.uint8) for k in range(8))  # 0 -> 1
    n, e, s, w = p[0], p[2], p[4], p[6]
    if first:
        side = ((n & e & s) == 0) & ((e & s & w) == 0)
    else:
        side = ((n & e & w) == 0) & ((n & s & w) == 0)
    return (c == 1) & (n_set >= 2) & (n_set <= 6) & (transitions == 1) & side


def _images(op, X):
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64) or X.ndim != 2 or X.shape[1] != N_INPUTS:
        raise ValueError(f"{op}: X must be (n, {N_INPUTS}) float32 or float64, "
                         f"not {X.shape} {X.dtype}")
    return X


def _writable(op, out, shape, dtype):
    if (not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError(f"{op}: out must be a writeable C-contiguous {shape} "
                         f"{np.dtype(dtype)} array")


def checked_skeleton_args(X, out):
    """skeleton's X as an array, after checking both arguments (both kernels)."""
    X = _images("skeleton", X)
    _writable("skeleton", out, (len(X), FINE * FINE), np.uint8)
    return X


def checked_pen_args(S, radius, X, out):
    """pen_strokes' (S, radius in X's dtype, X), after checking every argument."""
    X = _images("pen_strokes", X)
    n = len(X)
    S = np.asarray(S)
    radius = np.ascontiguousarray(radius, X.dtype)
    if S.shape != (n, FINE * FINE) or S.dtype != np.uint8:
        raise ValueError(f"pen_strokes: S must be ({n}, {FINE * FINE}) uint8, "
                         f"not {S.shape} {S.dtype}")
    if radius.shape != (n,) or not np.all((radius >= 0) & (radius <= MAX_RADIUS)):
        raise ValueError(f"pen_strokes: radius must be ({n},) in [0, {MAX_RADIUS}]")
    _writable("pen_strokes", out, X.shape, X.dtype)
    if np.shares_memory(X, out) or np.shares_memory(S, out):
        raise ValueError("pen_strokes: out must not overlap X or S")
    return S, radius, X


def skeleton(X, out):
    """out = the centre lines of X's images on the 56x56 grid, 1 on a line.
    X: (n, 784) float32|float64 in [0, 1]  out: (n, 3136) uint8, WRITTEN.
    Returns out."""
    X = checked_skeleton_args(X, out)
    for lo in range(0, len(X), CHUNK):
        images = X[lo:lo + CHUNK].reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
        fine = upsample2(images) >= images.dtype.type(INK)
        out[lo:lo + CHUNK] = thin(fine).reshape(len(images), FINE * FINE)
    return out


def reach(radius):
    """Offsets k (in whole pixels) between an output pixel and the coarse
    pixel holding a centre-line point that a pen of ``radius`` can touch:
    |k| <= K, K = ceil(radius + 1/2 + 1/4) (a point sits up to 1/4 px off
    its coarse pixel's centre)."""
    return int(math.ceil(radius + 0.75))


def pen_distance(k, a, l, b):
    """|p - q| in float64 for q the fine point (2s + a, 2t + b) and p the
    output pixel (s + k, t + l): offsets k - (2a - 1)/4 and l - (2b - 1)/4,
    exact in binary, so both kernels get the same distance."""
    dr = k - (2 * a - 1) / 4
    dc = l - (2 * b - 1) / 4
    return math.sqrt(dr * dr + dc * dc)


def pen(lines, radius):
    """(n, 56, 56) uint8 centre lines, (n,) radii -> (n, 28, 28): the max over
    line points of clip(r + 1/2 - |p - q|, 0, 1)."""
    dt = radius.dtype.type
    n = len(lines)
    K = reach(float(radius.max())) if n else 0
    out = np.zeros((n, IMAGE_SIDE, IMAGE_SIDE), radius.dtype)
    r = radius[:, None, None]
    for a in (0, 1):
        for b in (0, 1):
            # points (2s + a, 2t + b) at coarse pixel (s, t), framed by K zeros
            points = np.pad(lines[:, a::2, b::2], ((0, 0), (K, K), (K, K)))
            for k in range(-K, K + 1):
                for l in range(-K, K + 1):
                    ramp = np.clip(r + dt(0.5) - dt(pen_distance(k, a, l, b)), 0, 1)
                    # the point at (s, t) reaches pixel (s + k, t + l)
                    shifted = points[:, K - k:K - k + IMAGE_SIDE, K - l:K - l + IMAGE_SIDE]
                    np.maximum(out, shifted * ramp, out=out)
    return out


def pen_strokes(S, radius, X, out):
    """out[i] = pen(S[i], radius[i]) where radius[i] > 0, X[i] where it is 0.
    S: (n, 3136) uint8 from skeleton()  radius: (n,) in [0, MAX_RADIUS], cast
    to X's dtype  X: (n, 784) float32|float64  out: (n, 784) of X's dtype,
    WRITTEN; must not overlap X or S. Returns out."""
    S, radius, X = checked_pen_args(S, radius, X, out)
    out[:] = X
    drawn = np.flatnonzero(radius > 0)
    for lo in range(0, len(drawn), CHUNK):
        rows = drawn[lo:lo + CHUNK]
        lines = S[rows].reshape(-1, FINE, FINE)
        out[rows] = pen(lines, radius[rows]).reshape(len(rows), N_INPUTS)
    return out

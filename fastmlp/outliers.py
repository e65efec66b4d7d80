"""Pictures of no digit, made from training digits, for outlier exposure.

A network trained only on digits answers every picture with a digit, often a
confident one: a letter, a symbol or a scribble gets "not sure" from the
softmax threshold only about half the time (bench/not_digits.py). Outlier
exposure (Hendrycks, Mazeika & Dietterich 2019, "Deep anomaly detection
with outlier exposure") trains on some pictures of no class as well, with the
uniform answer as their target (kernels/contract.py NO_CLASS), so that the
network learns to be unsure off the digits.

The outliers here are made from the training digits themselves, so nothing
outside the training set is used, and bench/not_digits.py's letters,
symbols and scribbles stay unseen:
    overlay   two digits of different classes, one shifted by up to
              OVERLAY_SHIFT pixels each way, ink = the max of the two
    jigsaw    the four 14 x 14 quarters of the 28 x 28 frame, each from a
              digit of another class than the quarter before
Half of each kind. Drawn once per run from ``default_rng([seed, 3])``; the
augmentation then warps them every epoch like the digits.
"""

import numpy as np

from fastmlp.errors import FastmlpError
from fastmlp.kernels.contract import NO_CLASS

SIDE = 28
OVERLAY_SHIFT = 6
RNG_STREAM = 3   # the seed's streams: epoch order, augmentation (1), dropout (2), outliers (3)


def count_for(fraction: float, n: int) -> int:
    """Outliers added to n training digits at --outliers ``fraction``."""
    return int(round(fraction * n))


def shifted(image, dr: int, dc: int) -> np.ndarray:
    """``image`` (rows, cols) moved by (dr, dc) pixels; what leaves the frame
    is dropped and what enters is 0: a shift, not a wrap."""
    out = np.zeros_like(image)
    rows, cols = image.shape
    out[max(dr, 0):rows + min(dr, 0), max(dc, 0):cols + min(dc, 0)] = \
        image[max(-dr, 0):rows - max(dr, 0), max(-dc, 0):cols - max(dc, 0)]
    return out


def _other_class(y, first, rng):
    """For each index in ``first``, a random index of a digit of another class."""
    second = rng.integers(0, len(y), len(first))
    for _ in range(64):   # redraw the clashes; 10 classes leave few after a handful of rounds
        clash = y[second] == y[first]
        if not clash.any():
            return second
        second[clash] = rng.integers(0, len(y), int(clash.sum()))
    raise FastmlpError("--outliers: the training digits need at least two classes")


def overlays(X, y, count, rng):
    """count pictures of two digits of different classes, one shifted.
    X: (n, 784) in [0, 1]  y: (n,) -> (count, 784) of X's dtype."""
    first = rng.integers(0, len(y), count)
    second = _other_class(y, first, rng)
    shifts = rng.integers(-OVERLAY_SHIFT, OVERLAY_SHIFT + 1, (count, 2))
    a = X[first].reshape(count, SIDE, SIDE)
    b = X[second].reshape(count, SIDE, SIDE)
    out = a.copy()
    for i, (dy, dx) in enumerate(shifts):
        np.maximum(out[i], shifted(b[i], int(dy), int(dx)), out=out[i])
    return out.reshape(count, SIDE * SIDE)


def jigsaws(X, y, count, rng):
    """count pictures whose four quarters come from four digits, each of
    another class than the one before. -> (count, 784) of X's dtype."""
    half = SIDE // 2
    picks = [rng.integers(0, len(y), count)]
    for _ in range(3):
        picks.append(_other_class(y, picks[-1], rng))
    out = np.empty((count, SIDE, SIDE), X.dtype)
    for q, source in enumerate(picks):
        r, c = divmod(q, 2)
        out[:, r * half:(r + 1) * half, c * half:(c + 1) * half] = (
            X[source].reshape(count, SIDE, SIDE)[:, r * half:(r + 1) * half, c * half:(c + 1) * half])
    return out.reshape(count, SIDE * SIDE)


def make(X, y, count: int, seed: int):
    """(count, 784) outliers of X's dtype from the digits X: (n, 784), y: (n,)."""
    if count == 0:
        return np.empty((0, X.shape[1]), X.dtype)
    if X.shape[1] != SIDE * SIDE:
        raise FastmlpError(f"--outliers: made from 28x28 digits, not {X.shape[1]} inputs")
    rng = np.random.default_rng([seed, RNG_STREAM])
    n_overlay = count // 2
    return np.concatenate([overlays(X, y, n_overlay, rng), jigsaws(X, y, count - n_overlay, rng)])


def with_outliers(X, y, fraction: float, seed: int):
    """(X, y) with count_for(fraction, len(X)) outliers appended, labelled NO_CLASS."""
    count = count_for(fraction, len(X))
    if count == 0:
        return X, y
    extra = make(X, y, count, seed)
    return (np.concatenate([X, extra]),
            np.concatenate([y, np.full(count, NO_CLASS, dtype=y.dtype)]))

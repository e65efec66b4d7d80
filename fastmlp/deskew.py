"""Deskewing by second moments: a digit's slant sheared upright, for training images and pictures alike.

A handwritten digit leans: the rows and columns of its ink are correlated.
With pixel values as weights, the ink's centroid (r̄, c̄) and its second
moments

    var(r)    = E[(r - r̄)^2]
    cov(r, c) = E[(r - r̄)(c - c̄)]

give the slant alpha = cov(r, c) / var(r): the ink's columns drift by alpha
per row (the least-squares line c - c̄ = alpha (r - r̄) through it). The shear

    out(r, c) = in(r, c + alpha (r - r̄))

stands it upright (each row is moved along itself by alpha (r - r̄); the
centroid's row does not move, so the centroid stays where normalize_digit put
it). It is the classic preprocessing for MLPs on MNIST (LeCun et al. 1998 list
it; Ciresan et al. 2010 use it): the network then spends no capacity on slant.
A model trained on deskewed images (``fastmlp train --deskew``) records it,
and ``MLP.predict_proba`` deskews whatever it is given, so training, the CLI,
the GUI and evaluation apply the very same function.

Each output pixel is interpolated linearly along its own row (0 outside the
image): a shear moves whole rows, so one row's samples come from that row.
Values stay in [0, 1] (each is a convex combination of inputs).
"""

import numpy as np

from fastmlp.kernels.contract import IMAGE_SIDE

# |alpha| is clipped here: a slant of 1 is 45 degrees, more than any digit
# leans; beyond it the "slant" is the shape itself (a thin horizontal
# stroke has var(r) near 0 and an alpha that means nothing).
MAX_SLANT = 1.0
# Zeros each side of a row while it is shifted: more than the largest shift.
PAD = int(MAX_SLANT * (IMAGE_SIDE - 1)) + 2
# Images per pass: its temporaries (a few arrays of CHUNK x 28 x 86) stay in
# L2; 4096 took 3x as long on the 60,000 training images (2.4 s vs 0.7-1.0 s).
CHUNK = 128


def slant(images: np.ndarray) -> tuple:
    """(alpha, r̄): each image's slant, clipped to +-MAX_SLANT, and its ink's
    mean row. images: (n, 28, 28); alpha, r̄: (n,) float64. A blank image,
    or ink on one row only, has alpha 0 (nothing to straighten)."""
    index = np.arange(IMAGE_SIDE, dtype=np.float64)
    mass = images.sum(axis=(1, 2), dtype=np.float64)
    safe = np.where(mass > 0, mass, 1.0)
    row_mass, col_mass = images.sum(axis=2, dtype=np.float64), images.sum(axis=1, dtype=np.float64)
    r_mean, c_mean = row_mass @ index / safe, col_mass @ index / safe
    dr = index[None, :] - r_mean[:, None]                      # r - r̄: (n, 28)
    dc = index[None, :] - c_mean[:, None]
    var_r = np.einsum("nr,nr->n", row_mass, dr * dr) / safe
    cov = np.einsum("nr,nr->n", np.einsum("nrc,nc->nr", images, dc), dr) / safe
    alpha = np.divide(cov, var_r, out=np.zeros_like(cov), where=var_r > 1e-9)
    return np.clip(alpha, -MAX_SLANT, MAX_SLANT), r_mean


def deskew(X: np.ndarray) -> np.ndarray:
    """X: (n, 784) or (784,) in [0, 1], row-major 28x28 -> the same shape and
    dtype, every image sheared upright (module docstring). A new array."""
    X = np.asarray(X)
    flat = np.atleast_2d(X).reshape(-1, IMAGE_SIDE * IMAGE_SIDE)
    out = np.empty(flat.shape, X.dtype)
    for lo in range(0, len(flat), CHUNK):
        out[lo:lo + CHUNK] = _sheared(flat[lo:lo + CHUNK].reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
                                      ).reshape(-1, IMAGE_SIDE * IMAGE_SIDE)
    return out.reshape(X.shape)


def _sheared(images: np.ndarray) -> np.ndarray:
    """images: (n, 28, 28) -> (n, 28, 28) of their dtype: out(r, c) =
    in(r, c + s_r), s_r = alpha (r - r̄), linear between the two nearest
    columns, 0 outside. The shift is a whole row's, so floor(c + s_r) =
    c + floor(s_r) and the fraction is the same for every column of a row."""
    n = len(images)
    alpha, r_mean = slant(images)
    index = np.arange(IMAGE_SIDE)
    shift = alpha[:, None] * (index[None, :] - r_mean[:, None])        # s_r: (n, rows)
    whole = np.floor(shift)
    frac = (shift - whole).astype(images.dtype)[:, :, None]
    # |s_r| <= MAX_SLANT * 27 < PAD: every c + floor(s_r) (+ 1) lands in its padded row
    width = IMAGE_SIDE + 2 * PAD
    padded = np.zeros((n, IMAGE_SIDE, width), images.dtype)
    padded[:, :, PAD:PAD + IMAGE_SIDE] = images
    row_start = np.arange(n * IMAGE_SIDE).reshape(n, IMAGE_SIDE) * width
    left = (row_start + whole.astype(np.intp) + PAD)[:, :, None] + index   # flat: (n, rows, cols)
    flat = padded.reshape(-1)
    v0, v1 = flat[left], flat[left + 1]
    return v0 + frac * (v1 - v0)   # never outside [v0, v1]: stays in [0, 1]

"""Data augmentation, the reference.

A random affine warp with an elastic distortion, then a change of stroke
thickness, for a batch of 28x28 images.

This is the code to read; kernels/augment_numba.py is its compiled twin,
checked against it in tests/test_augment.py.

The kernel draws no random numbers: fastmlp.augmentation.sample_params draws them
all, and ``augment`` is a deterministic function of its arguments. Both
kernels compute the same IEEE operations in the same order (no matmul, no
reassociation), so on one machine they agree to the last bit.

Coordinates: pixel p = (r, c) of an image (row-major, 784 values) sits at
(r, c), its centre; the middle of the image is PIVOT = (13.5, 13.5), the
point the affine part rotates, scales and shears about (not the centre of
mass that fastmlp.preprocess places a digit's ink at: that is 14.0).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .contract import IMAGE_SIDE, N_INPUTS

# The point the warp turns about: the middle of the image, in pixel indices.
PIVOT = (IMAGE_SIDE - 1) / 2
# Images per pass: bounds the temporaries (about 20 arrays of CHUNK x 784).
# Images are independent, so the chunking never changes a result.
CHUNK = 1024


def augment(X, A, D, thickness, out):
    """out = thicken(warp(X, A, D), thickness), image by image:

        y(p)  = X( A [p - PIVOT; 1] + PIVOT + d(p) )    bilinear, X = 0 outside
        out   = clip(y + t (max3x3(y) - y), 0, 1)          t > 0: thicker strokes
        out   = clip(y + t (y - min3x3(y)), 0, 1)          t < 0: thinner strokes
        out   = clip(y, 0, 1)                              t = 0

    A is the *inverse* map (output pixel -> source point), so every output
    pixel gets exactly one sample and there are no holes. d is the elastic
    displacement, ``displacement_field(D)``. max3x3/min3x3 are the 3x3 grey
    dilation/erosion with 0 outside the image.

    X: (n, 784) float32|float64, values in [0, 1] (source images).
    A: (n, 2, 3), rows (row, col): [[a00, a01, a02], [a10, a11, a12]].
    D: (n, G, G, 2) elastic control grids, G >= 2 (see displacement_field).
    thickness: (n,) t per image, in [-1, 1].
    out: (n, 784) of X's dtype, WRITTEN; must not overlap X.
    A, D and thickness are cast to X's dtype. Returns out."""
    dt = X.dtype
    for lo in range(0, len(X), CHUNK):
        s = slice(lo, lo + CHUNK)
        images = X[s].reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
        Y = warp(images, A[s].astype(dt), D[s].astype(dt))
        out[s] = thicken(Y, thickness[s].astype(dt)).reshape(-1, N_INPUTS)
    return out


def bilinear(grid, r, c, origin):
    """Bilinear interpolation of each grid at real coordinates (r, c):

        v = (1 - fc) [(1 - fr) g(r0, c0)     + fr g(r0 + 1, c0)]
          +      fc  [(1 - fr) g(r0, c0 + 1) + fr g(r0 + 1, c0 + 1)]

    with r0 = floor(r), fr = r - r0 (same for c). Coordinate 0 is index
    ``origin`` of grid, which must be padded so that every index read exists.
    grid: (n, H, W)  r, c: (n, h, w) of grid's dtype. Returns (n, h, w)."""
    r0, c0 = np.floor(r), np.floor(c)
    fr, fc = r - r0, c - c0
    i = r0.astype(np.intp) + origin
    j = c0.astype(np.intp) + origin
    k = np.arange(len(grid))[:, None, None]
    left = (1 - fr) * grid[k, i, j] + fr * grid[k, i + 1, j]
    right = (1 - fr) * grid[k, i, j + 1] + fr * grid[k, i + 1, j + 1]
    return (1 - fc) * left + fc * right


def displacement_field(D):
    """d: (n, 28, 28, 2), the elastic displacement (rows, cols) of every pixel:
    the coarse control grid D: (n, G, G, 2) upsampled bilinearly, control
    point (k, l) sitting on pixel (k, l) * 27 / (G - 1) (the grid's corners
    are the image's corners).

    Simard et al. (2003) smooth a field of uniform noise with a Gaussian; a
    few random control points joined bilinearly is a cheaper smooth random
    field of the same kind: G sets the smoothness (wavelength ~ 27 / (G - 1)
    pixels) and |d| <= max |D| its strength."""
    n, G = D.shape[:2]
    dt = D.dtype.type
    g = np.arange(IMAGE_SIDE, dtype=D.dtype) * dt(G - 1) / dt(IMAGE_SIDE - 1)  # pixel -> grid coordinate
    gr = np.broadcast_to(g[:, None], (n, IMAGE_SIDE, IMAGE_SIDE))
    gc = np.broadcast_to(g[None, :], (n, IMAGE_SIDE, IMAGE_SIDE))
    # The last pixel row/column falls exactly on the last grid line: its
    # "next" control point is read with weight 0, so a zero pad suffices.
    padded = np.pad(D, ((0, 0), (0, 1), (0, 1), (0, 0)))
    # Interpolated along columns first (the compiled twin's cheaper order):
    # bilinear() of the transposed grid at (col, row).
    transposed = padded.swapaxes(1, 2)
    return np.stack([bilinear(transposed[..., a], gc, gr, origin=0) for a in (0, 1)], axis=-1)


def warp(images, A, D):
    """y: (n, 28, 28), y(p) = images(A [p - PIVOT; 1] + PIVOT + d(p)), sampled
    bilinearly with 0 outside the image.
    images: (n, 28, 28)  A: (n, 2, 3)  D: (n, G, G, 2), one dtype."""
    d = displacement_field(D)
    u = np.arange(IMAGE_SIDE, dtype=images.dtype)[:, None] - PIVOT   # p - PIVOT, rows
    v = np.arange(IMAGE_SIDE, dtype=images.dtype)[None, :] - PIVOT   # p - PIVOT, cols
    a = A[:, :, :, None, None]
    src_r = a[:, 0, 0] * u + a[:, 0, 1] * v + a[:, 0, 2] + PIVOT + d[..., 0]
    src_c = a[:, 1, 0] * u + a[:, 1, 1] * v + a[:, 1, 2] + PIVOT + d[..., 1]
    # Zero rows/columns around the image: -1 before, 28 and 29 after. A point
    # clipped to [-1, 28] then reads only zeros, with weights summing to 1,
    # exactly as a point outside the image should.
    padded = np.pad(images, ((0, 0), (1, 2), (1, 2)))
    return bilinear(padded, np.clip(src_r, -1, IMAGE_SIDE), np.clip(src_c, -1, IMAGE_SIDE), origin=1)


def thicken(Y, thickness):
    """out: (n, 28, 28): each image moved a fraction |t| of the way towards its
    3x3 grey dilation (t > 0) or erosion (t < 0), clipped to [0, 1].
    Y: (n, 28, 28)  thickness: (n,), one dtype."""
    windows = sliding_window_view(np.pad(Y, ((0, 0), (1, 1), (1, 1))), (3, 3), axis=(1, 2))
    t = thickness[:, None, None]
    grown = Y + t * (windows.max(axis=(3, 4)) - Y)
    thinned = Y + t * (Y - windows.min(axis=(3, 4)))
    return np.clip(np.where(t > 0, grown, thinned), 0, 1)

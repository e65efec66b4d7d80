"""Turn an arbitrary picture of a digit into the network's MNIST-style input.

The network was trained on MNIST, so a user's image has to be normalised the
way MNIST itself was built (LeCun et al.): the ink is cropped to its bounding
box, scaled with antialiasing so the longer side is 20 px (aspect ratio kept),
and pasted into a 28x28 field so that the ink's centre of mass sits at the
centre.  Pixel values are ink intensity in [0, 1]: 1.0 = full ink, 0.0 =
background (MNIST stores white ink on black).

Centre-of-mass convention: coordinates are pixel *indices* (the centre of
pixel ``[r, c]`` is at ``(r, c)``), so the centre of the 28x28 field is
``(14, 14)`` -- not 13.5.  Measured over the 10,000 shipped MNIST test images,
the mean centre of mass is (row 13.99, col 14.01), every image within
14 +- 0.5: MNIST shifted by the centre of mass *rounded to whole pixels*.  We
do the same (an integer shift, so no extra blur).

Everything here is pure NumPy + Pillow (no SciPy, no Tk) and takes a few
milliseconds for a 280x280 canvas, so the drawing app can call it on every
stroke.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fastmlp.errors import error_at
from fastmlp.model import IMAGE_SIDE
from fastmlp.memory import require
from fastmlp.safeio import read_regular

__all__ = [
    "load_image",
    "to_grayscale_ink",
    "normalize_digit",
    "load_and_normalize",
    "IMAGE_SIDE",
    "BOX_SIZE",
    "CENTRE_OF_MASS",
    "INK_THRESHOLD",
]

BOX_SIZE = 20  # MNIST digits are scaled so the longer side is 20 px
# Where a digit's ink centre of mass is placed, in pixel-index coordinates
# (see module doc). Not the middle of the image (13.5, the augmentation's
# pivot): MNIST put the centre of mass at 14.
CENTRE_OF_MASS = 14.0
# Ink weaker than this is ignored when finding the bounding box, so JPEG noise,
# paper texture and antialiasing fringes don't inflate the box.
INK_THRESHOLD = 0.1
# If no pixel differs from the background by at least this much (on a 0..1
# scale) the image is treated as blank instead of stretching noise up to 1.
MIN_CONTRAST = 0.05

# ITU-R BT.601 luma, the same weights Pillow uses for convert("L").
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


# Decoders fastmlp trusts with a user's file. Pillow would otherwise try every
# format it knows, EPS among them, which it renders by running Ghostscript on
# the file: an interpreter on untrusted input (and `{ } loop` never returns).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
MAX_FILE_BYTES = 64 * 2**20
# Bounds checked from the header, before any pixel is decoded. A side of
# 8192 px keeps the resize padding of _scale_to_box (3/20 of the longer side
# each way) at ~0.1 GB; 16.7 megapixels (a 12 MP phone photo fits) at ~40
# bytes a pixel through to_grayscale_ink is ~0.7 GB.
MAX_SIDE = 8192
MAX_PIXELS = 4096 * 4096
BYTES_PER_PIXEL = 40


def _check_dimensions(p: Path, width: int, height: int) -> None:
    if width == 0 or height == 0:
        raise error_at(p, f"image has zero size ({width}x{height})")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise error_at(p, f"image is {width}x{height} pixels; fastmlp reads images of at most "
                       f"{MAX_SIDE} px a side and {MAX_PIXELS // 2**20} megapixels")
    require(width * height * BYTES_PER_PIXEL, f"{p}: decoding this {width}x{height} image")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file (PNG, JPEG, BMP, GIF, TIFF, WebP).

    Returns a loaded ``PIL.Image.Image`` in whatever mode the file has (first
    frame for animations), with any EXIF orientation applied.  Every failure
    -- missing file, directory, FIFO or device, a file over MAX_FILE_BYTES,
    empty file, not an image of those formats, over MAX_SIDE / MAX_PIXELS,
    truncated or corrupt data, zero width/height -- raises
    :class:`FastmlpError` with a one-line ``"<path>: <problem>"`` message.
    """
    p = Path(path)
    # Read the bytes ourselves: decoding from memory leaves no file handle
    # open (Pillow keeps one for multi-frame formats such as GIF).
    data = read_regular(p, MAX_FILE_BYTES, "image file")
    if not data:
        raise error_at(p, "file is empty (0 bytes)")

    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise error_at(p, f"not a recognised image file (fastmlp reads {', '.join(IMAGE_FORMATS)})") from None
    except Image.DecompressionBombError as exc:
        raise error_at(p, f"image is too large ({exc})") from None
    except Exception as exc:  # any decoder failure is a bad file, not a bug here
        raise error_at(p, f"cannot open image ({type(exc).__name__}: {exc})") from None
    _check_dimensions(p, image.width, image.height)

    try:
        # Image.open is lazy; load() is where truncated/corrupt data shows up.
        image.load()
    except Exception as exc:
        raise error_at(p, f"image is truncated or corrupt ({exc})") from None

    try:
        # Phone photos are often stored sideways with an EXIF rotation tag.
        image = ImageOps.exif_transpose(image)
    except Exception:
        pass  # broken EXIF: use the pixels as stored
    return image


# --------------------------------------------------------------------------
# Ink extraction
# --------------------------------------------------------------------------


def _int_to_unit(a: np.ndarray) -> np.ndarray:
    """Scale a non-float array to [0, 1] by the range its values actually use."""
    a = a.astype(np.float32)
    top = float(a.max()) if a.size else 0.0
    if float(a.min()) < 0:
        raise ValueError("negative pixel values")
    if top <= 1:  # boolean / 0-1 masks
        scale = 1.0
    elif top <= 255:
        scale = 255.0
    elif top <= 65535:
        scale = 65535.0
    else:
        scale = top
    return a / np.float32(scale)


def _array_to_gray_alpha(arr: np.ndarray, name: str):
    """(h, w) or (h, w, 3|4) array -> (gray, alpha-or-None), float32 in [0,1]."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise error_at(
            name,
            f"expected a 2-D grayscale array (or h x w x 3/4 colour), got shape {arr.shape}",
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise error_at(name, f"image has zero size (shape {arr.shape})")

    if arr.dtype == np.uint8:
        a = arr.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float32)
        if not np.isfinite(a).all():
            raise error_at(name, "array contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise error_at(
                name,
                f"float pixel values must be in [0, 1], got range [{lo:.3g}, {hi:.3g}]",
            )
    elif arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        try:
            a = _int_to_unit(arr)
        except ValueError:
            raise error_at(name, "integer pixel values must be non-negative") from None
    else:
        raise error_at(name, f"unsupported array dtype {arr.dtype}")

    if a.ndim == 2:
        return a, None
    gray = a[:, :, :3] @ _LUMA
    alpha = a[:, :, 3] if a.shape[2] == 4 else None
    return gray.astype(np.float32, copy=False), alpha


def _pil_to_gray_alpha(image: Image.Image, name: str):
    """PIL image of any mode -> (gray, alpha-or-None), float32 in [0,1]."""
    if image.width == 0 or image.height == 0:
        raise error_at(name, f"image has zero size ({image.width}x{image.height})")
    mode = image.mode
    has_alpha = "A" in mode or "a" in mode or "transparency" in image.info

    if mode in ("I", "F") or mode.startswith("I;16"):
        # High-bit-depth grayscale: keep the precision, scale by value range.
        a = np.asarray(image)
        if mode == "F":
            a = a.astype(np.float32)
            if not np.isfinite(a).all():
                raise error_at(name, "image contains NaN or infinite values")
            a = a - min(0.0, float(a.min()))
            top = float(a.max())
            if top > 1.0:  # float data of unknown range: scale to its maximum
                a = a / np.float32(top)
            return a, None
        try:
            return _int_to_unit(a.astype(np.int64)), None
        except ValueError:
            raise error_at(name, "negative pixel values in integer image") from None

    if has_alpha:
        # Pillow applies P/L/RGB "transparency" and un-premultiplies RGBa/La.
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / np.float32(255.0)
        gray = rgba[:, :, :3] @ _LUMA
        return gray.astype(np.float32, copy=False), rgba[:, :, 3]

    try:
        gray_img = image.convert("L")
    except ValueError:
        try:
            gray_img = image.convert("RGB").convert("L")
        except ValueError:
            raise error_at(name, f"unsupported image mode {mode!r}") from None
    return np.asarray(gray_img, dtype=np.float32) / np.float32(255.0), None


def _frame(a: np.ndarray) -> np.ndarray:
    """The outer 2-px frame (1 px for tiny images) as a flat array."""
    h, w = a.shape
    k = 2 if min(h, w) >= 8 else 1
    if h <= 2 * k or w <= 2 * k:
        return a.ravel()
    return np.concatenate(
        [a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()]
    )


def _composite_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten a translucent image onto the colour its transparent area stands for.

    Transparent pixels are background.  If the image's frame is mostly opaque
    (a scan or screenshot with a few transparent pixels) the background is the
    frame's own colour, so transparent pixels simply merge into the paper.
    If the frame is mostly transparent (ink drawn on nothing -- the common
    RGBA case) we composite onto black or white, whichever contrasts with the
    ink's colour, so any ink colour comes out as ink: the result is then
    ``ink = alpha * |colour - background|``, i.e. alpha acts as coverage.
    """
    frame_alpha = _frame(alpha)
    if float(np.median(frame_alpha)) >= 0.5:
        opaque = frame_alpha >= 0.5
        background = float(np.median(_frame(gray)[opaque]))
    else:
        solid = alpha >= 0.5
        if solid.any():
            ink_colour = float(np.median(gray[solid]))
        elif float(alpha.max()) > 0:
            ink_colour = float(np.average(gray, weights=alpha))
        else:
            ink_colour = 0.0  # fully transparent: the result is blank anyway
        background = 1.0 if ink_colour < 0.5 else 0.0
    return alpha * gray + (1.0 - alpha) * np.float32(background)


# Paper is estimated on the picture shrunk to at most PAPER_SIDE px a side,
# where a stroke of the digit is narrower than PAPER_WINDOW of the side.
# Chosen on photo-like pictures of validation digits (bench/photo_digits.py
# --split validation, 400 digits): a window of 0.25 reads 76% of them, 0.4
# 71%, 0.6 65%; but below 0.4 a bold digit that fills its picture (MNIST's
# own) leaks into the paper estimate and loses ink (the round-trip test):
# 0.4 keeps clean pictures as they were. A second closing then uses 3 stroke
# widths (measured on the ink above half its peak): 71% -> 76% on the same
# validation photos, clean pictures unchanged.
PAPER_SIDE = 64
PAPER_WINDOW = 0.4
# A picture whose border (shrunk, so pixel noise averages out) varies by less
# than this (median absolute deviation: robust to ink touching the border)
# is evenly lit: its paper is one level. Without this gate the paper map
# took ink from bold digits that fill their picture (scikit-learn's digits,
# bench/sklearn_digits.py: 92.5% -> 87.4%); their synthetic frames vary by
# exactly 0. A photo's noise alone, averaged over the shrink, varies by
# 0.002-0.01, and a page mostly in shadow (the median absolute deviation
# ignores a lit minority of the frame) by 0.003 up: at 0.005 the gate took
# 40% of such pages (tests/test_preprocess.py's class) for evenly lit and
# their shadow for ink, at 0.002 none; the validation photos read 98.8% and
# 99.2%, scikit-learn's digits the same at both.
EVEN_FRAME = 0.002
STROKE_WINDOWS = 3.0
STROKE_CUT = 0.5
POLARITY_WINDOW = 5


def _extreme_filter(a: np.ndarray, k: int, extreme) -> np.ndarray:
    """extreme (np.maximum or np.minimum) over the k x k window around each
    pixel (edges repeat), as two 1-D passes (a square window is separable),
    each by doubling: after j steps b[i] covers [i, i + 2^j), and two such
    overlapping spans cover any [i, i + k): log2(k) array operations."""
    for _ in range(2):   # down the columns, then (transposed) along the rows
        n = a.shape[0]
        b = np.pad(a, [(k // 2, k - 1 - k // 2), (0, 0)], mode="edge")
        width = 1
        while 2 * width <= k:
            b = extreme(b[:-width], b[width:])
            width *= 2
        a = extreme(b[:n], b[k - width:k - width + n]).T
    return a


def _closing(small: np.ndarray, k: int, dark_ink: bool) -> np.ndarray:
    """A closing (dark ink: max then min) or an opening (light ink) over
    k x k: features of the ink's polarity narrower than k taken away."""
    first, second = (np.maximum, np.minimum) if dark_ink else (np.minimum, np.maximum)
    return _extreme_filter(_extreme_filter(small, k, first), k, second)


def stroke_width(ink: np.ndarray) -> float:
    """Typical width in px of the strokes in an ink map: 2 * area / boundary
    of the pixels above half the strongest ink (a stroke of width w and
    length l has area w*l and about 2*l boundary pixels; a shadow the first
    closing left, weaker than the strokes, mostly stays below that cut)."""
    peak = float(ink.max())
    if peak <= 0:
        return 0.0
    mask = ink >= STROKE_CUT * peak
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return 2.0 * float(mask.sum()) / max(1, int((mask & ~inner).sum()))


def _shrunk(gray: np.ndarray) -> np.ndarray:
    """The picture box-averaged to at most PAPER_SIDE px a side (pixel noise
    averages out; the windows below are cheap there)."""
    h, w = gray.shape
    shrink = max(1, int(np.ceil(max(h, w) / PAPER_SIDE)))
    if shrink == 1:
        return gray
    size = (max(1, round(w / shrink)), max(1, round(h / shrink)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BOX))


def _evenly_lit(small: np.ndarray) -> bool:
    """Whether the shrunk picture's border is one level (median absolute
    deviation under EVEN_FRAME: robust to ink touching the border)."""
    frame = _frame(small)
    return float(np.median(np.abs(frame - np.median(frame)))) < EVEN_FRAME


def _wide_window(small: np.ndarray) -> int:
    """The paper estimate's first window: PAPER_WINDOW of the side, odd, >= 3 px."""
    return max(3, int(np.ceil(PAPER_WINDOW * max(small.shape))) | 1)


def _dark_ink_by_contrast(small: np.ndarray) -> bool:
    """Polarity of an unevenly lit picture: which of dark ink (what a closing
    takes away) and light ink (what an opening takes away) holds more strong
    local contrast, over a window just wider than a stroke (POLARITY_WINDOW
    px of the shrunk picture). A shadow or a ramp wider than the window stays
    in both the closing and the opening, so it votes for neither. The rule of
    evenly lit pictures (strong deviation from the frame's median) read the
    lit part of a page half in shadow as light ink: on 1,000 validation photos
    (bench/photo_digits.py --split validation, seeds 0 and 1) it chose wrong
    on 113, this rule on 1. The window is narrow because the paper between
    strokes (a loop's inside) is a light feature narrower than a wide window:
    right on 99.9% of those photos at 5 px, 99.1% at 7, 96.1% at 9, 84.9% at 13,
    42% at PAPER_WINDOW."""
    return _more_dark_ink(_closing(small, POLARITY_WINDOW, True) - small,
                          small - _closing(small, POLARITY_WINDOW, False))


def _more_dark_ink(dark: np.ndarray, light: np.ndarray) -> bool:
    """Whether the dark-ink reading (``dark``: how much darker than its paper
    each pixel is, >= 0) holds at least as much strong ink as the light one.
    Only values above a quarter of the strongest count, so sensor noise or
    paper grain on the wrong side cannot outvote a small but clear digit."""
    strong = 0.25 * max(float(dark.max()), float(light.max()))
    return float(np.sum(dark, where=dark > strong)) >= float(np.sum(light, where=light > strong))


def _paper(gray: np.ndarray, small: np.ndarray, dark_ink: bool) -> np.ndarray:
    """(h, w): the paper's brightness at each pixel with the strokes taken
    away, estimated on the shrunk picture ``small`` (of an unevenly lit
    picture: :func:`_evenly_lit` is False), then scaled back smoothly: a
    closing (an opening for light ink) first with a window wider than any
    stroke (PAPER_WINDOW of the side), then with one of 3 times the strokes'
    width measured on what that left (narrower: shadows and uneven light,
    wider than the strokes, then stay in the paper and do not read as ink)."""
    h, w = gray.shape
    k = _wide_window(small)
    paper = _closing(small, k, dark_ink)
    width = stroke_width(np.abs(paper - small))
    narrow = max(3, int(np.ceil(STROKE_WINDOWS * width)) | 1)
    if narrow < k:
        paper = _closing(small, narrow, dark_ink)
    if small.shape != gray.shape:
        paper = np.asarray(Image.fromarray(paper).resize((w, h), Image.Resampling.BILINEAR))
    return paper.astype(np.float32, copy=False)


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the cut that maximises the
    variance between the two classes it makes."""
    levels = np.minimum((np.ravel(values) * bins).astype(np.int64), bins - 1)
    p = np.bincount(levels, minlength=bins) / max(1, levels.size)
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(bins) / bins)
    between = (mu[-1] * omega - mu) ** 2 / np.maximum(omega * (1 - omega), 1e-12)
    return float(int(np.argmax(between)) + 1) / bins


def _stretch(ink: np.ndarray) -> np.ndarray:
    """Ink deviations -> [0, 1]: the paper's noise to 0, the ink's own
    strength to 1. The classes are Otsu's: below the cut, paper (and the
    soft edges of strokes, a minority: so its noise level is robust, median
    + 3 sigma estimated by the median absolute deviation); above, ink (its
    99th percentile is 1: a few noisy pixels do not set the scale). On a
    clean picture the paper is exactly 0, and this is ink / its strongest
    value as before. The levels are estimated on every step-th pixel (about
    128 a side), which is plenty for them and keeps this fast on a canvas."""
    peak = float(ink.max())
    step = max(1, int(np.ceil(max(ink.shape) / (2 * PAPER_SIDE))))
    sample = ink[::step, ::step]
    cut = _otsu(sample / peak) * peak
    paper, strokes = sample[sample < cut], sample[sample >= cut]
    floor = 0.0
    if paper.size:
        median = float(np.median(paper))
        floor = median + 3 * 1.4826 * float(np.median(np.abs(paper - median)))
    top = float(np.percentile(strokes, 99)) if strokes.size else peak
    if top - floor < MIN_CONTRAST:
        return np.zeros(ink.shape, dtype=np.float32)
    out = (ink - np.float32(floor)) / np.float32(top - floor)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def to_grayscale_ink(image, name: str = "image") -> np.ndarray:
    """Ink intensity of a picture: (h, w) float32 in [0, 1], 1 = full ink.

    ``image`` is a PIL image of any mode (L, RGB, RGBA, LA, P with or without
    transparency, 1, I;16, I, F, CMYK, ...) or a NumPy array: (h, w) uint8
    0..255 or float in [0, 1] (also accepted: other integer dtypes, and
    (h, w, 3|4) RGB/RGBA).  ``name`` is only used in error messages.

    Steps:

    1. Luminance (BT.601) and, if any pixel is not fully opaque, alpha.
    2. Alpha: see :func:`_composite_alpha` -- transparent pixels become the
       background, and for ink on a transparent background the ink is
       ``alpha * |colour - background|`` whatever its colour.
    3. Background = median of the outer 1-2 px frame.  If that frame is one
       level (:func:`_evenly_lit`), the polarity (dark ink on light paper or
       light on dark) is whichever side of the background holds more strong
       deviation, so grey paper or a dim photo still works.  Otherwise
       (uneven light, a shadow) the polarity is the side with more strong
       local contrast (:func:`_dark_ink_by_contrast`) and the background is
       the paper's brightness at each pixel (:func:`_paper`).
    4. ``ink = |pixel - background|`` on the ink side, clipped at 0, then
       stretched (:func:`_stretch`) so paper -> 0 and the ink's own strength
       -> 1.  If nothing differs from the background by ``MIN_CONTRAST`` the
       result is all zeros (blank) instead of amplified noise.
    """
    if isinstance(image, Image.Image):
        gray, alpha = _pil_to_gray_alpha(image, name)
    elif isinstance(image, np.ndarray):
        gray, alpha = _array_to_gray_alpha(image, name)
    else:
        raise TypeError(
            f"to_grayscale_ink expects a PIL image or a NumPy array, got {type(image).__name__}"
        )

    if alpha is not None and float(alpha.min()) < 1.0:
        gray = _composite_alpha(gray, alpha)

    dev = gray - np.float32(np.median(_frame(gray)))
    peak = max(float(dev.max()), float(-dev.min()))
    if peak < MIN_CONTRAST:
        return np.zeros(gray.shape, dtype=np.float32)
    small = _shrunk(gray)
    if _evenly_lit(small):
        # An evenly lit border (a drawing, a scan, MNIST): the paper is one
        # level, the frame's, and the ink is on whichever side of it holds
        # more strong deviation; no window to mistake a bold stroke for paper.
        darker, lighter = np.clip(-dev, 0.0, None), np.clip(dev, 0.0, None)
        ink = darker if _more_dark_ink(darker, lighter) else lighter
    else:
        # Uneven light or a shadow: ink is what stands out from the paper
        # around it, the paper's own brightness estimated at every pixel.
        dark_ink = _dark_ink_by_contrast(small)
        paper = _paper(gray, small, dark_ink)
        ink = np.clip(paper - gray if dark_ink else gray - paper, 0.0, None)
    if float(ink.max()) < MIN_CONTRAST:
        return np.zeros(gray.shape, dtype=np.float32)
    return _stretch(ink)


# --------------------------------------------------------------------------
# MNIST normalisation
# --------------------------------------------------------------------------


def _scale_to_box(crop: np.ndarray) -> np.ndarray:
    """Antialiased resize of a float ink crop so its longer side is BOX_SIZE.

    Returns (out_h, out_w) float32 with max(out_h, out_w) == BOX_SIZE.  The
    shorter side is scaled by exactly the same factor; its output width is
    that extent rounded *up* to whole pixels with the content centred in it,
    so the aspect ratio is not distorted by rounding (a 1.45 px wide "1" is
    1.45 px of ink spread over 2 columns, not stretched or squeezed to 1 or 2).
    """
    h, w = crop.shape
    scale = BOX_SIZE / max(h, w)
    out_h = min(BOX_SIZE, max(1, int(np.ceil(h * scale - 1e-6))))
    out_w = min(BOX_SIZE, max(1, int(np.ceil(w * scale - 1e-6))))
    if (out_h, out_w) == (h, w):
        return crop  # already the right size (e.g. MNIST's own digits)
    src_h, src_w = out_h / scale, out_w / scale  # source extent of the output
    # Zero-pad by the filter footprint so taps past the crop read background
    # instead of Pillow renormalising the kernel at the image edge.
    footprint = 3.0 * max(1.0, 1.0 / scale)  # Lanczos-3, widened when shrinking
    pad = int(np.ceil(footprint + max(src_h - h, src_w - w) / 2)) + 1
    padded = np.pad(np.asarray(crop, dtype=np.float32), pad)
    y0 = pad + (h - src_h) / 2
    x0 = pad + (w - src_w) / 2
    # Lanczos on a float ('F') image keeps full precision; reducing_gap lets
    # Pillow box-reduce huge inputs first, which is faster and just as smooth.
    # Lanczos rings slightly below 0 / above 1; the caller clips.
    out = Image.fromarray(padded).resize(
        (out_w, out_h),
        Image.Resampling.LANCZOS,
        box=(x0, y0, x0 + src_w, y0 + src_h),
        reducing_gap=3.0,
    )
    return np.asarray(out, dtype=np.float32)


def _center_offset(com: float, size: int) -> int:
    """Integer paste offset putting ``com`` (box coords) nearest CENTRE_OF_MASS,
    clipped so a box of ``size`` px stays fully inside the field."""
    offset = int(np.floor(CENTRE_OF_MASS - com + 0.5))  # round half up, deterministic
    return min(max(offset, 0), IMAGE_SIDE - size)


# The digit is the ink's connected pieces (8-neighbour) that hold at least
# PIECE_MASS of the heaviest piece's ink: a photo's leftovers (the edge of a
# shadow the paper estimate missed, a speck of noise, JPEG ringing) are
# separate and light, and left in they stretch the bounding box, so the digit
# ends up a fraction of its 20 px (bench/photo_digits.py --split validation).
PIECE_MASS = 0.1
# Pieces are found on the mask shrunk (by "any ink in the block") to at most
# PIECES_SIDE px a side: cheap on a photo, and strokes a few px apart stay
# one piece, as a broken pen stroke should.
PIECES_SIDE = 64


def _pieces(mask: np.ndarray) -> np.ndarray:
    """Connected-component labels of ``mask`` (8-neighbour): each True pixel
    gets the smallest flat index in its piece, False ones -1. Min-label
    propagation with pointer jumping: a few dozen NumPy passes at 64 px."""
    h, w = mask.shape
    big = h * w
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        neighbours = np.min([padded[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
                             for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0)
        new = np.where(mask, neighbours, big)
        flat = new.ravel()
        inside = flat < big
        flat[inside] = flat[flat[inside]]   # jump: a label's own label
        if np.array_equal(new, labels):
            return np.where(mask, labels, -1)
        labels = new


def _digit_mask(mask: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """``mask`` without the pieces lighter than PIECE_MASS of the heaviest."""
    if not mask.any():
        return mask
    h, w = mask.shape
    step = max(1, int(np.ceil(max(h, w) / PIECES_SIDE)))
    hs, ws = -(-h // step), -(-w // step)
    padded = np.zeros((hs * step, ws * step), bool)
    padded[:h, :w] = mask
    weights = np.zeros((hs * step, ws * step), np.float64)
    weights[:h, :w] = np.where(mask, ink, 0.0)
    small = padded.reshape(hs, step, ws, step).any(axis=(1, 3))
    mass = weights.reshape(hs, step, ws, step).sum(axis=(1, 3))
    labels = _pieces(small)
    totals = np.bincount(labels[small], weights=mass[small], minlength=hs * ws)
    keep_small = small & (totals[np.maximum(labels, 0)] >= PIECE_MASS * totals.max())
    keep = np.repeat(np.repeat(keep_small, step, axis=0), step, axis=1)[:h, :w]
    return mask & keep


def normalize_digit(image, name: str = "image") -> np.ndarray:
    """MNIST-normalise a digit picture: (784,) float32 in [0, 1], row-major 28x28.

    ``image`` is anything :func:`to_grayscale_ink` accepts.  The recipe:
    ink -> bounding box of ink >= ``INK_THRESHOLD`` in the digit's pieces
    (leftovers lighter than PIECE_MASS of the heaviest piece dropped; see
    :func:`_digit_mask`) -> antialiased resize so
    the longer side is 20 px (aspect ratio kept) -> paste into a 28x28 field
    with the centre of mass at (14, 14) in pixel-index coordinates, shifted by
    whole pixels like MNIST (clipped so the digit is never cut off).

    Raises :class:`FastmlpError` ``"<name>: image is blank (no ink found)"``
    when there is no ink (all white, all black, uniform grey, ...).
    """
    ink = to_grayscale_ink(image, name=name)
    mask = _digit_mask(ink >= INK_THRESHOLD, ink)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise error_at(name, "image is blank (no ink found)")
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = ink[r0:r1, c0:c1]

    small = np.clip(_scale_to_box(box), 0.0, 1.0)
    new_h, new_w = small.shape

    total = float(small.sum())
    if total <= 0.0:  # cannot happen for a non-empty box, but never divide by 0
        raise error_at(name, "image is blank (no ink found)")
    com_r = float(small.sum(axis=1) @ np.arange(new_h)) / total
    com_c = float(small.sum(axis=0) @ np.arange(new_w)) / total
    top = _center_offset(com_r, new_h)
    left = _center_offset(com_c, new_w)

    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    field[top : top + new_h, left : left + new_w] = small
    return field.ravel()


def load_and_normalize(path: str | os.PathLike) -> np.ndarray:
    """Load an image file and MNIST-normalise it: (784,) float32 in [0, 1]."""
    return normalize_digit(load_image(path), name=str(path))

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

from fastmlp.errors import FastmlpError
from fastmlp.memory import require
from fastmlp.safeio import read_regular

__all__ = [
    "load_image",
    "to_grayscale_ink",
    "normalize_digit",
    "load_and_normalize",
    "FIELD_SIZE",
    "BOX_SIZE",
    "CENTER",
    "INK_THRESHOLD",
]

FIELD_SIZE = 28  # MNIST image side
BOX_SIZE = 20  # MNIST digits are scaled so the longer side is 20 px
CENTER = 14.0  # target centre of mass, pixel-index coordinates (see module doc)
# Ink weaker than this is ignored when finding the bounding box, so JPEG noise,
# paper texture and antialiasing fringes don't inflate the box.
INK_THRESHOLD = 0.1
# If no pixel differs from the background by at least this much (on a 0..1
# scale) the image is treated as blank instead of stretching noise up to 1.
MIN_CONTRAST = 0.05

# ITU-R BT.601 luma, the same weights Pillow uses for convert("L").
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _one_line(text: object) -> str:
    """Collapse whitespace so a message never spans several lines."""
    return " ".join(str(text).split())


def _fail(name: object, problem: str) -> FastmlpError:
    return FastmlpError(_one_line(f"{name}: {problem}"))


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
        raise _fail(p, f"image has zero size ({width}x{height})")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise _fail(p, f"image is {width}x{height} pixels; fastmlp reads images of at most "
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
        raise _fail(p, "file is empty (0 bytes)")

    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise _fail(p, f"not a recognised image file (fastmlp reads {', '.join(IMAGE_FORMATS)})") from None
    except Image.DecompressionBombError as exc:
        raise _fail(p, f"image is too large ({exc})") from None
    except Exception as exc:  # any decoder failure is a bad file, not a bug here
        raise _fail(p, f"cannot open image ({type(exc).__name__}: {exc})") from None
    _check_dimensions(p, image.width, image.height)

    try:
        # Image.open is lazy; load() is where truncated/corrupt data shows up.
        image.load()
    except Exception as exc:
        raise _fail(p, f"image is truncated or corrupt ({exc})") from None

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
        raise _fail(
            name,
            f"expected a 2-D grayscale array (or h x w x 3/4 colour), got shape {arr.shape}",
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise _fail(name, f"image has zero size (shape {arr.shape})")

    if arr.dtype == np.uint8:
        a = arr.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float32)
        if not np.isfinite(a).all():
            raise _fail(name, "array contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise _fail(
                name,
                f"float pixel values must be in [0, 1], got range [{lo:.3g}, {hi:.3g}]",
            )
    elif arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        try:
            a = _int_to_unit(arr)
        except ValueError:
            raise _fail(name, "integer pixel values must be non-negative") from None
    else:
        raise _fail(name, f"unsupported array dtype {arr.dtype}")

    if a.ndim == 2:
        return a, None
    gray = a[:, :, :3] @ _LUMA
    alpha = a[:, :, 3] if a.shape[2] == 4 else None
    return gray.astype(np.float32, copy=False), alpha


def _pil_to_gray_alpha(image: Image.Image, name: str):
    """PIL image of any mode -> (gray, alpha-or-None), float32 in [0,1]."""
    if image.width == 0 or image.height == 0:
        raise _fail(name, f"image has zero size ({image.width}x{image.height})")
    mode = image.mode
    has_alpha = "A" in mode or "a" in mode or "transparency" in image.info

    if mode in ("I", "F") or mode.startswith("I;16"):
        # High-bit-depth grayscale: keep the precision, scale by value range.
        a = np.asarray(image)
        if mode == "F":
            a = a.astype(np.float32)
            if not np.isfinite(a).all():
                raise _fail(name, "image contains NaN or infinite values")
            a = a - min(0.0, float(a.min()))
            top = float(a.max())
            if top > 1.0:  # float data of unknown range: scale to its maximum
                a = a / np.float32(top)
            return a, None
        try:
            return _int_to_unit(a.astype(np.int64)), None
        except ValueError:
            raise _fail(name, "negative pixel values in integer image") from None

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
            raise _fail(name, f"unsupported image mode {mode!r}") from None
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
    3. Background = median of the outer 1-2 px frame.  Polarity (dark ink on
       light paper or light on dark) is whichever side of the background holds
       more strong deviation, so grey paper or a dim photo still works.
    4. ``ink = |pixel - background|`` on the ink side, clipped at 0, divided by
       the strongest ink so background -> 0 and the darkest stroke -> 1.  If
       nothing differs from the background by ``MIN_CONTRAST`` the result is
       all zeros (blank) instead of amplified noise.
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

    background = np.float32(np.median(_frame(gray)))
    dev = gray - background
    peak_light = float(dev.max())
    peak_dark = float(-dev.min())
    peak = max(peak_light, peak_dark)
    if peak < MIN_CONTRAST:
        return np.zeros(gray.shape, dtype=np.float32)

    # Sum only strong deviations so sensor noise/paper grain on the "wrong"
    # side cannot outvote a small but clear digit.
    strong = 0.25 * peak
    light_mass = float(np.sum(dev, where=dev > strong))
    dark_mass = float(-np.sum(dev, where=dev < -strong))
    if dark_mass >= light_mass:
        ink = -dev
        peak = peak_dark
    else:
        ink = dev
        peak = peak_light
    if peak < MIN_CONTRAST:
        return np.zeros(gray.shape, dtype=np.float32)
    np.clip(ink, 0.0, None, out=ink)
    ink /= np.float32(peak)
    np.clip(ink, 0.0, 1.0, out=ink)
    return ink.astype(np.float32, copy=False)


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
    """Integer paste offset putting ``com`` (box coords) nearest CENTER,
    clipped so a box of ``size`` px stays fully inside the field."""
    offset = int(np.floor(CENTER - com + 0.5))  # round half up, deterministic
    return min(max(offset, 0), FIELD_SIZE - size)


def normalize_digit(image, name: str = "image") -> np.ndarray:
    """MNIST-normalise a digit picture: (784,) float32 in [0, 1], row-major 28x28.

    ``image`` is anything :func:`to_grayscale_ink` accepts.  The recipe:
    ink -> bounding box of ink >= ``INK_THRESHOLD`` -> antialiased resize so
    the longer side is 20 px (aspect ratio kept) -> paste into a 28x28 field
    with the centre of mass at (14, 14) in pixel-index coordinates, shifted by
    whole pixels like MNIST (clipped so the digit is never cut off).

    Raises :class:`FastmlpError` ``"<name>: image is blank (no ink found)"``
    when there is no ink (all white, all black, uniform grey, ...).
    """
    ink = to_grayscale_ink(image, name=name)
    mask = ink >= INK_THRESHOLD
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise _fail(name, "image is blank (no ink found)")
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = ink[r0:r1, c0:c1]

    small = np.clip(_scale_to_box(box), 0.0, 1.0)
    new_h, new_w = small.shape

    total = float(small.sum())
    if total <= 0.0:  # cannot happen for a non-empty box, but never divide by 0
        raise _fail(name, "image is blank (no ink found)")
    com_r = float(small.sum(axis=1) @ np.arange(new_h)) / total
    com_c = float(small.sum(axis=0) @ np.arange(new_w)) / total
    top = _center_offset(com_r, new_h)
    left = _center_offset(com_c, new_w)

    field = np.zeros((FIELD_SIZE, FIELD_SIZE), dtype=np.float32)
    field[top : top + new_h, left : left + new_w] = small
    return field.ravel()


def load_and_normalize(path: str | os.PathLike) -> np.ndarray:
    """Load an image file and MNIST-normalise it: (784,) float32 in [0, 1]."""
    return normalize_digit(load_image(path), name=str(path))

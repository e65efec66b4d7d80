"""Tests for fastmlp.preprocess: MNIST-style normalisation of arbitrary images.

Centre-of-mass convention used throughout: pixel-index coordinates (pixel
[r, c] has its centre at (r, c)), so the middle of the 28x28 field is
(14, 14).  ``test_mnist_centre_of_mass_convention`` measures this on the
shipped MNIST test set (mean (13.99, 14.01)) so the convention is checked
against the data, not assumed.
"""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from fastmlp.errors import FastmlpError
from fastmlp.preprocess import (
    CENTRE_OF_MASS,
    load_and_normalize,
    load_image,
    normalize_digit,
    to_grayscale_ink,
)

MNIST_TEST_IMAGES = (
    Path(__file__).resolve().parents[1]
    / "fastmlp"
    / "datasets"
    / "mnist"
    / "t10k-images-idx3-ubyte.gz"
)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_test_images() -> np.ndarray:
    with gzip.open(MNIST_TEST_IMAGES, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    return data.reshape(-1, 28, 28)


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    """(row, col) centre of mass in pixel-index coordinates."""
    img = np.asarray(img, dtype=np.float64).reshape(28, 28)
    total = img.sum()
    rows, cols = np.mgrid[0:28, 0:28]
    return float((img * rows).sum() / total), float((img * cols).sum() / total)


def ink_bbox(vec: np.ndarray, threshold: float = 0.0) -> tuple[int, int]:
    """(height, width) of the bounding box of pixels above ``threshold``."""
    img = vec.reshape(28, 28)
    rows = np.flatnonzero((img > threshold).any(axis=1))
    cols = np.flatnonzero((img > threshold).any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def draw_seven(size=280, box=None, ink=0, paper=255, mode="L", width=None) -> Image.Image:
    """A thick '7' inside ``box`` (x0, y0, x1, y1) on a ``size`` canvas."""
    x0, y0, x1, y1 = box or (60, 50, 220, 230)
    img = Image.new(mode, (size, size), paper)
    d = ImageDraw.Draw(img)
    w = width or max(1, (x1 - x0) // 8)
    d.line([(x0, y0), (x1, y0), (x0 + (x1 - x0) // 3, y1)], fill=ink, width=w)
    return img


def draw_zero(size=280, box=None, ink=0, paper=255, mode="L") -> Image.Image:
    x0, y0, x1, y1 = box or (70, 40, 210, 240)
    img = Image.new(mode, (size, size), paper)
    ImageDraw.Draw(img).ellipse((x0, y0, x1, y1), outline=ink, width=max(1, (x1 - x0) // 7))
    return img


def assert_valid(vec: np.ndarray) -> None:
    assert vec.shape == (784,)
    assert vec.dtype == np.float32
    assert np.isfinite(vec).all()
    assert vec.min() >= 0.0 and vec.max() <= 1.0
    assert vec.max() > 0.5  # there is real ink, not just fringe


def assert_one_line_error(excinfo, *fragments: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and "\r" not in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    return msg


# --------------------------------------------------------------------------
# the centre-of-mass convention, measured on MNIST itself
# --------------------------------------------------------------------------


def test_mnist_centre_of_mass_convention(mnist_test_images):
    """MNIST's centre of mass is 14.0 (not 13.5) in pixel-index coordinates,
    and every image is within half a pixel of it (integer shift by the rounded
    centre of mass) -- this is the target normalize_digit uses."""
    imgs = mnist_test_images.astype(np.float64)
    total = imgs.sum(axis=(1, 2))
    idx = np.arange(28)
    com_r = (imgs.sum(axis=2) @ idx) / total
    com_c = (imgs.sum(axis=1) @ idx) / total
    assert CENTRE_OF_MASS == 14.0
    assert abs(com_r.mean() - CENTRE_OF_MASS) < 0.05  # measured 13.993
    assert abs(com_c.mean() - CENTRE_OF_MASS) < 0.05  # measured 14.008
    assert np.abs(com_r - CENTRE_OF_MASS).max() <= 0.51
    assert np.abs(com_c - CENTRE_OF_MASS).max() <= 0.51


# --------------------------------------------------------------------------
# output shape, centring, scaling
# --------------------------------------------------------------------------


def test_output_shape_dtype_range():
    vec = normalize_digit(draw_seven())
    assert_valid(vec)


def test_offset_digit_is_centred():
    # A small '7' squeezed into the bottom-right corner of the canvas.
    vec = normalize_digit(draw_seven(box=(190, 180, 270, 272)))
    assert_valid(vec)
    r, c = centre_of_mass(vec)
    assert abs(r - CENTRE_OF_MASS) <= 1.0 and abs(c - CENTRE_OF_MASS) <= 1.0, (r, c)
    # Integer shift by the rounded centre of mass: within half a pixel.
    assert abs(r - CENTRE_OF_MASS) <= 0.5 + 1e-6 and abs(c - CENTRE_OF_MASS) <= 0.5 + 1e-6


def test_offset_digit_top_left_matches_centred_digit():
    # Position on the canvas must not matter.
    a = normalize_digit(draw_zero(box=(5, 5, 105, 145)))
    b = normalize_digit(draw_zero(box=(150, 120, 250, 260)))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "size, box",
    [
        (200, (95, 90, 105, 100)),  # SMALL: 10x10 digit, upscaled
        (2000, (250, 150, 1650, 1850)),  # LARGE: 1400x1700 digit, downscaled
    ],
    ids=["small-10px", "large-2000px"],
)
def test_longer_side_is_20px(size, box):
    vec = normalize_digit(draw_zero(size=size, box=box))
    assert_valid(vec)
    h, w = ink_bbox(vec, threshold=0.05)
    assert abs(max(h, w) - 20) <= 1, (h, w)
    r, c = centre_of_mass(vec)
    assert abs(r - CENTRE_OF_MASS) <= 1.0 and abs(c - CENTRE_OF_MASS) <= 1.0


def test_tall_thin_one_keeps_aspect_ratio():
    img = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(img).rectangle((130, 30, 145, 250), fill=0)  # 16 x 221 px
    vec = normalize_digit(img)
    assert_valid(vec)
    h, w = ink_bbox(vec, threshold=0.05)
    assert h == 20
    assert w <= 3, w  # 16/221 * 20 ~ 1.5 px, not stretched to a square
    r, c = centre_of_mass(vec)
    assert abs(r - CENTRE_OF_MASS) <= 0.5 + 1e-6 and abs(c - CENTRE_OF_MASS) <= 0.5 + 1e-6


def test_whole_digit_stays_inside_field():
    # A lopsided shape whose centre of mass is far from its box centre:
    # the paste offset is clipped so nothing is cut off.
    img = Image.new("L", (280, 280), 255)
    d = ImageDraw.Draw(img)
    d.rectangle((40, 40, 240, 80), fill=0)  # heavy top bar
    d.line([(40, 80), (40, 240)], fill=0, width=2)  # thin leg
    vec = normalize_digit(img).reshape(28, 28)
    assert vec.sum() > 0
    h, w = ink_bbox(vec.ravel(), threshold=0.05)
    assert max(h, w) >= 19  # nothing cropped away


# --------------------------------------------------------------------------
# polarity, colour modes, alpha, arrays
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_seven() -> np.ndarray:
    return normalize_digit(draw_seven())


def test_inverted_gives_same_result(reference_seven):
    inverted = draw_seven(ink=255, paper=0)
    np.testing.assert_allclose(normalize_digit(inverted), reference_seven, atol=1e-6)


def test_grey_paper_and_grey_ink_give_same_result(reference_seven):
    # A dim photo: background and ink levels are rescaled away.
    grey = draw_seven(ink=40, paper=170)
    np.testing.assert_allclose(normalize_digit(grey), reference_seven, atol=1e-5)


def test_rgba_transparent_background_black_ink(reference_seven):
    img = draw_seven(mode="RGBA", ink=(0, 0, 0, 255), paper=(0, 0, 0, 0))
    np.testing.assert_allclose(normalize_digit(img), reference_seven, atol=1e-6)


@pytest.mark.parametrize(
    "ink, hidden",
    [((255, 255, 255, 255), (0, 0, 0, 0)), ((220, 30, 30, 255), (255, 255, 255, 0))],
    ids=["white-ink", "red-ink"],
)
def test_rgba_ink_colour_does_not_matter(reference_seven, ink, hidden):
    # Opaque ink on a transparent background is ink whatever its colour, and
    # whatever RGB the transparent pixels happen to hold.
    img = draw_seven(mode="RGBA", ink=ink, paper=hidden)
    np.testing.assert_allclose(normalize_digit(img), reference_seven, atol=1e-6)


def test_rgba_partial_alpha_is_coverage():
    # Half-transparent black ink is half as strong as opaque black ink
    # (before the final rescale, which maps the strongest ink to 1).
    arr = np.zeros((50, 50, 4), dtype=np.uint8)
    arr[10:20, 10:40, 3] = 255
    arr[30:40, 10:40, 3] = 128
    ink = to_grayscale_ink(Image.fromarray(arr, "RGBA"))
    assert ink[15, 20] == pytest.approx(1.0)
    assert ink[35, 20] == pytest.approx(128 / 255, abs=1e-3)
    assert ink[0, 0] == 0.0


def test_rgba_opaque_white_paper_with_transparent_holes(reference_seven):
    # Mostly-opaque white paper: transparent pixels merge into the paper.
    img = draw_seven(mode="RGBA", ink=(0, 0, 0, 255), paper=(255, 255, 255, 255))
    ImageDraw.Draw(img).rectangle((0, 260, 20, 279), fill=(0, 0, 0, 0))
    np.testing.assert_allclose(normalize_digit(img), reference_seven, atol=1e-6)


def test_la_image(reference_seven):
    img = draw_seven(mode="LA", ink=(0, 255), paper=(0, 0))
    np.testing.assert_allclose(normalize_digit(img), reference_seven, atol=1e-6)


def test_rgb_coloured_ink_on_white(reference_seven):
    img = draw_seven(mode="RGB", ink=(10, 20, 140), paper=(255, 255, 255))
    np.testing.assert_allclose(normalize_digit(img), reference_seven, atol=1e-5)


def test_palette_image(reference_seven):
    img = draw_seven().convert("P")
    assert img.mode == "P"
    np.testing.assert_allclose(normalize_digit(img), reference_seven, atol=1e-6)


def test_palette_image_with_transparency(reference_seven):
    img = Image.new("P", (280, 280), 0)
    img.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # 0 = white, 1 = black
    d = ImageDraw.Draw(img)
    d.line([(60, 50), (220, 50), (113, 230)], fill=1, width=20)
    img.info["transparency"] = 0
    np.testing.assert_allclose(normalize_digit(img), reference_seven, atol=1e-6)


def test_bilevel_and_16bit_images(reference_seven):
    np.testing.assert_allclose(
        normalize_digit(draw_seven().convert("1")), reference_seven, atol=1e-6
    )
    arr16 = np.asarray(draw_seven(), dtype=np.uint16) * 257
    img16 = Image.fromarray(arr16)
    assert img16.mode.startswith("I;16")
    np.testing.assert_allclose(normalize_digit(img16), reference_seven, atol=1e-6)


def test_numpy_arrays(reference_seven):
    arr = np.asarray(draw_seven())
    assert arr.dtype == np.uint8
    np.testing.assert_allclose(normalize_digit(arr), reference_seven, atol=1e-6)
    np.testing.assert_allclose(
        normalize_digit(arr.astype(np.float64) / 255), reference_seven, atol=1e-6
    )


def test_to_grayscale_ink_basics():
    ink = to_grayscale_ink(draw_seven(size=100, box=(20, 20, 80, 80)))
    assert ink.shape == (100, 100) and ink.dtype == np.float32
    assert ink[0, 0] == 0.0 and ink.max() == 1.0
    assert ink[20, 50] == 1.0  # on the top bar


def test_bad_array_input():
    with pytest.raises(FastmlpError) as excinfo:
        normalize_digit(np.full((10, 10), 3.0), name="canvas")
    assert_one_line_error(excinfo, "canvas", "[0, 1]")
    with pytest.raises(FastmlpError) as excinfo:
        normalize_digit(np.zeros((0, 5), dtype=np.uint8), name="canvas")
    assert_one_line_error(excinfo, "canvas", "zero size")
    with pytest.raises(FastmlpError):
        normalize_digit(np.zeros((2, 3, 4, 5), dtype=np.uint8))
    with pytest.raises(TypeError):
        normalize_digit("not an image object")


def test_zero_size_pil_image():
    with pytest.raises(FastmlpError) as excinfo:
        normalize_digit(Image.new("L", (0, 10)), name="empty.png")
    assert_one_line_error(excinfo, "empty.png", "zero size")


# --------------------------------------------------------------------------
# files and errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_load_and_normalize_file_formats(tmp_path, reference_seven, fmt):
    path = tmp_path / f"seven.{fmt.lower()}"
    draw_seven().save(path, format=fmt)
    img = load_image(path)
    assert isinstance(img, Image.Image)
    vec = load_and_normalize(path)
    assert_valid(vec)
    if fmt != "JPEG":
        np.testing.assert_allclose(vec, reference_seven, atol=1e-6)
        return
    # JPEG ringing can widen the ink box by a pixel on the 280 px canvas and tip
    # the rounded centre-of-mass shift by one whole pixel (measured: quality 75
    # moves the column centre of mass 13.93 -> 14.43).  Compare up to a 1-px
    # shift; aligned, the difference is tiny.
    best = min(
        np.abs(np.roll(vec.reshape(28, 28), (dr, dc), axis=(0, 1)) - reference_seven.reshape(28, 28)).mean()
        for dr in (-1, 0, 1)
        for dc in (-1, 0, 1)
    )
    assert best < 0.01, best
    r, c = centre_of_mass(vec)
    assert abs(r - CENTRE_OF_MASS) <= 0.5 + 1e-6 and abs(c - CENTRE_OF_MASS) <= 0.5 + 1e-6


@pytest.mark.parametrize(
    "paper",
    [255, 0, 128],
    ids=["white", "black", "grey"],
)
def test_blank_images_raise(tmp_path, paper):
    path = tmp_path / f"blank_{paper}.png"
    Image.new("L", (280, 280), paper).save(path)
    with pytest.raises(FastmlpError) as excinfo:
        load_and_normalize(path)
    assert_one_line_error(excinfo, str(path), "blank")


def test_blank_in_memory_uses_name():
    with pytest.raises(FastmlpError) as excinfo:
        normalize_digit(np.full((280, 280), 255, dtype=np.uint8))
    assert str(excinfo.value) == "image: image is blank (no ink found)"
    with pytest.raises(FastmlpError) as excinfo:
        normalize_digit(Image.new("RGBA", (50, 50), (0, 0, 0, 0)), name="canvas")
    assert_one_line_error(excinfo, "canvas", "blank")


def test_faint_noise_is_blank():
    # JPEG-like +-2 levels of noise on white paper is not a digit.
    rng = np.random.default_rng(0)
    arr = (253 + rng.integers(-2, 3, size=(100, 100))).astype(np.uint8)
    with pytest.raises(FastmlpError, match="blank"):
        normalize_digit(arr)


def test_non_image_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"this is not a picture\nsecond line\n")
    with pytest.raises(FastmlpError) as excinfo:
        load_image(path)
    assert_one_line_error(excinfo, str(path), "not a recognised image")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(FastmlpError) as excinfo:
        load_and_normalize(path)
    assert_one_line_error(excinfo, str(path), "empty")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(FastmlpError) as excinfo:
        load_and_normalize(path)
    assert_one_line_error(excinfo, str(path), "not found")


def test_directory(tmp_path):
    with pytest.raises(FastmlpError) as excinfo:
        load_image(tmp_path)
    assert_one_line_error(excinfo, str(tmp_path))


def test_truncated_file(tmp_path):
    buf = io.BytesIO()
    draw_seven().save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(FastmlpError) as excinfo:
        load_image(path)
    assert_one_line_error(excinfo, str(path), "truncated or corrupt")


# --------------------------------------------------------------------------
# MNIST round trip and speed
# --------------------------------------------------------------------------


def test_mnist_images_are_nearly_reproduced(mnist_test_images):
    """MNIST digits are already normalised, so the recipe nearly reproduces
    them.  Measured over the whole test set: mean absolute difference 0.0003,
    99.65 % of images below 0.01; the rest differ by a one-pixel shift
    (centre of mass right at a .5 rounding boundary) and score 0.05-0.12.
    The bounds below leave ~10x headroom over those measurements."""
    imgs = mnist_test_images[:200]
    maes = np.array(
        [np.abs(normalize_digit(im).reshape(28, 28) - im / 255.0).mean() for im in imgs]
    )
    assert maes.mean() < 0.005
    assert np.median(maes) < 1e-3
    assert (maes < 0.01).mean() >= 0.95


def test_fast_enough_for_a_drawing_canvas():
    canvas = np.asarray(draw_seven())
    normalize_digit(canvas)  # warm-up
    start = time.perf_counter()
    for _ in range(20):
        normalize_digit(canvas)
    per_call = (time.perf_counter() - start) / 20
    # Measured ~0.3 ms; generous bound so a loaded CI machine does not flake.
    assert per_call < 0.02, per_call


# --------------------------------------------------------------------------
# the digit's pieces: leftovers of a photo do not set the bounding box
# --------------------------------------------------------------------------


def _flood_fill_pieces(mask: np.ndarray) -> list[set]:
    """The 8-connected pieces of ``mask`` by a plain flood fill (the test's own)."""
    seen, pieces = np.zeros_like(mask), []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        piece, stack = set(), [start]
        seen[start] = True
        while stack:
            r, c = stack.pop()
            piece.add((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    q = (r + dr, c + dc)
                    if (0 <= q[0] < mask.shape[0] and 0 <= q[1] < mask.shape[1]
                            and mask[q] and not seen[q]):
                        seen[q] = True
                        stack.append(q)
        pieces.append(piece)
    return pieces


@pytest.mark.parametrize("seed", range(6))
def test_pieces_are_the_connected_components(seed):
    from fastmlp.preprocess import _pieces
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(5, 40, 2))
    mask = rng.random(shape) < rng.uniform(0.2, 0.6)
    labels = _pieces(mask)
    assert (labels[~mask] == -1).all()
    expected = sorted(sorted(p) for p in _flood_fill_pieces(mask))
    got = sorted(sorted(zip(*np.nonzero(labels == value))) for value in np.unique(labels[mask]))
    assert got == expected


def _on_canvas(digit: np.ndarray, side: int, at: tuple[int, int]) -> np.ndarray:
    """A 28x28 MNIST digit (0..255) pasted 4x larger into a white side x side
    picture, dark ink, at (row, col)."""
    big = np.kron(digit.astype(np.float32) / 255, np.ones((4, 4), np.float32))
    canvas = np.ones((side, side), np.float32)
    canvas[at[0]:at[0] + 112, at[1]:at[1] + 112] -= big
    return canvas


@pytest.mark.parametrize("index", range(0, 60, 6))
def test_a_speck_far_from_the_digit_does_not_shrink_it(mnist_test_images, index):
    """Photos leave small, faint leftovers (a shadow's edge, noise, a speck of
    dust) away from the digit; in the bounding box they shrink the digit to
    a fraction of its 20 px. A leftover of under a tenth of the digit's ink
    is dropped: the result is the digit's alone, the same box and centre
    (its ink levels may move by a fraction of a percent: the speck's dark
    pixels are among those the ink's strength is estimated from)."""
    rng = np.random.default_rng(index)
    digit = mnist_test_images[index]
    clean = _on_canvas(digit, 320, (100, 100))
    alone = normalize_digit(clean)
    specked = clean.copy()
    mass = float((digit / 255).sum()) * 16   # the digit's ink on the canvas
    size = max(2, int(np.sqrt(0.05 * mass)))  # a square of ~5% of that ink
    corner = [(4, 4), (4, 300), (300, 4), (300, 300)][rng.integers(4)]
    specked[corner[0]:corner[0] + size, corner[1]:corner[1] + size] = 0.0
    got = normalize_digit(specked)
    np.testing.assert_array_equal(got > 0.05, alone > 0.05)
    np.testing.assert_allclose(got, alone, atol=0.01)


def test_a_digit_in_two_heavy_pieces_keeps_both():
    """A 5 whose top bar does not touch its body, a 4 drawn in two strokes:
    pieces of comparable ink are all the digit, so the box spans them."""
    image = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(60, 40), (140, 40)], fill=0, width=14)      # the bar, apart
    draw.line([(70, 80), (70, 160), (130, 160)], fill=0, width=14)
    field = normalize_digit(np.asarray(image)).reshape(28, 28)
    rows = np.flatnonzero(field.max(axis=1) > 0.1)
    assert rows[-1] - rows[0] + 1 >= 19   # the whole 20 px height: bar and body both


# --------------------------------------------------------------------------
# polarity under a shadow: the lit part of the page is not light ink
# --------------------------------------------------------------------------


def _half_in_shadow(digit: np.ndarray, rng, chalk: bool) -> np.ndarray:
    """An MNIST digit (0..255) 4x larger on a 240 px page of which a blurred
    half-plane (random direction, 55-85% of the page) is 15-35% darker, so
    the frame's median lies in the shadow: dark ink on paper, or light chalk
    on a dark board (``chalk``); a little noise."""
    side = 240
    y, x = np.mgrid[0:side, 0:side] / side - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    along = np.cos(angle) * x + np.sin(angle) * y
    cut = np.quantile(along, 1 - rng.uniform(0.55, 0.85))   # the shadow's share
    shadow = Image.fromarray(((along > cut) * 255).astype(np.uint8))
    shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(rng.uniform(3, 15)))) / 255
    paper, ink = (rng.uniform(0.1, 0.3), rng.uniform(0.7, 0.95)) if chalk else \
        (rng.uniform(0.6, 0.95), rng.uniform(0.05, 0.3))
    coverage = np.zeros((side, side))
    top, left = rng.integers(8, side - 112 - 8, 2)
    coverage[top:top + 112, left:left + 112] = np.kron(digit / 255, np.ones((4, 4)))
    grey = (paper * (1 - coverage) + ink * coverage) * (1 - rng.uniform(0.15, 0.35) * shadow)
    return np.clip(grey + rng.normal(0, 0.01, grey.shape), 0, 1).astype(np.float32)


SHADOW_PAGES = range(24)


def _shadow_cosines(mnist_test_images) -> list[float]:
    """Cosine of each shadowed page's normalized digit to the clean one's."""
    cosines = []
    for seed in SHADOW_PAGES:
        rng = np.random.default_rng(seed)
        digit = mnist_test_images[rng.integers(len(mnist_test_images))]
        clean = normalize_digit(digit)
        got = normalize_digit(_half_in_shadow(digit, rng, chalk=seed % 2 == 1))
        cosines.append(float(got @ clean / (np.linalg.norm(got) * np.linalg.norm(clean))))
    return cosines


def test_a_page_mostly_in_shadow_keeps_its_ink_and_its_paper(mnist_test_images):
    """Dark ink (chalk on a board for odd seeds) on a page whose larger part
    lies in shadow. Against the frame's median (in the shadow) the lit part
    stood out as bright, read as light ink it became the 'digit'; and with
    the median absolute deviation ignoring the lit minority of the frame,
    the page passed for evenly lit, its shadow read as ink. Either way the
    result was nothing like the digit (cosine to the clean digit's 0.04-0.5
    on 43% of 200 such pages; the shipped model read 60% of them as it reads
    the clean digit). Now every page gives the digit: the lowest cosine on
    those 200 was 0.69 (a shadow edge across the digit, the board's noise),
    the model reads 99% of them alike."""
    cosines = _shadow_cosines(mnist_test_images)
    assert min(cosines) > 0.5, [round(c, 2) for c in cosines]
    assert float(np.median(cosines)) > 0.95, [round(c, 2) for c in cosines]

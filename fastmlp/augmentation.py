"""Data augmentation: what to randomize and the random numbers of one epoch.

``AugmentConfig`` is the ``--augment`` flag; ``sample_params`` draws one
epoch's random numbers.

The kernels (a backend's ``augment``, see kernels/augment_numpy.py) draw no
random numbers: every one is drawn here, from a ``np.random.Generator``, so
the reference and the compiled kernel see identical parameters and an epoch's
augmented images are a function of (seed, epoch) alone.

Per image, the output pixel p = (row, col) samples the source at

    A [p - centre; 1] + centre + d(p),    A = inverse of  shift o rotate o shear o scale,

d a smooth random displacement (elastic distortion, Simard et al. 2003), and
the result is then thickened or thinned by a fraction t of a 3x3 grey
dilation or erosion. Before all that, a fraction of the images may be
re-drawn with a pen along their centre lines (kernels/pen_numpy.py).
"""

import dataclasses
import math

import numpy as np

from fastmlp.errors import FastmlpError
from fastmlp.model import IMAGE_SIDE

# Key (a field of AugmentConfig) -> (lo, hi, whether hi itself is allowed,
# how to say it). Order: the canonical spec order.
_LIMITS = {
    "rotate": (0, 180, True, "degrees in [0, 180]"),
    "scale": (0, 1, False, "a fraction in [0, 1)"),
    "shear": (0, 60, True, "degrees in [0, 60]"),
    "shift": (0, 14, True, "pixels in [0, 14]"),
    "elastic": (0, 14, True, "pixels in [0, 14]"),
    "grid": (2, IMAGE_SIDE, True, f"an integer in [2, {IMAGE_SIDE}]"),
    "thickness": (0, 1, True, "a fraction in [0, 1]"),
    "pen": (0, 1, True, "a fraction of the images in [0, 1]"),
}
# The pen's radius, uniform in this range (pixels of the 28x28 image): from
# a fine pen (a 1-px line) to a marker (5 px), as the app's pen widths
# (4..40 px on the 280-px canvas) come out for digits of 100 to 250 px.
PEN_RADII = (0.5, 2.5)
# The centre lines are traced on a grid of twice the image's side: 56 x 56.
PEN_LINE_PIXELS = 4 * IMAGE_SIDE * IMAGE_SIDE


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Strength of each random change; 0 turns it off. Per image:

    rotate     angle uniform in [-rotate, rotate] degrees;
    scale      zoom uniform in [1 - scale, 1 + scale];
    shear      horizontal shear angle uniform in [-shear, shear] degrees;
    shift      translation uniform in [-shift, shift] pixels, each axis;
    elastic    control-point displacements uniform in [-elastic, elastic]
               pixels, each axis (the largest displacement of any pixel);
    grid       control points per side of the elastic grid (>= 2; fewer is
               smoother: neighbouring points are 27 / (grid - 1) pixels apart);
    thickness  t uniform in [-thickness, thickness]: t > 0 moves the image a
               fraction t towards its 3x3 dilation (thicker strokes), t < 0
               towards its erosion (thinner);
    pen        the fraction of images re-drawn, before the warp, along the
               centre line of their ink with a round pen of radius uniform
               in PEN_RADII (a backend's skeleton and pen_strokes ops): one
               stroke width across the digit, as drawn in the app.
    """

    rotate: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    shift: float = 0.0
    elastic: float = 0.0
    grid: int = 4
    thickness: float = 0.0
    pen: float = 0.0

    def __post_init__(self):
        for key in _LIMITS:
            _check(key, getattr(self, key))
        object.__setattr__(self, "grid", int(self.grid))

    @property
    def enabled(self) -> bool:
        """True if any change is on (grid alone changes nothing)."""
        return any(getattr(self, key) for key in _LIMITS if key != "grid")

    def spec(self) -> str:
        """The canonical --augment value: "none", or key=value for every change
        that is on (grid only with elastic). parse(c.spec()) == c."""
        if not self.enabled:
            return "none"
        items = [f"{key}={_number(getattr(self, key))}" for key in _LIMITS
                 if getattr(self, key) and (key != "grid" or self.elastic)]
        return ",".join(items)


def _number(value) -> str:
    """The shortest text that parses back to value: 12, 0.1, 2.5."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _check(key, value):
    lo, hi, closed, meaning = _LIMITS[key]
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and lo <= value and (value <= hi if closed else value < hi)
          and (key != "grid" or float(value).is_integer()))
    if not ok:
        shown = _number(value) if isinstance(value, (int, float)) else repr(value)
        raise FastmlpError(f"--augment {key}={shown}: must be {meaning}")


DEFAULT = AugmentConfig(rotate=12.0, scale=0.1, shear=8.0, shift=2.0, elastic=2.0, grid=4,
                        thickness=0.5)
NONE = AugmentConfig()
PRESETS = {"default": DEFAULT, "none": NONE}


def parse(spec: str) -> AugmentConfig:
    """The AugmentConfig of an --augment value: comma-separated items, each a
    preset ("default", "none") or key=value, applied left to right from
    "none". So "rotate=10" rotates only, "default,elastic=0" is the default
    without the elastic distortion. Keys: rotate, scale, shear, shift,
    elastic, grid, thickness, pen. A bad item is a one-line FastmlpError."""
    values = dataclasses.asdict(NONE)
    items = [item.strip() for item in str(spec).split(",")]
    if not any(items):
        raise FastmlpError(f"--augment {spec!r}: empty; use default, none or key=value,... "
                           f"(keys: {', '.join(_LIMITS)})")
    for item in items:
        if item in PRESETS:
            values = dataclasses.asdict(PRESETS[item])
            continue
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise FastmlpError(f"--augment {item!r}: expected default, none or key=value "
                               f"(keys: {', '.join(_LIMITS)})")
        if key not in _LIMITS:
            raise FastmlpError(f"--augment {key}: unknown key; available: {', '.join(_LIMITS)}")
        try:
            value = float(text)
        except ValueError:
            raise FastmlpError(f"--augment {key}={text.strip()}: not a number") from None
        _check(key, value)
        values[key] = value
    return AugmentConfig(**values)


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Every random number of one augmentation call, for n images.

    A: (n, 2, 3) float32, per image the inverse affine map: output pixel
       p = (row, col) samples the source at A[:, :2] @ (p - centre) + A[:, 2]
       + centre (+ the elastic displacement), centre = (13.5, 13.5).
    D: (n, G, G, 2) float32, the elastic control grids (row, col
       displacements in pixels), upsampled bilinearly by the kernel.
    thickness: (n,) float32, t per image.
    radius: (n,) float32, the pen's radius per image; 0: the image is kept
       as it is (not re-drawn).
    """

    A: np.ndarray
    D: np.ndarray
    thickness: np.ndarray
    radius: np.ndarray


def sample_params(config: AugmentConfig, n: int, rng: np.random.Generator) -> AugmentParams:
    """Draw the parameters of n images from rng, in a fixed order: angles,
    zooms, shears, shifts, thicknesses (each drawn even at strength 0), then
    the elastic grids (skipped at strength 0: they are most of the numbers),
    then which images the pen re-draws and its radii (skipped at pen 0).
    The skipped ones come last, so that skipping them changes nothing
    else: turning a change off leaves the others' random numbers as they
    were (and runs from before the pen existed see the same numbers).

    The forward map (source -> output, about the centre c) is
        p_out = F (p_src - c) + c + shift,   F = R(angle) Shear(shear) zoom,
    in (row, col) coordinates, Shear adding tan(shear) * row to col; A holds
    its inverse, [F^-1 | -F^-1 shift]."""
    angle = np.deg2rad(rng.uniform(-config.rotate, config.rotate, n))
    zoom = rng.uniform(1 - config.scale, 1 + config.scale, n)
    shear = np.deg2rad(rng.uniform(-config.shear, config.shear, n))
    shift = rng.uniform(-config.shift, config.shift, (n, 2))
    thickness = rng.uniform(-config.thickness, config.thickness, n).astype(np.float32)
    G = config.grid
    if config.elastic:
        # 2u - 1 maps uniform [0, 1) onto [-1, 1). float32 draws: the fast
        # generator path, and the kernels' dtype anyway.
        D = rng.random((n, G, G, 2), dtype=np.float32)
        D *= np.float32(2.0)
        D -= np.float32(1.0)
        D *= np.float32(config.elastic)
    else:
        D = np.zeros((n, G, G, 2), np.float32)

    # F^-1 = zoom^-1 Shear(-shear) R(-angle), in closed form (np.linalg.inv
    # of 60000 2x2 matrices would cost more than the whole warp).
    cos, sin, tan = np.cos(angle), np.sin(angle), np.tan(shear)
    A = np.empty((n, 2, 3))
    A[:, 0, 0], A[:, 0, 1] = cos / zoom, sin / zoom      # R(-angle) / zoom, then
    A[:, 1, 0] = (-sin - tan * cos) / zoom               # row 1 -= tan * row 0
    A[:, 1, 1] = (cos - tan * sin) / zoom
    for row in (0, 1):
        A[:, row, 2] = -(A[:, row, 0] * shift[:, 0] + A[:, row, 1] * shift[:, 1])
    radius = np.zeros(n, np.float32)
    if config.pen:
        drawn = rng.random(n) < config.pen
        radius[drawn] = rng.uniform(*PEN_RADII, int(drawn.sum()))
    return AugmentParams(A.astype(np.float32), D, thickness, radius)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of ``epoch``'s augmentation: seeded by (seed, epoch, 1),
    independent of epoch_order's (seed, epoch), and restored from those
    numbers alone on resume."""
    return np.random.default_rng([seed, epoch, 1])

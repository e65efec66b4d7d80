"""Pictures of the network's insides as RGB arrays, and their geometry.

No Tk here: fastmlp.gui.inside shows them, tests check them without a display.

Every picture is (height, width, 3) uint8; ``ppm`` turns one into the bytes
a Tk PhotoImage reads directly (binary PPM: no compression, ~0.5 ms for the
largest picture here, against several ms for PNG).

Colours: values that can be negative (weights, saliency) use matplotlib's
diverging "RdBu_r" map centred on 0 (blue negative, white 0, red positive),
scaled by the largest |value| shown, so the sign reads at a glance and white
is always exactly zero. Activations (>= 0) use "magma" from 0 to the layer's
largest activation, so the units that fire stand out on a dark grid.
"""

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from matplotlib import colormaps

from fastmlp.model import IMAGE_SIDE

LEVELS = 256
_DIVERGING = np.round(colormaps["RdBu_r"](np.linspace(0, 1, LEVELS))[:, :3] * 255).astype(np.uint8)
_SEQUENTIAL = np.round(colormaps["magma"](np.linspace(0, 1, LEVELS))[:, :3] * 255).astype(np.uint8)
_SEQUENTIAL_HEX = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in _SEQUENTIAL]


def ppm(rgb: np.ndarray) -> bytes:
    """rgb: (h, w, 3) uint8 -> binary PPM (P6) bytes."""
    h, w, _ = rgb.shape
    return b"P6 %d %d 255\n" % (w, h) + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()


def diverging(values, scale=None) -> np.ndarray:
    """values: any shape -> (..., 3) uint8 on RdBu_r, 0 white, +-scale
    saturated (default scale: max |values|; all zeros stay white)."""
    values = np.asarray(values, dtype=np.float64)
    scale = np.abs(values).max() if scale is None else scale
    if not scale > 0:
        return np.take(_DIVERGING, _levels(np.full(values.shape, 0.5)), axis=0)
    t = np.multiply(values, 0.5)  # 0.5 + 0.5 * values / scale, in place
    t /= scale
    t += 0.5
    return np.take(_DIVERGING, _levels(t), axis=0)


def sequential(values, top=None) -> np.ndarray:
    """values >= 0: any shape -> (..., 3) uint8 on magma, 0 dark, ``top``
    (default: max) bright."""
    values = np.asarray(values, dtype=np.float64)
    top = values.max() if top is None else top
    if not top > 0:
        return np.take(_SEQUENTIAL, np.zeros(values.shape, np.intp), axis=0)
    return np.take(_SEQUENTIAL, _levels(values / top), axis=0)


def sequential_hex(values, top=None) -> list[str]:
    """sequential() as Tk colour names "#rrggbb", one per value (from a table:
    no formatting on every answer)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    top = values.max() if top is None else top
    levels = _levels(values / top) if top > 0 else np.zeros(values.shape, np.intp)
    return [_SEQUENTIAL_HEX[k] for k in levels.tolist()]


def _levels(t: np.ndarray) -> np.ndarray:
    """t: float64 in [0, 1] (overwritten) -> the nearest of LEVELS colour indices."""
    t *= LEVELS - 1
    np.round(t, out=t)
    np.clip(t, 0, LEVELS - 1, out=t)
    return t.astype(np.intp)


@dataclass(frozen=True)
class Grid:
    """``count`` square cells of ``cell`` px, ``columns`` per row, ``gap`` px
    between them (and none around): the layout of an activation grid and of
    the weight tiles, shared by the drawing and the mouse's hit test."""

    count: int
    columns: int
    cell: int
    gap: int = 1

    @property
    def rows(self) -> int:
        return math.ceil(self.count / self.columns)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in px."""
        pitch = self.cell + self.gap
        return self.columns * pitch - self.gap, self.rows * pitch - self.gap

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left (x, y) px of cell ``index``."""
        pitch = self.cell + self.gap
        return (index % self.columns) * pitch, (index // self.columns) * pitch

    def index_at(self, x: float, y: float) -> int | None:
        """The cell under pixel (x, y), or None (a gap, or outside)."""
        pitch = self.cell + self.gap
        if x < 0 or y < 0:
            return None
        column, row = int(x // pitch), int(y // pitch)
        if column >= self.columns or x - column * pitch >= self.cell or y - row * pitch >= self.cell:
            return None
        index = row * self.columns + column
        return index if index < self.count else None

    @cached_property
    def _cells(self) -> np.ndarray:
        """(height, width) intp: the cell under each pixel, ``count`` on a gap
        or a spare cell (computed once per layout)."""
        width, height = self.size
        pitch = self.cell + self.gap
        x, y = np.arange(width), np.arange(height)
        column, row = x // pitch, y // pitch
        cells = row[:, None] * self.columns + column[None, :]
        inside = ((y % pitch < self.cell)[:, None] & (x % pitch < self.cell)[None, :]
                  & (cells < self.count))
        return np.where(inside, cells, self.count).astype(np.intp)

    @cached_property
    def _pixels(self) -> np.ndarray:
        """(height, width) intp: each pixel's place in (count, cell, cell)
        pictures laid flat, count * cell * cell on a gap or a spare cell."""
        width, height = self.size
        pitch, c = self.cell + self.gap, self.cell
        x, y = np.arange(width), np.arange(height)
        within = (y % pitch)[:, None] * c + (x % pitch)[None, :]
        cells = self._cells
        return np.where(cells < self.count, cells * c * c + within, self.count * c * c).astype(np.intp)

    def paint(self, colours: np.ndarray, background=(40, 40, 40)) -> np.ndarray:
        """colours: (count, cell, cell, 3) or (count, 3) uint8 -> the grid's
        (height, width, 3) picture, gaps and spare cells in ``background``.
        One lookup per pixel through the layout's cached index map, no loop
        over cells: this runs on every answer."""
        flat = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
        palette = np.empty((len(flat) + 1, 3), np.uint8)
        palette[:-1] = flat
        palette[-1] = background
        # np.take along an axis: several times faster than palette[index].
        return np.take(palette, self._cells if colours.ndim == 2 else self._pixels, axis=0)


def columns_for(count: int) -> int:
    """Columns of an activation grid: twice as wide as tall (128 -> 16x8,
    64 -> 12x6), so that every layer fits one strip of the panel."""
    return max(1, math.ceil(math.sqrt(2 * count)))


def activation_picture(values, grid: Grid) -> np.ndarray:
    """values: (count,) one layer's activations -> its grid, each cell lit by its value."""
    return grid.paint(sequential(values))


def tiles_picture(W0, grid: Grid) -> np.ndarray:
    """W0: (784, units) the first layer's weights -> one 28x28 tile per unit
    (its incoming weights as an image), upscaled to grid.cell px (nearest).
    Each tile on its own diverging scale (its max |w|): on one shared scale
    a few large weights wash every other tile out to white."""
    tiles = np.asarray(W0, dtype=np.float64).T.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    scale = np.abs(tiles).max(axis=(1, 2), keepdims=True)
    tiles = diverging(np.divide(tiles, scale, out=np.zeros_like(tiles), where=scale > 0), 1.0)
    if grid.cell == IMAGE_SIDE:  # one pixel per weight (the seed network's 128 units)
        return grid.paint(tiles)
    repeat = grid.cell / IMAGE_SIDE
    index = np.minimum((np.arange(grid.cell) / repeat).astype(np.intp), IMAGE_SIDE - 1)
    return grid.paint(np.take(np.take(tiles, index, axis=1), index, axis=2))


def saliency_picture(x, grad, size: int) -> np.ndarray:
    """x: (784,) the input, grad: (784,) its saliency -> (size, size, 3): the
    saliency on the diverging scale (red: more ink here raises the class's
    score, blue: lowers it), with the input's ink drawn over it in dark grey
    at half strength so one sees where the strokes are."""
    colour = diverging(np.asarray(grad).reshape(IMAGE_SIDE, IMAGE_SIDE)).astype(np.float64)
    ink = np.clip(np.asarray(x, dtype=np.float64).reshape(IMAGE_SIDE, IMAGE_SIDE, 1), 0, 1) * 0.5
    mixed = np.round(colour * (1 - ink) + 40.0 * ink).astype(np.uint8)  # 28x28, then upscaled
    index = np.minimum((np.arange(size) * IMAGE_SIDE) // size, IMAGE_SIDE - 1)
    return np.take(np.take(mixed, index, axis=0), index, axis=1)

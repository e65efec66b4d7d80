"""Pen strokes as pixels: the one place that decides what a stroke looks like to the network.

No Tk here: the drawing canvas (fastmlp.gui.canvas) and the drawn-digit
benchmark (bench/drawn_digits.py) both paint with these functions.

A stroke is painted as a round pen tip at its first point, then one segment
per later point, each ending in a round cap: consecutive segments join
smoothly however sharp the turn (a round joint at every vertex), and a click
alone is a dot.
"""

from dataclasses import dataclass, field

from PIL import Image, ImageDraw

SIZE = 280  # canvas side in px; 10x MNIST's 28
INK, PAPER = 0, 255  # black on white, like pen on paper; preprocess finds the polarity


@dataclass
class Stroke:
    """One press-drag-release: points [(x, y), ...] in canvas pixels, pen width in px."""

    width: int
    points: list = field(default_factory=list)


def paint_dot(draw: ImageDraw.ImageDraw, point, width: int) -> None:
    """A round pen tip of diameter ``width`` centred on ``point``."""
    x, y = point
    r = width / 2
    draw.ellipse((x - r, y - r, x + r, y + r), fill=INK)


def paint_segment(draw: ImageDraw.ImageDraw, start, end, width: int) -> None:
    """The pen dragged from ``start`` to ``end``, with a round cap at ``end``."""
    draw.line((start, end), fill=INK, width=width, joint="curve")
    paint_dot(draw, end, width)


def paint_stroke(draw: ImageDraw.ImageDraw, stroke: Stroke) -> None:
    """Replay a whole stroke with exactly the calls made while it was drawn."""
    paint_dot(draw, stroke.points[0], stroke.width)
    for start, end in zip(stroke.points[:-1], stroke.points[1:]):
        paint_segment(draw, start, end, stroke.width)


def render(strokes, size: int = SIZE) -> Image.Image:
    """A fresh 'L' image (size x size, white) with ``strokes`` painted in order."""
    image = Image.new("L", (size, size), PAPER)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        paint_stroke(draw, stroke)
    return image

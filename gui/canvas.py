"""The drawing surface: a Tk canvas for the eye and a PIL image for the network.

Every stroke is painted twice with the same geometry: on the Tk canvas (what
the user sees) and on ``image``, a white 'L' PIL image of the same size (what
prediction reads; painted by fastmlp.gui.strokes). Prediction never reads
pixels back from Tk, and undo simply repaints the remaining strokes on a
fresh image.
"""

import tkinter as tk

from PIL import ImageDraw

from fastmlp.gui.strokes import SIZE, Stroke, paint_dot, paint_segment, render
from fastmlp.gui.theme import px


class DrawingCanvas:
    """A SIZE x SIZE canvas (in px(): larger on a HiDPI screen, the pen too):
    left button draws, right click clears.

    ``brush`` is a tk.IntVar with the pen width in px of an ordinary screen. ``on_change()`` is called
    after every change of the drawing (each new point, clear, undo)."""

    def __init__(self, parent, brush: tk.IntVar, on_change=lambda: None):
        self.brush = brush
        self.on_change = on_change
        # No border or highlight: event x/y are then exactly image pixels.
        self.side = px(SIZE)
        self.widget = tk.Canvas(parent, width=self.side, height=self.side, background="white",
                                borderwidth=0, highlightthickness=0, cursor="pencil")
        self.strokes: list[Stroke] = []
        self.image = render(self.strokes, self.side)
        self._draw = ImageDraw.Draw(self.image)
        self.widget.bind("<ButtonPress-1>", self._press)
        self.widget.bind("<B1-Motion>", self._drag)
        self.widget.bind("<ButtonRelease-1>", self._release)
        self.widget.bind("<ButtonPress-3>", lambda event: self.clear())

    @property
    def is_empty(self) -> bool:
        return not self.strokes

    # ------------------------------------------------------------ mouse

    def _press(self, event):
        width = px(max(1, int(self.brush.get())))
        stroke = Stroke(width, [(event.x, event.y)])
        self.strokes.append(stroke)
        # A click alone leaves a dot.
        paint_dot(self._draw, stroke.points[0], width)
        r = width / 2
        self.widget.create_oval(event.x - r, event.y - r, event.x + r, event.y + r,
                                fill="black", outline="", tags=self._tag(stroke))
        self.on_change()

    def _drag(self, event):
        if not self.strokes:  # a drag that started outside the canvas
            return
        stroke = self.strokes[-1]
        start, end = stroke.points[-1], (event.x, event.y)
        if end == start:
            return
        stroke.points.append(end)
        # One segment per motion event: however fast the mouse moves, the
        # stroke stays continuous (Tk reports positions, not a path).
        paint_segment(self._draw, start, end, stroke.width)
        self.widget.create_line(*start, *end, width=stroke.width, fill="black",
                                capstyle=tk.ROUND, joinstyle=tk.ROUND, tags=self._tag(stroke))
        self.on_change()

    def _release(self, event):
        self._drag(event)

    def _tag(self, stroke: Stroke) -> str:
        return f"stroke{id(stroke)}"

    # ---------------------------------------------------------- editing

    def clear(self):
        """Remove every stroke."""
        self.strokes.clear()
        self.widget.delete("all")
        self._repaint()
        self.on_change()

    def undo(self):
        """Remove the last stroke (nothing to do on an empty canvas)."""
        if not self.strokes:
            return
        stroke = self.strokes.pop()
        self.widget.delete(self._tag(stroke))
        self._repaint()
        self.on_change()

    def _repaint(self):
        self.image = render(self.strokes, self.side)
        self._draw = ImageDraw.Draw(self.image)

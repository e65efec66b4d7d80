"""The "Inside the network" tab: activations, outputs and first-layer weights.

Every hidden layer's activations as a grid of cells lit by their value, the 10 outputs, and the first layer's weights
as one 28x28 tile per unit (what each unit looks for).

Hovering a tile or a first-layer cell highlights both and shows that unit's
activation on the current input; a click pins the unit (a click on the
pinned one, or Esc-clear, unpins). Pictures come from fastmlp.gui.pictures;
this module only places them.
"""

import tkinter as tk
from tkinter import ttk

import numpy as np

from fastmlp.gui.changes import OptionCache
from fastmlp.gui.pictures import (Grid, activation_picture, columns_for, ppm, sequential_hex,
                                  tiles_picture)
from fastmlp.gui.theme import px
from fastmlp.insight import Trace

PANEL_WIDTH = 480  # px, the tab's drawing width
LAYERS_HEIGHT = 120  # px, the tallest activation grid
OUTPUT_CELL = 30
HIGHLIGHT = "#ffd400"


def tile_grid(units: int) -> Grid:
    """The tiles' layout: twice as wide as tall, as large as fits PANEL_WIDTH
    (28 px, one per weight, for 128 units; sizes in px())."""
    columns = columns_for(units)
    cell = max(2, min(px(28), (px(PANEL_WIDTH) + 2) // columns - 2))
    return Grid(units, columns, cell, gap=2)


def layer_grid(units: int, width: int) -> Grid:
    columns = columns_for(units)
    rows = -(-units // columns)
    cell = max(2, min(px(12), (width + 1) // columns - 1, (px(LAYERS_HEIGHT) + 1) // rows - 1))
    return Grid(units, columns, cell, gap=1)


class InsidePanel:
    """A frame. ``set_model(model)`` lays it out for the model's sizes and
    draws its tiles, ``show(trace)`` lights the cells, ``clear()`` darkens
    them, ``refresh_tiles(W0)`` redraws the tiles (while training)."""

    def __init__(self, parent):
        self.frame = ttk.Frame(parent, padding=4)
        self.layers_row = ttk.Frame(self.frame)
        self.layers_row.pack(fill="x")
        ttk.Label(self.frame, text="outputs (0-9)").pack(anchor="w", pady=(4, 0))
        cell = px(OUTPUT_CELL)
        self.outputs = tk.Canvas(self.frame, width=10 * (cell + 2), height=cell + px(16),
                                 highlightthickness=0)
        self.outputs.pack(anchor="w")
        self._output_cells = []
        for d in range(10):
            x = d * (cell + 2)
            self._output_cells.append(self.outputs.create_rectangle(
                x, 0, x + cell, cell, outline="", fill="#282828"))
            self.outputs.create_text(x + cell / 2, cell + px(8), text=str(d))
        ttk.Label(self.frame, text="first layer: what each unit looks for "
                                   "(its weights; red +, blue −, white 0)").pack(anchor="w", pady=(6, 0))
        self.tiles = tk.Canvas(self.frame, highlightthickness=0, width=px(PANEL_WIDTH),
                               height=px(240))
        self.tiles.pack(anchor="w")
        self.tiles_photo = tk.PhotoImage(master=self.frame)
        self.tiles.create_image(0, 0, image=self.tiles_photo, anchor="nw")
        self._tile_box = self.tiles.create_rectangle(0, 0, 0, 0, outline=HIGHLIGHT, width=2,
                                                     state="hidden")
        self.info = ttk.Label(self.frame, text="hover over a tile or a cell to see one unit")
        self.info.pack(anchor="w", pady=(2, 0))
        self.tiles.bind("<Motion>", lambda e: self._hover(self.tile_grid.index_at(e.x, e.y)))
        self.tiles.bind("<Leave>", lambda e: self._hover(None))
        self.tiles.bind("<ButtonPress-1>", lambda e: self.pin(self.tile_grid.index_at(e.x, e.y)))
        self.trace: Trace | None = None
        self.hovered = self.pinned = None
        self._set = OptionCache()  # the info text and highlights: unchanged ones cost no Tk call
        self.tile_grid = tile_grid(1)
        self._layers = []  # [(grid, canvas, photo, highlight item)] per hidden layer

    # --------------------------------------------------------------- layout

    def set_model(self, model) -> None:
        for child in self.layers_row.winfo_children():
            child.destroy()
        self._set.forget()  # new canvases and items
        hidden = model.hidden
        width = px(PANEL_WIDTH) // max(1, min(len(hidden), 3)) - px(8)
        self._layers = []
        for l, units in enumerate(hidden):
            box = ttk.Frame(self.layers_row)
            box.grid(row=l // 3, column=l % 3, sticky="nw", padx=(0, 8))
            ttk.Label(box, text=f"hidden layer {l + 1}: {units} units").pack(anchor="w")
            grid = layer_grid(units, width)
            w, h = grid.size
            canvas = tk.Canvas(box, width=w, height=h, highlightthickness=0)
            canvas.pack(anchor="w")
            photo = tk.PhotoImage(master=box, width=w, height=h)
            canvas.create_image(0, 0, image=photo, anchor="nw")
            box_item = canvas.create_rectangle(0, 0, 0, 0, outline=HIGHLIGHT, width=2, state="hidden")
            if l == 0:  # the first layer's cells are the tiles' units
                canvas.bind("<Motion>", lambda e, g=grid: self._hover(g.index_at(e.x, e.y)))
                canvas.bind("<Leave>", lambda e: self._hover(None))
                canvas.bind("<ButtonPress-1>", lambda e, g=grid: self.pin(g.index_at(e.x, e.y)))
            self._layers.append((grid, canvas, photo, box_item))
        self.tile_grid = tile_grid(model.sizes[1])
        w, h = self.tile_grid.size
        self.tiles.configure(width=max(w, px(PANEL_WIDTH)), height=h)
        self.hovered = self.pinned = None
        self.refresh_tiles(model.W[0])
        self.clear()

    def refresh_tiles(self, W0) -> None:
        """Redraw the tiles from W0: (784, units) (a snapshot: training may be writing it)."""
        self.tiles_photo.configure(data=ppm(tiles_picture(np.array(W0), self.tile_grid)), format="ppm")

    # ----------------------------------------------------------------- data

    def show(self, trace: Trace) -> None:
        self.trace = trace
        for (grid, _, photo, _), values in zip(self._layers, trace.hidden):
            photo.configure(data=ppm(activation_picture(values, grid)), format="ppm")
        self._fill_outputs(sequential_hex(trace.probs, top=1.0))
        self._describe()

    def clear(self) -> None:
        """No input: every cell dark."""
        self.trace = None
        for grid, _, photo, _ in self._layers:
            photo.configure(data=ppm(grid.paint(np.zeros((grid.count, 3), np.uint8))), format="ppm")
        self._fill_outputs(["#282828"] * 10)
        self._describe()

    def _fill_outputs(self, fills) -> None:
        """Recolour the output cells whose colour changed (a Tk call each)."""
        for item, fill in zip(self._output_cells, fills):
            self._set.itemconfigure(self.outputs, item, fill=fill)

    # ---------------------------------------------------------------- units

    @property
    def unit(self) -> int | None:
        """The unit described: the hovered one, else the pinned one."""
        return self.hovered if self.hovered is not None else self.pinned

    def pin(self, unit) -> None:
        """Pin ``unit`` (a click); the pinned unit again, or None, unpins."""
        self.pinned = None if unit is None or unit == self.pinned else unit
        self._describe()

    def _hover(self, unit) -> None:
        self.hovered = unit
        self._describe()

    def _describe(self) -> None:
        unit = self.unit
        self._highlight(self.tiles, self._tile_box, self.tile_grid, unit)
        if self._layers:
            grid, canvas, _, item = self._layers[0]
            self._highlight(canvas, item, grid, unit)
        if unit is None:
            self._set.configure(self.info, text="hover over a tile or a first-layer cell to see one unit")
            return
        activity = ("no input" if self.trace is None
                    else f"activation {self.trace.hidden[0][unit]:.3f} on this input")
        pinned = " (pinned: click again to unpin)" if unit == self.pinned else ""
        self._set.configure(self.info, text=f"layer 1, unit {unit}: {activity}{pinned}")

    def _highlight(self, canvas, item, grid: Grid, unit) -> None:
        """The box around ``unit``'s cell (hidden: no unit). The box is the
        canvas's last item (created after its picture), so it stays on top."""
        if unit is None or unit >= grid.count:
            self._set.itemconfigure(canvas, item, state="hidden")
            return
        x, y = grid.origin(unit)
        self._set.coords(canvas, item, x, y, x + grid.cell, y + grid.cell)
        self._set.itemconfigure(canvas, item, state="normal")

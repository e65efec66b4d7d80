"""The app's look: a ttk theme, light or dark, and fonts that follow the scaling.

The Sun Valley ttk theme (sv-ttk) in light or dark mode, the plain Tk widgets
recoloured to match, and fonts that follow the screen's scaling.

Why sv-ttk: measured under Xvfb (README, "The app's theme"), it adds about
0.22 s to the window's start (ttkbootstrap: 0.37 s), is one small pure-Python
package that only loads a Tcl theme, and keeps the standard ttk widgets, so
the app needs no second widget set. Without it (an old install) the app falls
back to ttk's built-in "clam" theme and still works.

HiDPI: Tk sizes fonts given in points by the X server's DPI already; sv-ttk
sizes its fonts in pixels, so ``scale_fonts`` multiplies those by the
screen's scale (DPI / 96 in steps of 1/4, at least 1). Every size the app
gives in pixels (the drawing canvas, the pen, pictures, panel widths) goes
through ``px``, which multiplies by the same scale once ``set_scale`` has
been called: on a 192-DPI screen the window is twice as large in pixels and
looks the same.
"""

import tkinter as tk
from tkinter import font as tkfont
from tkinter import ttk

MODES = ("light", "dark")
# sv-ttk's own window backgrounds, so plain Tk widgets blend in.
PALETTE = {
    "light": {"background": "#fafafa", "foreground": "#1c1c1c", "dim": "#555555",
              "panel": "#ffffff", "error": "#b00020"},
    "dark": {"background": "#1c1c1c", "foreground": "#fafafa", "dim": "#a8a8a8",
             "panel": "#2b2b2b", "error": "#ff6e6e"},
}
BASE_DPI = 96.0
_scale = 1.0  # set_scale(): the screen's, for px()
_PLAIN = (tk.Frame, tk.Label, tk.Scale, tk.Canvas)


def apply(root: tk.Tk, mode: str, keep=()) -> str:
    """Theme ``root`` in ``mode`` ("light" or "dark"); returns the ttk theme
    in use. Plain Tk widgets are recoloured, except those in ``keep`` (the
    drawing paper stays white in both modes)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {MODES}")
    try:
        import sv_ttk
        sv_ttk.set_theme(mode, root)
        name = f"sun-valley-{mode}"
    except ImportError:
        ttk.Style(root).theme_use("clam")
        name = "clam"
    colours = PALETTE[mode]
    style = ttk.Style(root)
    style.configure("Dim.TLabel", foreground=colours["dim"])
    style.configure("Error.TLabel", foreground=colours["error"])
    recolour(root, colours, set(map(str, keep)))
    return name


def recolour(widget, colours: dict, keep: set) -> None:
    """Plain Tk widgets under ``widget`` get the palette's colours; a canvas
    gets the panel colour (its drawings keep theirs)."""
    for child in widget.winfo_children():
        if str(child) not in keep and isinstance(child, _PLAIN):
            if isinstance(child, tk.Canvas):
                child.configure(background=colours["panel"])
                _recolour_text(child, colours["foreground"])
            else:
                child.configure(background=colours["background"])
                if not isinstance(child, tk.Frame):
                    child.configure(foreground=colours["foreground"])
            if isinstance(child, tk.Scale):
                child.configure(troughcolor=colours["panel"], highlightthickness=0)
        recolour(child, colours, keep)


def screen_scale(root: tk.Tk) -> float:
    """The screen's DPI / 96 to the nearest 1/4, at least 1 (a 100-DPI
    screen is an ordinary one, not 1.04x)."""
    return max(1.0, round(4 * root.winfo_fpixels("1i") / BASE_DPI) / 4)


def set_scale(factor: float) -> None:
    """From now on px(n) is n * factor (the app calls it before building)."""
    global _scale
    _scale = float(factor)


def px(n: float) -> int:
    """n pixels of an ordinary 96-DPI screen, in this screen's pixels."""
    return max(1, round(n * _scale))


def scale_fonts(root: tk.Tk, factor: float) -> None:
    """Multiply every named font sized in pixels (negative sizes: sv-ttk's)
    by ``factor``; fonts in points already follow the DPI."""
    if factor <= 1.0:
        return
    for name in tkfont.names(root):
        font = tkfont.nametofont(name, root=root)
        size = int(font.cget("size"))
        if size < 0:
            font.configure(size=round(size * factor))


_INKS = {"black", "#000000"} | {colours["foreground"] for colours in PALETTE.values()}


def _recolour_text(canvas: tk.Canvas, foreground: str) -> None:
    """Canvas texts in the default ink (black, or either mode's foreground)
    follow the mode; coloured ones (a legend) keep their colour."""
    for item in canvas.find_all():
        if canvas.type(item) == "text" and canvas.itemcget(item, "fill") in _INKS:
            canvas.itemconfigure(item, fill=foreground)

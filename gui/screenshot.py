"""Screenshot of the app with a digit drawn in it, for the docs.

    python gui/screenshot.py OUT.png [--model PATH] [--digit 3|7] [--train EPOCHS]
        [--tab train|inside|teach] [--why] [--unit N] [--dark]

--tab shows that tab of the right-hand column, --why the saliency overlay,
--unit hovers (pins) that first-layer unit, --dark the dark mode. With
--tab teach the drawn digit is saved five times (to a temporary data set,
never the user's) and the model fine-tuned on it, to fill the table.

Uses $DISPLAY if set, else starts its own Xvfb (1366x768). The digit is drawn
through the same Tk events a mouse produces (press, motions, release), so the
picture shows the real pipeline. The window is grabbed with Pillow's X11
grabber (ImageGrab.grab(xdisplay=...), Pillow built with XCB).
"""

import argparse
import os
import sys
import tempfile
import time
import tkinter as tk
from contextlib import nullcontext

from PIL import ImageGrab

from fastmlp.gui import xvfb
from fastmlp.gui.app import DigitApp

# Polylines on the 280x280 canvas, in the order a hand draws them.
DIGITS = {
    "7": [[(70, 60), (120, 58), (170, 57), (215, 58), (200, 95), (180, 135), (160, 180),
           (145, 220), (135, 245)],
          [(115, 150), (145, 150), (190, 148)]],
    "3": [[(85, 70), (115, 52), (155, 48), (190, 65), (195, 95), (175, 122), (140, 135),
           (180, 148), (200, 180), (190, 215), (155, 235), (115, 235), (80, 215)]],
}


def draw(app: DigitApp, strokes, steps: int = 4) -> None:
    """Drag the mouse along each polyline with Tk events; ``steps`` motion
    events per segment, like a moderately fast hand."""
    widget = app.canvas.widget
    for stroke in strokes:
        widget.event_generate("<ButtonPress-1>", x=stroke[0][0], y=stroke[0][1])
        for (x0, y0), (x1, y1) in zip(stroke[:-1], stroke[1:]):
            for k in range(1, steps + 1):
                t = k / steps
                widget.event_generate("<B1-Motion>", x=round(x0 + t * (x1 - x0)),
                                      y=round(y0 + t * (y1 - y0)))
        widget.event_generate("<ButtonRelease-1>", x=stroke[-1][0], y=stroke[-1][1])
        app.root.update()


def pump(root: tk.Tk, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        root.update()
        time.sleep(0.01)


def window_box(root: tk.Tk) -> tuple[int, int, int, int]:
    """Screen box (left, top, right, bottom) of the whole window, menu bar
    included: wm geometry's +x+y is the outer corner, above the menu bar,
    while winfo_rootx/y is the client area below it."""
    root.update_idletasks()
    left, top = (int(v) for v in root.wm_geometry().split("+")[1:3])
    return left, top, root.winfo_rootx() + root.winfo_width(), root.winfo_rooty() + root.winfo_height()


TABS = ("train", "inside", "teach")


def screenshot(out: str, model=None, digit: str = "7", train_epochs: int = 0, tab: str = "train",
               why: bool = False, unit=None, mode: str = "light") -> None:
    root = tk.Tk()
    root.geometry("+0+0")
    home = tempfile.TemporaryDirectory()
    app = DigitApp(root, model_path=model, mode=mode, drawings_path=f"{home.name}/drawings")
    app.tabs.select(TABS.index(tab))
    app.why_var.set(why)
    pump(root, 0.3)
    if train_epochs:
        # Fill the training curve: a short run on 20,000 images (its model then answers).
        app.epochs_var.set(str(train_epochs))
        app.images_var.set("20000")
        app.start_training()
        while app.training.running:
            pump(root, 0.1)
        pump(root, 0.3)
    draw(app, DIGITS[digit])
    pump(root, 0.5)
    if unit is not None:
        app.inside.pin(unit)
    if tab == "teach":
        for _ in range(5):
            app.correct(int(digit))
        app.start_finetune()
        while app.training.running:
            pump(root, 0.1)
        pump(root, 0.3)
    if tab != "teach":
        app.set_status(f"drew a {digit}: the network says {app.answer.digit if app.answer else '-'}")
    pump(root, 0.2)
    image = ImageGrab.grab(bbox=window_box(root), xdisplay=os.environ["DISPLAY"])
    image.save(out)
    print(f"{out}: {image.width}x{image.height}, answer {app.answer.digit if app.answer else None}")
    app.close()
    home.cleanup()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--model", help="checkpoint (default: the shipped pretrained model)")
    parser.add_argument("--digit", choices=sorted(DIGITS), default="7")
    parser.add_argument("--train", type=int, default=0, metavar="EPOCHS",
                        help="train this many epochs first, to show the curve")
    parser.add_argument("--tab", choices=TABS, default="train")
    parser.add_argument("--why", action="store_true", help="show the saliency overlay")
    parser.add_argument("--unit", type=int, help="pin this first-layer unit (Inside tab)")
    parser.add_argument("--dark", action="store_true", help="dark mode")
    args = parser.parse_args(argv)
    display = nullcontext() if os.environ.get("DISPLAY") else xvfb.display()
    with display:
        screenshot(args.out, args.model, args.digit, args.train, args.tab, args.why, args.unit,
                   "dark" if args.dark else "light")
    return 0


if __name__ == "__main__":
    sys.exit(main())

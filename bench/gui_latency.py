"""Draw -> answer latency of the real app, with every live panel on.

    python bench/gui_latency.py [--digits 20] [--backends numpy,numba] [--json OUT]

Runs the Tk app (fastmlp.gui.app.DigitApp, the shipped model) on a private
Xvfb (or $DISPLAY), with the "Inside the network" tab showing and Why? on,
so each answer also traces every layer, lights the activation grids and
output cells, computes the saliency (the engine's backward pass) and paints
it. A hand is simulated with real Tk events: the screenshot digits (a 7 and
a 3) dragged at one motion event per 8 ms (a 125 Hz mouse), 6 px apart.

Two figures per answer, both ending when the answer is on screen (the
refresh, then ``update_idletasks`` so Tk has redrawn every panel):
- work: the refresh alone (preprocess, forward, trace, saliency, every
  panel's picture and redraw): what a frame must fit;
- latency: from the first pen movement the answer had not yet shown (the
  motion event's arrival) to the answer on screen. The app answers when Tk
  is next idle, so this is the work plus any events still queued before it.

Conditions: each backend idle, and each while the app trains a model in the
background (Numba kernels, 60,000 images, enough epochs to outlast the
drawing; only answers given while the run is going are counted, and the run
is cancelled at the end). Median, p95 and max in ms. The
machine is shared: other processes' CPU use during each run is printed
beside it (bench/benchlib.ForeignLoad).
"""

import argparse
import gc
import json
import os
import sys
import time
import tkinter as tk
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ForeignLoad, log  # noqa: E402

from fastmlp.gui import app as app_module  # noqa: E402
from fastmlp.gui import xvfb  # noqa: E402
from fastmlp.gui.screenshot import DIGITS  # noqa: E402

TRAIN_EPOCHS = 100  # 3 epochs of 60,000 take only ~3 s with Numba: far shorter than the drawing
MOTION_S = 0.008  # one motion event per 8 ms
STEP_PX = 6


def path_points(stroke):
    """The polyline resampled every STEP_PX px, as a hand's motion events."""
    points = [stroke[0]]
    for (x0, y0), (x1, y1) in zip(stroke[:-1], stroke[1:]):
        steps = max(1, round(np.hypot(x1 - x0, y1 - y0) / STEP_PX))
        points += [(round(x0 + (x1 - x0) * k / steps), round(y0 + (y1 - y0) * k / steps))
                   for k in range(1, steps + 1)]
    return points


def pump_for(root, seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        root.update()


class Recorder:
    """Wraps the app's change hook and refresh to time each answer."""

    def __init__(self, app, training=False):
        """training: count only the answers given while the app's training
        run is going (a run that ended early must not pass for one)."""
        self.app, self.pending, self.work, self.latency = app, [], [], []
        self.skipped = 0
        changed, refresh = app.canvas.on_change, app.refresh

        def on_change():
            self.pending.append(time.perf_counter())
            changed()

        def timed_refresh():
            start = time.perf_counter()
            refresh()
            app.root.update_idletasks()
            end = time.perf_counter()
            if self.pending and app.answer is not None and training and not app.training.running:
                self.skipped += 1
            elif self.pending and app.answer is not None:
                self.work.append(end - start)
                self.latency.append(end - self.pending[0])
            self.pending.clear()

        app.canvas.on_change = on_change
        app.refresh = timed_refresh


def draw_digits(app, count):
    widget = app.canvas.widget
    for k in range(count):
        app.clear()
        pump_for(app.root, 0.05)
        for stroke in DIGITS["7" if k % 2 == 0 else "3"]:
            points = path_points(stroke)
            widget.event_generate("<ButtonPress-1>", x=points[0][0], y=points[0][1])
            pump_for(app.root, MOTION_S)
            for x, y in points[1:]:
                widget.event_generate("<B1-Motion>", x=x, y=y)
                pump_for(app.root, MOTION_S)
            widget.event_generate("<ButtonRelease-1>", x=points[-1][0], y=points[-1][1])
            pump_for(app.root, 0.15)  # the last answer lands


def summary(seconds):
    ms = np.array(seconds) * 1000
    return {"n": len(ms), "median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)),
            "max": float(ms.max())}


def measure(backend, digits, train=False, model=None):
    """One condition: a fresh app (``model``: default the shipped one), every
    live panel on, ``digits`` digits drawn."""
    gc.collect()
    root = tk.Tk()
    app = app_module.DigitApp(root, model_path=model, backend=backend)
    app.tabs.select(1)  # Inside the network
    app.why_var.set(True)
    deadline = time.monotonic() + 120
    while app.backend.name != backend and time.monotonic() < deadline:
        pump_for(root, 0.1)
    if app.backend.name != backend:
        raise SystemExit(f"backend {backend} did not get ready: {app.status_var.get()}")
    if train:
        app.backend_var.set("numba")  # the training run's kernels; answers stay on app.backend
        app.epochs_var.set(str(TRAIN_EPOCHS))  # outlasts the drawing; cancelled at the end
        app.images_var.set("60000")
        app.training.start(app.training_config(), app_module.get_backend("numba"))
        app.root.after(app_module.POLL_MS, app._poll_training)
        pump_for(root, 1.0)
    recorder = Recorder(app, training=train)
    load = ForeignLoad()
    draw_digits(app, digits)
    foreign = load.load()
    trained = app.training.running if train else None
    if train and recorder.skipped:
        log(f"  {recorder.skipped} answers after training ended, not counted")
    result = {"work": summary(recorder.work), "latency": summary(recorder.latency),
              "foreign_cpus": foreign, "still_training": trained,
              "not_counted": recorder.skipped}
    app.close()
    # Collect the closed app's Tk objects here, on the Tk thread: left to the
    # cyclic GC they may be finalised in the next run's background thread.
    del app, root, recorder
    gc.collect()
    return result


def markdown(rows):
    lines = ["| backend | condition | answers | work median / p95 / max (ms) "
             "| draw->answer median / p95 / max (ms) | other processes (CPUs) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        w, l = r["work"], r["latency"]
        lines.append(f"| {r['backend']} | {r['condition']} | {w['n']} "
                     f"| {w['median']:.1f} / {w['p95']:.1f} / {w['max']:.1f} "
                     f"| {l['median']:.1f} / {l['p95']:.1f} / {l['max']:.1f} "
                     f"| {r['foreign_cpus']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=20, help="digits drawn per condition")
    parser.add_argument("--backends", default="numpy,numba")
    parser.add_argument("--no-training", action="store_true", help="skip the while-training row")
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    conditions = [(name, "idle", False) for name in args.backends.split(",")]
    if not args.no_training:
        conditions += [(name, "while training (numba, 60k images)", True)
                       for name in args.backends.split(",")]
    rows = []
    display = nullcontext() if os.environ.get("DISPLAY") else xvfb.display()
    with display:
        for backend, condition, train in conditions:
            log(f"{backend}, {condition} ...")
            result = measure(backend, args.digits, train)
            rows.append({"backend": backend, "condition": condition, **result})
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

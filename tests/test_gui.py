"""The drawing app (fastmlp.gui), driven like a user on a virtual display.

The real Tk app runs on a private Xvfb (1366x768) started once per session.
Drawing goes through the same Tk events a mouse produces (event_generate of
<ButtonPress-1>, <B1-Motion>, <ButtonRelease-1> with x/y) and the event loop
is pumped with root.update(), so the bindings, the coalesced prediction and
the training queue are all exercised for real. Models are small ones trained
here (1 epoch on 2,000 images), never the shipped pretrained file.

Without Xvfb and without $DISPLAY the GUI tests skip; on CI (CI=true) a
missing Xvfb is a failure, because CI must run them.
"""

import gc
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tkinter as tk
import types
from pathlib import Path
from tkinter import filedialog, messagebox

import numpy as np
import pytest
from PIL import Image

from fastmlp import checkpoint
from fastmlp.data import load_dataset
from fastmlp.errors import FastmlpError
from fastmlp.gui import app as app_module
from fastmlp.gui import xvfb
from fastmlp.gui.app import DRAW_PROMPT, NO_MODEL, DigitApp
from fastmlp.gui.inference import percentages
from fastmlp.gui.strokes import PAPER, SIZE, Stroke, render
from fastmlp.kernels import contract, get_backend
from fastmlp.model import MLP
from fastmlp.preprocess import load_image, normalize_digit
from fastmlp.train import TrainConfig, TrainState, run

REPO = Path(__file__).resolve().parents[1]
DIGITS = [str(d) for d in range(10)]
# A "7" as a hand would drag it across the 280x280 canvas.
SEVEN = [(70, 60), (140, 58), (215, 58), (190, 120), (160, 190), (140, 245)]
BAR = [(120, 150), (190, 148)]


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="session")
def display():
    """A private Xvfb for the whole session (preferred even if $DISPLAY is set:
    no windows flashing on the developer's screen)."""
    if shutil.which("Xvfb"):
        name, process = xvfb.start()
        previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = name
        yield name
        xvfb.stop(process)
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
    elif os.environ.get("CI") == "true":
        pytest.fail("CI=true but Xvfb is not installed (apt-get install -y xvfb): "
                    "the GUI tests must run on CI")
    elif os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
    else:
        pytest.skip("no display: Xvfb is not installed and $DISPLAY is not set")


def _train_small(path, seed):
    config = TrainConfig(epochs=1, limit=2000, seed=seed)
    state = TrainState.fresh(config)
    run(config, load_dataset(), get_backend("numpy"), state)
    checkpoint.save(path, checkpoint.Checkpoint(state.model, state.optimizer,
                                                {"history": state.history}))
    return path


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    return _train_small(tmp_path_factory.mktemp("models") / "small.npz", seed=0)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory):
    return _train_small(tmp_path_factory.mktemp("models") / "other.npz", seed=1)


@pytest.fixture
def errors(monkeypatch):
    """Every messagebox.showerror call, recorded instead of blocking on a dialog."""
    calls = []
    monkeypatch.setattr(messagebox, "showerror", lambda title, message, **kw: calls.append(message))
    return calls


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    """Every test's personal drawings live in its own directory, never the
    user's real data directory."""
    monkeypatch.setenv("FASTMLP_DATA_HOME", str(tmp_path / "data-home"))
    return tmp_path / "data-home"


@pytest.fixture
def app(display, small_model, errors):
    # The previous test's app is garbage only now (pytest held it through its
    # teardown): collect it here, on the Tk thread, before a background thread
    # (training, a Numba compile) allocates enough to run the cyclic GC and
    # finalise its Tk variables there ("main thread is not in main loop").
    gc.collect()
    root = tk.Tk()
    digit_app = DigitApp(root, model_path=small_model)
    # The small test model (1 epoch, 2,000 images) is rarely 90% sure; the
    # tests about the answer want its digit, the "not sure" tests set their own.
    digit_app.answer_panel.threshold = 0.0
    root.update()
    yield digit_app
    try:
        digit_app.close()
    except tk.TclError:  # the test closed it already
        pass
    # Collect the dead app's Tk objects here, on the Tk thread: left to the
    # cyclic GC they could be finalised inside a later test's training thread,
    # where tkinter raises "main thread is not in main loop".
    gc.collect()


# ------------------------------------------------------------------- helpers

def pump_until(root, condition, timeout=5.0) -> bool:
    """Run the event loop until condition() holds (True) or timeout (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        root.update()
        if condition():
            return True
        time.sleep(0.005)
    return False


def drag(app, points, steps=3):
    """Press at points[0], move through the rest (``steps`` motion events per
    segment), release at the end: what a mouse sends."""
    widget = app.canvas.widget
    widget.event_generate("<ButtonPress-1>", x=points[0][0], y=points[0][1])
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        for k in range(1, steps + 1):
            widget.event_generate("<B1-Motion>", x=round(x0 + (x1 - x0) * k / steps),
                                  y=round(y0 + (y1 - y0) * k / steps))
    widget.event_generate("<ButtonRelease-1>", x=points[-1][0], y=points[-1][1])


def shown(app) -> str:
    return app.answer_panel.digit.cget("text")


def draw_and_wait(app, points):
    """Draw, then run the event loop until a new answer is on screen."""
    before = app.answer
    drag(app, points)
    assert pump_until(app.root, lambda: app.answer is not before and shown(app) in DIGITS), shown(app)


def pixels(image) -> np.ndarray:
    return np.asarray(image).copy()


# ---------------------------------------------------------- window and draw

@pytest.mark.gui
def test_window_fits_a_1366x768_screen(app):
    from fastmlp.gui.screenshot import window_box

    left, top, right, bottom = window_box(app.root)
    assert right - left <= 1366 and bottom - top <= 768, (right - left, bottom - top)
    # ... and keeps its size whatever it shows: no jumping layout.
    empty = (right - left, bottom - top)
    draw_and_wait(app, SEVEN)
    app.test_button.invoke()
    app.root.update()
    left, top, right, bottom = window_box(app.root)
    assert (right - left, bottom - top) == empty


@pytest.mark.gui
def test_drawing_predicts_a_digit_with_bars_summing_to_100_and_a_preview(app):
    assert shown(app) == DRAW_PROMPT
    assert app.answer_panel.bar_texts() == [""] * 10

    draw_and_wait(app, SEVEN)

    texts = app.answer_panel.bar_texts()
    values = [float(t.strip().rstrip("%")) for t in texts]
    assert abs(sum(values) - 100.0) <= 0.5, texts
    assert int(shown(app)) == int(np.argmax(values)) == app.answer.digit
    # The network input has ink, and so does the enlarged preview on screen
    # (white ink on black, read back from the Tk photo image).
    assert app.answer.x.max() > 0.9 and (app.answer.x == 0).mean() > 0.5
    preview = app.answer_panel.preview
    grid = [preview.get(x, y)[0] for x in range(2, 140, 4) for y in range(2, 140, 4)]
    assert max(grid) > 200 and min(grid) == 0
    assert "µs" in app.timing_label.cget("text") and "numpy" in app.timing_label.cget("text")


@pytest.mark.gui
def test_a_fast_stroke_leaves_no_gap_and_a_click_leaves_a_dot(app):
    app.brush.set(10)
    # One motion event 200 px away: the mirror image must hold the whole segment.
    widget = app.canvas.widget
    widget.event_generate("<ButtonPress-1>", x=40, y=140)
    widget.event_generate("<B1-Motion>", x=240, y=140)
    widget.event_generate("<ButtonRelease-1>", x=240, y=140)
    row = pixels(app.canvas.image)[140]
    assert (row[40:241] == 0).all()
    assert (row[:30] == PAPER).all() and (row[251:] == PAPER).all()

    widget.event_generate("<ButtonPress-1>", x=140, y=40)
    widget.event_generate("<ButtonRelease-1>", x=140, y=40)
    image = pixels(app.canvas.image)
    assert image[40, 140] == 0 and image[40, 147] == PAPER  # a dot of diameter ~10
    assert len(app.canvas.strokes) == 2


@pytest.mark.gui
def test_prediction_is_one_per_burst_of_motion(app, monkeypatch):
    calls = []
    real = app_module.classify_picture
    monkeypatch.setattr(app_module, "classify_picture",
                        lambda *args, **kw: calls.append(1) or real(*args, **kw))
    drag(app, SEVEN, steps=5)  # 26 drawing changes, all before the event loop runs
    assert calls == []
    assert pump_until(app.root, lambda: shown(app) in DIGITS)
    pump_until(app.root, lambda: False, timeout=0.1)
    assert len(calls) == 1


@pytest.mark.gui
def test_a_pen_that_keeps_moving_still_gets_answers_while_drawing(app, monkeypatch):
    calls = []
    real = app_module.classify_picture
    monkeypatch.setattr(app_module, "classify_picture",
                        lambda *args, **kw: calls.append(1) or real(*args, **kw))
    widget = app.canvas.widget
    widget.event_generate("<ButtonPress-1>", x=40, y=40)
    # 40 motion events 10 ms apart (0.4 s): the pen never rests.
    for k in range(1, 41):
        widget.event_generate("<B1-Motion>", x=40 + 5 * k, y=40 + 5 * k)
        app.root.update()
        time.sleep(0.01)
    assert len(calls) >= 2, "a continuous stroke should be answered before the pen stops"


@pytest.mark.gui
def test_clear_button_escape_and_right_click_reset_to_the_prompt(app):
    for clear in (lambda: app.clear_button.invoke(),
                  lambda: app.canvas.widget.event_generate("<Escape>"),
                  lambda: app.canvas.widget.event_generate("<ButtonPress-3>", x=10, y=10)):
        draw_and_wait(app, SEVEN)
        clear()
        assert pump_until(app.root, lambda: shown(app) == DRAW_PROMPT)
        assert app.answer is None and app.answer_panel.bar_texts() == [""] * 10
        assert (pixels(app.canvas.image) == PAPER).all()


@pytest.mark.gui
def test_undo_removes_exactly_the_last_stroke(app):
    draw_and_wait(app, SEVEN)
    one_stroke = pixels(app.canvas.image)
    drag(app, BAR)
    two_strokes = pixels(app.canvas.image)
    assert (two_strokes != one_stroke).any()

    app.canvas.widget.event_generate("<Control-z>")
    app.root.update()
    assert len(app.canvas.strokes) == 1
    after_undo = pixels(app.canvas.image)
    assert (after_undo != two_strokes).any()
    assert (after_undo == one_stroke).all()
    # ... and equals the same single stroke drawn on an empty canvas.
    app.clear()
    drag(app, SEVEN)
    assert (pixels(app.canvas.image) == after_undo).all()
    # Tk's canvas lost the stroke's items too, not just the mirror.
    app.undo()
    assert app.canvas.widget.find_all() == ()


@pytest.mark.gui
def test_mirror_replay_matches_what_was_drawn_live(app):
    drag(app, SEVEN)
    drag(app, BAR)
    replay = render([Stroke(s.width, list(s.points)) for s in app.canvas.strokes], SIZE)
    assert (pixels(replay) == pixels(app.canvas.image)).all()


# ------------------------------------------------------------------ backends

@pytest.mark.gui
def test_switching_to_numba_keeps_predicting_or_reports_why_not(app, errors):
    draw_and_wait(app, SEVEN)
    numpy_probs = app.answer.probs.copy()
    try:
        get_backend("numba")
        available, reason = True, None
    except FastmlpError as exc:
        available, reason = False, str(exc)

    app.backend_buttons["numba"].invoke()
    # A cold Numba cache compiles for up to ~35 s, in the background.
    assert pump_until(app.root, lambda: app.backend.name == app.backend_var.get(), timeout=90)
    if app.backend.name == "numba":
        assert available and app.backend_var.get() == "numba"
        assert "numba" in app.timing_label.cget("text")
        assert shown(app) in DIGITS
        np.testing.assert_allclose(app.answer.probs, numpy_probs, atol=1e-5)
    else:  # it failed to import, or to compile: said in one line
        assert app.backend.name == "numpy" and app.backend_var.get() == "numpy"
        if available:
            assert app.status_var.get().startswith(
                "backend 'numba' failed to get its float32 kernels ready: "), app.status_var.get()
        else:
            assert app.status_var.get() == reason
        assert errors == []  # the status bar, not a dialog
        assert shown(app) in DIGITS


@pytest.mark.gui
def test_switching_backend_predicts_with_the_new_kernels(app, monkeypatch):
    """The success path, whatever the state of the real numba install: a
    stand-in "numba" that delegates to numpy and records its calls."""
    numpy_backend = get_backend("numpy")
    calls = []
    # The live panels (fastmlp.insight) run the contract's single ops too.
    stand_in = types.SimpleNamespace(
        name="numba", prepare=lambda dtype: None,
        forward=lambda W, b, X: calls.append(X.shape) or numpy_backend.forward(W, b, X),
        **{op: getattr(numpy_backend, op)
           for op in ("linear_forward", "linear_backward", "relu_backward")})
    monkeypatch.setattr(app_module, "get_backend",
                        lambda name: stand_in if name == "numba" else get_backend(name))
    draw_and_wait(app, SEVEN)
    numpy_probs = app.answer.probs.copy()

    app.backend_buttons["numba"].invoke()
    assert pump_until(app.root, lambda: app.backend is stand_in)
    assert app.backend_var.get() == "numba"
    assert calls and all(shape == (1, 784) for shape in calls)  # the re-prediction
    assert "on numba" in app.timing_label.cget("text")
    np.testing.assert_array_equal(app.answer.probs, numpy_probs)
    calls.clear()
    drag(app, BAR)
    assert pump_until(app.root, lambda: calls)  # new strokes go to the new kernels

    app.backend_buttons["numpy"].invoke()
    assert app.backend is numpy_backend and "on numpy" in app.timing_label.cget("text")


@pytest.mark.gui
def test_a_backend_that_fails_to_load_leaves_numpy_in_charge(app, monkeypatch):
    message = "backend 'numba' is unavailable: No module named 'llvmlite'"

    def broken(name):
        if name == "numba":
            raise FastmlpError(message)
        return get_backend(name)

    monkeypatch.setattr(app_module, "get_backend", broken)
    draw_and_wait(app, SEVEN)
    app.backend_buttons["numba"].invoke()
    assert pump_until(app.root, lambda: app.status_var.get() == message)
    assert app.backend.name == "numpy" and app.backend_var.get() == "numpy"
    assert app.backend_buttons["numba"].cget("text") == "Numba"
    drag(app, BAR)
    app.clear()
    draw_and_wait(app, SEVEN)  # still predicting


# ------------------------------------------- a backend that takes its time

class SlowNumba:
    """A stand-in "numba": the reference's kernels, with a prepare that blocks
    until the test calls release() (or 10 s pass: an app that waited for it
    on the Tk thread then fails the test instead of hanging it). Like a JIT,
    its train_batches would wait for that compile too; it records whether it
    ever ran before prepare had returned."""

    def __init__(self, failure=None):
        reference = get_backend("numpy")
        for op in contract.OPS:
            if not hasattr(SlowNumba, op):  # prepare, forward, train_batches are below
                setattr(self, op, getattr(reference, op))
        self.name, self.failure = "numba", failure
        self.prepared = []  # (dtype, name of the calling thread)
        self.forward_calls = 0
        self.trained_before_ready = False
        self._released, self._returned = threading.Event(), threading.Event()

    def release(self):
        self._released.set()

    def prepare(self, dtype):
        self.prepared.append((np.dtype(dtype), threading.current_thread().name))
        self._released.wait(10)
        self._returned.set()
        if self.failure is not None:
            raise self.failure

    def forward(self, W, b, X):
        self.forward_calls += 1
        return get_backend("numpy").forward(W, b, X)

    def train_batches(self, *args):
        self.trained_before_ready |= not self._returned.is_set()
        return get_backend("numpy").train_batches(*args)


def install(monkeypatch, backend):
    monkeypatch.setattr(app_module, "get_backend",
                        lambda name: backend if name == "numba" else get_backend(name))
    return backend


def getting_ready(app) -> bool:
    return "getting ready" in app.backend_buttons["numba"].cget("text")


def settle(app):
    """Run the event loop long enough for a finished preparation to be noticed."""
    pump_until(app.root, lambda: False, timeout=4 * app_module.POLL_MS / 1000)


@pytest.mark.gui
def test_numba_gets_ready_in_the_background_while_numpy_keeps_answering(app, monkeypatch):
    slow = install(monkeypatch, SlowNumba())
    draw_and_wait(app, SEVEN)
    clicked = time.monotonic()
    app.backend_buttons["numba"].invoke()
    assert time.monotonic() - clicked < 0.5, "the click waited for prepare"
    assert app.backend.name == "numpy" and app.backend_var.get() == "numba" and getting_ready(app)

    # Prepare is still blocked: the window keeps drawing and answering, on NumPy.
    settle(app)
    app.clear()
    draw_and_wait(app, BAR)
    assert "on numpy" in app.timing_label.cget("text") and slow.forward_calls == 0
    assert getting_ready(app) and app.backend.name == "numpy"
    assert [(dtype, thread != threading.main_thread().name) for dtype, thread in slow.prepared] \
        == [(np.dtype("float32"), True)]

    slow.release()
    assert pump_until(app.root, lambda: app.backend is slow)
    assert app.backend_var.get() == "numba" and not getting_ready(app)
    assert app.backend_buttons["numba"].cget("text") == "Numba"
    assert "ready in" in app.status_var.get()
    assert slow.forward_calls and "on numba" in app.timing_label.cget("text")  # re-answered


@pytest.mark.gui
def test_going_back_to_numpy_while_numba_gets_ready_stays_on_numpy(app, monkeypatch):
    slow = install(monkeypatch, SlowNumba())
    draw_and_wait(app, SEVEN)
    app.backend_buttons["numba"].invoke()
    app.backend_buttons["numpy"].invoke()
    assert app.backend.name == "numpy" and app.backend_var.get() == "numpy"
    assert not getting_ready(app)
    slow.release()
    assert pump_until(app.root, lambda: slow.prepared and slow._returned.is_set())
    settle(app)
    assert app.backend.name == "numpy" and app.backend_var.get() == "numpy"
    assert "on numpy" in app.timing_label.cget("text")

    # Ready now: selecting it again switches at once, without preparing again.
    app.backend_buttons["numba"].invoke()
    assert app.backend is slow and not getting_ready(app)
    assert len(slow.prepared) == 1


@pytest.mark.gui
def test_opening_a_model_while_numba_gets_ready_keeps_numpy_until_it_is(app, monkeypatch,
                                                                        other_model):
    slow = install(monkeypatch, SlowNumba())
    app.backend_buttons["numba"].invoke()
    assert app.open_model(other_model)
    assert app.backend.name == "numpy" and getting_ready(app)
    draw_and_wait(app, SEVEN)  # the new model answers meanwhile
    assert "on numpy" in app.timing_label.cget("text")
    slow.release()
    assert pump_until(app.root, lambda: app.backend is slow)
    assert len(slow.prepared) == 1  # one preparation served both: same dtype


@pytest.mark.gui
def test_a_model_of_another_dtype_gets_numba_ready_for_it_in_the_background(
        app, monkeypatch, small_model, tmp_path):
    slow = install(monkeypatch, SlowNumba())
    slow.release()
    app.backend_buttons["numba"].invoke()
    assert pump_until(app.root, lambda: app.backend is slow)
    model = checkpoint.load(small_model).model
    wide = tmp_path / "float64.npz"
    checkpoint.save(wide, checkpoint.Checkpoint(
        MLP(model.sizes, [w.astype(np.float64) for w in model.W], [b.astype(np.float64) for b in model.b])))
    slow._released.clear()

    assert app.open_model(wide)
    assert app.backend.name == "numpy" and getting_ready(app)  # numba is not ready for float64
    draw_and_wait(app, SEVEN)
    assert "on numpy" in app.timing_label.cget("text")
    slow.release()
    assert pump_until(app.root, lambda: app.backend is slow)
    assert [dtype for dtype, _ in slow.prepared] == [np.dtype("float32"), np.dtype("float64")]


@pytest.mark.gui
def test_a_prepare_that_raises_is_reported_and_leaves_numpy_in_charge(app, monkeypatch, errors):
    slow = install(monkeypatch, SlowNumba(RuntimeError("Failed in nopython mode\nLLVM ERROR: boom")))
    app.backend_buttons["numba"].invoke()
    slow.release()
    assert pump_until(app.root, lambda: app.backend_var.get() == "numpy")
    assert app.status_var.get() == ("backend 'numba' failed to get its float32 kernels ready: "
                                    "RuntimeError: Failed in nopython mode LLVM ERROR: boom")
    assert errors == []  # the status bar, not a dialog, as for a backend that fails to load
    assert app.backend.name == "numpy" and not getting_ready(app)
    draw_and_wait(app, SEVEN)


@pytest.mark.gui
def test_training_on_numba_compiles_first_in_the_training_thread(app, monkeypatch):
    slow = install(monkeypatch, SlowNumba())
    app.backend_buttons["numba"].invoke()  # still getting ready when Train is pressed
    app.epochs_var.set("1")
    app.images_var.set("1000")
    app.train_button.invoke()
    assert app.progress_label.cget("text") == "compiling numba kernels…"
    assert "numba kernels" in app.status_var.get()
    settle(app)
    assert app.progress_label.cget("text") == "compiling numba kernels…"
    assert float(app.progress.cget("value")) == 0
    assert "fastmlp-training" in [thread for _, thread in slow.prepared]
    draw_and_wait(app, SEVEN)  # the window answers meanwhile

    slow.release()
    assert pump_until(app.root, lambda: app.train_button.instate(["!disabled"]), timeout=30)
    assert app.use_button.instate(["!disabled"]), app.status_var.get()
    app.use_button.invoke()
    assert "trained here: 1 epochs" in app.model_label.cget("text"), app.status_var.get()
    assert not slow.trained_before_ready
    assert app.backend is slow  # numba got ready meanwhile and is the one selected


# -------------------------------------------------------------------- models

@pytest.mark.gui
def test_a_corrupt_model_file_shows_one_line_and_keeps_the_old_model(app, errors, tmp_path,
                                                                     monkeypatch, other_model):
    bad = tmp_path / "model.npz"
    bad.write_text("this is not a checkpoint\n")
    old = app.model
    monkeypatch.setattr(filedialog, "askopenfilename", lambda **kw: str(bad))
    app.file_menu.invoke("Open model…")
    assert len(errors) == 1
    assert str(bad) in errors[0] and "not a fastmlp checkpoint" in errors[0]
    assert "\n" not in errors[0]
    assert app.model is old
    draw_and_wait(app, SEVEN)

    # A good file is then installed and answers at once.
    before = app.answer.probs.copy()
    assert app.open_model(other_model)
    assert app.model is not old and "other.npz" in app.model_label.cget("text")
    assert not np.allclose(app.answer.probs, before)


@pytest.mark.gui
def test_no_model_available_says_so_and_still_runs(display, errors, monkeypatch, tmp_path):
    monkeypatch.setattr(app_module, "PRETRAINED", tmp_path / "missing.npz")
    root = tk.Tk()
    try:
        digit_app = DigitApp(root)
        assert shown(digit_app) == NO_MODEL and digit_app.status_var.get() == NO_MODEL
        drag(digit_app, SEVEN)
        pump_until(root, lambda: False, timeout=0.1)
        assert shown(digit_app) == NO_MODEL and digit_app.answer is None
        digit_app.ask_save_model()
        assert errors == ["no model to save: train or open one first"]
    finally:
        root.destroy()
        gc.collect()  # see the app fixture


# ------------------------------------------------------------ other pictures

@pytest.mark.gui
def test_open_image_classifies_a_png_like_the_predict_command(app, tmp_path, errors):
    data = load_dataset()
    ink = data.X_test[0].reshape(28, 28)
    # Dark ink on white paper, 10x larger, as a scan or a paint program makes it.
    picture = Image.fromarray(np.round(255 - ink * 255).astype(np.uint8), "L").resize((280, 280))
    path = tmp_path / "digit.png"
    picture.save(path)

    assert app.open_image(path)
    expected = app.model.predict_proba(normalize_digit(load_image(path))[None, :], app.backend)[0]
    assert shown(app) == str(int(expected.argmax()))
    np.testing.assert_allclose(app.answer.probs, expected, rtol=1e-6)
    assert "digit.png" in app.answer_panel.caption.cget("text")

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert not app.open_image(broken)
    assert len(errors) == 1 and str(broken) in errors[0] and "\n" not in errors[0]
    assert shown(app) == str(int(expected.argmax()))  # the previous answer stays


@pytest.mark.gui
def test_test_digit_button_shows_a_test_image_with_its_true_label(app):
    data = load_dataset()
    app.test_button.invoke()
    caption = app.answer_panel.caption.cget("text")
    match = re.fullmatch(r"MNIST test image #(\d+), label (\d): (✓ right|✗ wrong)", caption)
    assert match, caption
    index, label = int(match[1]), int(match[2])
    assert label == data.y_test[index]
    expected = int(app.model.predict_proba(data.X_test[index], app.backend).argmax())
    assert shown(app) == str(expected)
    assert match[3] == ("✓ right" if expected == label else "✗ wrong")
    # Drawing takes the panel back.
    draw_and_wait(app, SEVEN)
    assert app.answer_panel.caption.cget("text") == ""


# ------------------------------------------------------------------ training

@pytest.mark.gui
def test_training_runs_in_the_background_and_offers_the_new_model(app, tmp_path, errors):
    old = app.model
    app.epochs_var.set("3")
    app.images_var.set("20000")
    app.train_button.invoke()
    assert app.training.running

    updates, gaps, progress_seen = 0, [], set()
    last = time.monotonic()
    deadline = last + 60
    while app.train_button.instate(["disabled"]) and time.monotonic() < deadline:
        app.root.update()
        now = time.monotonic()
        gaps.append(now - last)
        last = now
        updates += app.training.running
        progress_seen.add(round(float(app.progress.cget("value"))))
        time.sleep(0.002)
    assert not app.training.running
    assert updates >= 10, "the event loop should keep running while training"
    assert max(gaps) < 1.0, f"the window froze for {max(gaps):.2f} s"
    assert any(0 < p < 100 for p in progress_seen), progress_seen
    # Offered beside the model in use, not installed, until the user chooses.
    assert app.model is old
    assert "new (unsaved): trained here: 3 epochs" in app.candidate_label.cget("text")
    app.use_button.invoke()
    assert app.model is not old and app.candidate is None
    assert "trained here: 3 epochs" in app.model_label.cget("text")
    assert app.use_button.instate(["disabled"])
    assert len(app.plot.accuracies) == 3 and app.plot.losses
    assert app.checkpoint.meta["config"]["limit"] == 20000

    # File > Save model writes a checkpoint the CLI can load (and resume).
    out = tmp_path / "trained.npz"
    assert app.save_model(out)
    saved = checkpoint.load(out)
    np.testing.assert_array_equal(saved.model.W[0], app.model.W[0])
    assert saved.meta["progress"]["epoch"] == 3 and saved.optimizer is not None

    # A path that cannot be written is one line, and the model stays.
    assert not app.save_model(tmp_path / "no-such-dir" / "m.npz")
    assert len(errors) == 1 and "no-such-dir" in errors[0] and "\n" not in errors[0]


@pytest.mark.gui
@pytest.mark.parametrize("keep", [False, True])
def test_cancel_stops_training_and_offers_the_partial_model(app, monkeypatch, keep):
    asked = []
    monkeypatch.setattr(messagebox, "askyesno", lambda title, message, **kw: asked.append(message) or keep)
    old = app.model
    app.epochs_var.set("50")  # minutes of work if cancel did nothing
    app.images_var.set("60000")
    app.train_button.invoke()
    assert pump_until(app.root, lambda: app.progress.cget("value") > 0, timeout=30)
    app.cancel_button.invoke()
    cancelled = time.monotonic()
    assert pump_until(app.root, lambda: app.train_button.instate(["!disabled"]), timeout=10)
    assert time.monotonic() - cancelled < 5
    app.training.join(timeout=1)
    assert not app.training.running
    assert len(asked) == 1 and "of 50" in asked[0]
    assert "cancelled" in app.progress_label.cget("text")
    if keep:
        assert app.model is not old and "partly trained" in app.model_label.cget("text")
    else:
        assert app.model is old and "kept the previous model" in app.status_var.get()


@pytest.mark.gui
def test_bad_training_input_is_one_line_and_starts_nothing(app, errors):
    app.epochs_var.set("five")
    app.train_button.invoke()
    assert errors == ["epochs: expected a whole number, got 'five'"]
    assert not app.training.running and app.train_button.instate(["!disabled"])
    app.epochs_var.set("0")
    app.train_button.invoke()
    assert errors[-1] == "--epochs 0: must be at least 1"


@pytest.mark.gui
def test_an_exception_in_a_callback_is_shown_and_the_window_survives(app, errors, capsys):
    app.root.after(0, lambda: 1 / 0)
    pump_until(app.root, lambda: errors, timeout=1)
    assert errors == ["internal error: ZeroDivisionError: division by zero"]
    assert "ZeroDivisionError" in capsys.readouterr().err  # the traceback, for the bug report
    draw_and_wait(app, SEVEN)


# ------------------------------------------------------ no display needed

def test_percentages_sum_to_exactly_100_after_rounding():
    thirds = percentages(np.full(3, 1 / 3))
    assert list(np.round(thirds, 1)) == [33.4, 33.3, 33.3]
    rng = np.random.default_rng(0)
    for _ in range(200):
        probs = rng.dirichlet(np.full(10, 0.3))
        shown_values = [float(f"{p:.1f}") for p in percentages(probs)]
        assert abs(sum(shown_values) - 100.0) < 1e-9
        assert max(abs(np.array(shown_values) - probs * 100)) <= 0.1 + 1e-9


def test_module_entry_point_rejects_a_bad_model_in_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("nope")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run([sys.executable, "-m", "fastmlp.gui", "--model", str(bad)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"fastmlp gui: error: {bad}: not a fastmlp checkpoint (not a valid .npz file)\n"


def test_drawn_digits_bench_runs_at_tiny_size(small_model):
    spec = importlib.util.spec_from_file_location("drawn_digits", REPO / "bench" / "drawn_digits.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    data = load_dataset()
    rng = np.random.default_rng(0)
    digit = data.X_test[0].reshape(28, 28)
    for pen in bench.PENS:
        for position in bench.POSITIONS:
            image = np.asarray(bench.draw_digit(digit, pen, 200, position, rng))
            assert image.shape == (SIZE, SIZE)
            ink = image < 128
            rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
            extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
            # The longer side is the requested 200 px: the shape itself, or its
            # centre line (a little shorter) plus the pen.
            pen_px = 0 if pen == bench.MNIST_PEN else pen
            assert 0.85 * 200 <= extent <= 200 + pen_px + 2, (pen, extent)
    # A thin pen really is thin: mostly paper, far less ink than a thick one.
    thin = (np.asarray(bench.draw_digit(digit, 6, 200, "centred", rng)) < 128).mean()
    thick = (np.asarray(bench.draw_digit(digit, 28, 200, "centred", rng)) < 128).mean()
    assert 2.5 < thick / thin < 6

    model = checkpoint.load(small_model).model
    report = bench.measure(model, get_backend("numpy"), data, n=3, seed=1)
    assert len(report["conditions"]) == len(bench.conditions())
    assert all(c["accuracy"] in (0, 1 / 3, 2 / 3, 1) for c in report["conditions"])
    assert all(c["not_sure"] in (0, 1 / 3, 2 / 3, 1) for c in report["conditions"])
    table = bench.markdown(report).splitlines()
    assert len([line for line in table if line.startswith("| ")]) == 1 + len(bench.PENS)
    assert table[-2].startswith("Plain MNIST test accuracy")
    assert table[-1].startswith('"Not sure"')


# ------------------------------------------------------ the learner's window

def photo_pixel(photo, x, y):
    return tuple(photo.get(x, y))


@pytest.mark.gui
def test_every_tab_fits_a_1366x768_screen_and_the_train_tab_is_the_default(app):
    from fastmlp.gui.screenshot import window_box

    assert app.tabs.index(app.tabs.select()) == 0
    draw_and_wait(app, SEVEN)
    for tab in range(3):
        app.tabs.select(tab)
        app.root.update()
        left, top, right, bottom = window_box(app.root)
        assert right - left <= 1366 and bottom - top <= 768, (tab, right - left, bottom - top)


@pytest.mark.gui
def test_inside_tab_shows_each_layers_activations_and_the_outputs(app):
    from fastmlp import insight

    app.tabs.select(1)
    assert app.inside.trace is None
    draw_and_wait(app, SEVEN)
    expected = insight.trace(app.model, get_backend("numpy"), app.answer.x)
    for shown_layer, layer in zip(app.inside.trace.hidden, expected.hidden):
        np.testing.assert_array_equal(shown_layer, layer)
    # The brightest cell of layer 1 is lit, a zero cell is dark, on screen.
    grid, _, photo, _ = app.inside._layers[0]
    values = expected.hidden[0]
    bright, dark = grid.origin(int(values.argmax())), grid.origin(int(np.flatnonzero(values == 0)[0]))
    assert sum(photo_pixel(photo, *bright)) > 400 and sum(photo_pixel(photo, *dark)) < 40
    # The output cell of the answer is the brightest.
    fills = [app.inside.outputs.itemcget(item, "fill") for item in app.inside._output_cells]
    brightness = [sum(int(f[i:i + 2], 16) for i in (1, 3, 5)) for f in fills]
    assert int(np.argmax(brightness)) == app.answer.digit
    app.clear()
    assert pump_until(app.root, lambda: app.inside.trace is None)
    assert sum(photo_pixel(photo, *bright)) < 40


@pytest.mark.gui
def test_hovering_a_tile_highlights_it_and_shows_the_units_activation_click_pins(app):
    app.tabs.select(1)
    draw_and_wait(app, SEVEN)
    tiles, grid = app.inside.tiles, app.inside.tile_grid
    unit = int(app.inside.trace.hidden[0].argmax())
    x, y = grid.origin(unit)
    tiles.event_generate("<Motion>", x=x + 5, y=y + 5)
    app.root.update()
    value = app.inside.trace.hidden[0][unit]
    assert app.inside.info.cget("text") == f"layer 1, unit {unit}: activation {value:.3f} on this input"
    assert tiles.coords(app.inside._tile_box) == [x, y, x + grid.cell, y + grid.cell]
    assert tiles.itemcget(app.inside._tile_box, "state") == "normal"
    # The same unit's cell in the layer-1 grid is highlighted too.
    layer_grid, canvas, _, item = app.inside._layers[0]
    lx, ly = layer_grid.origin(unit)
    assert canvas.coords(item)[:2] == [lx, ly] and canvas.itemcget(item, "state") == "normal"
    tiles.event_generate("<ButtonPress-1>", x=x + 5, y=y + 5)
    tiles.event_generate("<Leave>")
    app.root.update()
    assert app.inside.pinned == unit and "pinned" in app.inside.info.cget("text")
    # Hovering a first-layer cell describes that unit.
    ox, oy = layer_grid.origin(3)
    canvas.event_generate("<Motion>", x=ox + 1, y=oy + 1)
    app.root.update()
    assert app.inside.info.cget("text").startswith("layer 1, unit 3:")


def test_output_cells_name_the_same_colours_as_the_pictures():
    from fastmlp.gui import pictures

    values = np.array([0.0, 0.1, 0.5, 0.999, 1.0, 3.0])
    for top in (None, 1.0, 0.0):
        expected = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in pictures.sequential(values, top=top)]
        assert pictures.sequential_hex(values, top=top) == expected


def test_option_cache_makes_a_tk_call_only_for_what_changed():
    from fastmlp.gui.changes import OptionCache

    class Fake:
        def __init__(self):
            self.calls = []

        def configure(self, **options):
            self.calls.append(("configure", options))

        def itemconfigure(self, item, **options):
            self.calls.append(("item", item, options))

        def coords(self, item, *coords):
            self.calls.append(("coords", item, coords))

    label, canvas, cache = Fake(), Fake(), OptionCache()
    assert cache.configure(label, text="7", font="big")
    assert not cache.configure(label, text="7", font="big")
    assert cache.configure(label, text="3", font="big")
    assert label.calls == [("configure", {"text": "7", "font": "big"}), ("configure", {"text": "3"})]
    assert cache.itemconfigure(canvas, 1, fill="red") and not cache.itemconfigure(canvas, 1, fill="red")
    assert cache.itemconfigure(canvas, 2, fill="red")  # another item: its own record
    assert cache.coords(canvas, 1, 0, 0, 5, 5) and not cache.coords(canvas, 1, 0, 0, 5, 5)
    assert cache.coords(canvas, 1, 0, 0, 6, 5)
    assert len(canvas.calls) == 4
    cache.forget(canvas)  # set elsewhere: the next setting goes through again
    assert cache.itemconfigure(canvas, 1, fill="red") and not cache.configure(label, text="3")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_training_runs_below_the_windows_priority_and_its_threads_too():
    from fastmlp.gui.training import BACKGROUND_NICENESS, Failed, TrainingController

    seen = {}

    class Backend:
        name = "probe"

        def prepare(self, dtype):
            seen["training"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            child = threading.Thread(target=lambda: seen.update(
                child=os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
            child.start()
            child.join()
            raise FastmlpError("probe: stop here")

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    controller = TrainingController()
    controller.start(TrainConfig(epochs=1, limit=1000), Backend())
    controller.join(timeout=10)
    events = controller.poll()
    assert isinstance(events[-1], Failed) and "probe: stop here" in events[-1].message
    expected = min(19, mine + BACKGROUND_NICENESS)
    assert seen == {"training": expected, "child": expected}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # the window's stays


FAULTS_PER_ANSWER = """
import resource, sys, time, tkinter as tk
from fastmlp.gui.app import DigitApp
root = tk.Tk()
app = DigitApp(root, model_path=sys.argv[1])
app.tabs.select(1)
app.why_var.set(True)
root.update()
widget = app.canvas.widget
widget.event_generate("<ButtonPress-1>", x=70, y=60)
root.update()
for x, y in [(140, 58), (215, 58), (190, 120), (160, 190), (140, 245)]:
    widget.event_generate("<B1-Motion>", x=x, y=y)
    root.update()
widget.event_generate("<ButtonRelease-1>", x=140, y=245)
for _ in range(5):
    app.refresh()
    root.update()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    app.refresh()
    root.update_idletasks()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20, app.answer is not None)
app.close()
"""


@pytest.mark.gui
@pytest.mark.skipif(not (sys.platform.startswith("linux") and hasattr(os, "confstr")
                         and os.confstr("CS_GNU_LIBC_VERSION")), reason="glibc's malloc")
def test_an_answer_reuses_freed_memory_instead_of_page_faulting(display, small_model):
    # A fresh process: malloc's adaptive thresholds in this one depend on the tests before.
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_ANSWER, str(small_model)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DISPLAY": display})
    assert result.returncode == 0, result.stderr
    faults, answered = result.stdout.split()
    assert answered == "True"
    # glibc's default thresholds: ~450 fresh pages per answer (fastmlp.gui.heap).
    assert float(faults) < 50, faults


@pytest.mark.gui
def test_the_training_plot_is_redrawn_only_when_something_was_added(app):
    plot = app.plot
    plot.reset(2)
    plot.add_loss(0.1, 0.5)
    plot.redraw()
    marker = plot.widget.create_line(0, 0, 1, 1)
    plot.redraw()  # nothing new: nothing redrawn
    assert marker in plot.widget.find_all()
    plot.add_loss(0.2, 0.4)
    plot.redraw()
    assert marker not in plot.widget.find_all() and len(plot.losses) == 2
    marker = plot.widget.create_line(0, 0, 1, 1)
    plot.add_accuracy(1, 0.9)
    plot.redraw()
    assert marker not in plot.widget.find_all()


@pytest.mark.gui
def test_tiles_show_the_first_layer_weights_and_refresh_while_training(app, monkeypatch):
    from fastmlp.gui.pictures import tiles_picture

    app.tabs.select(1)
    photo, grid = app.inside.tiles_photo, app.inside.tile_grid
    expected = tiles_picture(app.model.W[0], grid)
    for unit in (0, 77):
        x, y = grid.origin(unit)
        assert photo_pixel(photo, x + 13, y + 13) == tuple(expected[y + 13, x + 13])
    monkeypatch.setattr(app_module, "TILES_EVERY_S", 0.0)
    refreshed = []
    original = app.inside.refresh_tiles
    monkeypatch.setattr(app.inside, "refresh_tiles", lambda W0: refreshed.append(W0.copy()) or original(W0))
    app.epochs_var.set("2")
    app.images_var.set("5000")
    app.train_button.invoke()
    assert pump_until(app.root, lambda: app.train_button.instate(["!disabled"]), timeout=60)
    # Redrawn from the weights being trained, which changed between redraws.
    assert len(refreshed) >= 2
    assert not np.array_equal(refreshed[0], refreshed[-1])
    # Afterwards the tiles are the model in use's again (the new one is only offered).
    expected = tiles_picture(app.model.W[0], grid)
    x, y = grid.origin(77)
    assert photo_pixel(photo, x + 13, y + 13) == tuple(expected[y + 13, x + 13])


@pytest.mark.gui
def test_why_shows_the_saliency_and_a_click_on_a_bar_asks_about_that_digit(app):
    from fastmlp import insight
    from fastmlp.gui.answer import PREVIEW
    from fastmlp.gui.pictures import saliency_picture

    draw_and_wait(app, SEVEN)
    preview = app.answer_panel.preview
    assert len({photo_pixel(preview, x, y) for x in range(0, 140, 7) for y in range(0, 140, 7)
                if len(set(photo_pixel(preview, x, y))) > 1}) == 0  # grey: the plain input
    app.why_check.invoke()
    app.root.update()
    digit = app.answer.digit
    assert app.answer_panel.preview_caption.cget("text").startswith(f"why {digit}:")

    def expected_for(d):
        grad = insight.saliency(app.model, get_backend("numpy"), app.trace, d)
        return saliency_picture(app.answer.x, grad, PREVIEW)

    picture = expected_for(digit)
    for x, y in ((10, 10), (70, 70), (100, 40)):
        assert photo_pixel(preview, x, y) == tuple(picture[y, x])
    # "What would make this a 4?": click the 4's bar.
    from fastmlp.gui.answer import BAR_GAP, BAR_HEIGHT
    app.answer_panel.bars.event_generate("<ButtonPress-1>", x=50, y=4 * (BAR_HEIGHT + BAR_GAP) + 5)
    app.root.update()
    assert app.saliency_digit == 4
    assert app.answer_panel.preview_caption.cget("text").startswith("why 4:")
    picture = expected_for(4)
    assert photo_pixel(preview, 70, 70) == tuple(picture[70, 70])
    # Clearing forgets the picked digit; Why? off shows the input again.
    app.clear()
    app.why_check.invoke()
    draw_and_wait(app, SEVEN)
    assert app.saliency_digit is None
    assert app.answer_panel.preview_caption.cget("text").startswith("what the network sees")


@pytest.mark.gui
def test_below_the_threshold_the_answer_says_not_sure(app):
    from fastmlp import confidence
    from fastmlp.gui.answer import NOT_SURE

    draw_and_wait(app, SEVEN)
    answer = app.answer
    app.answer_panel.threshold = np.nextafter(answer.confidence, 2.0)
    app.refresh()
    assert shown(app) == NOT_SURE
    assert app.answer_panel.confidence.cget("text") == (
        f"not sure: best guess {answer.digit} ({answer.confidence * 100:.1f}%)")
    app.answer_panel.threshold = None  # the calibrated default, shared with fastmlp predict
    app.refresh()
    sure = answer.confidence >= confidence.NOT_SURE_BELOW
    assert (shown(app) == str(answer.digit)) == sure


@pytest.mark.gui
def test_correcting_saves_the_drawing_to_the_personal_set(app, data_home, errors):
    from fastmlp import drawings

    app.tabs.select(2)
    for k in range(5):
        app.clear()
        draw_and_wait(app, SEVEN if k % 2 else BAR + [(150, 250)])
        x = app.answer.x.copy()
        app.teach.digit_buttons[7 if k % 2 else 1].invoke()
    saved = drawings.load(data_home / "drawings")
    assert saved.count == 5 and saved.test_labels.tolist() == [1]  # number 5 is held out
    assert saved.train_labels.tolist() == [1, 7, 1, 7]
    np.testing.assert_array_equal(saved.test_images[0], drawings.to_pixels(x))
    assert "your drawings: 5 (1 held out)" in app.teach.count_label.cget("text")
    assert "saved drawing #5 as a 1 (held out for testing)" in app.status_var.get()
    # An MNIST test image is refused: the before/after table is scored on MNIST test.
    app.show_test_digit(0)
    assert not app.correct(3)
    assert "not your handwriting" in errors[-1]
    assert drawings.load(data_home / "drawings").count == 5


@pytest.mark.gui
def test_a_corrupt_drawing_set_is_one_line_and_left_alone(app, errors, data_home):
    from fastmlp import drawings

    draw_and_wait(app, SEVEN)
    app.correct(7)
    manifest = (data_home / "drawings").resolve() / drawings.MANIFEST
    manifest.write_text('{"format": "fastmlp-drawings", "format_version": 9, "sha256": {}}')
    before = manifest.read_bytes()
    assert not app.correct(7)
    assert len(errors) == 1 and "newer fastmlp" in errors[0] and "\n" not in errors[0]
    assert manifest.read_bytes() == before
    assert not app.start_finetune()
    assert "newer fastmlp" in errors[-1]


def finetune_and_wait(app):
    app.teach.finetune_button.invoke()
    assert app.training.running
    assert pump_until(app.root, lambda: app.teach.finetune_button.instate(["!disabled"]), timeout=90)


@pytest.mark.gui
def test_finetuning_shows_before_after_and_the_user_keeps_or_discards(app, monkeypatch, errors):
    from fastmlp import finetune

    monkeypatch.setattr(finetune, "MNIST_ROWS", 600)  # seconds, not tens of seconds
    app.tabs.select(2)
    app.teach.finetune_button.invoke()
    assert errors and "no drawings to fine-tune on" in errors[-1]
    for k in range(6):
        app.clear()
        draw_and_wait(app, SEVEN)
        app.correct(7)
    old = app.model
    old_W = old.W[0].copy()
    from fastmlp.gui.screenshot import window_box
    size = window_box(app.root)
    finetune_and_wait(app)
    app.root.update()
    assert window_box(app.root) == size  # offering a model does not resize the window
    cells = {key: cell.cget("text") for key, cell in app.teach.cells.items()}
    assert all(text.endswith("%") or " of " in text for text in cells.values()), cells
    assert cells["drawings", "after"].endswith(" of 1")
    assert "fine-tuned on 5 drawings: MNIST" in app.candidate_label.cget("text")
    assert app.model is old  # offered, not installed
    np.testing.assert_array_equal(old.W[0], old_W)  # and the model in use untouched

    app.discard_button.invoke()
    assert app.model is old and app.candidate is None and "discarded" in app.status_var.get()

    finetune_and_wait(app)
    candidate = app.candidate[0].model
    app.use_button.invoke()
    assert app.model is candidate and "(unsaved)" in app.model_label.cget("text")
    draw_and_wait(app, SEVEN)  # the new model answers


@pytest.mark.gui
def test_save_drawing_writes_the_canvas_and_the_28x28_input(app, tmp_path, errors):
    from fastmlp import drawings

    assert not app.save_drawing(tmp_path / "empty.png")
    assert errors == ["nothing drawn to save"]
    draw_and_wait(app, SEVEN)
    assert app.save_drawing(tmp_path / "seven.png")
    big, small = Image.open(tmp_path / "seven.png"), Image.open(tmp_path / "seven-28x28.png")
    assert big.size == (SIZE, SIZE) and small.size == (28, 28)
    np.testing.assert_array_equal(np.asarray(big), np.asarray(app.canvas.image))
    np.testing.assert_array_equal(np.asarray(small), drawings.to_pixels(app.answer.x))
    assert not app.save_drawing(tmp_path / "missing" / "x.png")
    assert "missing" in errors[-1] and "\n" not in errors[-1]


@pytest.mark.gui
def test_dark_mode_recolours_the_window_but_not_the_paper(app):
    from fastmlp.gui import theme

    draw_and_wait(app, SEVEN)
    app.set_mode("dark")
    app.root.update()
    dark = theme.PALETTE["dark"]
    assert app.theme in ("sun-valley-dark", "clam")
    assert app.model_label.cget("background") == dark["background"]
    assert app.answer_panel.bars.cget("background") == dark["panel"]
    label = app.answer_panel._label[0]
    assert app.answer_panel.bars.itemcget(label, "fill") == dark["foreground"]
    assert app.canvas.widget.cget("background") == "white"  # the paper stays paper
    assert app.dark_var.get()
    app.set_mode("light")
    assert app.model_label.cget("background") == theme.PALETTE["light"]["background"]
    draw_and_wait(app, SEVEN)


@pytest.mark.gui
def test_latency_bench_drives_the_app_at_tiny_size(display, small_model):
    gc.collect()  # the previous test's app: see the app fixture
    spec = importlib.util.spec_from_file_location("gui_latency", REPO / "bench" / "gui_latency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure("numpy", digits=1, model=small_model)
    assert result["work"]["n"] >= 5 and result["latency"]["n"] == result["work"]["n"]
    assert 0 < result["work"]["median"] <= result["latency"]["median"] + 1e-9
    table = bench.markdown([{"backend": "numpy", "condition": "idle", **result}])
    assert table.count("\n") == 2 and "| numpy | idle |" in table
    assert json.loads(json.dumps(result)) == result  # what --json writes


@pytest.mark.gui
def test_a_model_fitted_from_python_opens_and_answers(app, tmp_path):
    """An MLPClassifier checkpoint has no test accuracy in its history."""
    from fastmlp import MLPClassifier
    from fastmlp.data import load_dataset

    data = load_dataset()
    path = tmp_path / "from_python.npz"
    MLPClassifier(epochs=1, hidden=(16,)).fit(data.X_train[:500], data.y_train[:500]).save(path)
    assert app.open_model(path, dialog=False)
    assert app.status_var.get() == f"loaded model {path}"
    draw_and_wait(app, SEVEN)


@pytest.mark.gui
def test_a_hidpi_screen_gets_every_pixel_size_scaled(display, small_model, errors):
    """At 192 DPI (Tk's scaling twice the ordinary 96 DPI) every size given
    in pixels doubles: the canvas, the pen, the preview, the bars, the tiles;
    a digit drawn at twice the coordinates reads as the same digit."""
    from fastmlp.gui import theme
    gc.collect()
    answers = {}
    for factor in (1, 2):
        root = tk.Tk()
        root.tk.call("tk", "scaling", factor * 96 / 72)
        app = DigitApp(root, model_path=small_model)
        try:
            app.answer_panel.threshold = 0.0
            root.update()
            assert theme.screen_scale(root) == factor
            assert int(app.canvas.widget.cget("width")) == 280 * factor
            assert app.canvas.image.size == (280 * factor, 280 * factor)
            assert app.answer_panel.preview.width() == 140 * factor
            assert int(app.answer_panel.bars.cget("width")) == (170 + 90) * factor
            draw_and_wait(app, [(x * factor, y * factor) for x, y in SEVEN])
            assert app.canvas.strokes[0].width == app.brush.get() * factor
            answers[factor] = (shown(app), app.answer.x)
        finally:
            app.close()
            theme.set_scale(1.0)
            gc.collect()
    assert answers[2][0] == answers[1][0]
    # The same drawing, at twice the pixels: nearly the same 28x28 input.
    assert np.abs(answers[2][1] - answers[1][1]).mean() < 0.02

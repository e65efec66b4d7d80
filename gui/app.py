"""The drawing app: draw a digit, watch the network answer while you draw.

Layout (about 1170x700 px, fits a 1366x768 screen):

    [ drawing canvas 280x280 ]  [ predicted digit or ?   ]  [ model in use, new model: Use/Discard ]
    [ pen width, Clear, Undo ]  [ 28x28 input or saliency]  [ tabs: Train (default) | Inside the    ]
    [ Test digit, Open image ]  [ 10 bars (click: why d) ]  [   network | Teach it my handwriting   ]
    [ Why? (saliency)        ]  [                        ]  [                                      ]
    [ status bar                                                                                    ]

The default tab is the plain one (kernels, training); the network's insides
and the handwriting lessons are one click away. Every prediction also runs
the live panels (fastmlp.insight: activations, and the saliency when Why? is
on), whichever tab is showing.

Everything runs on the Tk thread except training (fastmlp.gui.training) and
getting a compiled backend ready (fastmlp.readiness: a cold Numba cache
compiles for 5-35 s). Until the selected backend is ready for the model's
dtype, NumPy answers and the radio button says the backend is getting ready.
Errors never close the window: FastmlpError messages (one line) go to the
status bar and, for user actions, a message box.
"""

import math
import sys
import time
import tkinter as tk
import traceback
from dataclasses import dataclass
from pathlib import Path
from tkinter import filedialog, messagebox, ttk

import numpy as np

import fastmlp
from fastmlp import checkpoint, drawings, finetune, insight
from fastmlp.data import load_dataset
from fastmlp.errors import FastmlpError, one_line
from fastmlp.gui import heap, theme
from fastmlp.gui.theme import px
from fastmlp.gui.answer import AnswerPanel
from fastmlp.gui.canvas import DrawingCanvas
from fastmlp.gui.inference import check_model, classify, classify_picture
from fastmlp.gui.inside import InsidePanel
from fastmlp.gui.plot import CurvePlot
from fastmlp.gui.teach import TeachPanel
from fastmlp.gui.training import EpochDone, Failed, Finished, Progress, Stage, TrainingController
from fastmlp.kernels import BACKENDS, get_backend
from fastmlp.preprocess import load_and_normalize
from fastmlp.readiness import Preparation
from fastmlp.train import TrainConfig

PRETRAINED = Path(fastmlp.__file__).resolve().parent / "pretrained" / "fastmlp-mnist.npz"
POLL_MS = 50  # how often the Tk thread drains the training queue (and checks readiness)
REFERENCE = "numpy"  # needs no preparing: what answers while another backend gets ready
GETTING_READY = " (getting ready…)"  # added to a radio button's label meanwhile
DRAW_PROMPT = "draw a digit"
NO_MODEL = "no model loaded: File > Open model or Train"
BACKEND_LABELS = {"numpy": "NumPy", "numba": "Numba"}
IMAGE_TYPES = [("Images", "*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp"), ("All files", "*")]
SIDE_WIDTH = 500  # px, the right-hand column (the weight tiles are 478 px wide)
MODEL_TYPES = [("fastmlp checkpoints", "*.npz"), ("All files", "*")]
PNG_TYPES = [("PNG images", "*.png"), ("All files", "*")]
TILES_EVERY_S = 0.4  # while training, redraw the weight tiles this often (~2.5 ms each)
NO_CANDIDATE = "new model: none yet (training or fine-tuning offers one here)"


@dataclass(frozen=True)
class FinetuneJob:
    """A fine-tuning run in progress: what it learns from and the scores
    before it, for the before/after table."""

    drawings: drawings.Drawings
    mnist: object  # fastmlp.data.Dataset
    before: finetune.Scores


class DigitApp:
    """The main window's contents, built into ``root``.

    Public methods are what the menus and buttons call, so tests (and
    scripts) drive the app exactly as a user would: clear(), undo(),
    select_backend(name), open_model(path), save_model(path),
    open_image(path), show_test_digit(index), start_training(), cancel_training(),
    pick_saliency_digit(d), correct(d), start_finetune(), use_candidate(),
    discard_candidate(), save_drawing(path), set_mode("light"|"dark").
    ``drawings_path``: the personal data set (default: the user's data directory).
    """

    def __init__(self, root: tk.Tk, model_path=None, backend: str = "numpy", drawings_path=None,
                 mode: str = "light"):
        self.root = root
        self.mode = mode
        heap.keep_freed_memory()  # no page faults in an answer (fastmlp.gui.heap)
        root.title("fastmlp: draw a digit")
        root.report_callback_exception = self.report_exception
        root.protocol("WM_DELETE_WINDOW", self.close)

        self.model = None  # fastmlp.model.MLP, or None before one is loaded/trained
        self.checkpoint = None  # what File > Save model writes
        self.backend = get_backend(REFERENCE)  # the kernels in use, ready for the model's dtype
        # (name, dtype) -> backend module that finished preparing for that dtype,
        # and -> Preparation still running in the background.
        self._ready = {}
        self._preparing = {}
        self.answer = None  # the last fastmlp.gui.inference.Answer shown, or None
        # What the answer panel is about: None = the drawing, else
        # (x: (784,) input, caption, true label or None) from an image/test digit.
        self._shown = None
        self._pending = None  # after_idle() id of the prediction the drawing waits for
        self._test_data = None
        self._rng = np.random.default_rng()
        self.training = TrainingController()
        self._training_epochs = 1
        self._job: FinetuneJob | None = None  # None: a plain training run (or none)
        self._tiles_at = 0.0  # time.monotonic() the tiles were last redrawn while training
        self.candidate = None  # (Checkpoint, description): a trained model not yet chosen
        self.trace = None  # the fastmlp.insight.Trace of the answer shown, or None
        self.saliency_digit = None  # the digit whose saliency Why? shows; None: the answer's
        self.drawings_path = Path(drawings_path) if drawings_path else drawings.default_path()

        self.brush = tk.IntVar(value=18)
        self.backend_var = tk.StringVar(value=REFERENCE)  # the selected kernels
        self.epochs_var = tk.StringVar(value="5")
        self.images_var = tk.StringVar(value="60000")
        self.status_var = tk.StringVar()
        self.why_var = tk.BooleanVar(value=False)
        self.dark_var = tk.BooleanVar(value=mode == "dark")

        theme.set_scale(theme.screen_scale(root))   # px() from here on: HiDPI
        self._build_window()
        theme.scale_fonts(root, theme.screen_scale(root))
        self.set_mode(mode)
        self._load_initial_model(model_path)
        self._show_drawings()
        if backend != REFERENCE:
            self.select_backend(backend)
        self.refresh()

    # ------------------------------------------------------------ widgets

    def _build_window(self):
        root = self.root
        self._build_menu()
        body = tk.Frame(root, padx=10, pady=8)
        body.pack(side="top", fill="both", expand=True)
        self._build_drawing(body).grid(row=0, column=0, sticky="n", padx=(0, 12))
        self.answer_panel = AnswerPanel(body, on_pick=self.pick_saliency_digit)
        self.answer_panel.frame.grid(row=0, column=1, sticky="n", padx=12)
        self._build_side(body).grid(row=0, column=2, sticky="new", padx=(12, 0))
        body.grid_columnconfigure(2, minsize=px(SIDE_WIDTH))  # texts changing must not resize the window
        self.status = tk.Label(root, textvariable=self.status_var, anchor="w", relief="sunken",
                               padx=6)
        self.status.pack(side="bottom", fill="x")
        for sequence, action in (("<Escape>", self.clear), ("<Control-z>", self.undo),
                                 ("<Control-o>", self.ask_open_model),
                                 ("<Control-s>", self.ask_save_model),
                                 ("<Control-i>", self.ask_open_image), ("<Control-q>", self.close)):
            root.bind(sequence, lambda event, action=action: action())

    def _build_menu(self):
        menubar = tk.Menu(self.root)
        self.file_menu = tk.Menu(menubar, tearoff=False)
        self.file_menu.add_command(label="Open model…", accelerator="Ctrl+O", command=self.ask_open_model)
        self.file_menu.add_command(label="Save model…", accelerator="Ctrl+S", command=self.ask_save_model,
                                   state="disabled")
        self.file_menu.add_separator()
        self.file_menu.add_command(label="Open image…", accelerator="Ctrl+I", command=self.ask_open_image)
        self.file_menu.add_command(label="Save drawing…", command=self.ask_save_drawing)
        self.file_menu.add_separator()
        self.file_menu.add_command(label="Quit", accelerator="Ctrl+Q", command=self.close)
        menubar.add_cascade(label="File", menu=self.file_menu)
        edit = tk.Menu(menubar, tearoff=False)
        edit.add_command(label="Undo stroke", accelerator="Ctrl+Z", command=self.undo)
        edit.add_command(label="Clear", accelerator="Esc", command=self.clear)
        menubar.add_cascade(label="Edit", menu=edit)
        view = tk.Menu(menubar, tearoff=False)
        view.add_checkbutton(label="Dark mode", variable=self.dark_var,
                             command=lambda: self.set_mode("dark" if self.dark_var.get() else "light"))
        menubar.add_cascade(label="View", menu=view)
        self.root.configure(menu=menubar)

    def _build_drawing(self, parent) -> tk.Frame:
        frame = tk.Frame(parent)
        tk.Label(frame, text="Draw a digit (right click or Esc clears)").pack(anchor="w")
        border = tk.Frame(frame, borderwidth=2, relief="sunken")
        border.pack()
        self.canvas = DrawingCanvas(border, self.brush, on_change=self._drawing_changed)
        self.canvas.widget.pack()
        tk.Scale(frame, label="Pen width (px)", variable=self.brush, from_=4, to=40,
                 orient="horizontal", length=px(280)).pack(fill="x", pady=(6, 0))
        row = tk.Frame(frame)
        row.pack(fill="x", pady=4)
        self.clear_button = ttk.Button(row, text="Clear", command=self.clear)
        self.clear_button.pack(side="left", expand=True, fill="x")
        self.undo_button = ttk.Button(row, text="Undo", command=self.undo)
        self.undo_button.pack(side="left", expand=True, fill="x")
        row = tk.Frame(frame)
        row.pack(fill="x")
        self.test_button = ttk.Button(row, text="Test digit", command=self.show_test_digit)
        self.test_button.pack(side="left", expand=True, fill="x")
        ttk.Button(row, text="Open image…", command=self.ask_open_image).pack(side="left", expand=True,
                                                                               fill="x")
        self.why_check = ttk.Checkbutton(frame, text="Why? Show the saliency on the 28×28 view",
                                         variable=self.why_var, command=self.refresh)
        self.why_check.pack(anchor="w", pady=(8, 0))
        return frame

    def _build_side(self, parent) -> tk.Frame:
        frame = tk.Frame(parent)
        box = ttk.LabelFrame(frame, text="Model", padding=6)
        box.pack(fill="x")
        self.model_label = tk.Label(box, text="none", wraplength=px(SIDE_WIDTH - 30), justify="left",
                                    anchor="w")
        self.model_label.pack(fill="x")
        row = tk.Frame(box)
        row.pack(fill="x", pady=(4, 0))
        self.use_button = ttk.Button(row, text="Use new model", command=self.use_candidate,
                                     state="disabled")
        self.use_button.pack(side="right")
        self.discard_button = ttk.Button(row, text="Discard", command=self.discard_candidate,
                                         state="disabled")
        self.discard_button.pack(side="right", padx=4)
        # Two lines reserved: offering a model must not resize the window.
        self.candidate_label = tk.Label(row, text=NO_CANDIDATE, wraplength=px(SIDE_WIDTH - 200),
                                        justify="left", anchor="w", height=2)
        self.candidate_label.pack(side="left", fill="x")

        self.tabs = ttk.Notebook(frame)
        self.tabs.pack(fill="both", expand=True, pady=(8, 0))
        self.tabs.add(self._build_training(self.tabs), text="Train")
        self.inside = InsidePanel(self.tabs)
        self.tabs.add(self.inside.frame, text="Inside the network")
        self.teach = TeachPanel(self.tabs, on_correct=self.correct, on_finetune=self.start_finetune)
        self.tabs.add(self.teach.frame, text="Teach it my handwriting")
        return frame

    def _build_training(self, parent) -> tk.Frame:
        frame = tk.Frame(parent, padx=6, pady=6)
        box = ttk.LabelFrame(frame, text="Kernels", padding=6)
        box.pack(fill="x", pady=(0, 8))
        row = tk.Frame(box)
        row.pack(fill="x")
        self.backend_buttons = {}
        for name in BACKENDS:
            button = ttk.Radiobutton(row, text=BACKEND_LABELS.get(name, name), value=name,
                                     variable=self.backend_var,
                                     command=lambda name=name: self.select_backend(name))
            button.pack(side="left", padx=(0, 12))
            self.backend_buttons[name] = button
        # Wall time of model.predict_proba alone: the kernels, not preprocessing or Tk.
        self.timing_label = tk.Label(box, text="last prediction: –", anchor="w")
        self.timing_label.pack(fill="x")

        box = ttk.LabelFrame(frame, text="Train a new model", padding=6)
        box.pack(fill="x")
        row = tk.Frame(box)
        row.pack(fill="x")
        tk.Label(row, text="Epochs").pack(side="left")
        self.epochs_spin = ttk.Spinbox(row, from_=1, to=100, width=4, textvariable=self.epochs_var)
        self.epochs_spin.pack(side="left", padx=(4, 10))
        tk.Label(row, text="Images").pack(side="left")
        self.images_spin = ttk.Spinbox(row, from_=1000, to=60000, increment=1000, width=7,
                                       textvariable=self.images_var)
        self.images_spin.pack(side="left", padx=4)
        row = tk.Frame(box)
        row.pack(fill="x", pady=4)
        self.train_button = ttk.Button(row, text="Train", command=self.start_training)
        self.train_button.pack(side="left", expand=True, fill="x")
        self.cancel_button = ttk.Button(row, text="Cancel", command=self.cancel_training,
                                        state="disabled")
        self.cancel_button.pack(side="left", expand=True, fill="x")
        self.progress = ttk.Progressbar(box, maximum=100.0, length=px(300))
        self.progress.pack(fill="x")
        self.progress_label = tk.Label(box, text="", anchor="w")
        self.progress_label.pack(fill="x")
        self.plot = CurvePlot(box)
        self.plot.widget.pack(pady=(4, 0))
        return frame

    # ------------------------------------------------------------- status

    def set_status(self, text: str, error: bool = False) -> None:
        self.status_var.set(one_line(text))
        colours = theme.PALETTE[self.mode]
        self.status.configure(foreground=colours["error"] if error else colours["foreground"])

    def show_error(self, message, dialog: bool = True) -> None:
        """A one-line error in the status bar, and in a message box for actions
        the user just asked for."""
        message = one_line(message)
        self.set_status(message, error=True)
        if dialog:
            messagebox.showerror("fastmlp", message, parent=self.root)

    def report_exception(self, exc_type, value, tb) -> None:
        """Tk calls this for any exception escaping a callback: show it, keep running."""
        if isinstance(value, FastmlpError):
            self.show_error(value)
            return
        traceback.print_exception(exc_type, value, tb, file=sys.stderr)  # a bug: keep the trace
        self.show_error(f"internal error: {exc_type.__name__}: {value}")

    # ---------------------------------------------------------- prediction

    def _drawing_changed(self) -> None:
        """Answer as soon as Tk is idle: every change queued before then (a
        burst of motion events) gets one prediction, and no timer delays it,
        so the answer follows the pen within the refresh's own few ms (the
        draw->answer latency: bench/gui_latency.py)."""
        self._shown = None
        if self._pending is None:
            self._pending = self.root.after_idle(self.refresh)

    def refresh(self) -> None:
        """Predict what the panel is about (the drawing, or an image/test digit) now."""
        if self._pending is not None:
            self.root.after_cancel(self._pending)
            self._pending = None
        if self._shown is None and self.canvas.is_empty:
            self._show_nothing(DRAW_PROMPT if self.model else NO_MODEL)
            return
        if self.model is None:
            self._show_nothing(NO_MODEL)
            return
        if self._shown is None:
            try:
                answer = classify_picture(self.model, self.backend, self.canvas.image, name="drawing")
            except FastmlpError:  # no ink inside the canvas (all of it drawn off the edge)
                self._show_nothing(DRAW_PROMPT)
                return
            caption = ""
        else:
            x, caption, label = self._shown
            answer = classify(self.model, self.backend, x)
            if label is not None:
                caption += ": ✓ right" if answer.digit == label else ": ✗ wrong"
        self.answer = answer
        self.answer_panel.show(answer, caption, self._show_insight(answer))
        self.timing_label.configure(
            text=f"last prediction: {answer.seconds * 1e6:,.0f} µs on {self.backend.name}")

    def _show_nothing(self, message: str) -> None:
        self.answer = self.trace = None
        self.answer_panel.show_message(message)
        self.inside.clear()

    def _show_insight(self, answer):
        """The live panels for ``answer``: every layer's activations; returns
        None, or with Why? on (saliency: (784,), digit) for the answer panel,
        the chosen digit being the answer's unless a bar was clicked."""
        self.trace = insight.trace(self.model, self.backend, answer.seen, prepared=True)
        self.inside.show(self.trace)
        if not self.why_var.get():
            return None
        digit = answer.digit if self.saliency_digit is None else self.saliency_digit
        return insight.saliency(self.model, self.backend, self.trace, digit), digit

    def pick_saliency_digit(self, digit: int) -> None:
        """A click on digit's bar: show why (or why not) that digit."""
        self.saliency_digit = digit
        self.why_var.set(True)
        self.refresh()

    def _show_input(self, x, caption: str, label=None) -> None:
        """Answer for a prepared network input instead of the drawing."""
        self.canvas.clear()  # the answer no longer describes the drawing
        self._shown = (x, caption, label)
        self.refresh()

    # ------------------------------------------------------------ drawing

    def clear(self) -> None:
        self.saliency_digit = None
        self.canvas.clear()

    def undo(self) -> None:
        self.canvas.undo()

    # ------------------------------------------------------------ backend

    def select_backend(self, name: str) -> bool:
        """Select kernels; never waits on the Tk thread. A backend ready for
        the model's dtype takes over at once (True). Otherwise it is loaded
        and prepared in the background while the reference keeps answering,
        and _poll_ready switches to it if it is still the one selected then
        (False); a failure goes to the status bar and leaves the reference."""
        self.backend_var.set(name)
        dtype = self._kernel_dtype()
        ready = self._ready_backend(name, dtype)
        if ready is not None:
            self._use(ready)
            return True
        if self._ready_backend(self.backend.name, dtype) is None:
            self.backend = self._ready_backend(REFERENCE, dtype)  # e.g. a float64 model opened
        if (name, dtype) not in self._preparing:
            preparation = Preparation(name, dtype, lambda: self._load_backend(name, dtype))
            self._preparing[name, dtype] = preparation
            self.root.after(POLL_MS, self._poll_ready, preparation)
        self._show_backends()
        label = BACKEND_LABELS.get(name, name)
        self.set_status(f"getting {label} kernels ready for {dtype} (compiling them the first "
                        f"time); {BACKEND_LABELS[REFERENCE]} answers meanwhile")
        self.refresh()
        return False

    @staticmethod
    def _load_backend(name: str, dtype):
        """(In the preparation thread, no Tk.) The backend, with the live
        panels' single ops run once, so that no compile lands in a prediction."""
        backend = get_backend(name)
        insight.warm_up(backend, dtype)
        return backend

    def _kernel_dtype(self) -> np.dtype:
        """The dtype predictions run in: the model's (float32, training's
        default, before there is one)."""
        return np.dtype(self.model.dtype if self.model is not None else TrainConfig.dtype)

    def _ready_backend(self, name: str, dtype):
        """The backend ``name`` if it is ready for ``dtype`` (the reference
        always is), else None."""
        if name == REFERENCE:
            return get_backend(REFERENCE)
        return self._ready.get((name, np.dtype(dtype)))

    def _use(self, backend, note: str = "") -> None:
        self.backend = backend
        self._show_backends()
        self.set_status(f"kernels: {BACKEND_LABELS.get(backend.name, backend.name)}{note}")
        self.refresh()

    def _show_backends(self) -> None:
        """The selected radio button says so while its backend gets ready."""
        selected = self.backend_var.get()
        for name, button in self.backend_buttons.items():
            waiting = name == selected and name != self.backend.name
            button.configure(text=BACKEND_LABELS.get(name, name) + (GETTING_READY if waiting else ""))

    def _poll_ready(self, preparation: Preparation) -> None:
        """Tk side of a background preparation (an after() loop, never
        blocking). When it ends: remember a ready backend, and switch to it if
        it is still selected for the model's dtype (the user may have gone
        back to NumPy or opened a model of another dtype meanwhile); report a
        failure only if it is, since only then does it concern the user."""
        if not preparation.done:
            self.root.after(POLL_MS, self._poll_ready, preparation)
            return
        key = (preparation.name, preparation.dtype)
        self._preparing.pop(key, None)
        wanted = (self.backend_var.get() == preparation.name
                  and self._kernel_dtype() == preparation.dtype)
        if preparation.error is None:
            self._ready[key] = preparation.backend
            if wanted:
                self._use(preparation.backend, f" (ready in {preparation.seconds:.1f} s)")
        elif wanted:
            self.backend_var.set(self.backend.name)
            self._show_backends()
            self.show_error(preparation.error, dialog=False)

    # -------------------------------------------------------------- model

    def _load_initial_model(self, model_path) -> None:
        if model_path is not None:
            self.open_model(model_path, dialog=False)
        elif PRETRAINED.is_file():
            self.open_model(PRETRAINED, dialog=False)
        else:
            self.set_status(NO_MODEL)

    def open_model(self, path, dialog: bool = True) -> bool:
        """Load a checkpoint. A bad one leaves the current model in place."""
        try:
            loaded = checkpoint.load(path)
            check_model(loaded.model, path)
        except FastmlpError as exc:
            self.show_error(exc, dialog=dialog)
            return False
        history = loaded.meta.get("history") or []
        # A model fitted from Python (MLPClassifier) has no test accuracy on record.
        tested = history and isinstance(history[-1], dict) and "test_accuracy" in history[-1]
        accuracy = f", test {history[-1]['test_accuracy'] * 100:.2f}%" if tested else ""
        self._install(loaded, f"{Path(path).name}{accuracy}")
        self.set_status(f"loaded model {path}")
        return True

    def _install(self, saved: checkpoint.Checkpoint, description: str) -> None:
        model = saved.model
        self.model, self.checkpoint = model, saved
        self.model_label.configure(
            text=f"{description}\n{'-'.join(map(str, model.sizes))}, {model.dtype}")
        self.file_menu.entryconfigure("Save model…", state="normal")
        self.inside.set_model(model)
        # The selected kernels, if ready for this model's dtype; else NumPy
        # answers while they get ready for it.
        self.select_backend(self.backend_var.get())

    def save_model(self, path) -> bool:
        if self.checkpoint is None:
            self.show_error("no model to save: train or open one first")
            return False
        try:
            checkpoint.save(path, self.checkpoint)
        except FastmlpError as exc:  # includes OSError: checkpoint.atomic_write turns it into one line
            self.show_error(exc)
            return False
        self.set_status(f"saved model {path}")
        return True

    def ask_open_model(self) -> None:
        path = filedialog.askopenfilename(parent=self.root, title="Open model", filetypes=MODEL_TYPES)
        if path:
            self.open_model(path)

    def ask_save_model(self) -> None:
        if self.checkpoint is None:
            self.show_error("no model to save: train or open one first")
            return
        path = filedialog.asksaveasfilename(parent=self.root, title="Save model", defaultextension=".npz",
                                            initialfile="fastmlp-model.npz", filetypes=MODEL_TYPES)
        if path:
            self.save_model(path)

    # ----------------------------------------------------- other pictures

    def open_image(self, path) -> bool:
        """Classify a picture file (PNG, JPEG, BMP, ...), normalised like MNIST."""
        try:
            x = load_and_normalize(path)
        except FastmlpError as exc:
            self.show_error(exc)
            return False
        name = Path(path).name
        if len(name) > 40:  # the caption has two lines; the full path is in the status bar
            name = f"{name[:19]}…{name[-19:]}"
        self._show_input(x, f"image {name}")
        self.set_status(f"classified {path}")
        return True

    def ask_open_image(self) -> None:
        path = filedialog.askopenfilename(parent=self.root, title="Open image", filetypes=IMAGE_TYPES)
        if path:
            self.open_image(path)

    def show_test_digit(self, index: int | None = None) -> None:
        """A random (or the given) MNIST test image, with its true label."""
        if self._test_data is None:
            self.set_status("loading the MNIST test set…")
            self.root.update_idletasks()
            from fastmlp.data import load_dataset
            self._test_data = load_dataset()
        data = self._test_data
        if index is None:
            index = int(self._rng.integers(len(data.X_test)))
        label = int(data.y_test[index])
        self._show_input(data.X_test[index], f"MNIST test image #{index}, label {label}", label)
        self.set_status(f"MNIST test image #{index}")

    # ----------------------------------------------------------- training

    def training_config(self) -> TrainConfig:
        """The recipe from the Epochs and Images fields (defaults otherwise)."""
        values = {}
        for field, var in (("epochs", self.epochs_var), ("limit", self.images_var)):
            text = var.get().strip()
            try:
                values[field] = int(text)
            except ValueError:
                raise FastmlpError(f"{field}: expected a whole number, got {text!r}") from None
        return TrainConfig(epochs=values["epochs"], limit=values["limit"])

    def start_training(self) -> bool:
        """Train a fresh network in the background with the selected kernels
        (even while they are still getting ready here); the window stays live.
        The training thread prepares them first, which the label announces
        unless they are known to be ready. The result is offered, not
        installed: the user uses or discards it (Model box)."""
        try:
            config = self.training_config()
        except FastmlpError as exc:
            self.show_error(exc)
            return False
        if not self._launch(config, job=None):
            return False
        self.set_status(f"training {config.epochs} epochs on {config.limit} images "
                        f"({self.backend_var.get()} kernels)…")
        return True

    def start_finetune(self) -> bool:
        """Fine-tune a copy of the model in use on the personal drawings mixed
        with MNIST (fastmlp.finetune), in the background; the before column
        of the table is filled now, the after column when it ends."""
        if self.model is None:
            self.show_error("no model to fine-tune: open or train one first")
            return False
        try:
            mine = drawings.load(self.drawings_path)
            mnist = load_dataset(dtype=self.model.dtype)
            data = finetune.mixed_data(mine, mnist)
            config = finetune.config_for(self.model)
        except FastmlpError as exc:
            self.show_error(exc)
            return False
        before = finetune.scores(self.model, self.backend, mnist, mine)
        if not self._launch(config, data, finetune.start_state(self.model, config),
                            job=FinetuneJob(mine, mnist, before)):
            return False
        self.teach.show_scores("before", before)
        self.teach.show_scores("after", None)
        self.set_status(f"fine-tuning on {len(mine.train_labels)} drawings mixed with "
                        f"{finetune.MNIST_ROWS} MNIST images…")
        return True

    def _launch(self, config, data=None, state=None, job=None) -> bool:
        """Start ``config`` on the selected kernels; the buttons and progress
        follow it until _poll_training sees it end."""
        name = self.backend_var.get()
        try:
            backend = self.backend if name == self.backend.name else get_backend(name)
            self.training.start(config, backend, data, state)
        except FastmlpError as exc:
            self.show_error(exc)
            return False
        self._job = job
        for button in (self.train_button, self.teach.finetune_button):
            button.configure(state="disabled")
        self.cancel_button.configure(state="normal")
        self.progress.configure(value=0)
        ready = self._ready_backend(name, config.dtype) is not None
        self._show_progress("loading data…" if ready else f"compiling {name} kernels…")
        self.plot.reset(config.epochs)
        self._training_epochs = config.epochs
        self.root.after(POLL_MS, self._poll_training)
        return True

    def _show_progress(self, text: str) -> None:
        self.progress_label.configure(text=text)
        if self._job is not None:
            self.teach.show_progress(text)

    def cancel_training(self) -> None:
        if self.training.running:
            self.training.cancel()
            self.set_status("cancelling after the current batch…")

    def _poll_training(self) -> None:
        finished = None
        for event in self.training.poll():
            if isinstance(event, Stage):
                self._show_progress(event.text)
            elif isinstance(event, Progress):
                self.plot.add_loss(event.position, event.loss)
                self.progress.configure(value=100.0 * event.position / self._training_epochs)
                self._show_progress(f"epoch {max(1, math.ceil(event.position))}"
                                    f"/{self._training_epochs}, loss {event.loss:.4f}")
            elif isinstance(event, EpochDone):
                self.plot.add_accuracy(event.record["epoch"], event.record["test_accuracy"])
            else:
                finished = event
        self.plot.redraw()
        self._show_live_tiles()
        if finished is None:
            self.root.after(POLL_MS, self._poll_training)
            return
        for button in (self.train_button, self.teach.finetune_button):
            button.configure(state="normal")
        self.cancel_button.configure(state="disabled")
        if self.model is not None:  # back to the tiles of the model in use
            self.inside.set_model(self.model)
            self.refresh()
        if isinstance(finished, Failed):
            self._show_progress("failed")
            self.show_error(finished.message)
        else:
            self._training_finished(finished)
        self._job = None

    def _show_live_tiles(self) -> None:
        """While training, the first layer's tiles show the weights being
        trained (features forming from noise), every TILES_EVERY_S."""
        live, now = self.training.live_model, time.monotonic()
        if live is None or now - self._tiles_at < TILES_EVERY_S or not self.training.running:
            return
        if self.inside.tile_grid.count != live.sizes[1]:
            return  # another width than the model in use: its tiles stay
        self.inside.refresh_tiles(live.W[0])
        self._tiles_at = now

    def _training_finished(self, event: Finished) -> None:
        state, epochs = event.state, event.config.epochs
        history = state.history
        accuracy = f", test {history[-1]['test_accuracy'] * 100:.2f}%" if history else ""
        saved = event.saved
        if event.status == "done":
            self._show_progress(f"done: {epochs} epochs{accuracy}")
            self._offer(saved, self._describe_result(state, epochs, accuracy))
            return
        where = f"in epoch {state.epoch + 1} of {epochs}"
        self._show_progress(f"cancelled {where}")
        keep = messagebox.askyesno("Training cancelled",
                                   f"Training stopped {where}{accuracy}. "
                                   "Use the partially trained model?", parent=self.root)
        if keep:
            self._install(saved, f"partly trained here: {state.epoch} of {epochs} epochs{accuracy} "
                                 "(unsaved)")
            self.set_status("using the partially trained model; File > Save model keeps it")
        else:
            self.set_status("training cancelled; kept the previous model")

    def _describe_result(self, state, epochs, accuracy) -> str:
        if self._job is None:
            return f"trained here: {epochs} epochs{accuracy}"
        job = self._job
        after = finetune.scores(state.model, self.backend, job.mnist, job.drawings)
        self.teach.show_scores("after", after)
        mine = ("" if after.drawings is None else
                f", yours {job.before.drawings * 100:.0f} → {after.drawings * 100:.0f}%")
        return (f"fine-tuned on {len(job.drawings.train_labels)} drawings: MNIST "
                f"{job.before.mnist_test * 100:.2f} → {after.mnist_test * 100:.2f}%{mine}")

    # ------------------------------------------------ choosing a new model

    def _offer(self, saved: checkpoint.Checkpoint, description: str) -> None:
        """A model just trained waits beside the one in use until the user
        uses or discards it: training never silently replaces the model."""
        self.candidate = (saved, description)
        self.candidate_label.configure(text=f"new (unsaved): {description}")
        self.use_button.configure(state="normal")
        self.discard_button.configure(state="normal")
        self.set_status("a new model is ready: Use new model or Discard (Model box); "
                        "the model in use is unchanged")

    def use_candidate(self) -> bool:
        if self.candidate is None:
            return False
        saved, description = self.candidate
        self._clear_candidate()
        self._install(saved, f"{description} (unsaved)")
        self.set_status("using the new model; File > Save model keeps it")
        return True

    def discard_candidate(self) -> None:
        if self.candidate is not None:
            self._clear_candidate()
            self.set_status("discarded the new model; kept the one in use")

    def _clear_candidate(self) -> None:
        self.candidate = None
        self.candidate_label.configure(text=NO_CANDIDATE)
        self.use_button.configure(state="disabled")
        self.discard_button.configure(state="disabled")

    # ------------------------------------------------ your handwriting

    def correct(self, digit: int) -> bool:
        """The answer shown is wrong (or right): save its 28x28 input with
        the label ``digit`` to the personal data set."""
        if self.answer is None:
            self.show_error("nothing to save: draw a digit first")
            return False
        if self._shown is not None and self._shown[2] is not None:
            # Fine-tuning reports MNIST test accuracy: none of it may be trained on.
            self.show_error("an MNIST test image is not your handwriting: draw the digit instead")
            return False
        try:
            saved = drawings.add(self.answer.x, digit, self.drawings_path)
        except FastmlpError as exc:  # a corrupt or newer set: reported, never overwritten
            self.show_error(exc)
            return False
        self._show_drawings(saved)
        use = "held out for testing" if saved.count % drawings.HELD_OUT_EVERY == 0 else "for training"
        self.set_status(f"saved drawing #{saved.count} as a {digit} ({use}) in {self.drawings_path}")
        return True

    def _show_drawings(self, saved=None) -> None:
        if saved is None:
            try:
                saved = drawings.load(self.drawings_path)
            except FastmlpError as exc:
                self.teach.count_label.configure(text=f"cannot use your drawings: {one_line(exc)}")
                return
        self.teach.show_count(len(saved.train_labels), len(saved.test_labels), self.drawings_path)

    def save_drawing(self, path) -> bool:
        """File > Save drawing: the canvas as PNG at ``path`` and the 28x28
        network input beside it (``<name>-28x28.png``)."""
        if self.canvas.is_empty or self.answer is None:
            self.show_error("nothing drawn to save")
            return False
        try:
            written = drawings.save_pictures(self.canvas.image, self.answer.seen, path)
        except FastmlpError as exc:
            self.show_error(exc)
            return False
        self.set_status("saved " + " and ".join(map(str, written)))
        return True

    def ask_save_drawing(self) -> None:
        path = filedialog.asksaveasfilename(parent=self.root, title="Save drawing",
                                            defaultextension=".png", initialfile="drawing.png",
                                            filetypes=PNG_TYPES)
        if path:
            self.save_drawing(path)

    # --------------------------------------------------------------- look

    def set_mode(self, mode: str) -> None:
        """Light or dark mode (View > Dark mode)."""
        self.mode = mode
        self.dark_var.set(mode == "dark")
        self.theme = theme.apply(self.root, mode, keep=[self.canvas.widget, self.plot.widget])
        self.set_status(self.status_var.get())  # its colour follows the mode

    # -------------------------------------------------------------- close

    def close(self) -> None:
        """Stop any training (it would die with the process anyway) and close."""
        self.training.cancel()
        self.training.join(timeout=5)
        self.root.destroy()


def open_window(model_path=None, backend: str = "numpy", mode: str = "light") -> None:
    """Open the app and run the Tk main loop until the window is closed."""
    try:
        root = tk.Tk()
    except tk.TclError as exc:
        raise FastmlpError(f"cannot open a window: {one_line(exc)}") from None
    DigitApp(root, model_path=model_path, backend=backend, mode=mode)
    root.mainloop()

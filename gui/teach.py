"""The "Teach it my handwriting" tab.

Correct the answer (the drawing is saved to the personal data set), fine-tune
on those drawings, and see the before/after accuracy.

Widgets only: the actions are the app's (DigitApp.correct,
DigitApp.start_finetune), the data and training live in fastmlp.drawings and
fastmlp.finetune.
"""

from tkinter import ttk

from fastmlp.finetune import Scores
from fastmlp.gui.theme import px

HELP = ("Wrong answer? Click the right digit: the 28×28 input and its label join your "
        "data set (every fifth drawing is held out to test on).")


def percent(value) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


class TeachPanel:
    """A frame. ``digit_buttons[d]`` calls ``on_correct(d)``; the fine-tune
    button ``on_finetune()``. ``show_count``, ``show_progress`` and
    ``show_scores`` update its texts."""

    def __init__(self, parent, on_correct, on_finetune):
        self.frame = ttk.Frame(parent, padding=6)
        ttk.Label(self.frame, text=HELP, wraplength=px(460), justify="left").pack(anchor="w")
        row = ttk.Frame(self.frame)
        row.pack(anchor="w", pady=6)
        self.digit_buttons = []
        for d in range(10):
            button = ttk.Button(row, text=str(d), width=3, command=lambda d=d: on_correct(d))
            button.pack(side="left", padx=1)
            self.digit_buttons.append(button)
        self.count_label = ttk.Label(self.frame, text="", wraplength=px(460), justify="left")
        self.count_label.pack(anchor="w")
        self.finetune_button = ttk.Button(self.frame, text="Fine-tune on my drawings",
                                          command=on_finetune)
        self.finetune_button.pack(anchor="w", pady=(10, 4))
        self.progress_label = ttk.Label(self.frame, text="")
        self.progress_label.pack(anchor="w")

        table = ttk.Frame(self.frame)
        table.pack(anchor="w", pady=(8, 0))
        for column, text in enumerate(("accuracy", "before", "after")):
            ttk.Label(table, text=text, style="Dim.TLabel").grid(row=0, column=column, sticky="w",
                                                                padx=(0, 16))
        self.cells = {}
        for row_index, (key, text) in enumerate((("mnist", "MNIST test (10,000)"),
                                                 ("drawings", "your held-out drawings")), start=1):
            ttk.Label(table, text=text).grid(row=row_index, column=0, sticky="w", padx=(0, 16))
            for column, when in enumerate(("before", "after"), start=1):
                cell = ttk.Label(table, text="–")
                cell.grid(row=row_index, column=column, sticky="w", padx=(0, 16))
                self.cells[key, when] = cell
        ttk.Label(self.frame, text="The fine-tuned model is offered in the Model box above: "
                                   "use it or discard it.", style="Dim.TLabel", wraplength=px(460),
                  justify="left").pack(anchor="w", pady=(8, 0))

    def show_count(self, train: int, held_out: int, where) -> None:
        self.count_label.configure(text=f"your drawings: {train + held_out} ({held_out} held out), "
                                        f"in {where}")

    def show_progress(self, text: str) -> None:
        self.progress_label.configure(text=text)

    def show_scores(self, when: str, scores: Scores | None) -> None:
        """Fill the ``when`` ("before" or "after") column; None empties it."""
        mnist = None if scores is None else scores.mnist_test
        mine = None if scores is None else scores.drawings
        self.cells["mnist", when].configure(text=percent(mnist))
        held = "" if scores is None or scores.drawings is None else f" of {scores.held_out}"
        self.cells["drawings", when].configure(text=percent(mine) + held)

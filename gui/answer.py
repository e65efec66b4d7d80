"""The answer panel: the predicted digit, its confidence, one bar per digit and
the 28x28 input the network actually saw."""

import base64
import io
import tkinter as tk

import numpy as np
from PIL import Image

from fastmlp.gui.inference import Answer, percentages

PREVIEW = 140  # px; 5x the 28x28 input, NEAREST so each input pixel stays a crisp square
BAR_LENGTH, BAR_HEIGHT, BAR_GAP = 170, 14, 5
BIG_FONT = ("DejaVu Sans", 64, "bold")
MESSAGE_FONT = ("DejaVu Sans", 16)


def preview_png(x, size: int = PREVIEW) -> bytes:
    """x: (784,) in [0, 1] -> PNG bytes, size x size, white ink on black exactly
    as the network receives it (MNIST polarity)."""
    pixels = np.clip(np.asarray(x, dtype=np.float32).reshape(28, 28), 0.0, 1.0)
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8), "L")
    buffer = io.BytesIO()
    image.resize((size, size), Image.Resampling.NEAREST).save(buffer, "PNG")
    return buffer.getvalue()


class AnswerPanel:
    """A frame; ``show(answer)`` displays a prediction, ``show_message(text)``
    replaces it with a message (e.g. "draw a digit")."""

    def __init__(self, parent):
        self.frame = tk.Frame(parent)
        # Fixed row and column sizes: the layout must not jump between a
        # message and a big digit.
        self.frame.grid_rowconfigure(0, minsize=110)
        self.frame.grid_columnconfigure(0, minsize=300)
        self.digit = tk.Label(self.frame, font=MESSAGE_FONT, wraplength=290, justify="center")
        self.digit.grid(row=0, column=0)
        self.confidence = tk.Label(self.frame, font=("DejaVu Sans", 12))
        self.confidence.grid(row=1, column=0)
        # Two lines reserved, so a caption never pushes the preview down.
        self.caption = tk.Label(self.frame, wraplength=280, justify="center", fg="#444", height=2)
        self.caption.grid(row=2, column=0, pady=(0, 6))

        self.preview = tk.PhotoImage(master=self.frame, width=PREVIEW, height=PREVIEW)
        self.preview.put("black", to=(0, 0, PREVIEW, PREVIEW))
        tk.Label(self.frame, image=self.preview, borderwidth=1, relief="solid").grid(row=3, column=0)
        tk.Label(self.frame, text="what the network sees (28×28 input)", fg="#444").grid(
            row=4, column=0, pady=(2, 8))

        height = 10 * (BAR_HEIGHT + BAR_GAP)
        self.bars = tk.Canvas(self.frame, width=BAR_LENGTH + 90, height=height, highlightthickness=0)
        self.bars.grid(row=5, column=0)
        self._bar, self._percent = [], []
        for d in range(10):
            top = d * (BAR_HEIGHT + BAR_GAP)
            self.bars.create_text(8, top + BAR_HEIGHT / 2, text=str(d), font=("DejaVu Sans", 11, "bold"))
            self.bars.create_rectangle(20, top, 20 + BAR_LENGTH, top + BAR_HEIGHT, outline="#bbb")
            self._bar.append(self.bars.create_rectangle(20, top, 20, top + BAR_HEIGHT, outline="",
                                                        fill="#4a7fd4"))
            self._percent.append(self.bars.create_text(BAR_LENGTH + 86, top + BAR_HEIGHT / 2,
                                                       anchor="e", font=("DejaVu Sans Mono", 10)))

    def show(self, answer: Answer, caption: str = "") -> None:
        self.digit.configure(text=str(answer.digit), font=BIG_FONT)
        self.confidence.configure(text=f"{answer.confidence * 100:.1f}% sure")
        self.caption.configure(text=caption)
        self.preview.configure(data=base64.b64encode(preview_png(answer.x)), format="png")
        for d, percent in enumerate(percentages(answer.probs)):
            top = d * (BAR_HEIGHT + BAR_GAP)
            self.bars.coords(self._bar[d], 20, top, 20 + BAR_LENGTH * percent / 100, top + BAR_HEIGHT)
            self.bars.itemconfigure(self._bar[d], fill="#d9822b" if d == answer.digit else "#4a7fd4")
            self.bars.itemconfigure(self._percent[d], text=f"{percent:5.1f}%")

    def show_message(self, text: str, caption: str = "") -> None:
        self.digit.configure(text=text, font=MESSAGE_FONT)
        self.confidence.configure(text="")
        self.caption.configure(text=caption)
        self.preview.put("black", to=(0, 0, PREVIEW, PREVIEW))
        for d in range(10):
            top = d * (BAR_HEIGHT + BAR_GAP)
            self.bars.coords(self._bar[d], 20, top, 20, top + BAR_HEIGHT)
            self.bars.itemconfigure(self._percent[d], text="")

    def bar_texts(self) -> list[str]:
        """The ten percentages as displayed, digit 0 first."""
        return [self.bars.itemcget(item, "text") for item in self._percent]

"""The answer panel: the predicted digit and why.

The digit (or "not sure"), its confidence, one bar per digit and the 28x28 input the network actually saw, or, with "Why?"
on, the saliency of a digit over it. Clicking a bar picks the digit whose
saliency is shown ("what would make this a 4?")."""

import io
import tkinter as tk
from tkinter import ttk

import numpy as np
from PIL import Image

from fastmlp.confidence import verdict
from fastmlp.gui.changes import OptionCache
from fastmlp.gui.inference import Answer, percentages
from fastmlp.gui.pictures import ppm, saliency_picture
from fastmlp.gui.theme import px
from fastmlp.model import IMAGE_SIDE

PREVIEW = 140  # px; 5x the 28x28 input, NEAREST so each input pixel stays a crisp square
BAR_LENGTH, BAR_HEIGHT, BAR_GAP = 170, 14, 5
BIG_FONT = ("DejaVu Sans", 64, "bold")
MESSAGE_FONT = ("DejaVu Sans", 16)
NOT_SURE = "?"  # the big label when the network is not sure; the line below says so
INPUT_CAPTION = "what the network sees (28×28 input)"


def preview_image(x, size: int = PREVIEW) -> Image.Image:
    """x: (784,) in [0, 1] -> an 'L' image, size x size, white ink on black
    exactly as the network receives it (MNIST polarity)."""
    pixels = np.clip(np.asarray(x, dtype=np.float32).reshape(IMAGE_SIDE, IMAGE_SIDE), 0.0, 1.0)
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8), "L")
    return image.resize((size, size), Image.Resampling.NEAREST)


def preview_png(x, size: int = PREVIEW) -> bytes:
    """preview_image as PNG bytes."""
    buffer = io.BytesIO()
    preview_image(x, size).save(buffer, "PNG")
    return buffer.getvalue()


def preview_pgm(x, size: int = PREVIEW) -> bytes:
    """preview_image as binary PGM (P5) bytes, which a Tk PhotoImage reads
    directly ("ppm" format): no compression or base64 on every answer."""
    image = preview_image(x, size)
    return b"P5 %d %d 255\n" % image.size + image.tobytes()


class AnswerPanel:
    """A frame; ``show(answer)`` displays a prediction, ``show_message(text)``
    replaces it with a message (e.g. "draw a digit"). ``on_pick(digit)`` is
    called when the user clicks digit's bar. ``threshold``: below it the
    answer is "not sure" (default: fastmlp.confidence's calibrated one)."""

    def __init__(self, parent, on_pick=lambda digit: None):
        self.on_pick = on_pick
        self.threshold = None
        self._marked = None  # the underlined digit
        self._set = OptionCache()  # texts, fonts, bars: an unchanged one costs no Tk call or redraw
        self.frame = ttk.Frame(parent)
        # Fixed row and column sizes: the layout must not jump between a
        # message and a big digit.
        self.frame.grid_rowconfigure(0, minsize=px(110))
        self.frame.grid_columnconfigure(0, minsize=px(300))
        self.digit = ttk.Label(self.frame, font=MESSAGE_FONT, wraplength=px(290), justify="center")
        self.digit.grid(row=0, column=0)
        self.confidence = ttk.Label(self.frame, font=("DejaVu Sans", 12))
        self.confidence.grid(row=1, column=0)
        # Two lines reserved, so a caption never pushes the preview down.
        self.caption = tk.Label(self.frame, wraplength=px(280), justify="center", height=2)
        self.caption.grid(row=2, column=0, pady=(0, 6))

        self.preview_side = px(PREVIEW)
        self.preview = tk.PhotoImage(master=self.frame, width=self.preview_side,
                                     height=self.preview_side)
        self.preview.put("black", to=(0, 0, self.preview_side, self.preview_side))
        tk.Label(self.frame, image=self.preview, borderwidth=1, relief="solid").grid(row=3, column=0)
        self.preview_caption = ttk.Label(self.frame, text=INPUT_CAPTION, style="Dim.TLabel",
                                         wraplength=px(290), justify="center")
        self.preview_caption.grid(row=4, column=0, pady=(2, 8))

        # The bars in this screen's pixels (px()); the names stay those of a 96-DPI screen.
        self.bar_length, self.bar_height, self.bar_pitch = (px(BAR_LENGTH), px(BAR_HEIGHT),
                                                            px(BAR_HEIGHT + BAR_GAP))
        self.bars = tk.Canvas(self.frame, width=self.bar_length + px(90),
                              height=10 * self.bar_pitch, highlightthickness=0, cursor="hand2")
        self.bars.grid(row=5, column=0)
        self.bars.bind("<ButtonPress-1>", self._click)
        self._bar, self._percent, self._label = [], [], []
        left, height = px(20), self.bar_height
        for d in range(10):
            top = d * self.bar_pitch
            self._label.append(self.bars.create_text(px(8), top + height / 2, text=str(d),
                                                     font=("DejaVu Sans", 11, "bold")))
            self.bars.create_rectangle(left, top, left + self.bar_length, top + height,
                                       outline="#bbb")
            self._bar.append(self.bars.create_rectangle(left, top, left, top + height, outline="",
                                                        fill="#4a7fd4"))
            self._percent.append(self.bars.create_text(self.bar_length + px(86), top + height / 2,
                                                       anchor="e", font=("DejaVu Sans Mono", 10)))

    def _click(self, event) -> None:
        digit = int(event.y // self.bar_pitch)
        if 0 <= digit < 10:
            self.on_pick(digit)

    def _item(self, item, **options) -> None:
        """itemconfigure a bar or its text: only what changed."""
        self._set.itemconfigure(self.bars, item, **options)

    def _text(self, widget, **options) -> None:
        """configure a label: only what changed (each one changed is redrawn)."""
        self._set.configure(widget, **options)

    def show(self, answer: Answer, caption: str = "", saliency=None) -> None:
        """saliency: None (the preview shows the input) or (grad: (784,), digit)."""
        said = verdict(answer.probs, self.threshold)
        if said.sure:
            self._text(self.digit, text=str(said.digit), font=BIG_FONT)
            self._text(self.confidence, text=f"{said.confidence * 100:.1f}% sure")
        else:
            self._text(self.digit, text=NOT_SURE, font=BIG_FONT)
            self._text(self.confidence, text=f"not sure: best guess {said.digit} "
                                              f"({said.confidence * 100:.1f}%)")
        self._text(self.caption, text=caption)
        if saliency is None:
            self.show_input(answer.seen)
        else:
            self.show_saliency(answer.seen, *saliency)
        for d, percent in enumerate(percentages(answer.probs)):
            top, left = d * self.bar_pitch, px(20)
            self._set.coords(self.bars, self._bar[d], left, top,
                             left + self.bar_length * percent / 100, top + self.bar_height)
            self._item(self._bar[d], fill="#d9822b" if d == answer.digit else "#4a7fd4")
            self._item(self._percent[d], text=f"{percent:5.1f}%")

    def show_input(self, x) -> None:
        """The preview shows the network input x: (784,)."""
        self.preview.configure(data=preview_pgm(x, self.preview_side), format="ppm")
        self._text(self.preview_caption, text=INPUT_CAPTION)
        self._mark(None)

    def show_saliency(self, x, grad, digit: int) -> None:
        """The preview shows grad: (784,), d logit[digit] / d x, over the input x."""
        self.preview.configure(data=ppm(saliency_picture(x, grad, self.preview_side)),
                               format="ppm")
        self._text(self.preview_caption,
                   text=f"why {digit}: red = ink there raises its score, blue = lowers it (click a bar)")
        self._mark(digit)

    def _mark(self, digit) -> None:
        """Underline the digit whose saliency is shown (None: no saliency)."""
        if digit == self._marked:
            return
        for d in {digit, self._marked} - {None}:
            self._item(self._label[d], font=("DejaVu Sans", 11, "bold underline"
                                             if d == digit else "bold"))
        self._marked = digit

    def show_message(self, text: str, caption: str = "") -> None:
        self._text(self.digit, text=text, font=MESSAGE_FONT)
        self._text(self.confidence, text="")
        self._text(self.caption, text=caption)
        self.preview.put("black", to=(0, 0, self.preview_side, self.preview_side))
        self._text(self.preview_caption, text=INPUT_CAPTION)
        self._mark(None)
        for d in range(10):
            top = d * self.bar_pitch
            self._set.coords(self.bars, self._bar[d], px(20), top, px(20), top + self.bar_height)
            self._item(self._percent[d], text="")

    def bar_texts(self) -> list[str]:
        """The ten percentages as displayed, digit 0 first."""
        return [self.bars.itemcget(item, "text") for item in self._percent]

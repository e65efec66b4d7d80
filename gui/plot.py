"""A live training curve on a plain Tk canvas.

No matplotlib: redrawing a few lines every poll is cheap and keeps start-up fast.

x axis: epochs completed (fractional within an epoch), 0..epochs.
Left scale: training loss, 0..the largest loss seen (blue line), averaged over
bins of 1/BINS_PER_EPOCH epoch: per-batch losses are too noisy to read.
Right scale: test accuracy, 80..100% (orange dots, one per epoch), the range
where MNIST accuracies live; lower values sit on the bottom edge.
"""

import tkinter as tk
from fastmlp.gui.theme import px

LOSS_COLOUR, ACCURACY_COLOUR = "#4a7fd4", "#d9822b"
ACCURACY_FLOOR = 0.80
BINS_PER_EPOCH = 20


class CurvePlot:
    def __init__(self, parent, width: int = 300, height: int = 140):
        """width, height: px of an ordinary screen (px() gives this screen's)."""
        width, height = px(width), px(height)
        self.width, self.height = width, height
        self.widget = tk.Canvas(parent, width=width, height=height, background="white",
                                highlightthickness=1, highlightbackground="#bbb")
        self.left, self.right, self.top, self.bottom = px(34), width - px(40), px(18), height - px(18)
        self.reset(1)

    def reset(self, epochs: int) -> None:
        """Empty plot for a run of ``epochs`` epochs."""
        self.epochs = epochs
        self._loss_bins: dict[int, list[float]] = {}  # bin -> [sum, count]
        self.accuracies: list[tuple[float, float]] = []  # (epochs done, test accuracy)
        self._dirty = True
        self.redraw()

    def add_loss(self, position: float, loss: float) -> None:
        """A batch loss at ``position`` epochs into the run (e.g. 1.5). Call redraw() after."""
        bin_sums = self._loss_bins.setdefault(int(position * BINS_PER_EPOCH), [0.0, 0])
        bin_sums[0] += loss
        bin_sums[1] += 1
        self._dirty = True

    def add_accuracy(self, epochs_done: int, accuracy: float) -> None:
        """Test accuracy after ``epochs_done`` epochs. Call redraw() after."""
        self.accuracies.append((float(epochs_done), accuracy))
        self._dirty = True

    @property
    def losses(self) -> list[tuple[float, float]]:
        """(bin centre in epochs, mean loss) for every bin that has a loss."""
        return [((b + 0.5) / BINS_PER_EPOCH, total / count)
                for b, (total, count) in sorted(self._loss_bins.items())]

    def _x(self, position: float) -> float:
        return self.left + (self.right - self.left) * position / self.epochs

    def redraw(self) -> None:
        """Draw the plot anew if anything was added since the last time: the
        app calls this on every poll of a training run (20 times a second),
        and a poll that brought no loss must not cost the drawing a redraw."""
        if not self._dirty:
            return
        self._dirty = False
        c = self.widget
        c.delete("all")
        c.create_rectangle(self.left, self.top, self.right, self.bottom, outline="#999")
        c.create_text(self.left, self.bottom + 2, text="0", anchor="n", font=("DejaVu Sans", 8))
        c.create_text(self.right, self.bottom + 2, text=f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}", anchor="n",
                      font=("DejaVu Sans", 8))
        c.create_text(self.left - 3, self.top - 3, text="loss", anchor="se", fill=LOSS_COLOUR,
                      font=("DejaVu Sans", 8))
        c.create_text(self.width - 2, self.top - 3, text="test accuracy", anchor="se",
                      fill=ACCURACY_COLOUR, font=("DejaVu Sans", 8))
        c.create_text(self.right + 3, self.top, text="100%", anchor="nw", fill=ACCURACY_COLOUR,
                      font=("DejaVu Sans", 8))
        c.create_text(self.right + 3, self.bottom, text=f"{ACCURACY_FLOOR:.0%}", anchor="sw",
                      fill=ACCURACY_COLOUR, font=("DejaVu Sans", 8))
        span = self.bottom - self.top
        losses = self.losses
        if losses:
            top_loss = max(loss for _, loss in losses) or 1.0
            c.create_text(self.left - 3, self.top, text=f"{top_loss:.2g}", anchor="ne",
                          fill=LOSS_COLOUR, font=("DejaVu Sans", 8))
            points = [(self._x(p), self.bottom - span * loss / top_loss) for p, loss in losses]
            if len(points) == 1:
                points = points * 2  # a line needs two points
            c.create_line(*[v for point in points for v in point], fill=LOSS_COLOUR)
        previous = None
        for epochs_done, accuracy in self.accuracies:
            share = min(max((accuracy - ACCURACY_FLOOR) / (1 - ACCURACY_FLOOR), 0.0), 1.0)
            point = (self._x(epochs_done), self.bottom - span * share)
            if previous:
                c.create_line(*previous, *point, fill=ACCURACY_COLOUR)
            c.create_oval(point[0] - 3, point[1] - 3, point[0] + 3, point[1] + 3,
                          fill=ACCURACY_COLOUR, outline="")
            previous = point
        if self.accuracies:
            last = self.accuracies[-1][1]
            c.create_text((self.left + self.right) / 2, self.top + 2, anchor="n",
                          text=f"test {last * 100:.2f}%", fill=ACCURACY_COLOUR,
                          font=("DejaVu Sans", 9, "bold"))

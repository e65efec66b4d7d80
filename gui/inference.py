"""The app's prediction pipeline, without Tk: picture -> network input -> answer.

bench/drawn_digits.py runs the same functions, so what it measures is what the
app shows.
"""

import time
from dataclasses import dataclass

import numpy as np

from fastmlp.errors import FastmlpError
from fastmlp.model import N_CLASSES, N_INPUTS
from fastmlp.preprocess import normalize_digit


@dataclass(frozen=True)
class Answer:
    """x: (784,) float32, the normalized picture (28x28 row-major, 1 = ink).
    probs: (10,) the network's softmax output.
    seconds: wall time of the model alone (no normalizing): its own input
    preparation (deskewing, for a model trained so) and the network.
    seen: (784,) what the first layer reads, model.prepared(x): x itself, or
    x deskewed; the panel shows it, and the saliency is over it."""

    x: np.ndarray
    probs: np.ndarray
    seconds: float
    seen: np.ndarray

    @property
    def digit(self) -> int:
        return int(self.probs.argmax())

    @property
    def confidence(self) -> float:
        return float(self.probs[self.digit])


def classify(model, backend, x) -> Answer:
    """Answer for one network input x: (784,) in [0, 1]."""
    x = np.asarray(x, dtype=np.float32).reshape(N_INPUTS)
    start = time.perf_counter()
    seen = model.prepared(x[None, :])
    probs = backend.forward(model.W, model.b, seen)[0]   # = model.predict_proba(x)
    seconds = time.perf_counter() - start
    return Answer(x, probs, seconds, seen[0])


def classify_picture(model, backend, picture, name="drawing") -> Answer:
    """Answer for a picture (PIL image or 2-D array, any polarity), normalised
    the MNIST way by fastmlp.preprocess. Raises FastmlpError when it is blank."""
    return classify(model, backend, normalize_digit(picture, name=name))


def check_model(model, source) -> None:
    """The app feeds 28x28 digits and shows 10 bars: refuse any other shape."""
    if model.sizes[0] != N_INPUTS or model.sizes[-1] != N_CLASSES:
        raise FastmlpError(f"{source}: a {model.sizes[0]}-input, {model.sizes[-1]}-class network; "
                           f"the app needs {N_INPUTS} inputs (28x28) and {N_CLASSES} classes")


def percentages(probs, decimals: int = 1) -> np.ndarray:
    """probs: (k,) -> (k,) percentages rounded to ``decimals`` that sum to exactly 100.

    Plain rounding can make ten bars add up to 99.9 or 100.1; the largest
    remainder method (Hamilton) rounds down, then gives the missing units to
    the entries that lost the most."""
    probs = np.asarray(probs, dtype=np.float64)
    unit = 10.0 ** -decimals
    exact = probs / probs.sum() * 100.0 / unit  # in units of the last decimal
    units = np.floor(exact)
    missing = int(round(100.0 / unit - units.sum()))
    units[np.argsort(units - exact)[:missing]] += 1  # largest remainders first
    return units * unit

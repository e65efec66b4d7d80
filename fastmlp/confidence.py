"""When to say "not sure".

One confidence threshold, shared by ``fastmlp predict`` and the GUI, and how it
is calibrated.

The network's confidence is its largest softmax probability. Below
NOT_SURE_BELOW an answer is "not sure (best guess d)" instead of "d".

Calibration (``calibrate``): on a validation split the model never trained
on, the threshold is the lowest confidence t such that the answers at or
above t are wrong at most ``max_error`` of the time (the selective risk of
Geifman & El-Yaniv 2017, "Selective classification for deep neural
networks"): the smallest price in rejections for answers that are wrong at
most that often. MNIST's test set plays no part; it only reports the
rejection rate afterwards.

NOT_SURE_BELOW was chosen that way by bench/calibrate_confidence.py: the
shipped model's recipe (fastmlp/pretrained/README.md) trained again with
``--validation 5000`` (55,000 images), its 5,000 held-out training images as
the validation split, max_error = MAX_ERROR. The shipped model itself trained
on all 60,000 images, so it has no held-out split of its own; the threshold
is a property of the recipe, and the script reports what it rejects on MNIST
test for both models (README, "Not sure").
"""

from dataclasses import dataclass

import numpy as np

MAX_ERROR = 0.002  # accepted answers wrong at most 1 in 500 on validation
# calibrate() gave 0.918955 (bench/calibrate_confidence.py, see above; the
# recipe with --deskew and --outliers 0.2, 2026-12-02 evening), rounded down
# to 4 digits so that the calibrating answer itself stays accepted.
NOT_SURE_BELOW = 0.9189


@dataclass(frozen=True)
class Verdict:
    """digit: the most probable class; confidence: its probability;
    sure: confidence >= the threshold (else the answer is "not sure")."""

    digit: int
    confidence: float
    sure: bool

    def text(self) -> str:
        """"7 (99.8%)" or "not sure (best guess 7, 41.0%)"."""
        percent = f"{self.confidence * 100:.1f}%"
        return f"{self.digit} ({percent})" if self.sure else f"not sure (best guess {self.digit}, {percent})"


def verdict(probs, threshold: float | None = None) -> Verdict:
    """probs: (10,) one softmax output -> its Verdict at ``threshold``
    (default NOT_SURE_BELOW)."""
    probs = np.asarray(probs)
    threshold = NOT_SURE_BELOW if threshold is None else threshold
    digit = int(probs.argmax())
    confidence = float(probs[digit])
    return Verdict(digit, confidence, confidence >= threshold)


def calibrate(probs, y, max_error: float = MAX_ERROR) -> float:
    """The lowest threshold whose accepted answers (confidence >= it) are
    wrong at most ``max_error`` of the time on (probs: (n, 10), y: (n,)).

    Sort the answers by confidence, most confident first; the error rate of
    the first k is a running mean. The threshold is the confidence of the
    largest k meeting the bar (ties: all answers of one confidence are
    accepted or rejected together). 1.0 if even the surest answers miss it."""
    probs, y = np.asarray(probs), np.asarray(y)
    if len(probs) == 0:
        raise ValueError("calibrate needs at least one validation answer")
    confidence = probs.max(axis=1)
    wrong = probs.argmax(axis=1) != y
    order = np.argsort(-confidence, kind="stable")
    confidence, wrong = confidence[order], wrong[order]
    risk = np.cumsum(wrong) / np.arange(1, len(wrong) + 1)
    # Only cut between distinct confidences: k = last index of each value.
    last_of_value = np.append(confidence[1:] != confidence[:-1], True)
    ok = np.flatnonzero(last_of_value & (risk <= max_error))
    return float(confidence[ok[-1]]) if len(ok) else 1.0


def rejection_rate(probs, threshold: float | None = None) -> float:
    """Fraction of the answers (probs: (n, 10)) that are "not sure"."""
    threshold = NOT_SURE_BELOW if threshold is None else threshold
    return float((np.asarray(probs).max(axis=1) < threshold).mean())

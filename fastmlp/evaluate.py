"""Test-set evaluation: accuracy, per-digit accuracy, confusion matrix."""

from dataclasses import dataclass

import numpy as np

# Rows per forward call: bounds memory on large sets, big enough for BLAS.
EVAL_BATCH = 10_000


def predict_proba(model, X, backend, prepared=False) -> np.ndarray:
    """probs: (n, 10) for X: (n, 784), in batches of EVAL_BATCH rows.
    prepared: X is already ``model.prepared`` (training evaluates the same
    sets every epoch and deskews them once, not every time)."""
    X = X if prepared else model.prepared(X)
    return np.concatenate([backend.forward(model.W, model.b, X[i:i + EVAL_BATCH])
                           for i in range(0, len(X), EVAL_BATCH)])


def accuracy(model, X, y, backend, prepared=False) -> float:
    """Fraction of rows of X whose most probable class is y."""
    return float((predict_proba(model, X, backend, prepared).argmax(axis=1) == y).mean())


@dataclass
class Report:
    """accuracy: float. per_class: (10,) recall of each digit.
    confusion: (10, 10) int64, rows = true digit, columns = predicted.
    probs: (n, 10) the network's output for every test image."""

    accuracy: float
    per_class: np.ndarray
    confusion: np.ndarray
    probs: np.ndarray

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "per_class": self.per_class.tolist(),
                "confusion": self.confusion.tolist()}


def evaluate(model, X, y, backend) -> Report:
    probs = predict_proba(model, X, backend)
    K = probs.shape[1]
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((K, K), dtype=np.int64)
    np.add.at(confusion, (y, predicted), 1)
    per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    return Report(float((predicted == y).mean()), per_class, confusion, probs)


def format_report(report: Report) -> str:
    """The human-readable table: overall and per-digit accuracy, confusion matrix."""
    K = len(report.per_class)
    n = int(report.confusion.sum())
    lines = [f"test accuracy: {report.accuracy * 100:.2f}% "
             f"({int(np.trace(report.confusion))}/{n})", "",
             "digit  accuracy  count"]
    for k in range(K):
        lines.append(f"{k:>5}  {report.per_class[k] * 100:7.2f}%  {report.confusion[k].sum():5d}")
    lines += ["", "confusion matrix (rows: true digit, columns: predicted)",
              "      " + "".join(f"{k:>6}" for k in range(K))]
    for k in range(K):
        lines.append(f"{k:>6}" + "".join(f"{c:>6}" for c in report.confusion[k]))
    return "\n".join(lines)


def most_confident_mistakes(report: Report, y, count=25) -> np.ndarray:
    """Indices of the wrongly classified rows, most confident first."""
    predicted = report.probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    confidence = report.probs[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]

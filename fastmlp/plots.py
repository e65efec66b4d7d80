"""PNG figures: training curves, confusion matrix, most confident mistakes.

Each is written atomically (temp file, then rename) like the checkpoints."""

import numpy as np

from fastmlp.checkpoint import atomic_write
from fastmlp.errors import FastmlpError
from fastmlp.model import IMAGE_SIDE


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise FastmlpError("plots need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> None:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")


def training_curves(history: list, path) -> None:
    """Loss and train/test accuracy per epoch, side by side."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["loss"] for r in history], "o-", label="train loss")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Training loss", yscale="log")
    ax_acc.plot(epochs, [100 * r["train_accuracy"] for r in history], "o-", label="train")
    ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in history], "s-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)
    plt.close(fig)


def confusion_matrix(confusion: np.ndarray, path) -> None:
    """confusion: (K, K) counts, rows true, columns predicted; log colour scale
    so the few mistakes are visible next to the large diagonal."""
    plt = _pyplot()
    K = len(confusion)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(np.log1p(confusion), cmap="Blues")
    for t in range(K):
        for p in range(K):
            if confusion[t, p]:
                ax.text(p, t, str(confusion[t, p]), ha="center", va="center", fontsize=7,
                        color="white" if t == p else "black")
    ax.set(xticks=range(K), yticks=range(K), xlabel="predicted", ylabel="true digit",
           title="Confusion matrix (test set)")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    _save(fig, path)
    plt.close(fig)


def gallery(images: np.ndarray, true: np.ndarray, predicted: np.ndarray,
            confidence: np.ndarray, path, columns=5) -> None:
    """images: (n, 784) in [0, 1], each titled 'true -> predicted (confidence)'."""
    plt = _pyplot()
    n = max(len(images), 1)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p, c in zip(axes.flat, images, true, predicted, confidence):
        ax.imshow(image.reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{t} -> {p} ({c * 100:.0f}%)", fontsize=9)
    fig.suptitle("Most confident mistakes (true -> predicted)")
    _save(fig, path)
    plt.close(fig)

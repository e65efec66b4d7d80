"""Fine-tuning on the user's drawings.

A few seconds of training, from the current model, on a mix of those drawings
(augmented) and MNIST, then the before/after accuracy on MNIST test and on the
held-out drawings.

Why a mix: trained on a few dozen drawings alone, the network forgets MNIST
(catastrophic forgetting, McCloskey & Cohen 1989); replaying MNIST beside
them keeps what it knew. The drawings are repeated so that they make up
USER_SHARE of the rows, and augmented every epoch (fastmlp.augmentation's
default recipe), so the repeats are not copies. No Tk here; the GUI runs
this through fastmlp.gui.training in a background thread.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

from fastmlp.data import Dataset
from fastmlp.drawings import Drawings
from fastmlp.errors import FastmlpError
from fastmlp.evaluate import accuracy
from fastmlp.model import MLP
from fastmlp.optim import init_state
from fastmlp.train import TrainConfig, TrainState

MNIST_ROWS = 4000  # MNIST images replayed per epoch: ~1-6 s for 3 epochs (numba-numpy)
USER_SHARE = 0.25  # fraction of the training rows that are the user's drawings
MIN_DRAWINGS = 1


def config_for(model: MLP, epochs: int = 3, seed: int = 0, lr: float = 2e-4) -> TrainConfig:
    """The fine-tuning recipe: AdamW at a tenth of the shipped recipe's peak
    rate (0.002 -> 2e-4, a small step from a trained model), cosine decay,
    the default augmentation, the model's own sizes, dtype and deskewing."""
    return TrainConfig(epochs=epochs, optimizer="adamw", lr=lr, schedule="cosine",
                       weight_decay=0.01, augment="default", seed=seed,
                       hidden=model.hidden, dtype=str(model.dtype), deskew=model.deskew)


def mixed_data(drawings: Drawings, mnist: Dataset, seed: int = 0,
               mnist_rows: int | None = None, user_share: float = USER_SHARE) -> Dataset:
    """Training rows: the user's training drawings repeated to ``user_share``
    of the rows, then ``mnist_rows`` MNIST training images drawn at random
    (seeded; default MNIST_ROWS); test rows: MNIST test. The epoch order
    shuffles them together. X_train: (r * n_user + mnist_rows, 784) in mnist's dtype."""
    mnist_rows = MNIST_ROWS if mnist_rows is None else mnist_rows
    mine = drawings.dataset(mnist.X_train.dtype)
    if len(mine.X_train) < MIN_DRAWINGS:
        raise FastmlpError("no drawings to fine-tune on yet: correct a few answers first "
                           "(every fifth drawing is held out for testing)")
    repeats = max(1, round(user_share / (1 - user_share) * mnist_rows / len(mine.X_train)))
    rows = np.random.default_rng([seed, 7]).choice(len(mnist.X_train), mnist_rows, replace=False)
    X = np.concatenate([np.tile(mine.X_train, (repeats, 1)), mnist.X_train[rows]])
    y = np.concatenate([np.tile(mine.y_train, repeats), mnist.y_train[rows]])
    return Dataset(X, y, mnist.X_test, mnist.y_test, source="your drawings + MNIST",
                   checksum=content_checksum(X, y, mnist.checksum))


def content_checksum(X, y, *parts: str) -> str:
    """SHA-256 of the training rows (and any further identifying strings):
    checkpoints record it to tie a model to its data, like Dataset.checksum."""
    digest = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    for part in parts:
        digest.update(part.encode("ascii"))
    return digest.hexdigest()


def start_state(model: MLP, config: TrainConfig) -> TrainState:
    """Training state starting from a copy of ``model`` (never the model
    itself: the one in use stays untouched until the user keeps the new one)."""
    start = model.copy()
    return TrainState(start, init_state(config.optimizer_config(), start.W, start.b))


@dataclass(frozen=True)
class Scores:
    """mnist_test: accuracy on MNIST's 10,000 test images; drawings: on the
    held-out drawings (None while there are none); held_out: their number."""

    mnist_test: float
    drawings: float | None
    held_out: int


def scores(model: MLP, backend, mnist: Dataset, drawings: Drawings) -> Scores:
    mine = drawings.dataset(model.dtype)
    held_out = len(mine.X_test)
    on_mine = accuracy(model, mine.X_test, mine.y_test, backend) if held_out else None
    return Scores(accuracy(model, mnist.X_test, mnist.y_test, backend), on_mine, held_out)

"""The benchmarks' workload.

The default recipe's epoch, timed through the engine's own loop, the textbook
yardstick beside it, and the check of each epoch's loss.

The workload (the default recipe, ``fastmlp.train.TrainConfig()``):
    network   784-128-64-10, ReLU hidden layers, softmax + mean cross-entropy
              (compare.py --hidden sweeps other hidden sizes: TrainConfig(hidden=...))
    dtype     float32
    batch     128 (last partial batch of 60000 % 128 = 96 rows is trained)
    optimizer momentum 0.9, Nesterov, lr 0.05 on a cosine schedule over
              20 epochs (epoch 0's slice of it), weight decay 1e-3 on W only
    data      the shipped MNIST, 60000 training rows (FASTMLP_BENCH_QUICK=1 or
              compare.py --quick: the first 6000; compare.py --data DIR: another
              IDX directory, e.g. Fashion-MNIST)

The yardstick (``TEXTBOOK``, bench/textbook.py): the same epoch as a user's
plain-NumPy MLP trains it, one call per epoch, behind the ``train_batches``
interface so that it is run, timed and checked exactly like a backend.

What one timed epoch includes (``run_epoch``): drawing the epoch's row order
(``epoch_order(seed, epoch, n)``, a 60000-element permutation) and
``fastmlp.train.train_steps``, the loop ``fastmlp.train.run`` trains with:
every ``backend.train_batches`` call over all batches, in chunks of
``backend.batches_per_call`` (gather of the batch rows, forward, backward,
optimizer step). Excluded: the test-set evaluation ``run`` does after each
epoch, the learning-rate schedule (computed once per run, not per epoch),
model initialisation, data loading, and compilation (a warm-up call happens
before timing).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

import textbook
from floors import epoch_flops
from fastmlp.errors import FastmlpError
from fastmlp.kernels import BACKENDS, get_backend
from fastmlp.kernels.contract import slot_key
from fastmlp.model import DEFAULT_HIDDEN, MLP, layer_sizes
from fastmlp.schedules import learning_rates
from fastmlp.tolerances import EPOCH_LOSS_RTOL
from fastmlp.train import TrainConfig, TrainState, epoch_order, steps_per_epoch, train_steps

QUICK_ENV = "FASTMLP_BENCH_QUICK"
QUICK_ROWS = 6000
REFERENCE = "numpy"
TEXTBOOK_NAME = "textbook"


def quick_mode() -> bool:
    return os.environ.get(QUICK_ENV, "").strip() not in ("", "0")


def backend_names() -> list[str]:
    """Every backend the package registers, the reference first."""
    return [REFERENCE] + [n for n in BACKENDS if n != REFERENCE]


def load_backend(name: str):
    """(module, None) or (None, one-line reason it cannot be used)."""
    try:
        return get_backend(name), None
    except FastmlpError as exc:
        return None, str(exc)
    except Exception as exc:  # a backend half-written by someone else
        return None, f"backend {name!r} failed: {type(exc).__name__}: {exc}"


def nonzero_fraction(X: np.ndarray) -> float:
    """Fraction of the pixels of X that are not exactly 0 (the compiled backend
    skips zeros: MNIST ~0.19, Fashion-MNIST ~0.50)."""
    return float(np.count_nonzero(X)) / X.size if X.size else 0.0


@dataclass
class EpochSetup:
    """One epoch of the default recipe (with config.hidden and config.batch_size)
    on X, y: epoch 0 of a 20-epoch cosine run."""

    config: TrainConfig
    X: np.ndarray
    y: np.ndarray
    lrs: np.ndarray  # (steps,) float64: epoch 0's learning rates

    @property
    def n(self) -> int:
        return len(self.X)

    @property
    def steps(self) -> int:
        return steps_per_epoch(self.n, self.config.batch_size)

    @property
    def sizes(self) -> tuple:
        return layer_sizes(self.config.hidden)

    @property
    def flops(self) -> int:
        return epoch_flops(self.n, self.sizes)


def make_epoch_setup(data, rows: int | None = None, batch_size: int = 128,
                     hidden=DEFAULT_HIDDEN) -> EpochSetup:
    """The default recipe (TrainConfig()) with ``hidden`` and ``batch_size`` on
    the first ``rows`` rows (None: all)."""
    config = TrainConfig(hidden=hidden, batch_size=batch_size, limit=rows)
    X = np.ascontiguousarray(data.X_train[:rows], dtype=config.dtype)
    y = np.ascontiguousarray(data.y_train[:rows])
    spe = steps_per_epoch(len(X), batch_size)
    lrs = learning_rates(config.schedule, config.lr, spe * config.epochs, config.warmup)[:spe]
    return EpochSetup(config, X, y, np.ascontiguousarray(lrs))


def fresh_state(setup: EpochSetup) -> TrainState:
    """He-initialised model (seed 0) and zeroed momentum: identical every call."""
    return TrainState.fresh(setup.config)


@dataclass
class EpochResult:
    seconds: float
    loss: float      # mean training loss over the epoch's rows
    accuracy: float  # training accuracy during the epoch
    other_load: float | None = None  # CPUs used by other processes meanwhile (compare.py)


def run_epoch(backend, setup: EpochSetup, state: TrainState, epoch: int = 0) -> EpochResult:
    """One timed epoch through the engine's own loop (fastmlp.train.train_steps;
    see the module docstring for what is included). ``state`` is trained in place."""
    state.step, state.loss_sum, state.correct = 0, 0.0, 0
    start = time.perf_counter()
    order = epoch_order(setup.config.seed, epoch, setup.n)
    train_steps(setup.config, backend, state, setup.X, setup.y, order, setup.lrs)
    seconds = time.perf_counter() - start
    return EpochResult(seconds, state.loss_sum / setup.n, state.correct / setup.n)


def warm_up_epoch(backend, setup: EpochSetup, batches: int = 2) -> None:
    """Compile/warm ``train_batches`` on a throwaway state (not timed)."""
    state = fresh_state(setup)
    order = epoch_order(setup.config.seed, 0, setup.n)
    stop = min(batches, setup.steps)
    backend.train_batches(state.model.W, state.model.b, state.optimizer.slots, 0, setup.X,
                          setup.y, order, setup.config.batch_size, 0, stop, setup.lrs[:stop],
                          setup.config.optimizer_config(), setup.config.label_smoothing)


def check_epoch_loss(name: str, got: EpochResult, ref: EpochResult) -> None:
    """The backend's epoch trained like the reference: mean loss within
    EPOCH_LOSS_RTOL (fastmlp/tolerances.py)."""
    if not math.isfinite(got.loss) or abs(got.loss - ref.loss) > EPOCH_LOSS_RTOL * abs(ref.loss):
        raise AssertionError(
            f"{name}: epoch loss {got.loss:.6f} differs from the reference {ref.loss:.6f} "
            f"by more than rtol {EPOCH_LOSS_RTOL:g}")


class TextbookBackend:
    """bench/textbook.py behind the ``train_batches`` interface, so that the
    yardstick is run, timed and checked exactly like a backend (run_epoch,
    warm_up_epoch, check_epoch_loss): ``batches_per_call`` covers any epoch,
    so run_epoch makes one textbook.train_epoch call per epoch, as a user's
    script would. Training only (no ops, no inference). It implements the
    default recipe alone: Nesterov momentum, weight decay on W, plain
    cross-entropy (its loss, -log p of the label, is the reference's when
    label smoothing is 0), no dropout."""

    name = TEXTBOOK_NAME
    batches_per_call = 1 << 62

    @staticmethod
    def train_batches(W, b, slots, step, X, y, order, batch_size, first, stop, lrs, opt,
                      smoothing=0.0, dropout=None):
        if opt.name != "momentum" or not opt.nesterov or smoothing or dropout:
            raise ValueError("the textbook yardstick trains only the default recipe "
                             "(Nesterov momentum, no label smoothing, no dropout)")
        rows = order[first * batch_size:stop * batch_size]
        loss, accuracy = textbook.train_epoch(
            W, b, slots[slot_key("velocity", "W")], slots[slot_key("velocity", "b")],
            X, y, rows, batch_size,
            lrs, momentum=opt.momentum, weight_decay=opt.weight_decay)
        return float(loss) * len(rows), round(accuracy * len(rows))


TEXTBOOK = TextbookBackend()


def trained_model(data, rows: int = QUICK_ROWS, hidden=DEFAULT_HIDDEN) -> MLP:
    """A model of ``hidden`` after one reference epoch on ``rows`` rows: realistic
    (sparse) hidden activations and gradients for the op and inference benchmarks."""
    setup = make_epoch_setup(data, rows, hidden=hidden)
    state = fresh_state(setup)
    run_epoch(get_backend(REFERENCE), setup, state)
    return state.model

"""Mini-batch training: the epoch loop around a backend's ``train_batches``.

No printing or files here: the CLI and the GUI watch the run through the
``on_chunk`` / ``on_epoch`` callbacks and stop it with ``should_stop``.
"""

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from fastmlp import augmentation, outliers, styles
from fastmlp.checkpoint import Checkpoint
from fastmlp.errors import FastmlpError
from fastmlp.evaluate import accuracy
from fastmlp.metadata import CONFIG
from fastmlp.model import (DEFAULT_HIDDEN, MLP, N_CLASSES, N_INPUTS, layer_sizes, parameter_count,
                           parse_hidden)
from fastmlp.memory import require
from fastmlp.optim import SLOTS, OptimizerConfig, OptimizerState, init_state
from fastmlp.schedules import learning_rates


@dataclass(frozen=True)
class TrainConfig:
    """The whole recipe. The defaults reach >= 98% MNIST test accuracy
    (measured: see README, "Results")."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "momentum"
    momentum: float = 0.9
    nesterov: bool = True
    schedule: str = "cosine"
    warmup: float | None = None
    weight_decay: float = 1e-3
    label_smoothing: float = 0.0
    dropout: float = 0.0
    seed: int = 0
    dtype: str = "float32"
    hidden: tuple = DEFAULT_HIDDEN
    limit: int | None = None
    validation: int = 0
    augment: str = "none"
    swa_start: int | None = None
    deskew: bool = False
    outliers: float = 0.0
    flagged_ones: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "hidden", parse_hidden(self.hidden))
        # Validated, and stored canonical ("default" -> its key=value form),
        # so checkpoints record exactly what was applied.
        object.__setattr__(self, "augment", augmentation.parse(self.augment).spec())
        # Each field's type and range: the schema checkpoints are checked against too.
        values = self.to_dict()
        for name, spec in CONFIG.fields.items():
            spec.check(values[name], f"--{name.replace('_', '-')}")
        if self.swa_start is not None and self.swa_start > self.epochs:
            raise FastmlpError(f"--swa-start {self.swa_start}: must be an epoch from 1 to "
                               f"--epochs ({self.epochs})")

    def optimizer_config(self) -> OptimizerConfig:
        return OptimizerConfig(name=self.optimizer, momentum=self.momentum,
                               nesterov=self.nesterov, weight_decay=self.weight_decay)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass
class TrainState:
    """Everything a resumed run needs besides the config. ``epoch`` epochs are
    complete; ``step`` batches of the next one are done, with their running
    sums (so an interrupted epoch resumes where it stopped).

    model: the live weights, the ones the optimizer moves. swa: with
    ``--swa-start``, the mean of the weights at the end of the last
    ``swa_count`` epochs (None before the first of them)."""

    model: MLP
    optimizer: OptimizerState
    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    swa: MLP | None = None
    swa_count: int = 0

    @classmethod
    def fresh(cls, config: TrainConfig, n_inputs=N_INPUTS, n_classes=N_CLASSES) -> "TrainState":
        """Epoch 0 of ``config``: a freshly initialised network (MNIST's
        784 inputs and 10 classes unless told) and zeroed optimizer slots."""
        model = MLP.init(config.hidden, seed=config.seed, dtype=config.dtype,
                         n_inputs=n_inputs, n_classes=n_classes, deskew=config.deskew)
        return cls(model, init_state(config.optimizer_config(), model.W, model.b))

    @classmethod
    def from_checkpoint(cls, saved: Checkpoint) -> "TrainState":
        """The state ``to_checkpoint`` saved. Raises TypeError when the
        progress metadata has other keys than ``progress()`` writes."""
        live, swa = (saved.model, None) if saved.live is None else (saved.live, saved.model)
        return cls(live, saved.optimizer, history=saved.meta.get("history", []), swa=swa,
                   **saved.meta["progress"])

    @property
    def result(self) -> MLP:
        """The model the run produces (so far): the SWA average once it
        exists, else the live weights."""
        return self.model if self.swa is None else self.swa

    def progress(self) -> dict:
        """The resumable position, stored in checkpoint metadata."""
        return {"epoch": self.epoch, "step": self.step, "loss_sum": self.loss_sum,
                "correct": self.correct, "seconds": self.seconds, "swa_count": self.swa_count}


def checkpoint_meta(config: TrainConfig, state: TrainState, data) -> dict:
    """The metadata stored with every training checkpoint: enough to resume
    (config, progress) and to know what the model is (history, data)."""
    return {"config": config.to_dict(), "history": state.history, "progress": state.progress(),
            "data": {"source": str(data.source), "checksum": data.checksum},
            "rng": {"seed": config.seed, "scheme": "epoch order: default_rng([seed, epoch]); "
                                                   "augmentation: default_rng([seed, epoch, 1]); "
                                                   "dropout key: default_rng([seed, epoch, 2]); "
                                                   "outliers: default_rng([seed, 3]); "
                                                   "flagged ones: default_rng([seed, 4])"}}


def to_checkpoint(config: TrainConfig, state: TrainState, data) -> Checkpoint:
    """What ``fastmlp train`` saves after every epoch and on Ctrl-C. Its model
    is ``state.result``, so evaluate, predict and the GUI use the SWA average
    once there is one; the live weights are then stored beside it, which is
    all ``--resume`` needs to continue bit-identically."""
    live = None if state.swa is None else state.model
    return Checkpoint(state.result, state.optimizer, checkpoint_meta(config, state, data), live=live)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """order: (n,) int64, the row order of ``epoch``. Each epoch draws from its
    own generator, seeded by (seed, epoch): the RNG state of any epoch is
    restored from those two numbers, so resuming needs nothing else."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def dropout_key(seed: int, epoch: int) -> int:
    """The dropout masks' key for ``epoch``, in [0, 2^63): drawn from its own
    generator seeded by (seed, epoch, 2), so a resumed epoch drops the same
    units (the mask of a row is a function of this key and its position in
    the epoch's order; see the backends' dropout_factors)."""
    return int(np.random.default_rng([seed, epoch, 2]).integers(0, 2**63))


def steps_per_epoch(n: int, batch_size: int) -> int:
    # The last partial batch is trained, not dropped.
    return -(-n // batch_size)


def epochs_averaged(config: TrainConfig, epochs_done: int) -> int:
    """How many end-of-epoch weights the SWA average holds once ``epochs_done``
    epochs are complete: those of epochs swa_start..epochs_done (1-based)."""
    return 0 if config.swa_start is None else max(0, epochs_done - config.swa_start + 1)


def average_in(average: MLP | None, model: MLP, count: int) -> MLP:
    """The running mean of ``count`` models, the last of them ``model``:
    avg_1 = w_1 (a copy), then avg_k = avg_{k-1} + (w_k - avg_{k-1}) / k for
    every W[l] and b[l], in place. Equal weight per term.

    In the model's dtype, not float64: the average is itself a model, run by
    the same kernels, saved as the checkpoint's weights and reloaded bit for
    bit on resume. Its rounding, about count / 2 ulps, is far below the
    differences between the epochs' weights it averages.

    No batch-norm statistics to recompute afterwards (SWA on networks with
    batch norm needs that): this MLP has none, so the average is a complete
    model."""
    if count == 1:
        return model.copy()
    for a, w in zip(average.W + average.b, model.W + model.b):
        a += (w - a) / a.dtype.type(count)
    return average


class Diverged(FastmlpError):
    """The loss became NaN or infinite; the weights in memory are unusable."""


def run(config: TrainConfig, data, backend, state: TrainState, *, on_chunk=None,
        on_epoch=None, should_stop=lambda: False, on_notice=None) -> str:
    """Train ``state`` up to ``config.epochs`` epochs on ``data`` (a Dataset).
    on_chunk(state, rows_done, chunk_loss) after every backend call;
    on_epoch(state, record) after every epoch, record = {"epoch", "loss",
    "train_accuracy", "test_accuracy", "seconds"} (seconds: training only;
    accuracies of the live weights; no "test_accuracy" when data.X_test is
    empty), plus "validation_accuracy" with
    ``config.validation``, and "swa_test_accuracy" ("swa_validation_accuracy")
    of the SWA average once it exists. The run's model is ``state.result``.
    on_notice(message) before one-off work that can take seconds (tracing the
    training digits' centre lines for --augment pen).
    Returns "done" or "stopped" (should_stop() became true between chunks).
    Raises Diverged on a non-finite loss."""
    X, y = training_rows(data, config)
    labelled = len(X)
    if config.outliers:
        X, y = outliers.with_outliers(X, y, config.outliers, config.seed)
    if config.flagged_ones:   # copies of the 1s (the outliers, NO_CLASS, are never chosen)
        before = len(X)
        X, y = styles.with_flagged_ones(X, y, config.flagged_ones, config.seed)
        labelled += len(X) - before
    check_memory(config, len(X), state.model.sizes[0], state.model.sizes[-1])
    # What the model reads (deskewed if it was made so), once for the whole run.
    X = state.model.prepared(X)
    splits = {"test": (data.X_test, data.y_test), "validation": validation_rows(data, config)}
    splits = {name: (state.model.prepared(X_split), y_split)
              for name, (X_split, y_split) in splits.items() if len(X_split)}
    spe = steps_per_epoch(len(X), config.batch_size)
    lrs_all = learning_rates(config.schedule, config.lr, spe * config.epochs, config.warmup)
    augmenter = _Augmenter(config, backend, X, on_notice or (lambda message: None))

    while state.epoch < config.epochs:
        if augmenter.enabled and should_stop():
            return "stopped"
        X_epoch = augmenter.epoch_images(state)
        order = epoch_order(config.seed, state.epoch, len(X))
        dropout = (config.dropout, dropout_key(config.seed, state.epoch)) if config.dropout else None
        lrs = lrs_all[state.epoch * spe:(state.epoch + 1) * spe]
        if not train_steps(config, backend, state, X_epoch, y, order, lrs, dropout,
                           on_chunk=on_chunk, should_stop=should_stop):
            return "stopped"
        record = finish_epoch(config, backend, state, len(X), splits, labelled)
        if on_epoch:
            on_epoch(state, record)
    return "done"


class _Augmenter:
    """The epoch's augmented copy of the training images (with
    ``config.augment``), written into one buffer reused every epoch; with
    the pen, the images' centre lines, traced once, and a second buffer for
    the re-drawn images the warp reads."""

    def __init__(self, config: TrainConfig, backend, X, on_notice):
        self.config, self.backend, self.X = config, backend, X
        self.spec = augmentation.parse(config.augment)
        self.enabled = self.spec.enabled
        self.out = np.empty_like(X) if self.enabled else None
        self.lines = self.drawn = None
        if self.spec.pen:
            on_notice(f"tracing the centre lines of {len(X):,} training digits for the pen "
                      f"(once per run)...")
            lines = np.empty((len(X), augmentation.PEN_LINE_PIXELS), np.uint8)
            self.lines = backend.skeleton(X, lines)
            self.drawn = np.empty_like(X)

    def epoch_images(self, state: TrainState):
        """X itself, or its augmented copy for ``state.epoch``: the whole
        epoch's images, augmented once by one backend call; a function of
        (seed, epoch) alone, so a resumed epoch sees the same images.
        Counted as training time (state.seconds)."""
        if not self.enabled:
            return self.X
        start = time.perf_counter()
        rng = augmentation.epoch_rng(self.config.seed, state.epoch)
        params = augmentation.sample_params(self.spec, len(self.X), rng)
        source = self.X
        if self.lines is not None:
            source = self.backend.pen_strokes(self.lines, params.radius, self.X, self.drawn)
        self.backend.augment(source, params.A, params.D, params.thickness, self.out)
        state.seconds += time.perf_counter() - start
        return self.out


def train_steps(config: TrainConfig, backend, state: TrainState, X, y, order, lrs,
                dropout=None, *, on_chunk=None, should_stop=lambda: False) -> bool:
    """Batches state.step.. of one epoch: the rows of X, y in ``order``, batch
    j at learning rate lrs[j], in chunks of ``backend.batches_per_call``;
    each chunk advances state.step and adds to state's running sums and
    seconds. Returns False when should_stop() became true between chunks.
    Raises Diverged on a non-finite loss. (bench/ times this loop too.)"""
    n, batch_size = len(X), config.batch_size
    spe = steps_per_epoch(n, batch_size)
    opt = config.optimizer_config()
    # The reference stops after any batch; a compiled backend runs a few per
    # call to keep Python off the hot path.
    per_call = getattr(backend, "batches_per_call", 1)
    while state.step < spe:
        if should_stop():
            return False
        first, stop = state.step, min(state.step + per_call, spe)
        start = time.perf_counter()
        # Overflow is caught below as a non-finite loss, with advice.
        with np.errstate(over="ignore", invalid="ignore"):
            loss_sum, correct = backend.train_batches(
                state.model.W, state.model.b, state.optimizer.slots, state.optimizer.step, X, y,
                order, batch_size, first, stop, lrs[first:stop], opt, config.label_smoothing,
                dropout)
        state.optimizer.step += stop - first   # the backend saw arrays and the count so far
        state.seconds += time.perf_counter() - start
        if not math.isfinite(loss_sum):
            raise Diverged(f"loss became {loss_sum} in epoch {state.epoch + 1}, batch {first + 1}; "
                           f"try a lower --lr (now {config.lr:g})")
        rows = min(stop * batch_size, n) - first * batch_size
        state.step, state.loss_sum, state.correct = stop, state.loss_sum + loss_sum, state.correct + correct
        if on_chunk:
            on_chunk(state, min(stop * batch_size, n), loss_sum / rows)
    return True


def finish_epoch(config: TrainConfig, backend, state: TrainState, n: int, splits,
                 labelled: int | None = None) -> dict:
    """Close the epoch whose batches are all done: its record (see run) with
    the accuracies, the SWA average updated, the record appended to
    state.history, and state moved to the start of the next epoch.
    n: the rows trained on; labelled: how many of them are digits (the rest,
    --outliers, have no class to be right about; default all n); splits:
    {"test", "validation"} -> (X, y), those the data has, X already
    ``state.model.prepared``."""
    labelled = n if labelled is None else labelled
    record = {"epoch": state.epoch + 1, "loss": state.loss_sum / n,
              "train_accuracy": state.correct / max(labelled, 1), "seconds": state.seconds}
    # A data set without a test split (the Python API's arrays) has no test accuracy.
    for name, (X_split, y_split) in splits.items():
        record[f"{name}_accuracy"] = accuracy(state.model, X_split, y_split, backend, True)
    count = epochs_averaged(config, state.epoch + 1)
    if count:
        state.swa, state.swa_count = average_in(state.swa, state.model, count), count
        for name, (X_split, y_split) in splits.items():
            record[f"swa_{name}_accuracy"] = accuracy(state.swa, X_split, y_split, backend, True)
    state.history.append(record)
    state.epoch, state.step, state.loss_sum, state.correct, state.seconds = state.epoch + 1, 0, 0.0, 0, 0.0
    return record


def check_memory(config: TrainConfig, n: int, n_inputs: int = N_INPUTS,
                 n_classes: int = N_CLASSES) -> None:
    """Refuse, with the figure, a run whose large arrays would not fit: the
    learning-rate schedule (8 bytes a step), the parameters with their
    gradients, optimizer slots, SWA average and a copy being saved, the
    activations and deltas of a batch, and the augmented copy of X."""
    itemsize = np.dtype(config.dtype).itemsize
    sizes = layer_sizes(config.hidden, n_inputs, n_classes)
    copies = 3 + len(SLOTS[config.optimizer]) + (config.swa_start is not None)
    total = (8 * steps_per_epoch(n, config.batch_size) * config.epochs
             + copies * parameter_count(sizes) * itemsize
             + 3 * min(config.batch_size, n) * sum(sizes) * itemsize
             + augmentation_bytes(config, n, n_inputs))
    require(total, f"training {'-'.join(map(str, sizes))} for {config.epochs} epochs "
                   f"at batch size {config.batch_size}")


def augmentation_bytes(config: TrainConfig, n: int, n_inputs: int = N_INPUTS) -> int:
    """The augmented copy of X; with the pen also the centre lines (uint8,
    4 per pixel) and the re-drawn copy."""
    if config.augment == "none":
        return 0
    itemsize = np.dtype(config.dtype).itemsize
    pen = augmentation.parse(config.augment).pen
    return n * n_inputs * (itemsize + (4 + itemsize if pen else 0))


def training_rows(data, config):
    """(X, y) to train on: the first ``config.limit`` training rows (all when
    None) less the last ``config.validation`` of them, held out."""
    n = data.X_train.shape[0]
    limit = n if config.limit is None else config.limit
    if limit > n:
        raise FastmlpError(f"--limit {limit}: larger than the {n} training images in {data.source}")
    if config.validation >= limit:
        raise FastmlpError(f"--validation {config.validation}: leaves nothing to train on "
                           f"(of {limit} images)")
    stop = limit - config.validation
    return data.X_train[:stop], data.y_train[:stop]


def validation_rows(data, config):
    """(X, y) held out for tuning without the test set: the ``config.validation``
    training rows right after the ones trained on."""
    stop = len(training_rows(data, config)[0])
    return data.X_train[stop:stop + config.validation], data.y_train[stop:stop + config.validation]

"""``MLPClassifier``: the engine as a scikit-learn estimator, and ``load``.

Training is the engine's own epoch loop (``fastmlp.train.run``) on the
caller's arrays, with either backend and every optimizer, schedule, dropout,
SWA and (for 28x28 images) augmentation recipe of ``fastmlp train``;
checkpoints are the CLI's format (``fastmlp.checkpoint``), so a model saved
here evaluates with ``fastmlp evaluate`` and one trained by ``fastmlp train``
loads here.

    X: (n, d) real numbers, any d    y: (n,) labels of any sortable kind
    predict_proba(X): (n, len(classes_)), columns in classes_ order
"""

import copy
import hashlib
import re
from collections import namedtuple
from dataclasses import dataclass, field, replace

import numpy as np

from fastmlp import checkpoint, train
from fastmlp.errors import FastmlpError
from fastmlp.evaluate import predict_proba as batched_proba
from fastmlp.kernels import default_backend_name
from fastmlp.inputs import InputError, check_labels, check_X, classes_of, encode, is_image_paths
from fastmlp.model import MLP, N_INPUTS
from fastmlp.schedules import learning_rates
from fastmlp.sklearn_compat import BaseEstimator, ClassifierMixin, NotFittedError

# What a checkpoint records of the data a model was trained on (train.checkpoint_meta).
TrainedOn = namedtuple("TrainedOn", "source checksum")
# The estimator's own parameters (not TrainConfig fields), saved beside the recipe.
_OWN_PARAMS = ("backend", "early_stopping", "validation_fraction", "n_iter_no_change", "tol",
               "verbose")


def stratified_order(targets, rng) -> np.ndarray:
    """A random order of the rows in which every tail holds each class in
    proportion (as scikit-learn's stratified split of a classifier's early
    stopping): each row gets its random rank within its class, divided by
    the class's size, and the rows are sorted by that. targets: (n,) int."""
    order = rng.permutation(len(targets))
    within = np.empty(len(targets))
    for c in np.unique(targets):
        rows = np.flatnonzero(targets[order] == c)
        within[rows] = (np.arange(len(rows)) + rng.random()) / len(rows)
    return order[np.argsort(within, kind="stable")]


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A multilayer perceptron classifier trained by fastmlp's engine.

    Parameters are those of ``fastmlp train`` (same names, same defaults:
    Nesterov momentum, lr 0.05 cosine, batch 128, 20 epochs), plus:

    backend: "numpy" (reference) or "numba" (compiled); None: $FASTMLP_BACKEND, else numpy.
    early_stopping, validation_fraction, n_iter_no_change, tol: as scikit-learn's
        MLPClassifier: hold out a stratified validation_fraction of the rows, stop once
        validation accuracy has not improved by tol for more than n_iter_no_change
        epochs, and keep the best epoch's weights.
    random_state: int seed (default 0: same data, same seed, same backend ->
        the same model), None, or a numpy RandomState/Generator to draw one from.
    verbose: a progress bar and one line per epoch.

    Fitted attributes: classes_, n_features_in_, model_ (fastmlp.model.MLP),
    history_ (the engine's per-epoch records), loss_curve_, n_iter_, backend_,
    and with early stopping validation_scores_ and best_validation_score_.
    """

    def __init__(self, hidden=(128, 64), *, epochs=20, batch_size=128, lr=0.05,
                 optimizer="momentum", momentum=0.9, nesterov=True, schedule="cosine",
                 warmup=None, weight_decay=1e-3, label_smoothing=0.0, dropout=0.0,
                 swa_start=None, augment="none", dtype="float32", backend=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, random_state=0, verbose=False):
        self.hidden, self.epochs, self.batch_size, self.lr = hidden, epochs, batch_size, lr
        self.optimizer, self.momentum, self.nesterov = optimizer, momentum, nesterov
        self.schedule, self.warmup, self.weight_decay = schedule, warmup, weight_decay
        self.label_smoothing, self.dropout, self.swa_start = label_smoothing, dropout, swa_start
        self.augment, self.dtype, self.backend = augment, dtype, backend
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.n_iter_no_change, self.tol = n_iter_no_change, tol
        self.random_state, self.verbose = random_state, verbose

    # ------------------------------------------------------------ training

    def fit(self, X, y):
        """Train a fresh network for ``epochs`` epochs (fewer with early stopping)."""
        X, labels = self._check_training_data(X, y, n_features=None)
        classes = classes_of(labels)
        targets = encode(labels, classes)
        n_val, seed = self._validation_rows(len(X)), self._seed()
        if n_val:  # the engine holds out the last rows: put a stratified sample there
            order = stratified_order(targets, np.random.default_rng([seed, 1]))
            X, targets = X[order], targets[order]
        config = self._train_config(X.shape[1], self.epochs, validation=n_val, seed=seed)
        state = train.TrainState.fresh(config, n_inputs=X.shape[1], n_classes=len(classes))
        early = EarlyStopping(self.n_iter_no_change, self.tol) if n_val else None
        self._train(X, targets, classes, config, state, early, call="fit")
        return self

    def partial_fit(self, X, y, classes=None):
        """One more epoch on (X, y), continuing the run. The first call needs
        ``classes`` (every label that will ever occur) and fixes the recipe;
        call k trains epoch k of the ``epochs``-epoch schedule, and later calls
        go on at its last learning rate (nearly 0 for cosine: to learn from a
        stream, use schedule="constant")."""
        first = not self.__sklearn_is_fitted__()
        if not first and self._state is None:
            raise InputError("partial_fit: this model holds no training state (a weights-only "
                             "checkpoint, or a run whose early stopping kept an earlier "
                             "epoch's weights); call fit to train anew")
        if first and classes is None:
            raise InputError("partial_fit: pass classes=[every label] on the first call")
        X, labels = self._check_training_data(X, y, None if first else self.n_features_in_)
        classes = classes_of(np.asarray(classes)) if first else self.classes_
        targets = encode(labels, classes)
        if first:
            config = self._train_config(X.shape[1], self.epochs, validation=0, seed=self._seed())
            state = train.TrainState.fresh(config, n_inputs=X.shape[1], n_classes=len(classes))
        else:
            config, state = self._continued_config(len(X)), self._state
        self._train(X, targets, classes, config, state, None, call="partial_fit",
                    recipe=None if first else self._config)
        return self

    def _train(self, X, targets, classes, config, state, early, call, recipe=None):
        """Run the engine's loop (fastmlp.train.run) and set the fitted
        attributes (only once it succeeded). partial_fit stops after one
        epoch. recipe: the config to record, when ``config`` is the constant
        tail of a continued run (default: ``config``)."""
        from fastmlp.cli import _get_ready, _progress_bar

        backend = _backend(self.backend)
        wait_until_ready = _get_ready(backend, config.dtype, augment=config.augment != "none")
        data = train_data(X, targets, f"arrays passed to MLPClassifier.{call}")
        wait_until_ready()  # announced on stderr if it takes long (a cold Numba cache)
        bar = _progress_bar(len(X) - config.validation, quiet=not self.verbose)
        watch = EpochWatch(config.epochs, early, bar, stop_after_epoch=call == "partial_fit")
        try:
            train.run(config, data, backend, state, on_chunk=watch.on_chunk,
                      on_epoch=watch.on_epoch, should_stop=watch.should_stop)
        except FastmlpError as exc:  # Diverged: the weights in memory are unusable
            if state is getattr(self, "_state", None):  # a continued run: unfit, not broken
                for name in ("model_", "_state"):
                    self.__dict__.pop(name, None)
            raise FastmlpError(api_wording(str(exc))) from None
        finally:
            if bar:
                bar.close()
        for name in ("validation_scores_", "best_validation_score_"):  # of an earlier fit
            self.__dict__.pop(name, None)
        self.classes_, self.n_features_in_, self.backend_ = classes, X.shape[1], backend.name
        self._state, self._config = state, recipe or config
        self._trained_on = TrainedOn(data.source, data.checksum)
        self.model_ = early.best_model if early and early.best_model else state.result
        self.history_ = state.history
        self.loss_curve_ = [record["loss"] for record in state.history]
        self.n_iter_ = state.epoch
        if early:
            self.validation_scores_, self.best_validation_score_ = early.scores, early.best

    def _check_training_data(self, X, y, n_features):
        X = check_X(X, self._dtype(), n_features)
        return X, check_labels(y, len(X))

    def _train_config(self, n_features, epochs, validation, seed) -> train.TrainConfig:
        if self.augment not in ("none", None) and n_features != N_INPUTS:
            raise InputError(f"augment={self.augment!r}: augmentation needs 28x28 images "
                             f"(784 features), X has {n_features}")
        # An int is one hidden layer, as in sklearn's hidden_layer_sizes.
        hidden = (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else self.hidden
        try:
            return train.TrainConfig(
                epochs=epochs, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,
                momentum=self.momentum, nesterov=self.nesterov, schedule=self.schedule,
                warmup=self.warmup, weight_decay=self.weight_decay,
                label_smoothing=self.label_smoothing, dropout=self.dropout, seed=seed,
                dtype=self._dtype(), hidden=hidden, validation=validation,
                augment=self.augment or "none", swa_start=self.swa_start)
        except (FastmlpError, TypeError, ValueError) as exc:
            raise InputError(f"MLPClassifier: {api_wording(str(exc))}") from None

    def _continued_config(self, rows) -> train.TrainConfig:
        """The first partial_fit's recipe, for one more epoch: only ``epochs``
        may have changed since (as with ``fastmlp train --resume``). Past the
        schedule's last epoch, a constant schedule at its final learning rate
        (for epochs of ``rows`` rows)."""
        done, config = self._state.epoch, self._config
        wanted = self._train_config(self.n_features_in_, max(self.epochs, done + 1),
                                    validation=0, seed=config.seed)
        for name in (name for name in _RECIPE_PARAMS if name != "epochs"):
            if getattr(wanted, name) != getattr(config, name):
                raise InputError(f"partial_fit: {name} changed from {getattr(config, name)!r} to "
                                 f"{getattr(wanted, name)!r}; a continued run keeps its recipe "
                                 "(only epochs may change); call fit to start over")
        if done < self.epochs:
            return replace(config, epochs=self.epochs, validation=0)
        steps = train.steps_per_epoch(rows, config.batch_size) * self.epochs
        final_lr = float(learning_rates(config.schedule, config.lr, steps, config.warmup)[-1])
        return replace(config, epochs=done + 1, validation=0, schedule="constant", warmup=None,
                       lr=final_lr)

    def _validation_rows(self, n) -> int:
        if not self.early_stopping:
            return 0
        if not 0.0 < self.validation_fraction < 1.0:
            raise InputError(f"MLPClassifier: validation_fraction={self.validation_fraction!r} "
                             "must be in (0, 1)")
        n_val = int(np.ceil(self.validation_fraction * n))  # as sklearn's train_test_split
        if n_val >= n:
            raise InputError(f"MLPClassifier: validation_fraction={self.validation_fraction} "
                             f"of {n} rows leaves nothing to train on")
        return n_val

    def _seed(self) -> int:
        seed = self.random_state
        if seed is None:  # sklearn's convention: a seed from numpy's global RandomState
            return int(np.random.randint(2**31 - 1))
        if isinstance(seed, np.random.RandomState):
            return int(seed.randint(2**31 - 1))
        if isinstance(seed, np.random.Generator):
            return int(seed.integers(2**31 - 1))
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
            return int(seed)
        raise InputError(f"MLPClassifier: random_state={seed!r} must be a non-negative int, "
                         "None, or a numpy RandomState/Generator")

    def _dtype(self) -> str:
        if str(self.dtype) not in ("float32", "float64"):
            raise InputError(f"MLPClassifier: dtype={self.dtype!r} must be float32 or float64")
        return str(self.dtype)

    # ---------------------------------------------------------- prediction

    def predict_proba(self, X) -> np.ndarray:
        """probs: (n, len(classes_)) for X: (n, n_features_in_) or image paths."""
        from fastmlp.cli import _get_ready

        self._check_fitted()
        X = self._prediction_inputs(X)
        backend = _backend(self.backend or self.backend_)
        _get_ready(backend, self.model_.dtype)()
        return batched_proba(self.model_, X, backend)

    def predict(self, X) -> np.ndarray:
        """labels: (n,) from classes_, the most probable class of each row."""
        best = self.predict_proba(X).argmax(axis=1)  # first: raises NotFittedError
        return self.classes_[best]

    def _prediction_inputs(self, X) -> np.ndarray:
        if not is_image_paths(X):
            return check_X(X, self.model_.dtype, self.n_features_in_)
        from fastmlp.preprocess import load_and_normalize

        if self.n_features_in_ != N_INPUTS:
            raise InputError(f"image files become 28x28 = 784 pixels, but this model expects "
                             f"{self.n_features_in_} features")
        paths = [X] if not isinstance(X, (list, tuple)) else X
        return np.stack([load_and_normalize(path) for path in paths])

    def _check_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; "
                                 "call fit (or fastmlp.load a checkpoint) first")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def __setstate__(self, state):
        # Unpickled arrays may be read-only (joblib memory-maps them into
        # workers), but the kernels write the network's buffers, and the
        # compiled ones insist on writable weights even to predict: own copies
        # (one deepcopy, so model_ stays the very object _state.result is).
        state = copy.deepcopy(state)
        parent = getattr(super(), "__setstate__", None)
        if parent is None:  # the stand-in base (no scikit-learn)
            self.__dict__.update(state)
        else:
            parent(state)

    # -------------------------------------------------------------- files

    def save(self, path) -> None:
        """Write the model to ``path`` as a fastmlp checkpoint (atomically):
        ``fastmlp evaluate``/``predict``/``export`` and ``fastmlp.load`` read it."""
        self._check_fitted()
        checkpoint.save(path, self._checkpoint())

    def to_onnx(self, path) -> None:
        """Write the network as an ONNX graph (needs the ``onnx`` extra)."""
        from fastmlp.onnx_export import write_onnx

        self._check_fitted()
        write_onnx(self._checkpoint(), path)

    def _checkpoint(self) -> checkpoint.Checkpoint:
        state = getattr(self, "_state", None)
        own = {"classes": self.classes_.tolist(),
               "params": {name: getattr(self, name) for name in _OWN_PARAMS},
               "input_scaling": "as the arrays given to fit (e.g. after a Pipeline's scaler, "
                                "which this file does not hold)"}
        if state is not None and self.model_ is state.result:  # resumable, like the CLI's
            saved = train.to_checkpoint(self._config, state, self._trained_on)
            saved.meta["estimator"] = own
            return saved
        # Early stopping kept an earlier epoch's weights, or the model was
        # loaded weights-only: weights and recipe, not a resumable state.
        meta = {"history": self.history_, "estimator": own}
        if getattr(self, "_config", None) is not None:
            meta["config"] = self._config.to_dict()
        return checkpoint.Checkpoint(self.model_, None, meta)


@dataclass
class EarlyStopping:
    """scikit-learn's rule: an epoch whose validation accuracy is not above
    the best by ``tol`` is a stall; more than ``n_iter_no_change`` stalls in a
    row stop the run; the best epoch's weights are kept."""

    n_iter_no_change: int
    tol: float
    best: float = -np.inf
    best_model: MLP | None = None
    stalls: int = 0
    scores: list = field(default_factory=list)

    def update(self, score: float, model: MLP) -> None:
        self.scores.append(score)
        self.stalls = self.stalls + 1 if score < self.best + self.tol else 0
        if score > self.best:
            self.best, self.best_model = score, model.copy()

    @property
    def stop(self) -> bool:
        return self.stalls > self.n_iter_no_change


class EpochWatch:
    """The callbacks of one training call: the progress bar, the verbose
    epoch lines, early stopping, and stopping after one epoch (partial_fit)."""

    def __init__(self, epochs, early, bar, stop_after_epoch):
        self.epochs, self.early, self.bar = epochs, early, bar
        self.stop_after_epoch, self.stopping = stop_after_epoch, False

    def should_stop(self) -> bool:
        return self.stopping

    def on_chunk(self, state, rows_done, loss):
        if self.bar:
            if rows_done < self.bar.n:
                self.bar.reset()
            self.bar.set_description(f"epoch {state.epoch + 1}/{self.epochs}")
            self.bar.update(rows_done - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def on_epoch(self, state, record):
        if self.early:
            score = record.get("swa_validation_accuracy", record["validation_accuracy"])
            self.early.update(score, state.result)
            self.stopping = self.early.stop
        self.stopping = self.stopping or self.stop_after_epoch
        if self.bar:
            val = f"  val {record['validation_accuracy'] * 100:6.2f}%" if self.early else ""
            self.bar.write(f"epoch {record['epoch']:>3}  loss {record['loss']:.4f}  "
                           f"train {record['train_accuracy'] * 100:6.2f}%{val}  "
                           f"{record['seconds']:.2f} s")


def _backend(name):
    """get_backend(name), an unknown name being a bad argument (InputError)."""
    from fastmlp.kernels import BACKENDS, get_backend

    if name is not None and name not in BACKENDS:
        raise InputError(f"MLPClassifier: backend={name!r} is unknown; available: "
                         f"{', '.join(BACKENDS)}")
    return get_backend(name)


def train_data(X, targets, source) -> "Dataset":
    """The engine's Dataset for arrays: everything is training data (run()
    reports no test accuracy for an empty test split); the checksum ties a
    saved model to exactly these arrays, as the CLI's does to its files."""
    from fastmlp.data import Dataset

    digest = hashlib.sha256(memoryview(X).cast("B"))
    digest.update(memoryview(targets).cast("B"))
    return Dataset(X_train=X, y_train=targets, X_test=X[:0], y_test=targets[:0],
                   source=source, checksum=digest.hexdigest())


def api_wording(message: str) -> str:
    """An engine message in the Python API's words: "--batch-size 0" -> "batch_size=0"."""
    return re.sub(r"--([a-z][a-z-]*)(?:\s+(-?[\d.][^\s:;,)]*))?",
                  lambda m: m.group(1).replace("-", "_") + (f"={m.group(2)}" if m.group(2) else ""),
                  message)


def load(path) -> MLPClassifier:
    """The classifier saved in ``path``: by ``MLPClassifier.save`` or by
    ``fastmlp train`` (then classes_ are the digits 0-9 and predict also
    takes image file paths). Validated like every checkpoint."""
    saved = checkpoint.load(path)
    meta, model = saved.meta, saved.model
    own = meta.get("estimator") if isinstance(meta.get("estimator"), dict) else {}
    recipe = dict(meta.get("config") or {})
    params = {name: recipe[name] for name in _RECIPE_PARAMS if name in recipe}
    if "hidden" in params:
        params["hidden"] = tuple(params["hidden"])
    if "seed" in recipe:
        params["random_state"] = recipe["seed"]
    params.update({k: v for k, v in (own.get("params") or {}).items() if k in _OWN_PARAMS})
    try:
        clf = MLPClassifier(**params)
        clf.classes_ = np.asarray(own.get("classes", list(range(model.sizes[-1]))))
        clf._config = train.TrainConfig(**recipe) if recipe else None
        resumable = saved.optimizer is not None and "progress" in meta and recipe
        clf._state = train.TrainState.from_checkpoint(saved) if resumable else None
    except (FastmlpError, TypeError, ValueError) as exc:
        raise FastmlpError(f"{path}: damaged estimator metadata ({' '.join(str(exc).split())})") from None
    if len(clf.classes_) != model.sizes[-1]:
        raise FastmlpError(f"{path}: metadata lists {len(clf.classes_)} classes, "
                           f"the network has {model.sizes[-1]} outputs")
    clf.model_, clf.n_features_in_ = model, model.sizes[0]
    clf.backend_ = clf.backend or default_backend_name()
    clf.history_ = meta.get("history", [])
    clf.loss_curve_ = [record.get("loss") for record in clf.history_ if isinstance(record, dict)]
    clf.n_iter_ = len(clf.history_)
    clf._trained_on = TrainedOn(**meta["data"]) if isinstance(meta.get("data"), dict) and set(
        meta["data"]) == set(TrainedOn._fields) else TrainedOn(str(path), "")
    return clf


# TrainConfig fields that are MLPClassifier parameters of the same name.
_RECIPE_PARAMS = ("hidden", "epochs", "batch_size", "lr", "optimizer", "momentum", "nesterov",
                  "schedule", "warmup", "weight_decay", "label_smoothing", "dropout",
                  "swa_start", "augment", "dtype")

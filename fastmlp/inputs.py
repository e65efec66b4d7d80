"""Checking what a Python caller passes in: X arrays and class labels.

Every problem is one :class:`InputError` line naming the argument and what is
wrong with it. InputError is a FastmlpError (the CLI's one-line reporting)
and also a ValueError and a TypeError, the exceptions the scientific Python
ecosystem (scikit-learn's own tools among them) expects for bad arguments.
Some messages keep scikit-learn's wording ("Reshape your data", "X has 3
features, but ...") because its estimator checks, and users, look for it.
"""

import os
import warnings

import numpy as np

from fastmlp.errors import FastmlpError
from fastmlp.sklearn_compat import DataConversionWarning


class InputError(FastmlpError, ValueError, TypeError):
    """A bad argument to the Python API."""


def check_X(X, dtype, n_features=None, owner="MLPClassifier") -> np.ndarray:
    """X: (n, d) of real numbers, any array-like -> C-contiguous ``dtype``
    array. ``n_features``: the d the model was fitted on (None while fitting)."""
    X = _as_numbers(X, "X")
    if X.ndim != 2:
        raise InputError(f"X: expected a 2-D array (n_samples, n_features), got shape {X.shape}; "
                         "Reshape your data: X.reshape(-1, 1) for one feature, "
                         "X.reshape(1, -1) for one sample")
    for axis, what in ((0, "sample(s)"), (1, "feature(s)")):
        if X.shape[axis] == 0:
            raise InputError(f"X: 0 {what} (shape={X.shape}) while a minimum of 1 is required.")
    if n_features is not None and X.shape[1] != n_features:
        raise InputError(f"X has {X.shape[1]} features, but {owner} is expecting "
                         f"{n_features} features as input")
    X = np.ascontiguousarray(X, dtype=dtype)
    _check_finite(X, "X")
    return X


def check_labels(y, n_samples):
    """y: (n_samples,) labels of any sortable kind (ints, strings, ...), or
    a column (n_samples, 1) with a DataConversionWarning, as in scikit-learn.
    Returns the 1-D labels."""
    if y is None:
        raise InputError("MLPClassifier requires y to be passed, but the target y is None")
    if _is_sparse(y):
        raise InputError("y: sparse labels are not supported; pass a dense 1-D array")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please "
                      "change the shape of y to (n_samples,), for example using ravel().",
                      DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1:
        raise InputError(f"y: expected a 1-D array of class labels, got shape {y.shape} "
                         "(one label per row; multi-output is not supported)")
    if len(y) != n_samples:
        raise InputError(f"X has {n_samples} rows but y has {len(y)} labels; they must match")
    if y.dtype.kind == "c":
        raise InputError("y: Complex data not supported")
    if y.dtype.kind == "f":
        _check_finite(y, "y")
        fractional = np.flatnonzero(y != np.round(y))
        if fractional.size:
            i = int(fractional[0])
            raise InputError(f"y: Unknown label type: continuous (y[{i}] = {_show(y[i])}); "
                             "a classifier needs discrete class labels")
    return y


def classes_of(y) -> np.ndarray:
    """The sorted distinct labels of y (at least two)."""
    try:
        classes = np.unique(y)
    except TypeError:  # e.g. an object array mixing strings and numbers
        raise InputError("y: Unknown label type: labels of mixed types cannot be sorted "
                         "into classes") from None
    if len(classes) < 2:
        found = f" ({_show(classes[0])})" if len(classes) else ""
        raise InputError(f"y: only one class{found} present; a classifier needs at least 2 classes")
    return classes


def encode(y, classes) -> np.ndarray:
    """The index of each label in ``classes`` (sorted): (n,) int64."""
    index = np.searchsorted(classes, y).clip(0, len(classes) - 1)
    unknown = np.flatnonzero(classes[index] != y)
    if unknown.size:
        i = int(unknown[0])
        raise InputError(f"y: label {_show(y[i])} (row {i}) is not among the classes "
                         f"{list(classes.tolist())} given to the first fit or partial_fit")
    return index.astype(np.int64)


def is_image_paths(X) -> bool:
    """A path, or a list/tuple of paths, to image files (rather than an array)."""
    if isinstance(X, (str, os.PathLike)):
        return True
    return (isinstance(X, (list, tuple)) and len(X) > 0
            and all(isinstance(p, (str, os.PathLike)) for p in X))


def _as_numbers(X, name) -> np.ndarray:
    if X is None:
        raise InputError(f"{name} is None; expected an array of numbers")
    if _is_sparse(X):
        raise InputError(f"{name}: sparse input is not supported; pass a dense array "
                         f"({name}.toarray())")
    try:
        X = np.asarray(X)
        if X.dtype.kind == "c":
            raise InputError(f"{name}: Complex data not supported")
        if X.dtype.kind not in "biuf":
            X = X.astype(np.float64)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{name}: {' '.join(str(exc).split())}") from None
    return X


def _check_finite(a, name) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        where = np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape)
        value = a[where]
        kind = "NaN" if np.isnan(value) else f"infinity or a value too large for {a.dtype}"
        raise InputError(f"Input {name} contains {kind} (at index {tuple(map(int, where))}, "
                         f"{int(bad.sum())} such value(s))")


def _show(value) -> str:
    """A label as the user wrote it: 1.0 or 'cat', not np.float64(1.0)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _is_sparse(a) -> bool:
    # scipy.sparse matrices and arrays, without importing scipy.
    return type(a).__module__.startswith("scipy.sparse")

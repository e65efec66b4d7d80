"""fastmlp: a multilayer perceptron written from first principles.

NumPy reference kernels and a Numba-compiled twin sit behind one interface.

Quick start (any X: (n, d) floats, any labels; MNIST ships with the package)::

    import fastmlp
    data = fastmlp.load_dataset()                     # MNIST: X_train (60000, 784) in [0, 1]
    clf = fastmlp.MLPClassifier(hidden=(128, 64), backend="numba", epochs=20)
    clf.fit(data.X_train, data.y_train)
    clf.score(data.X_test, data.y_test)               # ~0.984
    clf.predict_proba(data.X_test[:5])                # (5, 10), columns in clf.classes_ order
    clf.predict(["seven.png"])                        # image files, normalized like MNIST
    clf.save("model.npz")                             # the CLI's checkpoint format
    clf = fastmlp.load("model.npz")                   # or a `fastmlp train` checkpoint
    clf.to_onnx("model.onnx")                         # needs: pip install "fastmlp[onnx]"

MLPClassifier is a scikit-learn estimator (Pipeline, GridSearchCV,
cross_val_score; scikit-learn itself is optional). Its parameters are those
of ``fastmlp train`` (optimizer sgd/momentum/adam/adamw, schedule
constant/cosine/onecycle, dropout, swa_start, augment for 28x28 images,
backend numpy/numba), plus early_stopping and random_state.

Names:
    MLPClassifier   the classifier (fit, partial_fit, predict, predict_proba, score,
                    save, to_onnx)
    load            a saved checkpoint as an MLPClassifier
    load_dataset    MNIST (or any directory of IDX files) as a Dataset
    Dataset         train/test arrays: X_train, y_train, X_test, y_test
    TrainConfig     the training recipe of the engine (fastmlp.train.run)
    get_backend     the kernels by name: "numpy" or "numba"
    FastmlpError    every user mistake: one line, also ValueError for bad arguments

The command line is ``fastmlp train | evaluate | predict | export | gradcheck |
gui``; the engine's modules are fastmlp.train, .model, .checkpoint, .data,
.preprocess, and fastmlp.kernels.

fastmlp.kernels is the repository's kernels/ folder (and fastmlp.gui its gui/),
installed under this package by pyproject.toml's package-dir.
"""

__version__ = "0.1.0"

__all__ = ["MLPClassifier", "load", "load_dataset", "Dataset", "TrainConfig", "get_backend",
           "FastmlpError"]

# name -> the module defining it. Imported on first use, so that `fastmlp
# train` and the GUI start without importing scikit-learn.
_LAZY = {
    "MLPClassifier": "fastmlp.estimator",
    "load": "fastmlp.estimator",
    "load_dataset": "fastmlp.data",
    "Dataset": "fastmlp.data",
    "TrainConfig": "fastmlp.train",
    "get_backend": "fastmlp.kernels",
    "FastmlpError": "fastmlp.errors",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

"""The multilayer perceptron: its layer sizes, its parameters, and how it reads its inputs.

The maths lives in the kernels (fastmlp.kernels); this holds the arrays."""

from dataclasses import dataclass

import numpy as np

from fastmlp.deskew import deskew
from fastmlp.errors import FastmlpError
from fastmlp.kernels.contract import IMAGE_SIDE, N_CLASSES, N_INPUTS  # noqa: F401  (re-exported)

DEFAULT_HIDDEN = (128, 64)
DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass
class MLP:
    """sizes: (784, *hidden, 10). W[l]: (sizes[l], sizes[l+1]), b[l]: (sizes[l+1],).
    ReLU after every hidden layer, softmax after the last. deskew: the
    network was trained on deskewed images (fastmlp.deskew), so every input
    is deskewed the same way before its first layer (``prepared``)."""

    sizes: tuple
    W: list
    b: list
    deskew: bool = False

    @classmethod
    def init(cls, hidden=DEFAULT_HIDDEN, seed=0, dtype="float32", n_inputs=N_INPUTS,
             n_classes=N_CLASSES, deskew=False):
        """He initialisation (He et al. 2015): W ~ N(0, 2 / fan_in), b = 0, so
        the variance of the activations neither grows nor vanishes through ReLUs."""
        sizes = layer_sizes(hidden, n_inputs, n_classes)
        rng = np.random.default_rng(seed)
        dtype = np.dtype(DTYPES[str(np.dtype(dtype))])
        W = [(rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)
             for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
        b = [np.zeros(fan_out, dtype) for fan_out in sizes[1:]]
        return cls(sizes, W, b, deskew=bool(deskew))

    @property
    def dtype(self):
        return self.W[0].dtype

    @property
    def hidden(self):
        return self.sizes[1:-1]

    def prepared(self, X) -> np.ndarray:
        """X: (n, 784) in [0, 1] as the first layer reads it: C-contiguous in
        the model's dtype, and deskewed if the model was trained so."""
        X = np.ascontiguousarray(np.atleast_2d(X), dtype=self.dtype)
        return deskew(X) if self.deskew else X

    def predict_proba(self, X, backend):
        """probs: (n, 10) for X: (n, 784) in [0, 1] (``prepared`` first)."""
        return backend.forward(self.W, self.b, self.prepared(X))

    def copy(self):
        return MLP(self.sizes, [w.copy() for w in self.W], [bias.copy() for bias in self.b],
                   deskew=self.deskew)


def parameter_count(sizes) -> int:
    """Weights and biases of an MLP with these layer sizes (exact Python int)."""
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))


def parse_hidden(hidden) -> tuple:
    """'128,64' or (128, 64) -> (128, 64); every size a positive integer."""
    if isinstance(hidden, str):
        parts = [p.strip() for p in hidden.split(",") if p.strip()]
        try:
            hidden = [int(p) for p in parts]
        except ValueError:
            raise FastmlpError(f"--hidden {hidden!r}: expected comma-separated positive integers, e.g. 128,64") from None
    hidden = tuple(int(h) for h in hidden)
    if any(h <= 0 for h in hidden):
        raise FastmlpError(f"--hidden {','.join(map(str, hidden))}: hidden sizes must be positive")
    return hidden


def layer_sizes(hidden=DEFAULT_HIDDEN, n_inputs=N_INPUTS, n_classes=N_CLASSES) -> tuple:
    """(n_inputs, *hidden, n_classes): every layer's width of a network with
    these hidden sizes (a tuple or "128,64"); MNIST's 784 and 10 unless told."""
    return (n_inputs, *parse_hidden(hidden), n_classes)

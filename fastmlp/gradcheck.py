"""Gradient checking: backpropagation against central finite differences.

Each backend's backpropagation against central finite differences of the
loss, and the backends against each other.

Finite differences run in float64 on the reference backend's loss:
    dL/dp ~ (L(p + h) - L(p - h)) / 2h.
The error measure and the tolerances, each with its reason, are
fastmlp/tolerances.py's, shared with the tests and the benchmarks.
"""

from dataclasses import dataclass

import numpy as np

from fastmlp.memory import require
from fastmlp.model import MLP, layer_sizes, parameter_count
from fastmlp.tolerances import ANALYTIC_VS_FD, GRADCHECK_BETWEEN, relative_error

STEP = 1e-6


def check_memory(n_backends: int, hidden, n_inputs: int, batch_size: int, dtype) -> None:
    """Refuse, with the figure, a check whose arrays would not fit: the model,
    its float64 copy for finite differences and one gradient set per backend;
    activations and deltas of the batch, per backend and for the reference."""
    sizes = layer_sizes(hidden, n_inputs)
    itemsize = max(np.dtype(dtype).itemsize, 8)  # the FD copy is float64
    total = ((2 + n_backends) * parameter_count(sizes) * itemsize
             + 3 * (n_backends + 1) * batch_size * sum(sizes) * itemsize)
    require(total, f"gradcheck of {'-'.join(map(str, sizes))} at batch size {batch_size}")


def analytic_gradients(backend, model: MLP, X, y, smoothing=0.0):
    """(loss, [dW0, db0, dW1, db1, ...]) from ``backend.forward_backward``."""
    dW = [np.empty_like(w) for w in model.W]
    db = [np.empty_like(bias) for bias in model.b]
    loss, _ = backend.forward_backward(model.W, model.b, X, y, dW, db, smoothing)
    return loss, [g for pair in zip(dW, db) for g in pair]


def numerical_gradients(reference, model: MLP, X, y, entries, smoothing=0.0, step=STEP):
    """Central differences of ``reference``'s loss (any backend's), in float64,
    at ``entries``: one array of flat indices per parameter tensor (W0, b0,
    W1, ...). Returns one array of derivatives per tensor, aligned with
    ``entries``."""
    model = MLP(model.sizes, [w.astype(np.float64) for w in model.W],
                [bias.astype(np.float64) for bias in model.b])
    X = X.astype(np.float64)
    params = [p for pair in zip(model.W, model.b) for p in pair]

    def loss():
        return analytic_gradients(reference, model, X, y, smoothing)[0]

    derivatives = []
    for param, indices in zip(params, entries):
        flat = param.reshape(-1)  # a view: writing it moves the model's weight
        d = np.empty(len(indices))
        for k, i in enumerate(indices):
            saved = flat[i]
            flat[i] = saved + step
            loss_plus = loss()
            flat[i] = saved - step
            loss_minus = loss()
            flat[i] = saved
            d[k] = (loss_plus - loss_minus) / (2 * step)
        derivatives.append(d)
    return derivatives


def sample_entries(model: MLP, per_tensor: int, rng) -> list:
    """Flat indices to check per tensor: all of a small tensor, else a random subset."""
    params = [p for pair in zip(model.W, model.b) for p in pair]
    return [np.arange(p.size) if p.size <= per_tensor
            else np.sort(rng.choice(p.size, per_tensor, replace=False)) for p in params]


def difference(a, b):
    """(max absolute difference, relative to max |b|: tolerances.relative_error)."""
    absolute = float(np.max(np.abs(a - b))) if len(a) else 0.0
    return absolute, relative_error(a, b)


@dataclass
class Row:
    tensor: str        # "W0", "b0", ...
    against: str       # "numpy vs FD", "numba vs numpy", ...
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_rel <= self.tolerance


def check(backends: dict, model: MLP, X, y, per_tensor=200, seed=0, smoothing=0.0) -> list:
    """Rows comparing every backend (name -> module, the first one the reference)
    with finite differences, and every later backend with the first one."""
    rng = np.random.default_rng(seed)
    dtype = str(model.dtype)
    names = list(backends)
    reference = backends["numpy"] if "numpy" in backends else backends[names[0]]
    entries = sample_entries(model, per_tensor, rng)
    numeric = numerical_gradients(reference, model, X, y, entries, smoothing)
    X = X.astype(model.dtype)
    analytic = {name: analytic_gradients(backend, model, X, y, smoothing)[1]
                for name, backend in backends.items()}
    tensor_names = [f"{kind}{l}" for l in range(len(model.W)) for kind in ("W", "b")]
    rows = []
    for t, tensor in enumerate(tensor_names):
        for name in names:
            a = analytic[name][t].reshape(-1)[entries[t]]
            rows.append(Row(tensor, f"{name} vs FD", *difference(a, numeric[t]),
                            ANALYTIC_VS_FD[dtype]))
        for name in names[1:]:
            a = analytic[name][t].reshape(-1)
            ref = analytic[names[0]][t].reshape(-1)
            rows.append(Row(tensor, f"{name} vs {names[0]}", *difference(a, ref),
                            GRADCHECK_BETWEEN[dtype]))
    return rows


def format_table(rows: list) -> str:
    lines = ["| tensor | comparison | max abs diff | max rel diff | tolerance | result |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.tensor} | {r.against} | {r.max_abs:.3e} | {r.max_rel:.3e} | "
                     f"{r.tolerance:.0e} | {'PASS' if r.passed else 'FAIL'} |")
    return "\n".join(lines)

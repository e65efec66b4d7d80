"""The per-op workload and its check.

Real activations and gradients of one batch, each op called on them, its
outputs compared with the reference's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fastmlp.kernels import get_backend
from fastmlp.model import MLP
from fastmlp.tolerances import BACKEND_VS_REFERENCE, CORRECT_SLACK, relative_error
from fastmlp.train import TrainConfig, epoch_order
from workload import REFERENCE

OP_BATCH_SIZES = (32, 128, 512)


@dataclass
class OpCase:
    """One op call on fixed inputs. make() returns fresh argument tuples (new
    output arrays each time); outputs(args, ret) lists what the op produced:
    written arrays and returned values, compared with the reference's."""

    id: str
    op: str
    make: Callable[[], tuple]
    outputs: Callable[[tuple, object], list]


def op_inputs(model: MLP, data, batch: int) -> dict:
    """Real activations and gradients for one batch: ``batch`` training rows
    (a fixed random choice), the model's forward and backward pass computed by
    the reference. float32, C-contiguous."""
    ref = get_backend(REFERENCE)
    rows = epoch_order(0, 0, len(data.X_train))[:batch]
    X = np.ascontiguousarray(data.X_train[rows], dtype=model.dtype)
    y = np.ascontiguousarray(data.y_train[rows])
    W, b = model.W, model.b
    L = len(W)
    A = [X]
    for l in range(L):
        A.append(ref.linear_forward(A[l], W[l], b[l],
                                    np.empty((batch, W[l].shape[1]), X.dtype), relu=l < L - 1))
    probs, delta = np.empty_like(A[L]), np.empty_like(A[L])
    ref.softmax_cross_entropy(A[L], y, probs, delta)
    deltas, dAs = [None] * L, [None] * L  # deltas[l] = dL/dZ_l; dAs[l] = dL/dA_l (before the mask)
    deltas[L - 1] = delta
    dW = [np.empty_like(w) for w in W]
    db = [np.empty_like(v) for v in b]
    for l in reversed(range(L)):
        if l == 0:
            ref.linear_backward(A[0], W[0], deltas[0], dW[0], db[0], None)
            break
        dX = np.empty_like(A[l])
        ref.linear_backward(A[l], W[l], deltas[l], dW[l], db[l], dX)
        dAs[l - 1] = dX.copy()
        deltas[l - 1] = ref.relu_backward(dX, A[l], np.empty_like(dX))
    return {"X": X, "y": y, "A": A, "logits": A[L], "deltas": deltas, "dAs": dAs,
            "dW": dW, "db": db, "W": W, "b": b}


def op_cases(inp: dict) -> list[OpCase]:
    """The per-op benchmark cases for one batch (see op_inputs)."""
    W, b, A, deltas, dAs, y = inp["W"], inp["b"], inp["A"], inp["deltas"], inp["dAs"], inp["y"]
    n, L = len(inp["X"]), len(W)
    cases = []
    cfg = TrainConfig()

    def copy(a):
        return a.copy()

    for l in range(L):
        i, o = W[l].shape
        relu = l < L - 1
        cases.append(OpCase(
            f"linear_forward-{i}x{o}{'-relu' if relu else ''}", "linear_forward",
            lambda l=l, o=o, relu=relu: (A[l], W[l], b[l], np.empty((n, o), A[l].dtype), relu),
            lambda args, ret: [args[3]]))
    cases.append(OpCase(
        "softmax_cross_entropy", "softmax_cross_entropy",
        lambda: (inp["logits"], y, np.empty_like(inp["logits"]), np.empty_like(inp["logits"]), 0.0),
        lambda args, ret: [ret, args[2], args[3]]))
    for l in range(L - 1):
        o = W[l].shape[1]
        cases.append(OpCase(
            f"relu_backward-{o}", "relu_backward",
            lambda l=l: (dAs[l], A[l + 1], np.empty_like(dAs[l])),
            lambda args, ret: [args[2]]))
    for l in reversed(range(L)):
        i, o = W[l].shape
        cases.append(OpCase(
            f"linear_backward-{i}x{o}{'-no-dX' if l == 0 else ''}", "linear_backward",
            lambda l=l: (A[l], W[l], deltas[l], np.empty_like(W[l]), np.empty_like(b[l]),
                         None if l == 0 else np.empty_like(A[l])),
            lambda args, ret: [a for a in args[3:6] if a is not None]))
    W0, g0 = W[0], inp["dW"][0]
    cases.append(OpCase(
        "sgd_update-W0", "sgd_update",
        lambda: (copy(W0), g0, cfg.lr, cfg.weight_decay),
        lambda args, ret: [args[0]]))
    cases.append(OpCase(
        "momentum_update-W0", "momentum_update",
        lambda: (copy(W0), g0, (0.5 * g0).astype(W0.dtype), cfg.lr, cfg.momentum, cfg.nesterov,
                 cfg.weight_decay),
        lambda args, ret: [args[0], args[2]]))
    cases.append(OpCase(
        "adam_update-W0", "adam_update",
        lambda: (copy(W0), g0, (0.5 * g0).astype(W0.dtype), (g0 * g0 + 1e-6).astype(W0.dtype),
                 1e-3, 0.9, 0.999, 1e-8, 1e-3, 10, False),
        lambda args, ret: [args[0], args[2], args[3]]))
    cases.append(OpCase(
        "forward", "forward",
        lambda: (W, b, inp["X"]),
        lambda args, ret: [ret]))
    cases.append(OpCase(
        "forward_backward", "forward_backward",
        lambda: (W, b, inp["X"], y, [np.empty_like(w) for w in W], [np.empty_like(v) for v in b], 0.0),
        lambda args, ret: [ret[0], ("correct", ret[1]), *args[4], *args[5]]))
    return cases


def run_case(backend, case: OpCase, args=None):
    args = case.make() if args is None else args
    ret = getattr(backend, case.op)(*args)
    return args, ret


def check_case(backend, case: OpCase) -> None:
    """The backend's op output equals the reference's on the same inputs: the
    relative error of every output (fastmlp/tolerances.py) within
    BACKEND_VS_REFERENCE for its dtype, CORRECT_SLACK rows for the 'correct' count."""
    ref = get_backend(REFERENCE)
    want = case.outputs(*run_case(ref, case))
    got = case.outputs(*run_case(backend, case))
    assert len(got) == len(want)
    tolerance = BACKEND_VS_REFERENCE[case_dtype(want)]
    for k, (g, w) in enumerate(zip(got, want)):
        where = f"{backend.name} {case.id} output {k}"
        if isinstance(w, tuple):  # ("correct", count)
            assert abs(int(g[1]) - int(w[1])) <= CORRECT_SLACK, f"{where}: correct {g[1]} vs {w[1]}"
            continue
        if isinstance(w, np.ndarray):
            assert g.shape == w.shape and g.dtype == w.dtype, f"{where}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        error = relative_error(g, w)
        assert error <= tolerance, f"{where}: relative error {error:.3e} > {tolerance:g}"


def case_dtype(outputs) -> str:
    """The float dtype of a case's array outputs (its inputs': one per call)."""
    return next(str(o.dtype) for o in outputs if isinstance(o, np.ndarray))

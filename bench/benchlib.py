"""Shared code of the benchmarks: the workload, the correctness checks that run
before anything is timed, the FLOP count, the SGEMM peak and the machine header.

Used by the pytest-benchmark files (bench/test_bench_*.py, via bench/conftest.py)
and by the comparison script (bench/compare.py). Nothing here is imported by
the package itself.

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
(``epoch_order(seed, epoch, n)``, a 60000-element permutation) and every
``backend.train_batches`` call over all batches, in chunks of
``backend.batches_per_call`` exactly as ``fastmlp.train.run`` does (gather of
the batch rows, forward, backward, optimizer step). Excluded: the test-set
evaluation ``run`` does after each epoch, the learning-rate schedule (computed
once per run, not per epoch), model initialisation, data loading, and
compilation (a warm-up call happens before timing).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import textbook
from fastmlp.errors import FastmlpError
from fastmlp.kernels import BACKENDS, get_backend
from fastmlp.model import DEFAULT_HIDDEN, MLP, N_CLASSES, N_INPUTS, parse_hidden
from fastmlp.schedules import learning_rates
from fastmlp.train import TrainConfig, TrainState, epoch_order, steps_per_epoch

QUICK_ENV = "FASTMLP_BENCH_QUICK"
QUICK_ROWS = 6000
OP_BATCH_SIZES = (32, 128, 512)
REFERENCE = "numpy"
TEXTBOOK_NAME = "textbook"

# Tolerances of the correctness checks (float32 throughout).
OP_RTOL, OP_ATOL = 1e-4, 1e-5     # every op's written arrays and returned loss
EPOCH_LOSS_RTOL = 1e-3            # mean training loss of one epoch vs the reference
CORRECT_SLACK = 1                 # rows classified right per batch: a near-tie may flip one


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


def source_digest(module) -> dict:
    """Which code was measured: the backend's file, its SHA-256 (first 12 hex
    digits) and whether git sees it modified (the work tree may be ahead of HEAD)."""
    import hashlib
    path = getattr(module, "__file__", None)
    if not path:
        return {}
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--", path], capture_output=True,
                                text=True, cwd=os.path.dirname(path), timeout=10).stdout.strip()
    except Exception:
        status = "unknown"
    return {"file": path, "sha256": digest, "git_status": status or "clean"}


# ------------------------------------------------------------------ FLOPs

def layer_sizes(network=None) -> tuple:
    """(784, *hidden, 10) of ``network``: a TrainConfig, hidden sizes ((128, 64)
    or "128,64"), or None for the default network (784-128-64-10)."""
    if network is None:
        hidden = DEFAULT_HIDDEN
    elif isinstance(network, TrainConfig):
        hidden = network.hidden
    else:
        hidden = parse_hidden(network)
    return (N_INPUTS, *hidden, N_CLASSES)


def network_name(sizes) -> str:
    """(784, 128, 64, 10) -> "784-128-64-10"."""
    return "-".join(map(str, sizes))


def forward_flops(n: int, sizes=None) -> int:
    """2 * n * sum_l(i_l * o_l): one multiply-add per weight per row.
    sizes: every layer's width, (784, *hidden, 10); None: the default network."""
    sizes = sizes or layer_sizes()
    return 2 * n * sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))


def epoch_flops(n: int, sizes=None) -> int:
    """Dense-equivalent FLOPs of one training epoch over n rows of the network
    ``sizes`` ((784, *hidden, 10); None: the default 784-128-64-10): the GEMMs only.

        forward    Y_l  = X_l @ W_l         2 n i_l o_l   every layer
        weights    dW_l = X_l.T @ dY_l      2 n i_l o_l   every layer
        inputs     dX_l = dY_l @ W_l.T      2 n i_l o_l   every layer but the
                                                          first (no dX for the pixels)

        total = 2 n (3 * sum_l i_l o_l  -  i_0 o_0)

    For 784-128-64-10: sum i o = 100352 + 8192 + 640 = 109184, so
    total = 2 n (327552 - 100352) = 2 n * 227200 = 454400 n, i.e.
    27.264e9 for n = 60000 (forward 13.10e9 + dW 13.10e9 + dX 1.06e9).
    Counting dX of the first layer too would give 3 * 13.10e9 = 39.31e9.
    Not counted (O(n * o) or O(params) per step, about 2% together): bias
    adds, ReLU and its mask, softmax/cross-entropy, and the optimizer update
    (~8 flops per parameter per step: 109386 * 8 * 469 = 0.41e9 per epoch).
    """
    sizes = sizes or layer_sizes()
    io = [i * o for i, o in zip(sizes[:-1], sizes[1:])]
    return 2 * n * (3 * sum(io) - io[0])


def nonzero_fraction(X: np.ndarray) -> float:
    """Fraction of the pixels of X that are not exactly 0 (the compiled backend
    skips zeros: MNIST ~0.19, Fashion-MNIST ~0.50)."""
    return float(np.count_nonzero(X)) / X.size if X.size else 0.0


# ------------------------------------------------------------------ the workload

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
        return layer_sizes(self.config)

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
    """One timed epoch, as fastmlp.train.run trains it (see the module docstring
    for what is included). ``state`` is trained in place."""
    config, X, y, n = setup.config, setup.X, setup.y, setup.n
    bs, spe = config.batch_size, setup.steps
    opt = config.optimizer_config()
    W, b = state.model.W, state.model.b
    per_call = getattr(backend, "batches_per_call", 1)
    loss_sum, correct = 0.0, 0
    start = time.perf_counter()
    order = epoch_order(config.seed, epoch, n)
    with np.errstate(over="ignore", invalid="ignore"):
        for first in range(0, spe, per_call):
            stop = min(first + per_call, spe)
            chunk_loss, chunk_correct = backend.train_batches(
                W, b, state.optimizer, X, y, order, bs, first, stop,
                setup.lrs[first:stop], opt, config.label_smoothing)
            loss_sum += chunk_loss
            correct += chunk_correct
    seconds = time.perf_counter() - start
    return EpochResult(seconds, loss_sum / n, correct / n)


def warm_up_epoch(backend, setup: EpochSetup, batches: int = 2) -> None:
    """Compile/warm ``train_batches`` on a throwaway state (not timed)."""
    state = fresh_state(setup)
    order = epoch_order(setup.config.seed, 0, setup.n)
    stop = min(batches, setup.steps)
    backend.train_batches(state.model.W, state.model.b, state.optimizer, setup.X, setup.y,
                          order, setup.config.batch_size, 0, stop, setup.lrs[:stop],
                          setup.config.optimizer_config(), setup.config.label_smoothing)


def check_epoch_loss(name: str, got: EpochResult, ref: EpochResult) -> None:
    """The backend's epoch trained like the reference: mean loss within EPOCH_LOSS_RTOL."""
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
    def train_batches(W, b, state, X, y, order, batch_size, first, stop, lrs, opt,
                      smoothing=0.0, dropout=None):
        if opt.name != "momentum" or not opt.nesterov or smoothing or dropout:
            raise ValueError("the textbook yardstick trains only the default recipe "
                             "(Nesterov momentum, no label smoothing, no dropout)")
        rows = order[first * batch_size:stop * batch_size]
        loss, accuracy = textbook.train_epoch(
            W, b, state.slots["velocity_W"], state.slots["velocity_b"], X, y, rows, batch_size,
            lrs, momentum=opt.momentum, weight_decay=opt.weight_decay)
        state.step += stop - first
        return float(loss) * len(rows), round(accuracy * len(rows))


TEXTBOOK = TextbookBackend()


def trained_model(data, rows: int = QUICK_ROWS, hidden=DEFAULT_HIDDEN) -> MLP:
    """A model of ``hidden`` after one reference epoch on ``rows`` rows: realistic
    (sparse) hidden activations and gradients for the op and inference benchmarks."""
    setup = make_epoch_setup(data, rows, hidden=hidden)
    state = fresh_state(setup)
    run_epoch(get_backend(REFERENCE), setup, state)
    return state.model


# ------------------------------------------------------------------ single ops

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
    """The backend's op output equals the reference's on the same inputs, within
    rtol OP_RTOL / atol OP_ATOL (CORRECT_SLACK rows for the 'correct' count)."""
    ref = get_backend(REFERENCE)
    want = case.outputs(*run_case(ref, case))
    got = case.outputs(*run_case(backend, case))
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        where = f"{backend.name} {case.id} output {k}"
        if isinstance(w, tuple):  # ("correct", count)
            assert abs(int(g[1]) - int(w[1])) <= CORRECT_SLACK, f"{where}: correct {g[1]} vs {w[1]}"
        elif isinstance(w, np.ndarray):
            assert g.shape == w.shape and g.dtype == w.dtype, f"{where}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
            np.testing.assert_allclose(g, w, rtol=OP_RTOL, atol=OP_ATOL, err_msg=where)
        else:
            assert math.isclose(float(g), float(w), rel_tol=OP_RTOL, abs_tol=OP_ATOL), f"{where}: {g} vs {w}"


# ------------------------------------------------------------------ SGEMM peak

def time_call(fn, min_time: float = 0.2, repeats: int = 5) -> float:
    """Best (minimum) seconds per call of fn(): ``repeats`` samples, each the
    mean over as many calls as fill ``min_time``."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, int(min_time / once))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def sgemm_rate(m: int, k: int, n: int, transpose_a: bool = False, **timing) -> float:
    """GFLOP/s of np.matmul for float32 (m, k) @ (k, n) with the BLAS's threads
    (transpose_a: A is a transposed view, as the reference's X.T @ dY)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((k, m) if transpose_a else (m, k), dtype=np.float32)
    A = A.T if transpose_a else A
    B = rng.standard_normal((k, n), dtype=np.float32)
    C = np.empty((m, n), np.float32)
    seconds = time_call(lambda: np.matmul(A, B, out=C), **timing)
    return 2 * m * k * n / seconds / 1e9


def layer_gemms(batch: int, sizes=None) -> list[tuple]:
    """The GEMMs of one training step: (label, m, k, n, transpose_a)."""
    sizes = sizes or layer_sizes()
    gemms = []
    for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        gemms.append((f"fwd X@W {batch}x{i}@{i}x{o}", batch, i, o, False))
        gemms.append((f"dW X.T@dY {i}x{batch}@{batch}x{o}", i, batch, o, True))
        if l > 0:
            gemms.append((f"dX dY@W.T {batch}x{o}@{o}x{i}", batch, o, i, False))
    return gemms


def sgemm_timing(quick: bool = False) -> dict:
    return {"min_time": 0.1, "repeats": 3} if quick else {"min_time": 0.5, "repeats": 5}


def sgemm_peak(quick: bool = False) -> dict:
    """The machine's SGEMM peak: the best rate of float32 square np.matmul
    1024^3, 2048^3 and 4096^3 (quick: no 4096), each the best of 5 samples
    (quick: 3), with the BLAS's own threads."""
    timing = sgemm_timing(quick)
    square = {s: sgemm_rate(s, s, s, **timing) for s in ((1024, 2048) if quick else (1024, 2048, 4096))}
    return {"peak_gflops": max(square.values()),
            "square_gflops": {f"{s}^3": r for s, r in square.items()}}


def gemm_floors(n_rows: int, batch: int, sizes, peak_gflops: float, quick: bool = False,
                rates: dict | None = None) -> dict:
    """The floors of one epoch of the network ``sizes`` at ``batch`` on
    ``n_rows`` rows: the dense floor (epoch_flops / SGEMM peak), and the rate
    at each GEMM shape of a training step with the floor those rates imply
    (the same GEMMs, each at its shape's best rate). ``rates``: a cache
    {(m, k, n, transpose_a): GFLOP/s} shared across calls, so a shape is
    measured once per run."""
    timing = sgemm_timing(quick)
    rates = {} if rates is None else rates
    flops = epoch_flops(n_rows, sizes)
    layers = []
    step_seconds = 0.0
    for label, m, k, n, ta in layer_gemms(batch, sizes):
        if (m, k, n, ta) not in rates:
            rates[(m, k, n, ta)] = sgemm_rate(m, k, n, ta, **timing)
        rate = rates[(m, k, n, ta)]
        layers.append({"gemm": label, "gflops": rate})
        step_seconds += 2 * m * k * n / (rate * 1e9)
    steps = n_rows / batch  # the last partial batch counted pro rata
    return {
        "network": network_name(sizes),
        "epoch_flops": flops,
        "dense_floor_seconds": flops / (peak_gflops * 1e9),
        "layer_shapes": layers,
        "layer_shape_floor_seconds": step_seconds * steps,
        "batch": batch,
        "rows": n_rows,
    }


def sgemm_report(n_rows: int, batch: int = 128, quick: bool = False, sizes=None) -> dict:
    """sgemm_peak and gemm_floors in one dict, for the network ``sizes``
    (None: the default network) at ``batch``."""
    peak = sgemm_peak(quick)
    return peak | gemm_floors(n_rows, batch, sizes or layer_sizes(), peak["peak_gflops"], quick)


# ------------------------------------------------------------------ other load

class ForeignLoad:
    """CPU time used on this machine by everything but this process, from
    /proc/stat (all CPUs' busy time) minus os.times() (this process, every
    thread, and its finished children). ``load()`` since the last mark is in CPUs: 0 = idle machine,
    1 = another process kept one core busy. Other engineers share the
    machine: a timed epoch with load > 0 ran on a contended machine (with
    2 cores, an OpenBLAS/OpenMP thread that loses its core can slow a
    2-thread GEMM loop several-fold)."""

    def __init__(self):
        self.available = os.path.exists("/proc/stat")
        self.mark()

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest is inside user)
        busy = sum(fields[:8]) - fields[3] - fields[4]
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()  # children: the start-up subprocesses, once waited for
        return t.user + t.system + t.children_user + t.children_system

    def mark(self) -> None:
        self._t = time.perf_counter()
        if self.available:
            self._b, self._o = self._busy(), self._own()

    def load(self) -> float | None:
        """Average CPUs used by other processes since mark()."""
        if not self.available:
            return None
        wall = time.perf_counter() - self._t
        foreign = (self._busy() - self._b) - (self._own() - self._o)
        return max(0.0, foreign / wall) if wall > 0 else 0.0


def wait_for_idle(max_wait: float, threshold: float = 0.15, window: float = 1.0,
                  log=None) -> tuple[float, float | None]:
    """Wait (up to max_wait s) until other processes used < threshold CPUs over
    a ``window``-second sample. Returns (seconds waited, last load)."""
    meter, waited, load = ForeignLoad(), 0.0, None
    if not meter.available or max_wait <= 0:
        return 0.0, None
    announced = False
    while True:
        meter.mark()
        time.sleep(window)
        load = meter.load()
        waited += window
        if load < threshold or waited >= max_wait:
            return waited, load
        if log and not announced:
            log(f"  waiting for other processes to finish (load {load:.2f} CPUs) ...")
            announced = True


# ------------------------------------------------------------------ machine header

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_info() -> list[dict]:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries, else numpy.show_config."""
    try:
        import threadpoolctl
        return [{k: v for k, v in lib.items() if k != "filepath"} | {"filepath": lib.get("filepath")}
                for lib in threadpoolctl.threadpool_info()]
    except ImportError:
        try:
            return [{"numpy_show_config": np.show_config(mode="dicts").get("Build Dependencies", {})}]
        except Exception as exc:  # very old numpy
            return [{"error": str(exc)}]


def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("numba", "llvmlite", "torch", "threadpoolctl"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = None
    return out


BLAS_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "NUMBA_", "GOTO", "BLIS_", "FASTMLP_")


def machine_info() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                                timeout=10).stdout.strip() or None
    except Exception:
        commit = None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "versions": versions(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(BLAS_ENV_PREFIXES)},
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "git_commit": commit,
    }


def blas_summary(libs: list[dict]) -> list[str]:
    lines = []
    for lib in libs:
        if "internal_api" in lib:
            lines.append(f"{lib.get('user_api')}: {lib.get('internal_api')} {lib.get('version')}, "
                         f"{lib.get('num_threads')} threads, architecture/coretype "
                         f"{lib.get('architecture')}, threading {lib.get('threading_layer')} "
                         f"({os.path.basename(lib.get('filepath') or '')})")
        else:
            lines.append(json.dumps(lib, default=str))
    return lines


def header_lines(info: dict, libs: list[dict]) -> list[str]:
    v = info["versions"]
    lines = [
        f"date: {info['date']}  (git {info['git_commit']})",
        f"machine: {info['nproc']} CPUs (nproc; {info['affinity']} usable), {info['cpu_model']}, "
        f"{info['platform']}",
        f"versions: python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, "
        f"llvmlite {v['llvmlite']}, torch {v['torch'] or 'not installed'}",
    ]
    lines += [f"BLAS: {s}" for s in blas_summary(libs)]
    lines.append(f"env: OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE'] or '(unset)'}"
                 + "".join(f", {k}={val}" for k, val in info["env"].items()
                           if k != "OPENBLAS_CORETYPE"))
    return lines


# ------------------------------------------------------------------ process start

STARTUP_SCRIPT = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    from fastmlp.kernels import get_backend
    backend = get_backend(sys.argv[1])
    t_import = time.perf_counter()
    from fastmlp.train import TrainConfig, TrainState, epoch_order
    config = TrainConfig()
    state = TrainState.fresh(config)
    rng = np.random.default_rng(0)
    n = 4 * config.batch_size
    X = (rng.random((n, 784)) * (rng.random((n, 784)) < 0.2)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    order = epoch_order(0, 0, n)
    W, b = state.model.W, state.model.b
    t1 = time.perf_counter()
    backend.train_batches(W, b, state.optimizer, X, y, order, config.batch_size, 0, 4,
                          np.full(4, config.lr), config.optimizer_config(), 0.0)
    t_train = time.perf_counter() - t1
    t1 = time.perf_counter()
    backend.forward(W, b, X[:1])
    t_forward = time.perf_counter() - t1
    print(json.dumps({"import": t_import - t0, "first_train_batches": t_train,
                      "first_forward": t_forward}))
""")


def process_start(backend_name: str, cache_dir: str | None, timeout: float = 600) -> dict:
    """A fresh interpreter: import the backend, first train_batches (4 batches)
    and first forward call, timed inside; ``wall`` is the whole process
    (interpreter start included). NUMBA_CACHE_DIR=cache_dir if given."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT, backend_name], env=env,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])
        raise RuntimeError(f"{backend_name} start-up subprocess failed: {tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["import_plus_first_calls"] = result["import"] + result["first_train_batches"] + result["first_forward"]
    return result


def cache_files(directory: str) -> int:
    count = 0
    for _, _, files in os.walk(directory):
        count += sum(f.endswith((".nbi", ".nbc")) for f in files)
    return count


# ------------------------------------------------------------------ reports

def log(msg=""):
    """Progress goes to stderr; stdout carries only the markdown report."""
    print(msg, file=sys.stderr, flush=True)


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "values": values}


def write_report(md: str, report: dict, markdown_path=None, json_path=None) -> None:
    """Print the markdown report; also write it and the JSON where asked."""
    print(md)
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(md + "\n")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2, default=str)

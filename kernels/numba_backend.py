"""The Numba backend: the compiled twin of kernels/numpy_backend.py.

Same ops, same names, arguments, in-place semantics and return values (the
contract is kernels/contract.py); read the reference for the equations and these
modules for how they are made fast:

  numba_ir.py      all the hand-written LLVM IR: the register-tiled
                   micro-kernel (MR x NR sums in registers), vector pack
                   steps, the atomics of the threads' barrier, and row views
                   without Numba's reference counts (borrow)
  numba_tiles.py   the products built on it: X @ W and dY @ W.T by row
                   groups, X.T @ dY by column groups; zeros of the inputs
                   (MNIST's pixels, ReLU outputs) skip whole k, dense layers
                   run at GEMM speed; weights packed in strips of NR columns
  numba_rows.py    softmax + cross-entropy rows, dropout, ReLU masks, column
                   sums and the optimizer spans (bit-exact to the reference)
  numba_train.py   one worker for training, the gradient op and batched
                   inference: a batch as two phases of fixed parts,
                   composed of those kernels
  numba_sync.py    nogil worker threads and the barrier between phases
  numba_threads.py all threads or one, whichever is faster right now
  numba_jit.py     the decorator, and the cache guard that recompiles when
                   any kernel source changes
  numba_target.py  the CPU compiled for: a portable x86-64 level
  compiled_bundle.py the kernels compiled once and shipped (bundle/), loaded
                   by a first run instead of compiling
  numba_compile.py on a cold cache, a helper process compiling the side
                   kernels (one image; augment) while this one compiles
                   the training worker
  this module      the contract's wrappers: argument checks, packing the
                   parameters into the kernels' layout, the thread policy

Tests: tests/test_backends.py checks every op against the reference and
training as a whole; bench/test_bench_tiles.py validates and times the
micro-kernel's variants. Results are deterministic for any thread count
(numba_train.py says why); float32 stays float32; no fastmath.
"""

import functools
import time

import numpy as np

from .augment_numba import augment  # noqa: F401  (the augment op: kernels/augment_numba.py)
from .augment_numba import _augment as _augment_kernel
from .pen_numba import pen_strokes, skeleton  # noqa: F401  (the pen ops: kernels/pen_numba.py)
from .pen_numba import _pen_strokes, _skeleton
from . import compiled_bundle
from .numba_compile import CompileHelper
from .contract import NO_CLASS, N_INPUTS, OPTIMIZER_SLOTS, OptimizerConfig, layer_sizes, slot_key
from .numba_rows import (adam_span, column_sums, momentum_span, relu_backward_flat, sgd_span,
                         softmax_cross_entropy_rows, update_span)
from .numba_threads import ONE, ROWS, THREADS
from .numba_tiles import pack_strips, product_cols, product_rows, unpack_strips
from .numba_sync import barrier_state, run_threads
from .numba_train import (FEW_ROWS, GRADIENT, INFER, ROWS_PER_PART, UPDATE, Batches, Dropout,
                          Optimizer, Params, Step, aligned_empty, backward_few, batch_worker,
                          buffers, forward_few, layout, linear_few, pack_layer, parameter_count)

name = "numba"


def _seed_from_bundle():
    """The shipped compiled kernels into the kernels' Numba cache, where they
    are missing (kernels/compiled_bundle.py): a first run then loads what it
    would compile. Nothing happens where caching is off or no bundle fits."""
    cache_dir = getattr(getattr(batch_worker, "_cache", None), "_cache_path", None)
    if cache_dir is not None:
        compiled_bundle.seed(cache_dir)


_seed_from_bundle()

# train_batches runs this many batches per call from fastmlp.train.run: enough
# to keep Python off the hot path, few enough to report progress and stop
# cleanly every ~0.05 s.
batches_per_call = 64
# forward() runs blocks of this many rows on all threads, in parts of
# _FORWARD_PART rows (each part streams the weights once: larger parts than
# training's, which has a params phase to balance).
_FORWARD_BLOCK, _FORWARD_PART = 2048, 256


# ------------------------------------------------------------- layer ops

def linear_forward(X, W, b, out, relu):
    """out = X @ W + b, then ReLU if ``relu``.
    X: (n, i)  W: (i, o)  b: (o,)  out: (n, o) written."""
    _flat(out, written=True)
    if len(X) < FEW_ROWS:   # one image (the GUI's trace of the layers): read W in place
        linear_few(_readonly(X, out.dtype), _readonly(W, out.dtype), _readonly(b, out.dtype), out,
                   bool(relu))
        return out
    X, W, b = _readonly(X, out.dtype), _writable(W, out.dtype), _writable(b, out.dtype)
    product_rows(X, _int64(np.arange(len(X))), 0, len(X), _strips(W), b, out, bool(relu))
    return out


def softmax_cross_entropy(logits, y, probs, dlogits, smoothing=0.0):
    """p = softmax(logits); loss = mean -sum_k t_k log p_k; dlogits = (p - t) / n
    with targets t = (1 - smoothing) onehot(y) + smoothing / K.
    logits, probs, dlogits: (n, K)  y: (n,) int64. Returns the loss (float)."""
    _check_labels(y, logits.shape[1])
    _flat(probs, written=True), _flat(dlogits, written=True)
    return float(softmax_cross_entropy_rows(_readonly(logits, probs.dtype), _int64(y), probs, dlogits,
                                        float(smoothing)))


def relu_backward(dA, A, dZ):
    """dZ = dA * relu'(Z), and relu'(Z) = (A > 0) since A = relu(Z).
    dA, A, dZ: (n, o); dZ written (may be dA itself)."""
    _flat(dZ, written=True)
    relu_backward_flat(_flat_input(dA), _flat_input(A), dZ.reshape(-1))
    return dZ


def linear_backward(X, W, dY, dW, db, dX):
    """Gradients of Y = X @ W + b given dY = dL/dY:
    dW = X.T @ dY,  db = sum over rows of dY,  dX = dY @ W.T (skipped if None).
    X: (n, i)  W: (i, o)  dY: (n, o)  dW: (i, o)  db: (o,)  dX: (n, i)."""
    for a in (dW, db) + ((dX,) if dX is not None else ()):
        _flat(a, written=True)
    if len(X) < FEW_ROWS:   # a saliency map, one image: read W in place
        X, W, dY = _readonly(X, dW.dtype), _readonly(W, dW.dtype), _writable(dY, dW.dtype)
        backward_few(X, W, dY, dW, np.empty((0, X.shape[1]), dW.dtype) if dX is None else dX)
        column_sums(dY, 0, dY.shape[1], len(dY), db)
        return
    X, W, dY = _readonly(X, dW.dtype), _writable(W, dW.dtype), _writable(dY, dW.dtype)
    n, rows = len(X), _int64(np.arange(len(X)))
    dY_strips = _strips(dY)
    dW_strips = np.empty_like(_strips(dW))
    product_cols(X, rows, n, 0, X.shape[1], dY_strips, dW_strips)
    unpack_strips(dW_strips, dW)
    column_sums(dY, 0, dY.shape[1], n, db)
    if dX is not None:
        product_rows(_readonly(dY, dW.dtype), rows, 0, n, _strips(np.ascontiguousarray(W.T)),
                     np.zeros(X.shape[1], dW.dtype), dX, False)


# --------------------------------------------------------- optimizer ops

def sgd_update(param, grad, lr, weight_decay):
    """param -= lr * (grad + weight_decay * param), in place."""
    p = _flat(param, written=True)
    sgd_span(p, _flat_input(grad), 0, p.size, float(lr), float(weight_decay))


def momentum_update(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    """Heavy-ball momentum (Nesterov's variant if ``nesterov``), in place:
    g = grad + wd * param;  velocity = momentum * velocity + g;
    param -= lr * (g + momentum * velocity  if nesterov else  velocity)."""
    p = _flat(param, written=True)
    momentum_span(p, _flat_input(grad), _flat(velocity, written=True), 0, p.size, float(lr),
                  float(momentum), bool(nesterov), float(weight_decay))


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    """Adam with bias correction for update number ``step`` (1-based), in place.
    decoupled: AdamW's weight decay (shrink param directly) instead of L2."""
    p = _flat(param, written=True)
    adam_span(p, _flat_input(grad), _flat(m, written=True), _flat(v, written=True), 0, p.size,
              float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
              int(step), bool(decoupled))


# ---------------------------------------------------------- whole network

def forward(W, b, X):
    """probs: (n, K) = softmax of the network's logits for X: (n, i_0)."""
    Ws, bs = _params(W, b)
    X = _readonly(X, Ws[0].dtype)
    probs = np.empty((X.shape[0], Ws[-1].shape[1]), X.dtype)
    if X.shape[0] < FEW_ROWS:
        forward_few(Ws, bs, X, probs)
        return probs
    n = X.shape[0]
    lay = _layout(layer_sizes(Ws), _FORWARD_BLOCK, X.dtype)
    P, blocks = _pack(Ws, bs, lay), -(-n // _FORWARD_BLOCK)
    no_labels = _int64(np.zeros(1))   # INFER reads none
    rows = Batches(X, no_labels, _int64(np.arange(n)), _FORWARD_BLOCK, 0, blocks, 0,
                   _FORWARD_PART)
    # every thread claims parts of each block in turn: as many threads as a
    # block has parts can work (it was one per block, so up to 2048 rows ran on one)
    parts = -(-min(n, _FORWARD_BLOCK) // _FORWARD_PART)
    run_threads(batch_worker, min(THREADS.count(), parts), barrier_state(), Params(P, P, P), lay,
                buffers(lay, X.dtype, infer=True), rows, _step(INFER), probs)
    return probs


def forward_backward(W, b, X, y, dW, db, smoothing=0.0, dropout=None, position=0):
    """Backpropagation for one batch (Nielsen's equations, rows as samples):
        forward:   A[0] = X,  A[l+1] = relu(A[l] @ W[l] + b[l]),  last layer no ReLU
        output:    delta = dL/dlogits = (softmax - targets) / n
        backward:  dW[l] = A[l].T @ delta,  db[l] = sum_rows delta,
                   delta = (delta @ W[l].T) * (A[l] > 0)
    dropout: None or (rate, key), row r of X at epoch position position + r.
    X: (n, i_0)  y: (n,) int64. dW, db written. Returns (loss, correct)."""
    Ws, bs = _params(W, b)
    dWs, dbs = _params(dW, db)
    X = _readonly(X, Ws[0].dtype)
    y = _int64(y)
    _check_labels(y, Ws[-1].shape[1])
    n = X.shape[0]
    lay = _layout(layer_sizes(Ws), max(n, 1), X.dtype)
    P, buf = _pack(Ws, bs, lay), buffers(lay, X.dtype)
    _transposes(Ws, lay, buf.T)
    # One batch of all the rows, on one thread, without the update.
    rows = Batches(X, y, _int64(np.arange(n)), max(n, 1), 0, 1, int(position), ROWS_PER_PART)
    batch_worker(0, 1, barrier_state(), Params(P, P, P), lay, buf, rows,
                 _step(GRADIENT, smoothing=smoothing, dropout=dropout), _NO_PROBS[X.dtype])
    _unpack(buf.G, lay, dWs, dbs)
    return -float(buf.loss.sum()) / max(n, 1), int(buf.right.sum())


def optimizer_step(W, b, dW, db, slots, step, lr, opt):
    """One update of every W[l] and b[l]; weight decay on W only (decaying
    biases only restricts the offsets and does not regularize)."""
    hyper = _optimizer(opt)
    S1W, S1b, S2W, S2b = _slots(slots, opt, W, b)
    for l in range(len(W)):
        for param, grad, s1, s2, wd in ((W[l], dW[l], S1W[l], S2W[l], opt.weight_decay),
                                        (b[l], db[l], S1b[l], S2b[l], 0.0)):
            p = _flat(param, written=True)
            # the training kernels' own dispatch (numba_rows.update_span)
            update_span(p, _flat_input(grad), _flat(s1, written=True), _flat(s2, written=True),
                        0, p.size, hyper, float(lr), float(wd), int(step))


def train_batches(W, b, slots, step, X, y, order, batch_size, first, stop, lrs, opt,
                  smoothing=0.0, dropout=None):
    """Train on batches first..stop-1 of the epoch whose row order is ``order``.
    dropout: None or (rate, key), the row at position p of ``order`` getting
    the dropout_factors of p. Returns (loss_sum, correct): loss summed per
    row, rows classified right.
    The chunk runs in compiled calls that release the GIL; W, b and the
    optimizer slots are packed into the kernels' layout for it and written
    back after (about 0.1 ms per call for the seed network)."""
    Ws, bs = _params(W, b)
    X, y, order = _readonly(X, Ws[0].dtype), _int64(y), _int64(order)
    first, stop, batch_size = int(first), int(stop), int(batch_size)
    if stop <= first:
        return 0.0, 0
    lrs = _readonly(lrs, np.float64)
    _check_chunk(X, y, order, batch_size, first, stop, lrs, Ws)
    S1W, S1b, S2W, S2b = _slots(slots, opt, W, b)
    lay = _layout(layer_sizes(Ws), min(batch_size, len(order)), X.dtype)
    P = _pack(Ws, bs, lay)
    kept = len(OPTIMIZER_SLOTS[opt.name])   # slots the optimizer keeps: S1, then S2
    S1 = _pack(S1W, S1b, lay) if kept >= 1 else P
    S2 = _pack(S2W, S2b, lay) if kept >= 2 else P
    buf = buffers(lay, X.dtype)
    _transposes(Ws, lay, buf.T)
    loss_sum, correct = 0.0, 0
    for lo, hi, mode in THREADS.segments(first, stop, THREADS.modes(lay.strips[0])):
        start = time.perf_counter()
        part_loss, part_correct = run_threads(
            batch_worker, 1 if mode == ONE else THREADS.count(), barrier_state(),
            Params(P, S1, S2), lay, buf, Batches(X, y, order, batch_size, lo, hi, 0, ROWS_PER_PART),
            _step(UPDATE, lrs[lo - first:], opt, int(step) + lo - first, smoothing, dropout,
                  by_strips=mode != ROWS), _NO_PROBS[X.dtype])
        THREADS.record(mode, (time.perf_counter() - start) / (hi - lo))
        loss_sum += part_loss
        correct += part_correct
    _unpack(P, lay, Ws, bs)
    if S1 is not P:
        _unpack(S1, lay, S1W, S1b)
    if S2 is not P:
        _unpack(S2, lay, S2W, S2b)
    return float(loss_sum), int(correct)


# ------------------------------------------------------------- readiness

# (dtype, part) for the parts prepared in this process: "worker" (training
# and batched inference), "one image" (forward_few, linear_few, backward_few),
# "augment" (the augment op), "pen" (skeleton, pen_strokes).
_READY = set()
# the augmentation ops' entries (their callees compile with them)
_AUGMENT_KERNELS = [_augment_kernel]
_PEN_KERNELS = [_skeleton, _pen_strokes]


def prepare(dtype, augment=False, pen=False):
    """Compile (or load from the cache) every kernel that training and
    inference in ``dtype`` run, by calling them once on a tiny network, and
    the augment op's if ``augment``, the pen ops' if ``pen``. Later calls for the same work return at
    once. On a cold cache the side kernels (one image; augment) compile in a
    helper process meanwhile (kernels/numba_compile.py)."""
    dtype = np.dtype(dtype)
    side = ([forward_few, linear_few, backward_few] if (dtype, "one image") not in _READY else [])
    side += _AUGMENT_KERNELS if augment and (dtype, "augment") not in _READY else []
    side += _PEN_KERNELS if pen and (dtype, "pen") not in _READY else []
    if not side and (dtype, "worker") in _READY:
        return
    helper = CompileHelper(__name__, dtype, augment, pen, side)
    if (dtype, "worker") not in _READY:
        _prepare_worker(dtype)
        _READY.add((dtype, "worker"))
    helper.wait()
    prepare_side(dtype, augment, pen)


def prepare_side(dtype, augment, pen=False):
    """The one-image kernels and, if asked, the augment op and the pen ops,
    those not ready yet: what CompileHelper's process runs, and this process
    after it."""
    dtype = np.dtype(dtype)
    if augment and (dtype, "augment") not in _READY:
        _prepare_augment(dtype)
        _READY.add((dtype, "augment"))
    if pen and (dtype, "pen") not in _READY:
        _prepare_pen(dtype)
        _READY.add((dtype, "pen"))
    if (dtype, "one image") not in _READY:
        _prepare_one_image(dtype)
        _READY.add((dtype, "one image"))


def _tiny(dtype):
    """A 20-8-6-3 network and 6 rows: what the preparation runs the kernels
    on. Three layers, as the default network: forward_few takes the layers as
    a tuple, whose length is part of its compiled type."""
    rng = np.random.default_rng(0)
    sizes = (20, 8, 6, 3)
    W = [rng.standard_normal((i, o)).astype(dtype) for i, o in zip(sizes[:-1], sizes[1:])]
    b = [np.zeros(o, dtype) for o in sizes[1:]]
    return W, b, rng.random((6, sizes[0])).astype(dtype)


def _prepare_worker(dtype):
    """batch_worker, by training and by inferring (INFER) on the tiny network."""
    W, b, X = _tiny(dtype)
    y = np.arange(6, dtype=np.int64) % 3
    opt = OptimizerConfig(name="sgd", momentum=0.0)
    train_batches(W, b, {}, 0, X, y, np.arange(6, dtype=np.int64), 3, 0, 2, np.full(2, 0.01), opt)
    forward(W, b, np.concatenate([X] * (FEW_ROWS // len(X) + 1)))


def _prepare_one_image(dtype):
    """forward_few (one image), and the GUI's trace and saliency of one image:
    linear_few, backward_few."""
    W, b, X = _tiny(dtype)
    forward(W, b, X[:1])
    linear_forward(X[:1], W[0], b[0], np.empty((1, W[0].shape[1]), dtype), True)
    linear_backward(X[:1], W[0], np.ones((1, W[0].shape[1]), dtype), np.empty_like(W[0]),
                    np.empty_like(b[0]), np.empty((1, W[0].shape[0]), dtype))


def _prepare_augment(dtype):
    """One image through the augment op (its kernels compile per dtype), with
    the parameter types fastmlp.augmentation.sample_params draws (float32): the
    identity warp, no displacement, thickening by 0.5."""
    A = np.array([[[1, 0, 0], [0, 1, 0]]], np.float32)
    D = np.zeros((1, 3, 3, 2), np.float32)
    X = np.zeros((1, N_INPUTS), dtype)
    augment(X, A, D, np.full(1, 0.5, np.float32), np.empty_like(X))


def _prepare_pen(dtype):
    """One image through the pen ops, radius float32 as sample_params draws it."""
    X = np.zeros((1, N_INPUTS), dtype)
    S = skeleton(X, np.empty((1, 4 * N_INPUTS), np.uint8))
    pen_strokes(S, np.ones(1, np.float32), X, np.empty_like(X))


# ------------------------------------------------------ argument plumbing
# Normalising arguments keeps the number of compiled specializations small
# (one per dtype) and turns contract violations into errors instead of
# silent writes to copies or out-of-bounds accesses.

# The optimizer kinds of numba_rows.update_span, by the contract's names.
_KINDS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 3}
assert set(_KINDS) == set(OPTIMIZER_SLOTS), "a contract optimizer the kernels lack"


def _readonly(a, dtype):
    """A read-only C-contiguous view of ``a`` (a copy only if it is not already
    C-contiguous of ``dtype``): inputs are typed alike however they arrive."""
    a = np.ascontiguousarray(a, dtype=dtype).view()
    a.flags.writeable = False
    return a


def _writable(a, dtype):
    """A writable C-contiguous copy, for the arrays the kernels take writable
    (B of a product, which training passes as views of its parameters)."""
    return np.array(a, dtype=dtype, order="C", copy=True)


def _int64(a):
    return _readonly(a, np.int64)


def _flat_input(a):
    """A flat C-contiguous view (or copy) of an input array."""
    return np.ascontiguousarray(a).reshape(-1)


def _flat(a, written=False):
    """The flat view of a C-contiguous array; in-place ops need a view, not a copy."""
    if not a.flags.c_contiguous or (written and not a.flags.writeable):
        raise ValueError("numba backend: arrays written in place must be C-contiguous "
                         "and writeable")
    return a.reshape(-1)


def _params(W, b):
    """(tuple(W), tuple(b)) after checking they are one dtype, C-contiguous,
    writeable and chained (W[l].shape[1] == W[l+1].shape[0] == b[l].size)."""
    W, b = tuple(W), tuple(b)
    dtype = W[0].dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"numba backend: float32 or float64 weights, not {dtype}")
    for l, (w, bias) in enumerate(zip(W, b)):
        for a in (w, bias):
            _flat(a, written=True)
            if a.dtype != dtype:
                raise TypeError("numba backend: all weights and biases must share one dtype")
        if bias.shape != (w.shape[1],) or (l + 1 < len(W) and W[l + 1].shape[0] != w.shape[1]):
            raise ValueError("numba backend: layer shapes do not chain")
    return W, b


def _strips(B):
    """B: (K, o) packed in strips of NR columns, as the product kernels read it."""
    lay = layout([B.shape[0], B.shape[1]], 1, B.dtype)
    Bp = np.empty((lay.strips[0], B.shape[0], lay.nr), B.dtype)
    pack_strips(np.ascontiguousarray(B), Bp)
    return Bp


def _into_strips(B, strips):
    """strips[s, k, j] = B[k, s*NR + j], 0 past B's last column.
    B: (K, o)  strips: (ceil(o / NR), K, NR) written."""
    S, K, nr = strips.shape
    if B.shape[1] == S * nr:   # whole strips (128 or 64 columns): one copy, no padded temporary
        strips[:] = B.reshape(K, S, nr).transpose(1, 0, 2)
        return
    padded = np.zeros((K, S * nr), B.dtype)
    padded[:, :B.shape[1]] = B
    strips[:] = padded.reshape(K, S, nr).transpose(1, 0, 2)


@functools.lru_cache(maxsize=64)
def _layout(sizes, n, dtype):
    """numba_train.layout, computed once per network, row count and dtype
    (it costs ~55 us of NumPy calls: a fifth of a 256-row forward). Its
    arrays are only read, by every call that shares it."""
    return layout(sizes, n, dtype)


def _pack(Ws, bs, lay):
    """One flat vector in the kernels' layout (numba_train.Layout): every W[l]
    in strips of NR columns (zero past its last column), then b[l]; the
    padding between blocks 0. Compiled (numba_train.pack_layer): NumPy's
    strided copy into a zeroed vector took 32 us for the seed network and
    1.0 ms for 784-1024-1024-10, the kernel into an unzeroed one 17 us and 0.57 ms."""
    P = aligned_empty(parameter_count(lay), Ws[0].dtype)
    ends = [int(at) for at in lay.w_at[1:]] + [P.size]
    for l, (w, bias) in enumerate(zip(Ws, bs)):
        pack_layer(w, bias, P, int(lay.w_at[l]), int(lay.b_at[l]), ends[l], int(lay.nr))
    return P


def _transposes(Ws, lay, T):
    """T: every W[l].T (l >= 1) in strips, as the deltas' products read it
    (numba_train.transposed_strips); the kernels keep it current after each
    update, this fills it before a call's first batch. NumPy's strided copy
    of the transposed view, not pack_strips on a contiguous copy of W.T: for
    784-1024-1024-10 that measured 7.3 ms a call against 0.56 ms."""
    for l in range(1, len(Ws)):
        i, o = Ws[l].shape
        S = -(-i // lay.nr)
        _into_strips(Ws[l].T, T[lay.t_at[l]:lay.t_at[l] + S * o * lay.nr].reshape(S, o, lay.nr))


def _unpack(P, lay, Ws, bs):
    """Copy a flat vector in the kernels' layout back into the arrays Ws, bs."""
    for l, (w, bias) in enumerate(zip(Ws, bs)):
        i, o = w.shape
        S, nr = lay.strips[l], lay.nr
        strips = P[lay.w_at[l]:lay.w_at[l] + S * i * nr].reshape(S, i, nr)
        w[:] = strips.transpose(1, 0, 2).reshape(i, S * nr)[:, :o]
        bias[:] = P[lay.b_at[l]:lay.b_at[l] + o]


def _dropout(dropout):
    """numba_train.Dropout from dropout = (rate, key) or None: threshold =
    round(rate * 2^24) (0: no dropout), scale = 1 / (1 - rate) in float64, as
    the reference's dropout_factors computes them."""
    if dropout is None or not dropout[0] > 0:
        return Dropout(0, 1.0, 0)
    rate, key = float(dropout[0]), int(dropout[1])
    return Dropout(int(round(rate * 2**24)), 1.0 / (1.0 - rate), key)


def _step(mode, lrs=None, opt=None, step0=0, smoothing=0.0, dropout=None, by_strips=True):
    """numba_train.Step: what a batch_worker call does, and its update."""
    lrs = _readonly(np.zeros(1) if lrs is None else lrs, np.float64)
    return Step(mode, lrs, _optimizer(opt), int(step0), float(smoothing), _dropout(dropout),
                bool(by_strips))


# probs for the calls that write none (one typed array per dtype: one compiled worker)
_NO_PROBS = {np.dtype(np.float32): np.zeros((0, 0), np.float32),
             np.dtype(np.float64): np.zeros((0, 0), np.float64)}


def _optimizer(opt):
    """numba_train.Optimizer from a fastmlp.optim.OptimizerConfig (None: plain sgd)."""
    if opt is None:
        return Optimizer(0, 0.0, False, 0.9, 0.999, 1e-8, 0.0)
    if opt.name not in _KINDS:
        raise ValueError(f"unknown optimizer {opt.name!r}")
    return Optimizer(_KINDS[opt.name], float(opt.momentum), bool(opt.nesterov),
                     float(opt.beta1), float(opt.beta2), float(opt.eps), float(opt.weight_decay))


def _check_labels(y, K):
    if y.size and (y.min() < NO_CLASS or y.max() >= K):
        raise IndexError(f"labels must lie in [0, {K}) or be NO_CLASS ({NO_CLASS})")


def _check_chunk(X, y, order, batch_size, first, stop, lrs, Ws):
    """Refuse what the kernels would read out of bounds."""
    if lrs.shape[0] < stop - first:
        raise ValueError(f"lrs has {lrs.shape[0]} entries for {stop - first} batches")
    used = order[first * batch_size:stop * batch_size]
    if len(y) != len(X) or (used.size and (used.min() < 0 or used.max() >= len(X))):
        raise IndexError("order refers to rows outside X, y")
    _check_labels(y, Ws[-1].shape[1])


def _slots(slots, opt, W, b):
    """(S1W, S1b, S2W, S2b): the optimizer's slot lists as tuples (velocity as
    S1; m as S1 and v as S2); unused ones are W and b themselves, never written."""
    if opt.name not in OPTIMIZER_SLOTS:
        raise ValueError(f"unknown optimizer {opt.name!r}")
    kept = OPTIMIZER_SLOTS[opt.name]
    S1W, S1b, S2W, S2b = W, b, W, b
    if len(kept) >= 1:
        S1W, S1b = slots[slot_key(kept[0], "W")], slots[slot_key(kept[0], "b")]
    if len(kept) >= 2:
        S2W, S2b = slots[slot_key(kept[1], "W")], slots[slot_key(kept[1], "b")]
    result = []
    for slot, like in ((S1W, W), (S1b, b), (S2W, W), (S2b, b)):
        for a, p in zip(slot, like):
            _flat(a, written=True)
            if a.shape != p.shape or a.dtype != p.dtype:
                raise ValueError("numba backend: optimizer slots must match the parameters")
        result.append(tuple(slot))
    return result

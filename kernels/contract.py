"""The kernel contract: every op a backend provides, its shapes and what it writes.

Notation: ``n`` rows per batch, ``i``/``o`` a layer's input/output width,
``K`` = N_CLASSES = 10 classes, ``L`` layers. Samples are rows; a layer is
``Y = X @ W + b`` with ``W: (i, o)``. All float arrays of one call share one dtype
(float32 or float64) and are C-contiguous; labels ``y`` are int64 in [0, K),
or NO_CLASS (-1): a row of no class (a picture of no digit, for outlier
exposure), whose target is the uniform answer t_k = 1/K and which is never
counted as classified right.
A network is two lists, ``W[l]: (i_l, o_l)`` and ``b[l]: (o_l,)``; their
gradients ``dW``/``db`` are lists of the same shapes. The hidden activation is
ReLU, the output softmax, the loss mean cross-entropy.

Single ops (same name in every backend, cross-checked one by one in tests):

linear_forward(X, W, b, out, relu) -> out
    out = X @ W + b, then max(out, 0) if relu.
    X: (n, i)  W: (i, o)  b: (o,)  out: (n, o) WRITTEN.

softmax_cross_entropy(logits, y, probs, dlogits, smoothing=0.0) -> loss
    p = softmax(logits) row-wise (stable: shift by the row max);
    t = (1 - smoothing) * onehot(y) + smoothing / K; t = 1/K where y is NO_CLASS;
    loss = mean_rows(-sum_k t_k log p_k)  (a Python float);
    dlogits = (p - t) / n, the gradient of that mean loss.
    logits, probs, dlogits: (n, K)  y: (n,)  probs, dlogits WRITTEN.

relu_backward(dA, A, dZ) -> dZ
    dZ = dA * (A > 0), where A = relu(Z) is the layer's saved output.
    dA, A, dZ: (n, o)  dZ WRITTEN (may be dA itself).

linear_backward(X, W, dY, dW, db, dX) -> None
    dW = X.T @ dY;  db = sum_rows(dY);  dX = dY @ W.T unless dX is None
    (the first layer needs no input gradient).
    X: (n, i)  W: (i, o)  dY: (n, o)  dW: (i, o)  db: (o,)  dX: (n, i)
    dW, db, dX WRITTEN.

sgd_update(param, grad, lr, weight_decay) -> None
    param -= lr * (grad + weight_decay * param).         param WRITTEN.

momentum_update(param, grad, velocity, lr, momentum, nesterov, weight_decay)
    g = grad + weight_decay * param;  velocity = momentum * velocity + g;
    param -= lr * (g + momentum * velocity if nesterov else velocity).
    param, velocity WRITTEN.

adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step,
            decoupled) -> None
    Adam (Kingma & Ba 2015) with bias correction for update number ``step``
    (1-based). decoupled=False: L2, g = grad + weight_decay * param (Adam);
    decoupled=True: param -= lr * weight_decay * param first (AdamW,
    Loshchilov & Hutter 2019). param, m, v WRITTEN.

Whole network (a compiled backend may implement these wholesale):

forward(W, b, X) -> probs
    probs: (n, K) a new array, softmax of the last layer.

forward_backward(W, b, X, y, dW, db, smoothing=0.0, dropout=None, position=0) -> (loss, correct)
    One batch: loss is the mean cross-entropy, correct the number of rows
    whose argmax equals y. dW, db WRITTEN with the gradient of the loss.
    dropout = None or (rate, key): inverted dropout on every hidden layer,
    row r of X at epoch position ``position + r``; a unit's factor (0 or
    1 / (1 - rate)) is a pure function of (key, position, unit), defined by
    the reference's dropout_factors, which every backend reproduces bit for bit.

optimizer_step(W, b, dW, db, slots, step, lr, opt) -> None
    Update number ``step`` (1-based: Adam's bias correction) of every
    parameter with the optimizer ``opt`` (an OptimizerConfig, below: its name
    and plain values). Weight decay applies to W, never to b. slots: the
    optimizer's arrays, {slot_key(slot, "W" or "b"): list per layer} for the
    slots OPTIMIZER_SLOTS[opt.name] lists. W, b and those arrays WRITTEN.
    Backends see arrays and plain values only: the engine keeps the step
    count (fastmlp.optim.OptimizerState) and adds the updates done.

train_batches(W, b, slots, step, X, y, order, batch_size, first, stop, lrs, opt,
              smoothing=0.0, dropout=None) -> (loss_sum, correct)
    Batches number first..stop-1 of an epoch: batch j holds the rows
    order[j*batch_size : (j+1)*batch_size] of X, y (the last may be
    partial). For each: forward_backward, then optimizer_step with
    lr = lrs[j - first] as update number step + j - first + 1 (``step``
    updates were done before batch ``first``). loss_sum = sum over batches
    of loss * rows.
    X: (N, N_INPUTS = 784)  y: (N,)  order: (N,) int64 permutation  lrs: (stop-first,)
    float64. dropout: None or (rate, key); batch j's rows are at positions
    j*batch_size, ... of the epoch. W, b, slots WRITTEN. The epoch driver
    calls this in chunks so it can report progress and stop cleanly between chunks.

Optional attribute:

batches_per_call: int (default 1)
    How many batches the epoch loop (fastmlp.train.run) hands to one
    train_batches call: a compiled backend takes many, to keep Python off the
    hot path; the loop still reports progress and can stop between calls.

Readiness (a compiled backend compiles or loads its kernels here; the
reference has nothing to do):

prepare(dtype, augment=False, pen=False) -> None
    Make the training and inference ops ready to run on float arrays of
    ``dtype`` (np.float32 or np.float64) without a pause at their first call,
    and the augment op too if ``augment``, the pen ops if ``pen``: compile, or load from the cache. Blocks until done; safe to call from a background thread and more
    than once (later calls return at once). The CLI and the GUI call it
    before training or switching backends, so that the wait is announced
    and never lands in a timed epoch or the GUI thread.

Data augmentation (the equations are in kernels/augment_numpy.py):

augment(X, A, D, thickness, out) -> out
    out = thicken(warp(X, A, D), thickness), image by image: a bilinear
    inverse-affine warp with an elastic displacement, then a 3x3 grey
    dilation (t > 0) or erosion (t < 0) blended in by |t|, clipped to [0, 1].
    X: (n, 784) in [0, 1]  A: (n, 2, 3)  D: (n, G, G, 2), G >= 2
    thickness: (n,)  out: (n, 784) WRITTEN, must not overlap X. A, D and
    thickness (float32 from fastmlp.augmentation.sample_params) are cast to X's
    dtype. Draws no random numbers: a deterministic function of its inputs.

skeleton(X, out) -> out
    The centre lines of X's images: each upsampled 2x (bilinear), ink where
    >= 0.5, thinned to 1-px lines (Zhang & Suen). X: (n, 784) in [0, 1]
    out: (n, 3136) uint8 WRITTEN, 1 on a line of the 56x56 grid.

pen_strokes(S, radius, X, out) -> out
    out[i] = the lines S[i] drawn with a round pen of radius[i] pixels (a 1-px
    ramp at its edge; kernels/pen_numpy.py) where radius[i] > 0, X[i] where it
    is 0. S: (n, 3136) uint8 from skeleton  radius: (n,) in [0, 4], cast to
    X's dtype  X: (n, 784)  out: (n, 784) WRITTEN, must not overlap X or S.
    ``prepare(dtype, pen=True)`` readies these two.
"""

from dataclasses import dataclass

# The label of a row that belongs to no class (see above).
NO_CLASS = -1

# The input format every network of the engine reads: a 28x28 image,
# row-major, one pixel per input (the augment op needs exactly this).
IMAGE_SIDE = 28
N_INPUTS = IMAGE_SIDE * IMAGE_SIDE    # 784
N_CLASSES = 10                        # K: the digits 0..9

# optimizer name -> the slot arrays it keeps, each a list shaped like W and
# one like b, under slot_key(slot, "W") and slot_key(slot, "b") in
# state.slots. The one table of optimizer names: fastmlp.optim builds its
# state from it, the backends read their slots by it.
OPTIMIZER_SLOTS = {
    "sgd": (),
    "momentum": ("velocity",),
    "adam": ("m", "v"),
    "adamw": ("m", "v"),
}


@dataclass(frozen=True)
class OptimizerConfig:
    """An optimizer as the kernels take it: its name (a key of
    OPTIMIZER_SLOTS) and plain hyper-parameters. fastmlp.optim uses this one
    record; the backends read only these fields."""

    name: str = "adam"
    momentum: float = 0.9
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0


def slot_key(slot: str, kind: str) -> str:
    """The slots key of ``slot`` ("velocity", "m", "v") for the
    parameters of ``kind`` ("W" or "b"): "velocity_W", "m_b", ..."""
    return f"{slot}_{kind}"


def layer_sizes(W) -> tuple:
    """(i_0, o_0, ..., o_{L-1}): every layer's width, read off the weights."""
    return (W[0].shape[0], *(w.shape[1] for w in W))


OPS = (
    "linear_forward",
    "softmax_cross_entropy",
    "relu_backward",
    "linear_backward",
    "sgd_update",
    "momentum_update",
    "adam_update",
    "forward",
    "forward_backward",
    "optimizer_step",
    "train_batches",
    "augment",
    "skeleton",
    "pen_strokes",
    "prepare",
)


def missing_ops(backend) -> list[str]:
    """The names in OPS that ``backend`` (a module or object) does not define."""
    return [name for name in OPS if not callable(getattr(backend, name, None))]

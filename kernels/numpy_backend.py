"""The NumPy reference backend: every op of the contract, written as its equation.

The contract is kernels/contract.py. This is the code to read; kernels/numba_backend.py is
its compiled twin and is checked against it op by op.

Shapes: n rows per batch, i/o a layer's input/output width, K = 10 classes.
"""

import numpy as np

from .augment_numpy import augment  # noqa: F401  (the augment op: kernels/augment_numpy.py)
from .pen_numpy import pen_strokes, skeleton  # noqa: F401  (the pen ops: kernels/pen_numpy.py)
from .contract import NO_CLASS, layer_sizes, slot_key

name = "numpy"


def prepare(dtype, augment=False, pen=False):
    """Nothing to compile: NumPy's ops are ready for any dtype."""


# ---------------------------------------------------------------- layer ops

def linear_forward(X, W, b, out, relu):
    """out = X @ W + b, then ReLU if ``relu``.
    X: (n, i)  W: (i, o)  b: (o,)  out: (n, o) written."""
    np.matmul(X, W, out=out)
    out += b
    if relu:
        np.maximum(out, 0, out=out)
    return out


def softmax_cross_entropy(logits, y, probs, dlogits, smoothing=0.0):
    """p = softmax(logits); loss = mean -sum_k t_k log p_k; dlogits = (p - t) / n
    with targets t = (1 - smoothing) onehot(y) + smoothing / K, and t = 1/K
    (the uniform answer) on rows labelled NO_CLASS.
    logits, probs, dlogits: (n, K)  y: (n,) int64. Returns the loss (float)."""
    n, K = logits.shape
    # Shifting by the row max leaves softmax unchanged and keeps exp() <= 1,
    # so logits of +-1e4 neither overflow nor give 0/0.
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_norm
    np.exp(log_probs, out=probs)

    targets = np.full((n, K), smoothing / K, dtype=logits.dtype)
    labelled = np.flatnonzero(y != NO_CLASS)
    targets[labelled, y[labelled]] += 1.0 - smoothing
    targets[y == NO_CLASS] = 1.0 / K
    loss = -(targets * log_probs).sum() / n

    # d(loss)/d(logits) for softmax + cross-entropy collapses to p - t.
    np.subtract(probs, targets, out=dlogits)
    dlogits /= n
    return float(loss)


def relu_backward(dA, A, dZ):
    """dZ = dA * relu'(Z), and relu'(Z) = (A > 0) since A = relu(Z).
    dA, A, dZ: (n, o); dZ written (may be dA itself)."""
    np.multiply(dA, A > 0, out=dZ)
    return dZ


def linear_backward(X, W, dY, dW, db, dX):
    """Gradients of Y = X @ W + b given dY = dL/dY:
    dW = X.T @ dY,  db = sum over rows of dY,  dX = dY @ W.T (skipped if None).
    X: (n, i)  W: (i, o)  dY: (n, o)  dW: (i, o)  db: (o,)  dX: (n, i)."""
    np.matmul(X.T, dY, out=dW)
    np.sum(dY, axis=0, out=db)
    if dX is not None:
        np.matmul(dY, W.T, out=dX)


# ---------------------------------------------------------- optimizer ops

def sgd_update(param, grad, lr, weight_decay):
    """param -= lr * (grad + weight_decay * param), in place."""
    param -= lr * (grad + weight_decay * param)


def momentum_update(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    """Heavy-ball momentum (Nesterov's variant if ``nesterov``), in place:
    g = grad + wd * param;  velocity = momentum * velocity + g;
    param -= lr * (g + momentum * velocity  if nesterov else  velocity)."""
    g = grad + weight_decay * param
    velocity *= momentum
    velocity += g
    step = g + momentum * velocity if nesterov else velocity
    param -= lr * step


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    """Adam with bias correction for update number ``step`` (1-based), in place.
    decoupled: AdamW's weight decay (shrink param directly) instead of L2."""
    if decoupled:
        param -= lr * weight_decay * param
        g = grad
    else:
        g = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    param -= lr * m_hat / (np.sqrt(v_hat) + eps)


# ----------------------------------------------------------- whole network

def forward(W, b, X):
    """probs: (n, K) = softmax of the network's logits for X: (n, i_0)."""
    A = X
    for l in range(len(W)):
        A = linear_forward(A, W[l], b[l], np.empty((len(X), W[l].shape[1]), X.dtype),
                           relu=l < len(W) - 1)
    shifted = A - A.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def dropout_factors(dropout, positions, sizes):
    """Inverted dropout (Srivastava et al. 2014) on every hidden layer: the
    factor each hidden unit's activation is multiplied by while training,
    0 for a dropped unit and 1 / (1 - rate) for a kept one (so the expected
    activation is unchanged and inference needs no rescaling).
    dropout: (rate, key); positions: (n,) int64, each row's position in the
    epoch's order; sizes: the layer widths (i_0, o_0, ..., o_{L-1}).
    Returns [f_0, ..., f_{L-2}], f_l: (n, o_l) float64 (0 or the scale).

    Unit u of hidden layer l in the row at position p is kept when
    hash(key, p * H + offset_l + u) >= rate * 2^24 (H hidden units in all;
    _keep_hash below): a pure function of (key, position, unit), so every
    backend and a resumed run draw the same mask, whatever the batching."""
    rate, key = dropout
    hidden = sizes[1:-1]
    H = sum(hidden)
    threshold = np.uint64(round(rate * 2**24))
    scale = 1.0 / (1.0 - rate)
    factors, offset = [], 0
    for width in hidden:
        counter = (positions.astype(np.uint64)[:, None] * np.uint64(H)
                   + np.arange(offset, offset + width, dtype=np.uint64)[None, :])
        keep = (_keep_hash(np.uint64(key), counter) >> np.uint64(40)) >= threshold
        factors.append(np.where(keep, scale, 0.0))
        offset += width
    return factors


def _keep_hash(key, counter):
    """splitmix64 (Steele et al. 2014) of key + counter * golden ratio: uint64
    arithmetic, wrapping mod 2^64. key: uint64 scalar; counter: uint64 array."""
    z = key + counter * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def forward_backward(W, b, X, y, dW, db, smoothing=0.0, dropout=None, position=0):
    """Backpropagation for one batch (Nielsen's equations, rows as samples):
        forward:   A[0] = X,  A[l+1] = relu(A[l] @ W[l] + b[l]),  last layer no ReLU
        output:    delta = dL/dlogits = (softmax - targets) / n
        backward:  dW[l] = A[l].T @ delta,  db[l] = sum_rows delta,
                   delta = (delta @ W[l].T) * (A[l] > 0)
    With dropout = (rate, key): each hidden A[l+1] is multiplied by its
    dropout factors F (dropout_factors, rows at positions position, position+1, ...)
    and the backward pass by the same F: delta = (delta @ W[l].T) * F * (A[l] > 0).
    X: (n, i_0)  y: (n,) int64. dW, db written. Returns (loss, correct)."""
    n, L = len(X), len(W)
    F = None
    if dropout is not None and dropout[0] > 0:
        positions = np.arange(position, position + n, dtype=np.int64)
        F = [f.astype(X.dtype) for f in dropout_factors(dropout, positions, layer_sizes(W))]
    A = [X]
    for l in range(L):
        out = np.empty((n, W[l].shape[1]), X.dtype)
        A.append(linear_forward(A[l], W[l], b[l], out, relu=l < L - 1))
        if F is not None and l < L - 1:
            A[-1] *= F[l]

    logits = A[L]
    probs = np.empty_like(logits)
    delta = np.empty_like(logits)
    loss = softmax_cross_entropy(logits, y, probs, delta, smoothing)
    correct = int((logits.argmax(axis=1) == y).sum())

    for l in reversed(range(L)):
        dX = np.empty_like(A[l]) if l > 0 else None
        linear_backward(A[l], W[l], delta, dW[l], db[l], dX)
        if l > 0:
            if F is not None:
                dX *= F[l - 1]   # d(A * F)/dA = F; a dropped unit passes nothing back
            delta = relu_backward(dX, A[l], dX)
    return loss, correct


def optimizer_step(W, b, dW, db, slots, step, lr, opt):
    """Update number ``step`` (1-based: Adam's bias correction) of every W[l]
    and b[l]; weight decay on W only (decaying biases only restricts the
    offsets and does not regularize). slots: the optimizer's arrays by slot_key."""
    for l in range(len(W)):
        for kind, param, grad, wd in (("W", W[l], dW[l], opt.weight_decay),
                                      ("b", b[l], db[l], 0.0)):
            if opt.name == "sgd":
                sgd_update(param, grad, lr, wd)
            elif opt.name == "momentum":
                momentum_update(param, grad, slots[slot_key("velocity", kind)][l],
                                lr, opt.momentum, opt.nesterov, wd)
            else:
                adam_update(param, grad, slots[slot_key("m", kind)][l],
                            slots[slot_key("v", kind)][l], lr, opt.beta1, opt.beta2,
                            opt.eps, wd, step, decoupled=opt.name == "adamw")


def train_batches(W, b, slots, step, X, y, order, batch_size, first, stop, lrs, opt,
                  smoothing=0.0, dropout=None):
    """Train on batches first..stop-1 of the epoch whose row order is ``order``;
    ``step`` updates were done before batch ``first``.
    dropout: None or (rate, key), the row at position p of ``order`` getting
    the dropout_factors of p. Returns (loss_sum, correct): loss summed per
    row, rows classified right."""
    dW = [np.empty_like(w) for w in W]
    db = [np.empty_like(bias) for bias in b]
    loss_sum, correct = 0.0, 0
    for j in range(first, stop):
        rows = order[j * batch_size:(j + 1) * batch_size]
        loss, batch_correct = forward_backward(W, b, X[rows], y[rows], dW, db, smoothing,
                                               dropout, position=j * batch_size)
        # float(): a Python float keeps float32 math in float32 (NEP 50).
        optimizer_step(W, b, dW, db, slots, step + j - first + 1, float(lrs[j - first]), opt)
        loss_sum += loss * len(rows)
        correct += batch_correct
    return loss_sum, correct

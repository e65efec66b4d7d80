"""The NumPy reference backend: every op of the contract (kernels/contract.py)
written as its equation. This is the code to read; kernels/numba_backend.py is
its compiled twin and is checked against it op by op.

Shapes: n rows per batch, i/o a layer's input/output width, K = 10 classes.
"""

import numpy as np

from .augment_numpy import augment  # noqa: F401  (the augment op: kernels/augment_numpy.py)

name = "numpy"


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
    with targets t = (1 - smoothing) onehot(y) + smoothing / K.
    logits, probs, dlogits: (n, K)  y: (n,) int64. Returns the loss (float)."""
    n, K = logits.shape
    # Shifting by the row max leaves softmax unchanged and keeps exp() <= 1,
    # so logits of +-1e4 neither overflow nor give 0/0.
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_norm
    np.exp(log_probs, out=probs)

    targets = np.full((n, K), smoothing / K, dtype=logits.dtype)
    targets[np.arange(n), y] += 1.0 - smoothing
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


def forward_backward(W, b, X, y, dW, db, smoothing=0.0):
    """Backpropagation for one batch (Nielsen's equations, rows as samples):
        forward:   A[0] = X,  A[l+1] = relu(A[l] @ W[l] + b[l]),  last layer no ReLU
        output:    delta = dL/dlogits = (softmax - targets) / n
        backward:  dW[l] = A[l].T @ delta,  db[l] = sum_rows delta,
                   delta = (delta @ W[l].T) * (A[l] > 0)
    X: (n, i_0)  y: (n,) int64. dW, db written. Returns (loss, correct)."""
    n, L = len(X), len(W)
    A = [X]
    for l in range(L):
        out = np.empty((n, W[l].shape[1]), X.dtype)
        A.append(linear_forward(A[l], W[l], b[l], out, relu=l < L - 1))

    logits = A[L]
    probs = np.empty_like(logits)
    delta = np.empty_like(logits)
    loss = softmax_cross_entropy(logits, y, probs, delta, smoothing)
    correct = int((logits.argmax(axis=1) == y).sum())

    for l in reversed(range(L)):
        dX = np.empty_like(A[l]) if l > 0 else None
        linear_backward(A[l], W[l], delta, dW[l], db[l], dX)
        if l > 0:
            delta = relu_backward(dX, A[l], dX)
    return loss, correct


def optimizer_step(W, b, dW, db, state, lr, opt):
    """One update of every W[l] and b[l]; weight decay on W only (decaying
    biases only restricts the offsets and does not regularize)."""
    state.step += 1
    for l in range(len(W)):
        for kind, param, grad, wd in (("W", W[l], dW[l], opt.weight_decay),
                                      ("b", b[l], db[l], 0.0)):
            if opt.name == "sgd":
                sgd_update(param, grad, lr, wd)
            elif opt.name == "momentum":
                momentum_update(param, grad, state.slots[f"velocity_{kind}"][l],
                                lr, opt.momentum, opt.nesterov, wd)
            else:
                adam_update(param, grad, state.slots[f"m_{kind}"][l],
                            state.slots[f"v_{kind}"][l], lr, opt.beta1, opt.beta2,
                            opt.eps, wd, state.step, decoupled=opt.name == "adamw")


def train_batches(W, b, state, X, y, order, batch_size, first, stop, lrs, opt,
                  smoothing=0.0):
    """Train on batches first..stop-1 of the epoch whose row order is ``order``.
    Returns (loss_sum, correct): loss summed per row, rows classified right."""
    dW = [np.empty_like(w) for w in W]
    db = [np.empty_like(bias) for bias in b]
    loss_sum, correct = 0.0, 0
    for j in range(first, stop):
        rows = order[j * batch_size:(j + 1) * batch_size]
        loss, batch_correct = forward_backward(W, b, X[rows], y[rows], dW, db, smoothing)
        # float(): a Python float keeps float32 math in float32 (NEP 50).
        optimizer_step(W, b, dW, db, state, float(lrs[j - first]), opt)
        loss_sum += loss * len(rows)
        correct += batch_correct
    return loss_sum, correct

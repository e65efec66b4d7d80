"""The yardstick: the MLP a typical user writes in plain NumPy, nothing clever.

Not part of the engine. ``Z = X @ W + b``, ``np.maximum``, a stable softmax,
``A.T @ dZ``, and the same optimizer as the default recipe (Nesterov momentum,
weight decay on W only), so its epoch does the same work as a backend's
``train_batches`` over one epoch. NumPy runs with its own BLAS and threads,
as a user's would.
"""

import numpy as np


def train_epoch(W, b, velocity_W, velocity_b, X, y, order, batch_size, lrs,
                momentum=0.9, weight_decay=1e-3):
    """One epoch of mini-batch SGD with Nesterov momentum, in place.
    W[l]: (i, o)  b[l]: (o,)  X: (N, 784) float32  y: (N,) int64
    order: (N,) the epoch's row order  lrs: (batches,) the learning rates.
    Returns (mean loss, train accuracy) over the epoch."""
    n_layers = len(W)
    loss_sum, correct = 0.0, 0
    for j in range(-(-len(order) // batch_size)):
        rows = order[j * batch_size:(j + 1) * batch_size]
        xb, yb = X[rows], y[rows]
        n = len(rows)

        activations = [xb]
        for l in range(n_layers):
            z = activations[-1] @ W[l] + b[l]
            activations.append(np.maximum(z, 0) if l < n_layers - 1 else z)

        logits = activations[-1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        probs = exp / exp.sum(axis=1, keepdims=True)
        loss_sum += -np.log(probs[np.arange(n), yb]).sum()
        correct += int((logits.argmax(axis=1) == yb).sum())

        dz = probs
        dz[np.arange(n), yb] -= 1
        dz /= n
        lr = lrs[j]
        for l in reversed(range(n_layers)):
            dW = activations[l].T @ dz
            db = dz.sum(axis=0)
            if l > 0:
                dz = (dz @ W[l].T) * (activations[l] > 0)
            dW += weight_decay * W[l]
            velocity_W[l] = momentum * velocity_W[l] + dW
            velocity_b[l] = momentum * velocity_b[l] + db
            W[l] -= lr * (dW + momentum * velocity_W[l])
            b[l] -= lr * (db + momentum * velocity_b[l])
    return loss_sum / len(order), correct / len(order)

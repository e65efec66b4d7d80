"""The Numba backend's row and elementwise kernels.

Softmax with cross-entropy for one row, the dropout mask, the ReLU mask of a backward row, column sums,
and the optimizer updates over flat spans. Each is the reference's operation
in the reference's order (kernels/numpy_backend.py), without fastmath: the
optimizer spans round exactly like its NumPy expressions."""

import math

import numpy as np

from .numba_jit import jit


@jit(inline=True)
def softmax_xent_row(z, label, logp, d, t_off, t_on, n):
    """One row of softmax_cross_entropy: shifted = z - max z, e = exp(shifted),
    log p = shifted - log sum e, p = e / sum e (the reference takes exp(log p),
    the same value within an ulp: one exp per entry instead of two, and exp
    was a third of a training batch's softmax-and-deltas time);
    d = (p - t) / n with t_k = t_off + t_on * [k == label], or t_k = 1/K
    when label is negative (contract.NO_CLASS: a row of no class).
    z: (K,)  logp: (K,) written with log p  d: (K,) written; t_off, t_on, n of z's dtype.
    Returns sum_k t_k log p_k (the row's loss is minus that) in z's dtype."""
    K = z.shape[0]
    if label < 0:
        t_off, t_on = z.dtype.type(1.0 / K), z.dtype.type(0)
    zmax = z[0]
    for k in range(1, K):
        v = z[k]
        if v > zmax or v != v:   # NaN wins, like np.max
            zmax = v
    s = z.dtype.type(0)
    for k in range(K):
        logp[k] = z[k] - zmax
        d[k] = np.exp(logp[k])   # e, until the last loop
        s += d[k]
    log_norm = np.log(s)
    tlogp = z.dtype.type(0)
    for k in range(K):
        lp = logp[k] - log_norm
        logp[k] = lp
        t = t_off + t_on if k == label else t_off
        tlogp += t * lp
        d[k] = (d[k] / s - t) / n
    return tlogp


@jit()
def softmax_cross_entropy_rows(logits, y, probs, dlogits, smoothing):
    """The softmax_cross_entropy op over every row (softmax_xent_row); returns
    the mean loss. logits, probs, dlogits: (n, K)  y: (n,) int64."""
    n, K = logits.shape
    dt = logits.dtype.type
    t_off, t_on = smoothed_targets(smoothing, K, logits)
    total = 0.0
    for r in range(n):
        total += softmax_xent_row(logits[r], y[r], probs[r], dlogits[r], t_off, t_on, dt(n))
        for k in range(K):
            probs[r, k] = np.exp(probs[r, k])   # probs held log p
    return -total / n


@jit()
def relu_backward_flat(dA, A, dZ):
    """dZ = dA * (A > 0), flat views. dA, A, dZ: (m,)  dZ written."""
    dt = dZ.dtype.type
    for i in range(dZ.shape[0]):
        dZ[i] = dA[i] * dt(A[i] > 0)


@jit(inline=True)
def softmax_row(z, p):
    """p = exp(z - max z) / sum, the reference forward's softmax. z, p: (K,)."""
    zmax = z[0]
    for k in range(1, z.shape[0]):
        if z[k] > zmax or z[k] != z[k]:
            zmax = z[k]
    total = z.dtype.type(0)
    for k in range(z.shape[0]):
        p[k] = np.exp(z[k] - zmax)
        total += p[k]
    for k in range(z.shape[0]):
        p[k] = p[k] / total


@jit(inline=True)
def argmax(z):
    """First index of the maximum of z (the first NaN if any, like np.argmax)."""
    best = 0
    for k in range(z.shape[0]):
        v = z[k]
        if v != v:
            return k
        if v > z[best]:
            best = k
    return best


@jit(inline=True)
def smoothed_targets(smoothing, K, dtype_of):
    """(t_off, t_on) in dtype_of's dtype: the reference's targets are
    full(smoothing / K) with 1 - smoothing added at the label."""
    dt = dtype_of.dtype.type
    return dt(smoothing / K), dt(1.0 - smoothing)


@jit(inline=True)
def dropout_row(out, key, counter, threshold, scale):
    """out[u] *= scale if unit u is kept, else 0 (the reference's
    dropout_factors): kept when splitmix64(key + (counter + u) * golden) >> 40
    >= threshold. key, counter, threshold: uint64 (wrapping arithmetic);
    scale: out's dtype. out: (o,) written."""
    zero = out.dtype.type(0)
    for u in range(out.shape[0]):
        z = key + (counter + np.uint64(u)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        out[u] = out[u] * (scale if (z >> np.uint64(40)) >= threshold else zero)


@jit(inline=True)
def relu_mask_row(d, a, scale):
    """d[k] *= scale where a[k] > 0, else 0: relu_backward, times the dropout
    scale (1 without dropout), A == 0 (ReLU'd or dropped) being inactive.
    d, a: (o,)  d written."""
    zero = d.dtype.type(0)
    for k in range(d.shape[0]):
        d[k] = d[k] * (scale if a[k] > zero else zero)


@jit()
def column_sums(D, lo, hi, n, out):
    """out[j] = sum over rows r < n of D[r, j] (in row order), lo <= j < hi.
    D: (>= n, o)  out: (o,) written there."""
    for j in range(lo, hi):
        out[j] = 0
    for r in range(n):
        for j in range(lo, hi):
            out[j] += D[r, j]


# Optimizer updates over flat spans [lo, hi), in the reference's operations
# and rounding: each scalar is cast to the parameter dtype, as NumPy does with
# a Python float next to an array.

@jit()
def sgd_span(p, g, lo, hi, lr, weight_decay):
    dt = p.dtype.type
    lr_, wd = dt(lr), dt(weight_decay)
    p, g = p[lo:hi], g[lo:hi]   # views: loops from 0 vectorize
    for i in range(p.shape[0]):
        p[i] -= lr_ * (g[i] + wd * p[i])


@jit()
def momentum_span(p, g, vel, lo, hi, lr, momentum, nesterov, weight_decay):
    dt = p.dtype.type
    lr_, mu, wd = dt(lr), dt(momentum), dt(weight_decay)
    p, g, vel = p[lo:hi], g[lo:hi], vel[lo:hi]
    if nesterov:
        for i in range(p.shape[0]):
            gi = g[i] + wd * p[i]
            v = vel[i] * mu + gi
            vel[i] = v
            p[i] -= lr_ * (gi + mu * v)
    else:
        for i in range(p.shape[0]):
            gi = g[i] + wd * p[i]
            v = vel[i] * mu + gi
            vel[i] = v
            p[i] -= lr_ * v


@jit()
def adam_span(p, g, m, v, lo, hi, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    dt = p.dtype.type
    lr_, b1, b2, eps_ = dt(lr), dt(beta1), dt(beta2), dt(eps)
    one_b1, one_b2 = dt(1.0 - beta1), dt(1.0 - beta2)
    # beta ** step as Python computes it (C pow on doubles), then cast.
    c1 = dt(1.0 - beta1 ** np.float64(step))
    c2 = dt(1.0 - beta2 ** np.float64(step))
    p, g, m, v = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
    # math.sqrt keeps float32 and vectorizes (np.sqrt on a scalar calls sqrtf);
    # both are the correctly rounded IEEE square root.
    shrink = dt(lr * weight_decay) if decoupled else dt(0)
    wd = dt(0) if decoupled else dt(weight_decay)
    for i in range(p.shape[0]):
        pi = p[i] - shrink * p[i] if decoupled else p[i]
        gi = g[i] if decoupled else g[i] + wd * p[i]
        mi = m[i] * b1 + one_b1 * gi
        vi = v[i] * b2 + one_b2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = pi - lr_ * (mi / c1) / (math.sqrt(vi / c2) + eps_)


@jit(inline=True)
def update_span(p, g, s1, s2, lo, hi, hyper, lr, weight_decay, step):
    """One optimizer's update of p[lo:hi] (flat) with gradient g. hyper: an
    Optimizer (kind 0 sgd, 1 momentum, 2 adam, 3 adamw); s1, s2 the slot
    arrays (velocity; m, v), unused otherwise."""
    if hyper.kind == 0:
        sgd_span(p, g, lo, hi, lr, weight_decay)
    elif hyper.kind == 1:
        momentum_span(p, g, s1, lo, hi, lr, hyper.momentum, hyper.nesterov, weight_decay)
    else:
        adam_span(p, g, s1, s2, lo, hi, lr, hyper.beta1, hyper.beta2, hyper.eps, weight_decay,
                  step, hyper.kind == 3)

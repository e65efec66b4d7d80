"""The Numba backend: the compiled twin of kernels/numpy_backend.py. Same ops,
same names, arguments, in-place semantics and return values (the contract is
kernels/contract.py); read the reference for the equations, this file for how
they are made fast. Checked against the reference op by op in
tests/test_backends.py.

Shapes: n rows per batch, i/o a layer's input/output width, K = 10 classes.

How it is fast (784-128-64-10, batch 128):
- Input sparsity. ~81% of MNIST pixels are exactly 0, and the first layer is
  ~90% of the FLOPs. Each row's nonzeros are gathered once (``_gather_nonzeros``);
  the forward product adds only those rows of W (``_accumulate_rows``), and
  the weight gradient X.T @ dY visits only those entries, column by column
  (``_transpose_nonzeros`` then ``_accumulate_columns``). ReLU outputs are
  ~50% zero and get the same treatment in the next layer. The sums are the
  same as dense ones up to summation order (adding exact zeros changes
  nothing), except that a skipped 0 never meets an inf/NaN weight: 0 * inf
  is NaN in the reference but contributes nothing here. Weights are only
  non-finite after training has diverged, which the loss reports anyway.
- One compiled call per chunk of batches (``_train_chunk``): gather, forward,
  backward and optimizer update with buffers allocated once per call and
  the GIL released (nogil), so a GUI thread stays responsive.
- Two cores, deterministically. A batch is cut into SLICES = 2 fixed row
  ranges; each writes its own gradient buffer, and the buffers are added in
  slice order before the update. The cut depends on the batch size only,
  never on the thread count: results are bit-identical run to run and for
  any NUMBA_NUM_THREADS (with one thread the slices simply run in turn).
- Float32 stays float32: every Python scalar (lr, betas, eps, ...) is cast to
  the parameters' dtype inside the kernels (``p.dtype.type(x)``), exactly as
  NumPy's NEP 50 casts a Python float next to a float32 array.
- fastmath: only {"contract"} (fused multiply-add) in the product kernels.
  No reassociation (the summation order is the written one, so results do not
  depend on vector width or unrolling) and no nnan/ninf (softmax keeps its
  inf/NaN semantics). The optimizer kernels use no fastmath at all, so they
  round exactly like the reference's NumPy expressions, operation by
  operation, and match it bit for bit.
- cache=True everywhere, and every kernel that calls another lives in this
  module (Numba's cache does not notice edits to another file). Where no
  cache directory is writable, Numba falls back to a user-wide one; if none
  is usable the decorator compiles without caching (``_jit``).
"""

import math

import numpy as np
from numba import njit, prange

name = "numba"

# Row slices per batch, run on up to SLICES threads. A constant, not the
# thread count, so the partial gradient sums (and the results) never depend
# on the machine.
SLICES = 2
# train_batches runs this many batches per call from fastmlp.train.run: large
# enough to keep Python off the hot path, small enough to report progress and
# stop cleanly every ~20 ms.
batches_per_call = 64
# forward() on at least this many rows runs on all threads (rows are computed
# independently, so the split never changes a result).
_PARALLEL_ROWS = 256
_ROW_BLOCK = 64

_FMA = {"contract"}


def _jit(parallel=False, fastmath=False):
    """njit(cache=True, nogil=True), falling back to cache=False when Numba finds
    no usable cache directory (it raises RuntimeError at decoration then).
    error_model="numpy": x / 0 gives inf/NaN as in NumPy instead of raising."""
    def decorate(fn):
        options = dict(nogil=True, parallel=parallel, fastmath=fastmath, error_model="numpy")
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:
            return njit(cache=False, **options)(fn)
    return decorate


# ------------------------------------------------------- building blocks
# Row kernels shared by the layer ops and the whole-network kernels.

@_jit()
def _gather_nonzeros(x, idx, val):
    """idx[:c], val[:c] = positions and values of the nonzeros of x, in order;
    returns c. x: (i,)  idx: (>= i,) int32  val: (>= i,) written.
    Branchy on purpose: image zeros come in long runs, so it predicts well."""
    c = 0
    for k in range(x.shape[0]):
        v = x[k]
        if v != 0:
            idx[c] = k
            val[c] = v
            c += 1
    return c


@_jit()
def _gather_nonzeros_branchless(x, idx, val):
    """Same as _gather_nonzeros for data whose zeros are scattered at random
    (ReLU outputs, gradients): always store, advance only past nonzeros."""
    c = 0
    for k in range(x.shape[0]):
        v = x[k]
        idx[c] = k
        val[c] = v
        c += v != 0
    return c


@_jit()
def _relu_gather(out, idx, val):
    """out = max(out, 0) in place (NaN stays NaN, like np.maximum), and gather
    the nonzeros of the result as _gather_nonzeros does. Returns their count.
    out: (o,) written  idx: (>= o,) int32  val: (>= o,) written."""
    c = 0
    for k in range(out.shape[0]):
        v = out[k]
        if v < 0:
            v = out.dtype.type(0)
        out[k] = v
        idx[c] = k
        val[c] = v
        c += v != 0
    return c


@_jit(fastmath=_FMA)
def _accumulate_rows(out, M, idx, val, c):
    """out += sum_t val[t] * M[idx[t], :] for t < c, added in the order t = 0, 1, ...
    out: (o,)  M: (i, o)  idx: (>= c,) int32  val: (>= c,).
    Eight rows per pass over out (one load/store of out per eight rows of M);
    each out[j] is the same chain of fused multiply-adds however t is grouped."""
    o = out.shape[0]
    t = 0
    while t + 8 <= c:
        m0 = M[idx[t]]
        m1 = M[idx[t + 1]]
        m2 = M[idx[t + 2]]
        m3 = M[idx[t + 3]]
        m4 = M[idx[t + 4]]
        m5 = M[idx[t + 5]]
        m6 = M[idx[t + 6]]
        m7 = M[idx[t + 7]]
        v0, v1, v2, v3 = val[t], val[t + 1], val[t + 2], val[t + 3]
        v4, v5, v6, v7 = val[t + 4], val[t + 5], val[t + 6], val[t + 7]
        for j in range(o):
            out[j] = (out[j] + v0 * m0[j] + v1 * m1[j] + v2 * m2[j] + v3 * m3[j]
                      + v4 * m4[j] + v5 * m5[j] + v6 * m6[j] + v7 * m7[j])
        t += 8
    while t < c:
        m0 = M[idx[t]]
        v0 = val[t]
        for j in range(o):
            out[j] = out[j] + v0 * m0[j]
        t += 1


@_jit()
def _transpose_nonzeros(nzi, nzv, nzc, m, K, start, ri, rv):
    """CSR -> CSC. Row r of an (m, K) sparse matrix is nzi[r, :nzc[r]] (columns,
    increasing) and nzv[r, :nzc[r]] (values); column k becomes
    ri[start[k]:start[k+1]] (rows, increasing) and rv[...] (values).
    nzi: (m, >= K) int32  nzv: (m, >= K)  nzc: (m,)  start: (>= K+1,) int64
    ri: (>= nnz,) int32  rv: (>= nnz,) written."""
    for k in range(K + 1):
        start[k] = 0
    for r in range(m):
        for t in range(nzc[r]):
            start[nzi[r, t] + 1] += 1
    for k in range(K):
        start[k + 1] += start[k]
    for r in range(m):          # start[k] is column k's write cursor here
        for t in range(nzc[r]):
            k = nzi[r, t]
            p = start[k]
            ri[p] = r
            rv[p] = nzv[r, t]
            start[k] = p + 1
    for k in range(K, 0, -1):   # cursors now sit at the ends: shift back
        start[k] = start[k - 1]
    start[0] = 0


@_jit(fastmath=_FMA)
def _accumulate_columns(dW, start, ri, rv, dY):
    """dW[k, :] = sum over p in start[k]:start[k+1] of rv[p] * dY[ri[p], :]
    (in order; 0 for an empty column): X.T @ dY with X given column-wise.
    dW: (K, o) written  start: (K+1,)  ri: int32  dY: (m, o)."""
    K, o = dW.shape
    for k in range(K):
        g = dW[k]
        for j in range(o):
            g[j] = 0
        p, e = start[k], start[k + 1]
        while p + 8 <= e:
            d0 = dY[ri[p]]
            d1 = dY[ri[p + 1]]
            d2 = dY[ri[p + 2]]
            d3 = dY[ri[p + 3]]
            d4 = dY[ri[p + 4]]
            d5 = dY[ri[p + 5]]
            d6 = dY[ri[p + 6]]
            d7 = dY[ri[p + 7]]
            v0, v1, v2, v3 = rv[p], rv[p + 1], rv[p + 2], rv[p + 3]
            v4, v5, v6, v7 = rv[p + 4], rv[p + 5], rv[p + 6], rv[p + 7]
            for j in range(o):
                g[j] = (g[j] + v0 * d0[j] + v1 * d1[j] + v2 * d2[j] + v3 * d3[j]
                        + v4 * d4[j] + v5 * d5[j] + v6 * d6[j] + v7 * d7[j])
            p += 8
        while p < e:
            d0 = dY[ri[p]]
            v0 = rv[p]
            for j in range(o):
                g[j] = g[j] + v0 * d0[j]
            p += 1


@_jit()
def _column_sums(dY, db):
    """db = sum over rows of dY (in row order). dY: (m, o)  db: (o,) written."""
    for j in range(db.shape[0]):
        db[j] = 0
    for r in range(dY.shape[0]):
        d = dY[r]
        for j in range(db.shape[0]):
            db[j] += d[j]


@_jit()
def _transpose(W, WT):
    """WT = W.T. W: (i, o)  WT: (o, i) written."""
    for k in range(W.shape[0]):
        for j in range(W.shape[1]):
            WT[j, k] = W[k, j]


@_jit()
def _softmax_xent_row(z, label, logp, d, t_off, t_on, n):
    """One row of softmax_cross_entropy, in the reference's operations:
    shifted = z - max z; log p = shifted - log sum exp(shifted); p = exp(log p);
    d = (p - t) / n with t_k = t_off + t_on * [k == label].
    z: (K,)  logp: (K,) written with log p  d: (K,) written; t_off, t_on, n of z's dtype.
    Returns sum_k t_k log p_k (the row's loss is minus that) in z's dtype."""
    K = z.shape[0]
    zmax = z[0]
    for k in range(1, K):
        v = z[k]
        if v > zmax or v != v:   # NaN wins, like np.max
            zmax = v
    s = z.dtype.type(0)
    for k in range(K):
        logp[k] = z[k] - zmax
        s += np.exp(logp[k])
    log_norm = np.log(s)
    tlogp = z.dtype.type(0)
    for k in range(K):
        lp = logp[k] - log_norm
        logp[k] = lp
        t = t_off + t_on if k == label else t_off
        tlogp += t * lp
        d[k] = (np.exp(lp) - t) / n
    return tlogp


@_jit()
def _argmax(z):
    """First index of the maximum of z (the first NaN if any, like np.argmax)."""
    best = 0
    for k in range(z.shape[0]):
        v = z[k]
        if v != v:
            return k
        if v > z[best]:
            best = k
    return best


@_jit()
def _smoothed_targets(smoothing, K, dtype_of):
    """(t_off, t_on) in dtype_of's dtype: the reference's targets are
    full(smoothing / K) with 1 - smoothing added at the label."""
    dt = dtype_of.dtype.type
    return dt(smoothing / K), dt(1.0 - smoothing)


# ------------------------------------------------------------- layer ops

@_jit(fastmath=_FMA)
def _linear_forward(X, W, b, out, relu, idx, val):
    for r in range(X.shape[0]):
        c = _gather_nonzeros(X[r], idx, val)
        row = out[r]
        for j in range(row.shape[0]):
            row[j] = b[j]
        _accumulate_rows(row, W, idx, val, c)
        if relu:
            _relu_gather(row, idx, val)


def linear_forward(X, W, b, out, relu):
    """out = X @ W + b, then ReLU if ``relu``.
    X: (n, i)  W: (i, o)  b: (o,)  out: (n, o) written."""
    scratch = X.shape[1] + W.shape[1]
    _linear_forward(X, W, b, out, bool(relu), np.empty(scratch, np.int32),
                    np.empty(scratch, X.dtype))
    return out


@_jit()
def _softmax_cross_entropy(logits, y, probs, dlogits, smoothing):
    n, K = logits.shape
    dt = logits.dtype.type
    t_off, t_on = _smoothed_targets(smoothing, K, logits)
    total = 0.0
    for r in range(n):
        total += _softmax_xent_row(logits[r], y[r], probs[r], dlogits[r], t_off, t_on, dt(n))
        for k in range(K):
            probs[r, k] = np.exp(probs[r, k])   # probs held log p
    return -total / n


def softmax_cross_entropy(logits, y, probs, dlogits, smoothing=0.0):
    """p = softmax(logits); loss = mean -sum_k t_k log p_k; dlogits = (p - t) / n
    with targets t = (1 - smoothing) onehot(y) + smoothing / K.
    logits, probs, dlogits: (n, K)  y: (n,) int64. Returns the loss (float)."""
    _check_labels(y, logits.shape[1])
    return float(_softmax_cross_entropy(logits, _int64(y), probs, dlogits, float(smoothing)))


@_jit()
def _relu_backward(dA, A, dZ):
    dt = dZ.dtype.type
    for i in range(dZ.shape[0]):
        dZ[i] = dA[i] * dt(A[i] > 0)


def relu_backward(dA, A, dZ):
    """dZ = dA * relu'(Z), and relu'(Z) = (A > 0) since A = relu(Z).
    dA, A, dZ: (n, o); dZ written (may be dA itself)."""
    _relu_backward(_flat(dA), _flat(A), _flat(dZ, written=True))
    return dZ


@_jit(fastmath=_FMA)
def _weight_gradients(X, dY, dW, db, nzi, nzv, nzc, start, ri, rv):
    for r in range(X.shape[0]):
        nzc[r] = _gather_nonzeros(X[r], nzi[r], nzv[r])
    _transpose_nonzeros(nzi, nzv, nzc, X.shape[0], X.shape[1], start, ri, rv)
    _accumulate_columns(dW, start, ri, rv, dY)
    _column_sums(dY, db)


@_jit(fastmath=_FMA)
def _input_gradient(dY, WT, dX, idx, val):
    for r in range(dY.shape[0]):
        row = dX[r]
        for k in range(row.shape[0]):
            row[k] = 0
        c = _gather_nonzeros_branchless(dY[r], idx, val)
        _accumulate_rows(row, WT, idx, val, c)


def linear_backward(X, W, dY, dW, db, dX):
    """Gradients of Y = X @ W + b given dY = dL/dY:
    dW = X.T @ dY,  db = sum over rows of dY,  dX = dY @ W.T (skipped if None).
    X: (n, i)  W: (i, o)  dY: (n, o)  dW: (i, o)  db: (o,)  dX: (n, i)."""
    n, i = X.shape
    o = W.shape[1]
    _weight_gradients(X, dY, dW, db, np.empty((n, i), np.int32), np.empty((n, i), X.dtype),
                      np.empty(n, np.int64), np.empty(i + 1, np.int64),
                      np.empty(n * i, np.int32), np.empty(n * i, X.dtype))
    if dX is not None:
        WT = np.empty((o, i), W.dtype)
        _transpose(W, WT)
        _input_gradient(dY, WT, dX, np.empty(o, np.int32), np.empty(o, W.dtype))


# --------------------------------------------------------- optimizer ops
# Elementwise loops over flat views [lo, hi), in the reference's operations
# and rounding (no fastmath): each scalar is cast to the parameter dtype,
# as NumPy does with a Python float next to an array.

@_jit()
def _sgd_span(p, g, lo, hi, lr, weight_decay):
    dt = p.dtype.type
    lr_, wd = dt(lr), dt(weight_decay)
    p, g = p[lo:hi], g[lo:hi]   # views: loops from 0 vectorize
    for i in range(p.shape[0]):
        p[i] -= lr_ * (g[i] + wd * p[i])


@_jit()
def _momentum_span(p, g, vel, lo, hi, lr, momentum, nesterov, weight_decay):
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


@_jit()
def _adam_span(p, g, m, v, lo, hi, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    dt = p.dtype.type
    lr_, b1, b2, eps_ = dt(lr), dt(beta1), dt(beta2), dt(eps)
    one_b1, one_b2 = dt(1.0 - beta1), dt(1.0 - beta2)
    # beta ** step as Python computes it (C pow on doubles), then cast.
    c1 = dt(1.0 - beta1 ** np.float64(step))
    c2 = dt(1.0 - beta2 ** np.float64(step))
    p, g, m, v = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
    # math.sqrt keeps float32 and vectorizes (np.sqrt on a scalar calls sqrtf);
    # both are the correctly rounded IEEE square root.
    if decoupled:
        shrink = dt(lr * weight_decay)
        for i in range(p.shape[0]):
            pi = p[i] - shrink * p[i]
            gi = g[i]
            mi = m[i] * b1 + one_b1 * gi
            vi = v[i] * b2 + one_b2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = pi - lr_ * (mi / c1) / (math.sqrt(vi / c2) + eps_)
    else:
        wd = dt(weight_decay)
        for i in range(p.shape[0]):
            pi = p[i]
            gi = g[i] + wd * pi
            mi = m[i] * b1 + one_b1 * gi
            vi = v[i] * b2 + one_b2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = pi - lr_ * (mi / c1) / (math.sqrt(vi / c2) + eps_)


def sgd_update(param, grad, lr, weight_decay):
    """param -= lr * (grad + weight_decay * param), in place."""
    p = _flat(param, written=True)
    _sgd_span(p, _flat(grad), 0, p.size, float(lr), float(weight_decay))


def momentum_update(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    """Heavy-ball momentum (Nesterov's variant if ``nesterov``), in place:
    g = grad + wd * param;  velocity = momentum * velocity + g;
    param -= lr * (g + momentum * velocity  if nesterov else  velocity)."""
    p = _flat(param, written=True)
    _momentum_span(p, _flat(grad), _flat(velocity, written=True), 0, p.size, float(lr),
                   float(momentum), bool(nesterov), float(weight_decay))


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    """Adam with bias correction for update number ``step`` (1-based), in place.
    decoupled: AdamW's weight decay (shrink param directly) instead of L2."""
    p = _flat(param, written=True)
    _adam_span(p, _flat(grad), _flat(m, written=True), _flat(v, written=True), 0, p.size,
               float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
               int(step), bool(decoupled))


# ---------------------------------------------------------- whole network
# Scratch layout. Per slice, every buffer is one flat array; layer l's part is
# a C-contiguous reshape of a range of it (Numba keeps such views contiguous,
# so the inner loops vectorize):
#   act: the layers' outputs, (m, o_l) each (the last is the logits)
#   nzi/nzv: the nonzeros of each layer's input rows, (m, i_l) each, nzc: counts
#   grad: this slice's gradient, W[0], b[0], W[1], b[1], ... flattened
#   delta: two (m, max width) buffers, dL/d(layer output) and dL/d(layer input)
#   WT: W[l].T for l >= 1 (backward products as row sums, which vectorize)

@_jit()
def _layer_sizes(Ws):
    """sizes: (L+1,) int64, the widths (i_0, o_0, o_1, ..., o_{L-1})."""
    L = len(Ws)
    sizes = np.empty(L + 1, np.int64)
    sizes[0] = Ws[0].shape[0]
    for l in range(L):
        sizes[l + 1] = Ws[l].shape[1]
    return sizes


@_jit()
def _offsets(widths, scale):
    """off: (len(widths)+1,) int64, off[l] = scale * sum(widths[:l])."""
    off = np.zeros(widths.shape[0] + 1, np.int64)
    for l in range(widths.shape[0]):
        off[l + 1] = off[l] + scale * widths[l]
    return off


@_jit()
def _param_offsets(sizes):
    """(woff, boff): where W[l] and b[l] start in a flat gradient vector;
    woff[L] is the total number of parameters."""
    L = sizes.shape[0] - 1
    woff = np.zeros(L + 1, np.int64)
    boff = np.zeros(L, np.int64)
    for l in range(L):
        boff[l] = woff[l] + sizes[l] * sizes[l + 1]
        woff[l + 1] = boff[l] + sizes[l + 1]
    return woff, boff


@_jit(fastmath=_FMA)
def _slice_forward_backward(Ws, bs, X, y, rows, n, t_off, t_on, sizes, act, nzi, nzv, nzc,
                            grad, delta, WT, start, ri, rv, idx, val, logp):
    """Forward and backward through the network for the rows X[rows] (one slice
    of a batch of n rows; the loss is the batch mean, so gradients scale by 1/n).
    rows: (m,) int64. Scratch: act, nzi (int32), nzv, nzc (L, >= m), delta
    (2, ...), WT, start, ri, rv, idx, val, logp, laid out as described above.
    grad written: this slice's gradient of the batch loss (every entry).
    Returns (sum over the slice's rows of sum_k t_k log p_k, rows right)."""
    L = len(Ws)
    m = rows.shape[0]
    dt = X.dtype.type
    aoff = _offsets(sizes[1:], m)
    zoff = _offsets(sizes[:L], m)
    woff, boff = _param_offsets(sizes)
    toff = _offsets(sizes[:L] * sizes[1:], 1)
    K = sizes[L]

    # forward, one row at a time through all layers (it stays in cache)
    tlogp = 0.0
    correct = 0
    dlogits = delta[0, :m * K].reshape((m, K))
    for r in range(m):
        row = rows[r]
        zi = nzi[zoff[0]:zoff[1]].reshape((m, sizes[0]))
        zv = nzv[zoff[0]:zoff[1]].reshape((m, sizes[0]))
        nzc[0, r] = _gather_nonzeros(X[row], zi[r], zv[r])
        for l in range(L):
            out = act[aoff[l]:aoff[l + 1]].reshape((m, sizes[l + 1]))[r]
            b = bs[l]
            for j in range(out.shape[0]):
                out[j] = b[j]
            zi = nzi[zoff[l]:zoff[l + 1]].reshape((m, sizes[l]))
            zv = nzv[zoff[l]:zoff[l + 1]].reshape((m, sizes[l]))
            _accumulate_rows(out, Ws[l], zi[r], zv[r], nzc[l, r])
            if l < L - 1:
                zi = nzi[zoff[l + 1]:zoff[l + 2]].reshape((m, sizes[l + 1]))
                zv = nzv[zoff[l + 1]:zoff[l + 2]].reshape((m, sizes[l + 1]))
                nzc[l + 1, r] = _relu_gather(out, zi[r], zv[r])
        logits = act[aoff[L - 1]:aoff[L]].reshape((m, K))[r]
        tlogp += _softmax_xent_row(logits, y[row], logp, dlogits[r], t_off, t_on, dt(n))
        correct += _argmax(logits) == y[row]

    # backward: delta holds dL/d(output of layer l), row-major (m, o_l)
    q = 0
    for l in range(L - 1, -1, -1):
        i, o = sizes[l], sizes[l + 1]
        dY = delta[q, :m * o].reshape((m, o))
        zi = nzi[zoff[l]:zoff[l + 1]].reshape((m, i))
        zv = nzv[zoff[l]:zoff[l + 1]].reshape((m, i))
        _transpose_nonzeros(zi, zv, nzc[l], m, i, start, ri, rv)
        _accumulate_columns(grad[woff[l]:boff[l]].reshape((i, o)), start, ri, rv, dY)
        _column_sums(dY, grad[boff[l]:woff[l + 1]])
        if l > 0:
            WTl = WT[toff[l]:toff[l + 1]].reshape((o, i))
            _transpose(Ws[l], WTl)
            A = act[aoff[l - 1]:aoff[l]].reshape((m, i))
            dX = delta[1 - q, :m * i].reshape((m, i))
            for r in range(m):
                dx = dX[r]
                for k in range(i):
                    dx[k] = 0
                c = _gather_nonzeros_branchless(dY[r], idx, val)
                _accumulate_rows(dx, WTl, idx, val, c)
                a = A[r]
                for k in range(i):   # relu_backward: A == 0 is inactive
                    dx[k] = dx[k] * dt(a[k] > 0)
            q = 1 - q
    return tlogp, correct


@_jit()
def _slice_bounds(n, s):
    """Rows [lo, hi) of slice s of a batch of n rows: a fixed cut, independent
    of the thread count."""
    return (n * s) // SLICES, (n * (s + 1)) // SLICES


@_jit()
def _scratch(Ws, hmax, dtype_of):
    """Per-slice scratch for batches of up to SLICES * hmax rows (see layout)."""
    sizes = _layer_sizes(Ws)
    L = sizes.shape[0] - 1
    dt = dtype_of.dtype
    width = sizes.max()
    n_params = _param_offsets(sizes)[0][L]
    n_in = sizes[:L].sum()
    n_wt = (sizes[:L] * sizes[1:]).sum()
    act = np.empty((SLICES, hmax * sizes[1:].sum()), dt)
    nzi = np.empty((SLICES, hmax * n_in), np.int32)
    nzv = np.empty((SLICES, hmax * n_in), dt)
    nzc = np.zeros((SLICES, L, hmax), np.int64)
    grad = np.empty((SLICES, n_params), dt)
    delta = np.empty((SLICES, 2, hmax * width), dt)
    WT = np.empty((SLICES, n_wt), dt)
    start = np.empty((SLICES, width + 1), np.int64)
    ri = np.empty((SLICES, hmax * width), np.int32)
    rv = np.empty((SLICES, hmax * width), dt)
    idx = np.empty((SLICES, width), np.int32)
    val = np.empty((SLICES, width), dt)
    logp = np.empty((SLICES, sizes[L]), dt)
    return sizes, act, nzi, nzv, nzc, grad, delta, WT, start, ri, rv, idx, val, logp


@_jit(parallel=True, fastmath=_FMA)
def _batch_gradient(Ws, bs, X, y, rows, smoothing, sizes, act, nzi, nzv, nzc, grad, delta, WT,
                    start, ri, rv, idx, val, logp, tlogp, correct):
    """One batch X[rows] on SLICES slices in parallel: grad[s] is slice s's
    gradient, tlogp[s] and correct[s] its loss terms and right answers."""
    n = rows.shape[0]
    t_off, t_on = _smoothed_targets(smoothing, sizes[sizes.shape[0] - 1], X)
    for s in prange(SLICES):
        lo, hi = _slice_bounds(n, s)
        tl, c = _slice_forward_backward(
            Ws, bs, X, y, rows[lo:hi], n, t_off, t_on, sizes, act[s], nzi[s], nzv[s], nzc[s],
            grad[s], delta[s], WT[s], start[s], ri[s], rv[s], idx[s], val[s], logp[s])
        tlogp[s] = tl
        correct[s] = c


@_jit()
def _reduce_slices(grad, lo, hi):
    """grad[0, lo:hi] += grad[1, lo:hi] + ... in slice order."""
    total = grad[0, lo:hi]
    for s in range(1, grad.shape[0]):
        part = grad[s, lo:hi]
        for i in range(total.shape[0]):
            total[i] += part[i]


@_jit()
def _update_span(p, g, s1, s2, lo, hi, kind, lr, momentum, nesterov, beta1, beta2, eps,
                 weight_decay, step):
    """One optimizer's update of p[lo:hi] (flat). kind: 0 sgd, 1 momentum,
    2 adam, 3 adamw; s1, s2 the slot arrays (velocity; m, v), unused otherwise."""
    if kind == 0:
        _sgd_span(p, g, lo, hi, lr, weight_decay)
    elif kind == 1:
        _momentum_span(p, g, s1, lo, hi, lr, momentum, nesterov, weight_decay)
    else:
        _adam_span(p, g, s1, s2, lo, hi, lr, beta1, beta2, eps, weight_decay, step, kind == 3)


@_jit(parallel=True)
def _reduce_and_update(Ws, bs, S1W, S1b, S2W, S2b, grad, sizes, kind, lr, momentum, nesterov,
                       beta1, beta2, eps, weight_decay, step):
    """Sum the slices' gradients and update every parameter, each tensor cut
    in SLICES fixed element ranges (elementwise, so the cut changes nothing).
    Weight decay on W only."""
    L = len(Ws)
    woff, boff = _param_offsets(sizes)
    for s in prange(SLICES):
        for l in range(L):
            size = sizes[l] * sizes[l + 1]
            lo, hi = _slice_bounds(size, s)
            _reduce_slices(grad, woff[l] + lo, woff[l] + hi)
            _update_span(Ws[l].reshape(-1), grad[0, woff[l]:boff[l]], S1W[l].reshape(-1),
                         S2W[l].reshape(-1), lo, hi, kind, lr, momentum, nesterov, beta1, beta2,
                         eps, weight_decay, step)
            lo, hi = _slice_bounds(sizes[l + 1], s)
            _reduce_slices(grad, boff[l] + lo, boff[l] + hi)
            _update_span(bs[l], grad[0, boff[l]:woff[l + 1]], S1b[l], S2b[l], lo, hi, kind, lr,
                         momentum, nesterov, beta1, beta2, eps, 0.0, step)


@_jit(fastmath=_FMA)
def _train_chunk(Ws, bs, S1W, S1b, S2W, S2b, X, y, order, batch_size, first, stop, lrs, kind,
                 momentum, nesterov, beta1, beta2, eps, weight_decay, step0, smoothing):
    """Batches first..stop-1: batch j is X[order[j*batch_size:(j+1)*batch_size]].
    Returns (loss_sum over rows, float64; rows right)."""
    N = order.shape[0]
    hmax = (min(batch_size, N) + SLICES - 1) // SLICES
    (sizes, act, nzi, nzv, nzc, grad, delta, WT, start, ri, rv, idx, val,
     logp) = _scratch(Ws, hmax, X)
    tlogp = np.zeros(SLICES)
    correct = np.zeros(SLICES, np.int64)
    loss_sum = 0.0
    right = 0
    for j in range(first, stop):
        rows = order[j * batch_size:min((j + 1) * batch_size, N)]
        _batch_gradient(Ws, bs, X, y, rows, smoothing, sizes, act, nzi, nzv, nzc, grad, delta,
                        WT, start, ri, rv, idx, val, logp, tlogp, correct)
        for s in range(SLICES):
            loss_sum -= tlogp[s]
            right += correct[s]
        _reduce_and_update(Ws, bs, S1W, S1b, S2W, S2b, grad, sizes, kind, lrs[j - first],
                           momentum, nesterov, beta1, beta2, eps, weight_decay,
                           step0 + j - first + 1)
    return loss_sum, right


@_jit(fastmath=_FMA)
def _forward_block(Ws, bs, X, probs, lo, hi):
    """probs[r] = softmax of the network at X[r] for lo <= r < hi, row by row
    (the reference's softmax: exp(z - max z) / sum)."""
    sizes = _layer_sizes(Ws)
    L = sizes.shape[0] - 1
    aoff = _offsets(sizes[1:], 1)
    width = sizes.max()
    act = np.empty(aoff[L], X.dtype)
    idx = np.empty(width, np.int32)
    val = np.empty(width, X.dtype)
    for r in range(lo, hi):
        c = _gather_nonzeros(X[r], idx, val)
        for l in range(L):
            out = act[aoff[l]:aoff[l + 1]]
            b = bs[l]
            for j in range(out.shape[0]):
                out[j] = b[j]
            _accumulate_rows(out, Ws[l], idx, val, c)
            if l < L - 1:
                c = _relu_gather(out, idx, val)
        z = act[aoff[L - 1]:aoff[L]]
        p = probs[r]
        zmax = z[0]
        for k in range(1, z.shape[0]):
            if z[k] > zmax or z[k] != z[k]:
                zmax = z[k]
        s = X.dtype.type(0)
        for k in range(z.shape[0]):
            p[k] = np.exp(z[k] - zmax)
            s += p[k]
        for k in range(z.shape[0]):
            p[k] = p[k] / s


@_jit(parallel=True, fastmath=_FMA)
def _forward_parallel(Ws, bs, X, probs):
    """_forward_block over blocks of _ROW_BLOCK rows on all threads."""
    n = X.shape[0]
    blocks = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    for blk in prange(blocks):
        _forward_block(Ws, bs, X, probs, blk * _ROW_BLOCK, min((blk + 1) * _ROW_BLOCK, n))


def forward(W, b, X):
    """probs: (n, K) = softmax of the network's logits for X: (n, i_0)."""
    Ws, bs = _params(W, b)
    X = _readonly(X, Ws[0].dtype)
    probs = np.empty((X.shape[0], Ws[-1].shape[1]), X.dtype)
    if X.shape[0] >= _PARALLEL_ROWS:
        _forward_parallel(Ws, bs, X, probs)
    else:
        _forward_block(Ws, bs, X, probs, 0, X.shape[0])
    return probs


def forward_backward(W, b, X, y, dW, db, smoothing=0.0):
    """Backpropagation for one batch (Nielsen's equations, rows as samples):
        forward:   A[0] = X,  A[l+1] = relu(A[l] @ W[l] + b[l]),  last layer no ReLU
        output:    delta = dL/dlogits = (softmax - targets) / n
        backward:  dW[l] = A[l].T @ delta,  db[l] = sum_rows delta,
                   delta = (delta @ W[l].T) * (A[l] > 0)
    X: (n, i_0)  y: (n,) int64. dW, db written. Returns (loss, correct)."""
    Ws, bs = _params(W, b)
    X = _readonly(X, Ws[0].dtype)
    y = _int64(y)
    _check_labels(y, Ws[-1].shape[1])
    n = X.shape[0]
    hmax = (n + SLICES - 1) // SLICES
    sizes, *scratch = _scratch(Ws, hmax, X)
    tlogp, correct = np.zeros(SLICES), np.zeros(SLICES, np.int64)
    _batch_gradient(Ws, bs, X, y, _readonly(np.arange(n), np.int64), float(smoothing), sizes,
                    *scratch, tlogp, correct)
    grad = scratch[4]
    _reduce_slices(grad, 0, grad.shape[1])
    offset = 0
    for gw, gb in zip(dW, db):
        for g in (gw, gb):
            _flat(g, written=True)[:] = grad[0, offset:offset + g.size]
            offset += g.size
    return -float(tlogp.sum()) / n, int(correct.sum())


def optimizer_step(W, b, dW, db, state, lr, opt):
    """One update of every W[l] and b[l]; weight decay on W only (decaying
    biases only restricts the offsets and does not regularize)."""
    state.step += 1
    kind = _OPTIMIZERS[opt.name]
    S1W, S1b, S2W, S2b = _slots(state, opt, W, b)
    for l in range(len(W)):
        for param, grad, s1, s2, wd in ((W[l], dW[l], S1W[l], S2W[l], opt.weight_decay),
                                        (b[l], db[l], S1b[l], S2b[l], 0.0)):
            p = _flat(param, written=True)
            _update_span(p, _flat(grad), _flat(s1, written=True), _flat(s2, written=True), 0,
                         p.size, kind, float(lr), float(opt.momentum), bool(opt.nesterov),
                         float(opt.beta1), float(opt.beta2), float(opt.eps), float(wd),
                         state.step)


def train_batches(W, b, state, X, y, order, batch_size, first, stop, lrs, opt,
                  smoothing=0.0):
    """Train on batches first..stop-1 of the epoch whose row order is ``order``.
    Returns (loss_sum, correct): loss summed per row, rows classified right.
    The whole chunk runs in one compiled call that releases the GIL."""
    Ws, bs = _params(W, b)
    X = _readonly(X, Ws[0].dtype)
    y = _int64(y)
    order = _int64(order)
    first, stop, batch_size = int(first), int(stop), int(batch_size)
    if stop <= first:
        return 0.0, 0
    lrs = _readonly(lrs, np.float64)
    if lrs.shape[0] < stop - first:
        raise ValueError(f"lrs has {lrs.shape[0]} entries for {stop - first} batches")
    used = order[first * batch_size:stop * batch_size]
    if used.size and (used.min() < 0 or used.max() >= len(X) or len(y) != len(X)):
        raise IndexError("order refers to rows outside X, y")
    _check_labels(y, Ws[-1].shape[1])
    S1W, S1b, S2W, S2b = _slots(state, opt, W, b)
    loss_sum, correct = _train_chunk(
        Ws, bs, S1W, S1b, S2W, S2b, X, y, order, batch_size, first, stop, lrs,
        _OPTIMIZERS[opt.name], float(opt.momentum), bool(opt.nesterov), float(opt.beta1),
        float(opt.beta2), float(opt.eps), float(opt.weight_decay), int(state.step),
        float(smoothing))
    state.step += stop - first
    return float(loss_sum), int(correct)


# ------------------------------------------------------ argument plumbing
# Normalising arguments keeps the number of compiled specializations small
# (one per dtype and depth) and turns contract violations into errors
# instead of silent writes to copies or out-of-bounds accesses.

_OPTIMIZERS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 3}


def _readonly(a, dtype):
    """A read-only C-contiguous view of ``a`` (a copy only if it is not already
    C-contiguous of ``dtype``): inputs are typed alike however they arrive."""
    a = np.ascontiguousarray(a, dtype=dtype).view()
    a.flags.writeable = False
    return a


def _int64(a):
    return _readonly(a, np.int64)


def _flat(a, written=False):
    """The flat view of a C-contiguous array; in-place ops need a view, not a copy."""
    if not a.flags.c_contiguous or (written and not a.flags.writeable):
        raise ValueError("numba backend: arrays written in place must be C-contiguous and writeable")
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


def _check_labels(y, K):
    if y.size and (y.min() < 0 or y.max() >= K):
        raise IndexError(f"labels must lie in [0, {K})")


def _slots(state, opt, W, b):
    """(S1W, S1b, S2W, S2b): the optimizer's slot lists as tuples (velocity as
    S1; m as S1 and v as S2); unused ones are W and b themselves, never written."""
    if opt.name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {opt.name!r}")
    slots = state.slots
    if opt.name == "momentum":
        S1W, S1b, S2W, S2b = slots["velocity_W"], slots["velocity_b"], W, b
    elif opt.name in ("adam", "adamw"):
        S1W, S1b, S2W, S2b = slots["m_W"], slots["m_b"], slots["v_W"], slots["v_b"]
    else:
        S1W, S1b, S2W, S2b = W, b, W, b
    result = []
    for slot, like in ((S1W, W), (S1b, b), (S2W, W), (S2b, b)):
        for a, p in zip(slot, like):
            _flat(a, written=True)
            if a.shape != p.shape or a.dtype != p.dtype:
                raise ValueError("numba backend: optimizer slots must match the parameters")
        result.append(tuple(slot))
    return result

"""The Numba backend: the compiled twin of kernels/numpy_backend.py. Same ops,
same names, arguments, in-place semantics and return values (the contract is
kernels/contract.py); read the reference for the equations, this file for how
they are made fast. Checked against the reference op by op in
tests/test_backends.py.

Shapes: n rows per batch, i/o a layer's input/output width, K = 10 classes.

How it is fast (784-128-64-10, float32, batch 128, 469 batches per epoch):
- Input sparsity. ~81% of MNIST pixels are exactly 0, and the first layer is
  ~90% of the FLOPs. Each row's nonzeros are gathered once (a vector
  compress, ``_gather_nonzeros``); the forward product adds only those rows
  of W (``_accumulate_rows``), and the weight gradient X.T @ dY visits only
  those entries, column by column (``_transpose_nonzeros``,
  ``_accumulate_columns``). ReLU outputs (~50% zero) and output gradients get
  the same treatment. The sums equal dense ones up to summation order
  (adding exact zeros changes nothing), except that a skipped 0 never meets
  an inf/NaN weight: 0 * inf is NaN in the reference but contributes
  nothing here. Weights are only non-finite after training has diverged,
  which the loss reports anyway.
- Two hand-written vector kernels (LLVM IR through Numba intrinsics) where
  Numba's loops fall short: the compress, and the multiply-add of up to
  eight rows into one with row pointers and factors held in registers and a
  masked last vector (so widths like 10 or 37 need no scalar tail).
- One compiled call per chunk of batches (``_train_chunk``): gather, forward,
  backward and optimizer update with buffers allocated once per call and
  the GIL released (nogil), so a GUI thread stays responsive.
- Two cores, deterministically. A batch is cut into SLICES = 2 fixed row
  ranges; each writes its own gradient buffer, and the buffers are added in
  slice order before the update. The cut depends on the batch size only,
  never on the thread count: results are bit-identical run to run and for
  any NUMBA_NUM_THREADS (with one thread the slices simply run in turn).
  Threads pay off only when the other core is free (then ~2x); when another
  process holds it, each of the two synchronisations per batch waits for a
  scheduler time slice (3-20x slower). ``_ThreadPolicy`` times the calls and
  uses whichever mode is faster, re-measuring the other now and then.
- Float32 stays float32: every Python scalar (lr, betas, eps, ...) is cast to
  the parameters' dtype inside the kernels (``p.dtype.type(x)``), exactly as
  NumPy's NEP 50 casts a Python float next to a float32 array.
- No fastmath at all. The products are explicit fused multiply-adds
  (llvm.fma) in the written order, so results do not depend on vector width
  or unrolling, and softmax keeps its inf/NaN semantics. The optimizer
  kernels do the reference's operations in its order without fusing, so they
  round exactly like its NumPy expressions and match it bit for bit.
- Compile time (a few seconds per function) is managed: training works on
  one flat parameter vector, so its kernels compile once per dtype for any
  depth; tiny helpers are inlined; one parallel function serves both phases;
  no slice assignment between arrays (its shape check compiles an error
  message, ~1.5 s a site). Every separately compiled function is optimized
  and turned into machine code again inside each caller (Numba links
  callees in), which is what the remaining ~15 s of a cold start pay for.
- cache=True everywhere, and every kernel that calls another lives in this
  module (Numba's cache does not notice edits to another file). Where no
  cache directory is writable, Numba falls back to another one; if none is
  usable the decorator compiles without caching (``_jit``).
"""

import contextlib
import math
import time

import numpy as np
from llvmlite import ir
from llvmlite.binding import llvm_version_info
import numba
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .augment_numba import augment  # noqa: F401  (the augment op: kernels/augment_numba.py)

name = "numba"

# The vector kernels below use llvm.experimental.vector.compress (LLVM 19+)
# and opaque-pointer intrinsic names: refuse older builds at import, which
# kernels/__init__.py turns into a one-line error, rather than at first call.
_LLVM = tuple(llvm_version_info)
if _LLVM < (19,):
    raise ImportError(f"the numba backend needs llvmlite built on LLVM >= 19, this one has "
                      f"LLVM {'.'.join(map(str, _LLVM))}; upgrade numba")

# A batch is cut into SLICES fixed row ranges, each with its own gradient
# buffer, added up in slice order: the slices may run on SLICES threads or
# one after the other, with the same bits. A constant, never the thread count.
SLICES = 2
# train_batches runs this many batches per call from fastmlp.train.run: enough
# to keep Python off the hot path, few enough to report progress and stop
# cleanly every ~0.05 s.
batches_per_call = 64
# forward() on at least this many rows (and more than one Numba thread) runs
# blocks of _ROW_BLOCK rows on all threads.
_PARALLEL_ROWS = 256
_ROW_BLOCK = 64
# Slack after every gather buffer: the vector compress stores whole vectors.
PAD = 16


def _jit(parallel=False, inline=False):
    """njit(cache=True, nogil=True), falling back to cache=False when Numba finds
    no usable cache directory (it raises RuntimeError at decoration then).
    error_model="numpy": x / 0 gives inf/NaN as in NumPy instead of raising.
    No fastmath: the only fused multiply-adds are the explicit ones below.
    inline: small helpers are inlined into their callers' Numba IR instead
    of being compiled on their own for every type combination (each separate
    compilation costs ~0.2 s; there would be dozens)."""
    def decorate(fn):
        options = dict(nogil=True, parallel=parallel, error_model="numpy",
                       inline="always" if inline else "never")
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:
            return njit(cache=False, **options)(fn)
    return decorate


# ------------------------------------------------------- building blocks
# Row kernels shared by the layer ops and the whole-network kernels.

# Two hand-written vector kernels (Numba intrinsics emitting LLVM IR), for
# what Numba's loops cannot express: a compress (keep the nonzero lanes of a
# vector, in order) and a multiply-add of eight rows into one that keeps the
# row pointers and factors in registers. Vectors are 64 bytes (16 float32 or
# 8 float64 lanes, one AVX-512 register); LLVM lowers them to plain code on
# CPUs without AVX-512, slower but the same results.

def _vector_type(context, dtype):
    elt = context.get_data_type(dtype)
    size = context.get_abi_sizeof(elt)
    return elt, size, ir.VectorType(elt, 64 // size)


def _splat(builder, value, vec):
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(i32, 0))
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, vec.count), [0] * vec.count))


@intrinsic
def _compress_nonzeros(typingctx, x, k, idx, val, c):
    """For the LANES values x[k:k+LANES]: write the positions and values of the
    nonzero ones, in order, to idx[c:], val[c:]; return c + their count.
    A full vector is stored, so idx and val need LANES slots past the count."""
    sig = types.intp(x, k, idx, val, c)

    def codegen(context, builder, signature, args):
        xty, kty, ity, vty, cty = signature.args
        xa = context.make_array(xty)(context, builder, args[0])
        ia = context.make_array(ity)(context, builder, args[2])
        va = context.make_array(vty)(context, builder, args[3])
        k = context.cast(builder, args[1], kty, types.intp)
        c = context.cast(builder, args[4], cty, types.intp)
        elt, size, vec = _vector_type(context, xty.dtype)
        lanes = vec.count
        i32 = ir.IntType(32)
        ivec = ir.VectorType(i32, lanes)
        mvec = ir.VectorType(ir.IntType(1), lanes)
        suffix = "f32" if size == 4 else "f64"
        xv = builder.load(builder.bitcast(builder.gep(xa.data, [k]), vec.as_pointer()), align=size)
        # "une": NaN counts as nonzero and -0.0 as zero, like x != 0
        mask = builder.fcmp_unordered("!=", xv, ir.Constant(vec, [0.0] * lanes))
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec, mvec, vec]),
            f"llvm.experimental.vector.compress.v{lanes}{suffix}")
        icompress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ivec, [ivec, mvec, ivec]),
            f"llvm.experimental.vector.compress.v{lanes}i32")
        packed = builder.call(compress, [xv, mask, ir.Constant(vec, ir.Undefined)])
        builder.store(packed, builder.bitcast(builder.gep(va.data, [c]), vec.as_pointer()),
                      align=size)
        positions = builder.add(_splat(builder, builder.trunc(k, i32), ivec),
                                ir.Constant(ivec, list(range(lanes))))
        ipacked = builder.call(icompress, [positions, mask, ir.Constant(ivec, ir.Undefined)])
        builder.store(ipacked, builder.bitcast(builder.gep(ia.data, [c]), ivec.as_pointer()),
                      align=4)
        bits = ir.IntType(lanes)
        popcount = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(bits, [bits]), f"llvm.ctpop.i{lanes}")
        count = builder.call(popcount, [builder.bitcast(mask, bits)])
        return builder.add(c, builder.zext(count, context.get_value_type(types.intp)))

    return sig, codegen


def _make_add_rows(R):
    @intrinsic
    def add_rows(typingctx, out, M, start, row_len, idx, val, t):
        """out += val[t] * M[idx[t]] + ... + val[t+R-1] * M[idx[t+R-1]], fused
        multiply-adds in that order, LANES outputs at a time; the last partial
        vector with masked loads and stores (lanes past the end untouched).
        Row k of M is M[k] for a 2-D M (start, row_len unused), and
        M[start + k*row_len:][:len(out)] for a flat M."""
        sig = types.none(out, M, start, row_len, idx, val, t)

        def codegen(context, builder, signature, args):
            oty, mty, sty, lty, ity, vty, tty = signature.args
            outa = context.make_array(oty)(context, builder, args[0])
            Ma = context.make_array(mty)(context, builder, args[1])
            ia = context.make_array(ity)(context, builder, args[4])
            va = context.make_array(vty)(context, builder, args[5])
            t = context.cast(builder, args[6], tty, types.intp)
            elt, size, vec = _vector_type(context, oty.dtype)
            lanes = vec.count
            intp = context.get_value_type(types.intp)
            i32 = ir.IntType(32)
            suffix = f"v{lanes}{'f32' if size == 4 else 'f64'}"
            o = cgutils.unpack_tuple(builder, outa.shape, 1)[0]
            base = builder.bitcast(Ma.data, ir.IntType(8).as_pointer())
            if mty.ndim == 2:
                row_bytes = cgutils.unpack_tuple(builder, Ma.strides, 2)[0]
            else:
                size_c = ir.Constant(intp, size)
                start = context.cast(builder, args[2], sty, types.intp)
                base = builder.gep(base, [builder.mul(start, size_c)])
                row_bytes = builder.mul(context.cast(builder, args[3], lty, types.intp), size_c)
            vptr = vec.as_pointer()
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.{suffix}")
            rows, factors = [], []
            for r in range(R):
                pos = builder.add(t, ir.Constant(intp, r))
                k = builder.sext(builder.load(builder.gep(ia.data, [pos])), intp)
                rows.append(builder.bitcast(builder.gep(base, [builder.mul(k, row_bytes)]),
                                            elt.as_pointer()))
                factors.append(_splat(builder, builder.load(builder.gep(va.data, [pos])), vec))
            full = builder.udiv(o, ir.Constant(intp, lanes))
            with cgutils.for_range(builder, full) as loop:
                j = builder.mul(loop.index, ir.Constant(intp, lanes))
                out_ptr = builder.bitcast(builder.gep(outa.data, [j]), vptr)
                acc = builder.load(out_ptr, align=size)
                for r in range(R):
                    m = builder.load(builder.bitcast(builder.gep(rows[r], [j]), vptr), align=size)
                    acc = builder.call(fma, [factors[r], m, acc])
                builder.store(acc, out_ptr, align=size)
            j = builder.mul(full, ir.Constant(intp, lanes))
            rest = builder.sub(o, j)
            with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(intp, 0))):
                ivec = ir.VectorType(i32, lanes)
                mask = builder.icmp_unsigned("<", ir.Constant(ivec, list(range(lanes))),
                                             _splat(builder, builder.trunc(rest, i32), ivec))
                align = ir.Constant(i32, size)
                load = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(vec, [vptr, i32, mask.type, vec]),
                    f"llvm.masked.load.{suffix}.p0")
                store = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [vec, vptr, i32, mask.type]),
                    f"llvm.masked.store.{suffix}.p0")
                zero = ir.Constant(vec, [0.0] * lanes)
                out_ptr = builder.bitcast(builder.gep(outa.data, [j]), vptr)
                acc = builder.call(load, [out_ptr, align, mask, zero])
                for r in range(R):
                    m = builder.call(load, [builder.bitcast(builder.gep(rows[r], [j]), vptr),
                                            align, mask, zero])
                    acc = builder.call(fma, [factors[r], m, acc])
                builder.call(store, [acc, out_ptr, align, mask])
            return context.get_dummy_value()

        return sig, codegen
    return add_rows


_add_rows1, _add_rows2, _add_rows3, _add_rows4, _add_rows5, _add_rows6, _add_rows7, _add_rows8 = (
    _make_add_rows(R) for R in range(1, 9))


@intrinsic
def _prefetch(typingctx, a, i):
    """Ask the CPU to start loading the cache line holding a[i] (1-D a)."""
    sig = types.none(a, i)

    def codegen(context, builder, signature, args):
        aa = context.make_array(signature.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(aa.data, [i]), ir.IntType(8).as_pointer())
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type] + [ir.IntType(32)] * 3),
            "llvm.prefetch.p0")
        i32 = ir.IntType(32)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@_jit()
def _gather_nonzeros(x, idx, val):
    """idx[:c], val[:c] = positions and values of the nonzeros of x, in order;
    returns c. x: (i,)  idx: (>= i + PAD,) int32  val: (>= i + PAD,) written
    (PAD slack for the vector stores)."""
    lanes = 64 // x.itemsize
    n = x.shape[0]
    c = 0
    k = 0
    while k + lanes <= n:
        c = _compress_nonzeros(x, k, idx, val, c)
        k += lanes
    while k < n:                 # the tail: store always, advance past nonzeros
        v = x[k]
        idx[c] = k
        val[c] = v
        c += v != 0
        k += 1
    return c


@_jit()
def _relu_gather(out, idx, val):
    """out = max(out, 0) in place (NaN stays NaN, like np.maximum), then gather
    the nonzeros of the result as _gather_nonzeros does; returns their count.
    out: (o,) written  idx: (>= o + PAD,) int32  val: (>= o + PAD,) written."""
    zero = out.dtype.type(0)
    for k in range(out.shape[0]):
        if out[k] < zero:
            out[k] = zero
    return _gather_nonzeros(out, idx, val)


@_jit(inline=True)
def _dropout_row(out, key, counter, threshold, scale):
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


@_jit()
def _accumulate_rows(out, M, start, row_len, idx, val, c):
    """out += sum_t val[t] * M[idx[t], :] for t < c, added in the order t = 0, 1, ...
    (a chain of fused multiply-adds per output, up to eight rows of M per pass).
    out: (o,)  M: (i, o), or flat with row k at M[start + k*row_len:][:o]
    idx: (>= c,) int32  val: (>= c,)."""
    t = 0
    while t + 8 <= c:
        _add_rows8(out, M, start, row_len, idx, val, t)
        t += 8
    rest = c - t
    if rest == 7:
        _add_rows7(out, M, start, row_len, idx, val, t)
    elif rest == 6:
        _add_rows6(out, M, start, row_len, idx, val, t)
    elif rest == 5:
        _add_rows5(out, M, start, row_len, idx, val, t)
    elif rest == 4:
        _add_rows4(out, M, start, row_len, idx, val, t)
    elif rest == 3:
        _add_rows3(out, M, start, row_len, idx, val, t)
    elif rest == 2:
        _add_rows2(out, M, start, row_len, idx, val, t)
    elif rest == 1:
        _add_rows1(out, M, start, row_len, idx, val, t)


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


@_jit()
def _accumulate_columns(dW, start, ri, rv, dY):
    """dW[k, :] = sum over p in start[k]:start[k+1] of rv[p] * dY[ri[p], :]
    (in order; 0 for an empty column): X.T @ dY with X given column-wise.
    dW: (K, o) written  start: (K+1,)  ri: int32  dY: (m * o,) row-major."""
    o = dW.shape[1]
    for k in range(dW.shape[0]):
        g = dW[k]
        for j in range(o):
            g[j] = 0
        p = start[k]
        _accumulate_rows(g, dY, 0, o, ri[p:], rv[p:], start[k + 1] - p)


@_jit(inline=True)
def _column_sums(dY, db):
    """db = sum over rows of dY (in row order). dY: (m, o)  db: (o,) written."""
    for j in range(db.shape[0]):
        db[j] = 0
    for r in range(dY.shape[0]):
        d = dY[r]
        for j in range(db.shape[0]):
            db[j] += d[j]


@_jit(inline=True)
def _copy(src, dst):
    """dst[:] = src for 1-D arrays of one length (a loop: slice assignment
    compiles a shape check with string formatting, ~1.5 s per call site)."""
    for k in range(dst.shape[0]):
        dst[k] = src[k]


@_jit(inline=True)
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


@_jit(inline=True)
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


@_jit(inline=True)
def _smoothed_targets(smoothing, K, dtype_of):
    """(t_off, t_on) in dtype_of's dtype: the reference's targets are
    full(smoothing / K) with 1 - smoothing added at the label."""
    dt = dtype_of.dtype.type
    return dt(smoothing / K), dt(1.0 - smoothing)


# ------------------------------------------------------------- layer ops

@_jit()
def _linear_forward(X, W, b, out, relu, idx, val):
    for r in range(X.shape[0]):
        c = _gather_nonzeros(X[r], idx, val)
        row = out[r]
        for j in range(row.shape[0]):
            row[j] = b[j]
        _accumulate_rows(row, W, 0, 0, idx, val, c)
        if relu:
            _relu_gather(row, idx, val)


def linear_forward(X, W, b, out, relu):
    """out = X @ W + b, then ReLU if ``relu``.
    X: (n, i)  W: (i, o)  b: (o,)  out: (n, o) written."""
    _flat(out, written=True)
    X, W, b = (_readonly(a, out.dtype) for a in (X, W, b))
    scratch = X.shape[1] + W.shape[1] + PAD
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
    _flat(probs, written=True), _flat(dlogits, written=True)
    return float(_softmax_cross_entropy(_readonly(logits, probs.dtype), _int64(y), probs, dlogits,
                                        float(smoothing)))


@_jit()
def _relu_backward(dA, A, dZ):
    dt = dZ.dtype.type
    for i in range(dZ.shape[0]):
        dZ[i] = dA[i] * dt(A[i] > 0)


def relu_backward(dA, A, dZ):
    """dZ = dA * relu'(Z), and relu'(Z) = (A > 0) since A = relu(Z).
    dA, A, dZ: (n, o); dZ written (may be dA itself)."""
    _flat(dZ, written=True)
    _relu_backward(_flat_input(dA), _flat_input(A), dZ.reshape(-1))
    return dZ


@_jit()
def _weight_gradients(X, dY, dW, db, nzi, nzv, nzc, start, ri, rv):
    for r in range(X.shape[0]):
        nzc[r] = _gather_nonzeros(X[r], nzi[r], nzv[r])
    _transpose_nonzeros(nzi, nzv, nzc, X.shape[0], X.shape[1], start, ri, rv)
    _accumulate_columns(dW, start, ri, rv, dY.reshape(-1))
    _column_sums(dY, db)


@_jit()
def _input_gradient(dY, WT, dX, idx, val):
    for r in range(dY.shape[0]):
        row = dX[r]
        for k in range(row.shape[0]):
            row[k] = 0
        c = _gather_nonzeros(dY[r], idx, val)
        _accumulate_rows(row, WT, 0, 0, idx, val, c)


def linear_backward(X, W, dY, dW, db, dX):
    """Gradients of Y = X @ W + b given dY = dL/dY:
    dW = X.T @ dY,  db = sum over rows of dY,  dX = dY @ W.T (skipped if None).
    X: (n, i)  W: (i, o)  dY: (n, o)  dW: (i, o)  db: (o,)  dX: (n, i)."""
    for a in (dW, db) + ((dX,) if dX is not None else ()):
        _flat(a, written=True)
    X, W, dY = (_readonly(a, dW.dtype) for a in (X, W, dY))
    n, i = X.shape
    o = W.shape[1]
    _weight_gradients(X, dY, dW, db, np.empty((n, i + PAD), np.int32),
                      np.empty((n, i + PAD), X.dtype), np.empty(n, np.int64),
                      np.empty(i + 1, np.int64), np.empty(n * i, np.int32),
                      np.empty(n * i, X.dtype))
    if dX is not None:
        WT = np.empty((o, i), W.dtype)
        _transpose(W, WT)
        _input_gradient(dY, WT, dX, np.empty(o + PAD, np.int32), np.empty(o + PAD, W.dtype))


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
    _sgd_span(p, _flat_input(grad), 0, p.size, float(lr), float(weight_decay))


def momentum_update(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    """Heavy-ball momentum (Nesterov's variant if ``nesterov``), in place:
    g = grad + wd * param;  velocity = momentum * velocity + g;
    param -= lr * (g + momentum * velocity  if nesterov else  velocity)."""
    p = _flat(param, written=True)
    _momentum_span(p, _flat_input(grad), _flat(velocity, written=True), 0, p.size, float(lr),
                   float(momentum), bool(nesterov), float(weight_decay))


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    """Adam with bias correction for update number ``step`` (1-based), in place.
    decoupled: AdamW's weight decay (shrink param directly) instead of L2."""
    p = _flat(param, written=True)
    _adam_span(p, _flat_input(grad), _flat(m, written=True), _flat(v, written=True), 0, p.size,
               float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
               int(step), bool(decoupled))


# ---------------------------------------------------------- whole network
# Training works on the parameters as one flat vector P: W[0] (row-major),
# b[0], W[1], b[1], ... (_param_offsets), with the gradient and the optimizer
# slots in the same layout. Kernels over (P, sizes) are the same for every
# depth, so they compile once per dtype; the wrappers pack the lists into P
# and unpack them after the call (~0.1 ms per call, a few per epoch).
#
# Scratch for a batch: every buffer is one flat array per slice, a layer's
# part a range of it (1-D slices cost nothing; reshapes in inner loops do):
#   act:      each layer's output, (n, o_l); the last is the logits
#   nzi, nzv: the nonzeros of each layer's input rows, (n, i_l + PAD); nzc (L, n)
#   grad:     the gradient, laid out like P
#   delta:    two (n, max width) buffers: dL/d(layer output), dL/d(layer input)
#   WT:       W[l].T for l >= 1 (dX = dY @ W.T as rows of W.T, like the forward)
#   start, ri, rv: one layer input's nonzeros column by column (CSC)
#   idx, val: one row's nonzeros; logp: one row's log-probabilities

@_jit(inline=True)
def _layout(sizes, n):
    """Where each layer's part starts in the scratch buffers of n rows, as
    (L+1,) int64 offsets (the last one the total): act (n, o_l), nzi/nzv
    (n, i_l + PAD), WT (o_l, i_l) per layer. (Plain loops: array expressions
    cost seconds of compile time.)"""
    L = sizes.shape[0] - 1
    aoff = np.zeros(L + 1, np.int64)
    zoff = np.zeros(L + 1, np.int64)
    toff = np.zeros(L + 1, np.int64)
    for l in range(L):
        aoff[l + 1] = aoff[l] + n * sizes[l + 1]
        zoff[l + 1] = zoff[l] + n * (sizes[l] + PAD)
        toff[l + 1] = toff[l] + sizes[l] * sizes[l + 1]
    return aoff, zoff, toff


@_jit(inline=True)
def _max_width(sizes):
    width = 0
    for w in sizes:
        width = max(width, w)
    return width


@_jit(inline=True)
def _param_offsets(sizes):
    """(woff, boff): where W[l] and b[l] start in P; woff[L] = len(P)."""
    L = sizes.shape[0] - 1
    woff = np.zeros(L + 1, np.int64)
    boff = np.zeros(L, np.int64)
    for l in range(L):
        boff[l] = woff[l] + sizes[l] * sizes[l + 1]
        woff[l + 1] = boff[l] + sizes[l + 1]
    return woff, boff


@_jit(inline=True)
def _row(buf, off, l, width, r):
    """Row r of layer l's (rows, width) part buf[off[l]:off[l+1]]."""
    start = off[l] + r * width
    return buf[start:start + width]


@_jit(inline=True)
def _slice_rows(n, s):
    """[lo, hi) of part s when n rows (or elements) are cut in SLICES fixed parts."""
    return (n * s) // SLICES, (n * (s + 1)) // SLICES


@_jit()
def _scratch(sizes, n, dtype_of):
    """(act, nzi, nzv, nzc, grad, delta, WT, start, ri, rv, idx, val, logp):
    scratch for batches of up to n rows, laid out as above, once per slice
    (a leading SLICES axis)."""
    L = sizes.shape[0] - 1
    dt = dtype_of.dtype
    width = _max_width(sizes)
    h = (n + SLICES - 1) // SLICES
    S = SLICES
    aoff, zoff, toff = _layout(sizes, h)
    return (np.empty((S, aoff[L]), dt),
            np.empty((S, zoff[L]), np.int32),
            np.empty((S, zoff[L]), dt),
            np.zeros((S, L, h), np.int64),
            np.empty((S, _param_offsets(sizes)[0][L]), dt),
            np.empty((S, 2, h * width), dt),
            np.empty((S, toff[L]), dt),
            np.empty((S, width + 1), np.int64),
            np.empty((S, h * width), np.int32),
            np.empty((S, h * width), dt),
            np.empty((S, width + PAD), np.int32),
            np.empty((S, width + PAD), dt),
            np.empty((S, sizes[L]), dt))


@_jit()
def _batch_forward_backward(P, sizes, X, y, rows, n_batch, t_off, t_on, drop, pos, act, nzi,
                            nzv, nzc, grad, delta, WT, start, ri, rv, idx, val, logp):
    """Forward and backward through the network P for the rows X[rows], part
    of a batch of n_batch rows (the loss is the batch mean: gradients scale by
    1 / n_batch). rows: (n,) int64; t_off, t_on: the smoothed targets
    (_smoothed_targets). drop = (threshold, scale, key): dropout on the hidden
    layers unless threshold is 0, rows[r] being at position pos + r of the
    epoch (the reference's dropout_factors); scale is float64, applied in X's
    dtype as the reference's cast factors are.
    Scratch: one slice's, laid out as above, for >= n rows.
    grad written (every entry): these rows' part of the gradient.
    Returns (sum over the rows of sum_k t_k log p_k; rows classified right)."""
    L = sizes.shape[0] - 1
    n = rows.shape[0]
    if n == 0:
        grad[:] = 0
        return 0.0, 0
    dt = X.dtype.type
    woff, boff = _param_offsets(sizes)
    aoff, zoff, toff = _layout(sizes, n)
    K = sizes[L]
    threshold, key = np.uint64(drop[0]), np.uint64(drop[2])
    scale = dt(drop[1]) if drop[0] > 0 else dt(1)   # relu_backward's factor for an active unit
    H = np.uint64(0)            # hidden units in all: a row's dropout counters
    for l in range(1, L):
        H += np.uint64(sizes[l])

    # forward, one row at a time through all layers (it stays in cache)
    tlogp = 0.0
    correct = 0
    dlogits = delta[0, :n * K].reshape((n, K))
    for r in range(n):
        row = rows[r]
        if r + 1 < n:           # rows come from anywhere in X: fetch the next one early
            ahead = X[rows[r + 1]]
            for k in range(0, ahead.shape[0], 64 // ahead.itemsize):
                _prefetch(ahead, k)
        nzc[0, r] = _gather_nonzeros(X[row], _row(nzi, zoff, 0, sizes[0] + PAD, r),
                                     _row(nzv, zoff, 0, sizes[0] + PAD, r))
        unit0 = np.uint64(0)    # this layer's first unit among the H hidden ones
        for l in range(L):
            out = _row(act, aoff, l, sizes[l + 1], r)
            _copy(P[boff[l]:woff[l + 1]], out)
            _accumulate_rows(out, P, woff[l], sizes[l + 1], _row(nzi, zoff, l, sizes[l] + PAD, r),
                             _row(nzv, zoff, l, sizes[l] + PAD, r), nzc[l, r])
            if l < L - 1:
                hidx = _row(nzi, zoff, l + 1, sizes[l + 1] + PAD, r)
                hval = _row(nzv, zoff, l + 1, sizes[l + 1] + PAD, r)
                nzc[l + 1, r] = _relu_gather(out, hidx, hval)
                if threshold > 0:   # then drop units and gather again
                    _dropout_row(out, key, np.uint64(pos + r) * H + unit0, threshold, scale)
                    nzc[l + 1, r] = _gather_nonzeros(out, hidx, hval)
                unit0 += np.uint64(sizes[l + 1])
        logits = _row(act, aoff, L - 1, K, r)
        tlogp += _softmax_xent_row(logits, y[row], logp, dlogits[r], t_off, t_on, dt(n_batch))
        correct += _argmax(logits) == y[row]

    # backward; delta[q] holds dL/d(output of layer l): (n, o_l)
    q = 0
    for l in range(L - 1, -1, -1):
        i, o = sizes[l], sizes[l + 1]
        dY = delta[q, :n * o].reshape((n, o))
        # dW = A.T @ dY over the nonzeros of A (the layer's input), column by column
        zi = nzi[zoff[l]:zoff[l + 1]].reshape((n, i + PAD))
        zv = nzv[zoff[l]:zoff[l + 1]].reshape((n, i + PAD))
        _transpose_nonzeros(zi, zv, nzc[l], n, i, start, ri, rv)
        _accumulate_columns(grad[woff[l]:boff[l]].reshape((i, o)), start, ri, rv,
                            delta[q, :n * o])
        _column_sums(dY, grad[boff[l]:woff[l + 1]])
        if l > 0:
            # dX = (dY @ W.T) * (A > 0): rows of W.T weighted by dY's nonzeros
            _transpose(P[woff[l]:boff[l]].reshape((i, o)), WT[toff[l]:toff[l + 1]].reshape((o, i)))
            A = act[aoff[l - 1]:aoff[l]].reshape((n, i))
            dX = delta[1 - q, :n * i].reshape((n, i))
            for r in range(n):
                dx = dX[r]
                dx[:] = 0
                _accumulate_rows(dx, WT, toff[l], i, idx, val, _gather_nonzeros(dY[r], idx, val))
                a = A[r]
                for k in range(i):   # relu_backward (times the dropout factor): A == 0 is inactive
                    dx[k] = dx[k] * (scale if a[k] > 0 else dt(0))
            q = 1 - q
    return tlogp, correct


@_jit(inline=True)
def _reduce_slices(grad, lo, hi):
    """grad[0, lo:hi] += grad[1, lo:hi] + ... in slice order (a fixed order)."""
    total = grad[0, lo:hi]
    for s in range(1, grad.shape[0]):
        part = grad[s, lo:hi]
        for i in range(total.shape[0]):
            total[i] += part[i]


@_jit(inline=True)
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
def _on_slices(phase, P, S1, S2, sizes, woff, boff, X, y, rows, t_off, t_on, drop, pos,
               scratch, tlogp, correct, hyper, step):
    """One phase of a training step, in SLICES fixed parts on up to SLICES
    threads (the current numba.get_num_threads(); with one the parts run in
    turn, to the same bits).
    phase 0: slice s of the batch X[rows] (rows cut by _slice_rows; rows[0]
      at position pos of the epoch, for dropout): its gradient into
      grad[s] = scratch[4][s], its loss terms and right answers into
      tlogp[s], correct[s].
    phase 1: part s (a fixed element range) of every tensor: add up the
      slices' gradients there, then update P (and the slots S1, S2) with
      hyper = (kind, lr, momentum, nesterov, beta1, beta2, eps, weight_decay)
      as update number step. Weight decay on W only.
    (One parallel function for both phases, its parts inline: every parallel
    function and every separately compiled caller of the batch kernel costs
    seconds of compile time.)"""
    act, nzi, nzv, nzc, grad, delta, WT, start, ri, rv, idx, val, logp = scratch
    kind, lr, momentum, nesterov, beta1, beta2, eps, weight_decay = hyper
    for s in prange(SLICES):
        if phase == 0:
            lo, hi = _slice_rows(rows.shape[0], s)
            tlogp[s], correct[s] = _batch_forward_backward(
                P, sizes, X, y, rows[lo:hi], rows.shape[0], t_off, t_on, drop, pos + lo, act[s],
                nzi[s], nzv[s], nzc[s], grad[s], delta[s], WT[s], start[s], ri[s], rv[s], idx[s],
                val[s], logp[s])
        else:
            for l in range(sizes.shape[0] - 1):
                for first, end, wd in ((woff[l], boff[l], weight_decay),
                                       (boff[l], woff[l + 1], 0.0)):
                    lo, hi = _slice_rows(end - first, s)
                    _reduce_slices(grad, first + lo, first + hi)
                    _update_span(P, grad[0], S1, S2, first + lo, first + hi, kind, lr, momentum,
                                 nesterov, beta1, beta2, eps, wd, step)


@_jit()
def _train_chunk(P, S1, S2, sizes, X, y, order, batch_size, first, stop, lrs, kind, momentum,
                 nesterov, beta1, beta2, eps, weight_decay, step0, smoothing, drop, scratch):
    """Batches first..stop-1: batch j is X[order[j*batch_size:(j+1)*batch_size]],
    then the update with lrs[j - first], as update number step0 + j - first + 1.
    drop: _dropout_args (threshold 0: none).
    scratch: _scratch(sizes, min(batch_size, len(order)), X).
    P, S1, S2 written. Returns (loss_sum over rows, float64; rows right)."""
    N = order.shape[0]
    t_off, t_on = _smoothed_targets(smoothing, sizes[sizes.shape[0] - 1], X)
    woff, boff = _param_offsets(sizes)
    tlogp = np.zeros(SLICES)
    correct = np.zeros(SLICES, np.int64)
    loss_sum = 0.0
    right = 0
    for j in range(first, stop):
        rows = order[j * batch_size:min((j + 1) * batch_size, N)]
        hyper = (kind, lrs[j - first], momentum, nesterov, beta1, beta2, eps, weight_decay)
        for phase in range(2):  # the gradient, then the update
            _on_slices(phase, P, S1, S2, sizes, woff, boff, X, y, rows, t_off, t_on, drop,
                       j * batch_size, scratch, tlogp, correct, hyper, step0 + j - first + 1)
        for s in range(SLICES):
            loss_sum -= tlogp[s]
            right += correct[s]
    return loss_sum, right


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
def _forward_rows(Ws, bs, X, probs, lo, hi):
    """probs[r] = softmax of the network at X[r] for lo <= r < hi, row by row,
    with the reference's softmax: exp(z - max z) / sum."""
    sizes = _layer_sizes(Ws)
    L = sizes.shape[0] - 1
    aoff = _layout(sizes, 1)[0]
    width = _max_width(sizes)
    act = np.empty(aoff[L], X.dtype)
    idx = np.empty(width + PAD, np.int32)
    val = np.empty(width + PAD, X.dtype)
    for r in range(lo, hi):
        c = _gather_nonzeros(X[r], idx, val)
        for l in range(L):
            out = act[aoff[l]:aoff[l + 1]]
            _copy(bs[l], out)
            _accumulate_rows(out, Ws[l], 0, 0, idx, val, c)
            if l < L - 1:
                c = _relu_gather(out, idx, val)
        z = act[aoff[L - 1]:aoff[L]]
        p = probs[r]
        zmax = z[0]
        for k in range(1, z.shape[0]):
            if z[k] > zmax or z[k] != z[k]:
                zmax = z[k]
        total = X.dtype.type(0)
        for k in range(z.shape[0]):
            p[k] = np.exp(z[k] - zmax)
            total += p[k]
        for k in range(z.shape[0]):
            p[k] = p[k] / total


@_jit(parallel=True)
def _forward_parallel(Ws, bs, X, probs):
    """_forward_rows on blocks of _ROW_BLOCK rows, on all threads. Each row is
    computed alone, so the results do not depend on who computes which block."""
    n = X.shape[0]
    for block in prange((n + _ROW_BLOCK - 1) // _ROW_BLOCK):
        _forward_rows(Ws, bs, X, probs, block * _ROW_BLOCK, min((block + 1) * _ROW_BLOCK, n))


def forward(W, b, X):
    """probs: (n, K) = softmax of the network's logits for X: (n, i_0)."""
    Ws, bs = _params(W, b)
    X = _readonly(X, Ws[0].dtype)
    probs = np.empty((X.shape[0], Ws[-1].shape[1]), X.dtype)
    if X.shape[0] >= _PARALLEL_ROWS and numba.get_num_threads() > 1:
        # Blocks handed out one at a time: a thread that gets no CPU (another
        # process busy on that core) leaves its share to the others.
        with numba.parallel_chunksize(1):
            _forward_parallel(Ws, bs, X, probs)
    else:
        _forward_rows(Ws, bs, X, probs, 0, X.shape[0])
    return probs


def forward_backward(W, b, X, y, dW, db, smoothing=0.0, dropout=None):
    """Backpropagation for one batch (Nielsen's equations, rows as samples):
        forward:   A[0] = X,  A[l+1] = relu(A[l] @ W[l] + b[l]),  last layer no ReLU
        output:    delta = dL/dlogits = (softmax - targets) / n
        backward:  dW[l] = A[l].T @ delta,  db[l] = sum_rows delta,
                   delta = (delta @ W[l].T) * (A[l] > 0)
    With dropout = (rate, key, first): each hidden A[l+1] is multiplied by its
    dropout factors F (dropout_factors, rows at positions first, first+1, ...)
    and the backward pass by the same F: delta = (delta @ W[l].T) * F * (A[l] > 0).
    X: (n, i_0)  y: (n,) int64. dW, db written. Returns (loss, correct)."""
    Ws, bs = _params(W, b)
    dWs, dbs = _params(dW, db)
    X = _readonly(X, Ws[0].dtype)
    y = _int64(y)
    _check_labels(y, Ws[-1].shape[1])
    n = X.shape[0]
    P, sizes = _pack(Ws, bs), _sizes(Ws)
    scratch = _scratch(sizes, n, X)
    dt = X.dtype.type   # the targets as _smoothed_targets makes them
    t_off, t_on = dt(float(smoothing) / Ws[-1].shape[1]), dt(1.0 - float(smoothing))
    tlogp, correct = np.zeros(SLICES), np.zeros(SLICES, np.int64)
    with _threads(1):  # one batch: not worth two threads' synchronisation
        _on_slices(0, P, P, P, sizes, *_param_offsets(sizes), X, y, _int64(np.arange(n)), t_off,
                   t_on, _dropout_args(dropout), 0 if dropout is None else int(dropout[2]),
                   scratch, tlogp, correct, (0, 0.0, 0.0, False, 0.0, 0.0, 0.0, 0.0), 0)
    parts = scratch[4]
    grad = parts[0]
    for part in parts[1:]:  # slice order, as in training
        grad += part
    tlogp, correct = tlogp.sum(), correct.sum()
    _unpack(grad, dWs, dbs)
    return -float(tlogp) / n, int(correct)


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
            _update_span(p, _flat_input(grad), _flat(s1, written=True), _flat(s2, written=True), 0,
                         p.size, kind, float(lr), float(opt.momentum), bool(opt.nesterov),
                         float(opt.beta1), float(opt.beta2), float(opt.eps), float(wd),
                         state.step)


def train_batches(W, b, state, X, y, order, batch_size, first, stop, lrs, opt,
                  smoothing=0.0, dropout=None):
    """Train on batches first..stop-1 of the epoch whose row order is ``order``.
    dropout: None or (rate, key), the row at position p of ``order`` getting
    the dropout_factors of p. Returns (loss_sum, correct): loss summed per
    row, rows classified right.
    The chunk runs in compiled calls that release the GIL; W, b and the
    optimizer slots are packed into flat vectors for it and written back after."""
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
    if len(y) != len(X) or (used.size and (used.min() < 0 or used.max() >= len(X))):
        raise IndexError("order refers to rows outside X, y")
    _check_labels(y, Ws[-1].shape[1])
    S1W, S1b, S2W, S2b = _slots(state, opt, W, b)
    P = _pack(Ws, bs)
    S1 = _pack(S1W, S1b) if opt.name != "sgd" else P
    S2 = _pack(S2W, S2b) if opt.name in ("adam", "adamw") else P
    sizes = _sizes(Ws)
    hyper = (_OPTIMIZERS[opt.name], float(opt.momentum), bool(opt.nesterov), float(opt.beta1),
             float(opt.beta2), float(opt.eps), float(opt.weight_decay))
    scratch = _scratch(sizes, min(batch_size, len(order)), X)
    loss_sum, correct = 0.0, 0
    for lo, hi, threads in _THREADS.segments(first, stop):
        start = time.perf_counter()
        with _threads(SLICES if threads else 1):
            part_loss, part_correct = _train_chunk(
                P, S1, S2, sizes, X, y, order, batch_size, lo, hi, lrs[lo - first:], *hyper,
                int(state.step) + lo - first, float(smoothing), _dropout_args(dropout), scratch)
        _THREADS.record(threads, (time.perf_counter() - start) / (hi - lo))
        loss_sum += part_loss
        correct += part_correct
    _unpack(P, Ws, bs)
    if S1 is not P:
        _unpack(S1, S1W, S1b)
    if S2 is not P:
        _unpack(S2, S2W, S2b)
    state.step += stop - first
    return float(loss_sum), int(correct)


@contextlib.contextmanager
def _threads(n):
    """Parallel regions started by this thread use at most n threads."""
    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


class _ThreadPolicy:
    """Whether train_batches runs a batch's slices on SLICES threads or one.
    The results are the same bits either way; only the speed differs, and
    not always in favour of threads: two threads synchronise twice per batch,
    and when another process holds the other core each synchronisation waits
    for a scheduler time slice (measured: an epoch 3-40x slower than on one
    thread). So the batches run in timed segments, each in the mode that is
    faster per batch, judged by the best of its last RECENT segments
    (contention only ever slows a segment down, so the best is the honest
    figure and one unlucky segment does not flip the choice). Threaded
    segments are SEGMENT batches long, so a core lost to another process
    for good is noticed within RECENT * SEGMENT batches. The mode not in use
    is re-measured on PROBE batches every `interval` calls; the interval
    doubles (up to MAX_INTERVAL) each time the probe loses, so a busy machine
    pays for few slow probes."""

    SEGMENT = 8
    RECENT = 3
    PROBE = 4
    MIN_INTERVAL, MAX_INTERVAL = 4, 32

    def __init__(self):
        self.recent = {True: [], False: []}   # seconds per batch, newest last
        self.calls = 0
        self.interval = self.MIN_INTERVAL

    @staticmethod
    def available():
        return numba.get_num_threads() >= 2

    def seconds_per_batch(self, threads):
        return min(self.recent[threads]) if self.recent[threads] else None

    def preferred(self):
        if not self.available():
            return False
        threaded, single = self.seconds_per_batch(True), self.seconds_per_batch(False)
        return threaded is None or single is None or threaded < single

    def segments(self, first, stop):
        """Yield (lo, hi, threads) covering batches first..stop-1; the caller
        reports each segment's time with record() before taking the next."""
        self.calls += 1
        lo = first
        if self.available() and self.calls % self.interval == 1:
            best = self.preferred()
            hi = min(stop, lo + self.PROBE)
            yield lo, hi, not best
            self.interval = (self.MIN_INTERVAL if self.preferred() != best
                             else min(2 * self.interval, self.MAX_INTERVAL))
            lo = hi
        while lo < stop:
            threads = self.preferred()
            hi = min(stop, lo + self.SEGMENT) if threads else stop
            yield lo, hi, threads
            lo = hi

    def record(self, threads, seconds_per_batch):
        self.recent[threads] = (self.recent[threads] + [seconds_per_batch])[-self.RECENT:]


_THREADS = _ThreadPolicy()


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


def _sizes(Ws):
    """(L+1,) int64: the layer widths (i_0, o_0, ..., o_{L-1})."""
    return np.array([Ws[0].shape[0]] + [w.shape[1] for w in Ws], np.int64)


def _pack(Ws, bs):
    """One flat vector W[0], b[0], W[1], b[1], ... (the layout of P)."""
    return np.concatenate([a.reshape(-1) for pair in zip(Ws, bs) for a in pair])


def _unpack(flat, Ws, bs):
    """Copy a flat vector laid out like P back into the arrays Ws, bs."""
    offset = 0
    for pair in zip(Ws, bs):
        for a in pair:
            a.reshape(-1)[:] = flat[offset:offset + a.size]
            offset += a.size


def _dropout_args(dropout):
    """(threshold, scale, key) for the kernels from dropout = (rate, key, ...)
    or None: threshold = round(rate * 2^24) (0: no dropout), scale =
    1 / (1 - rate) in float64, as the reference's dropout_factors computes them."""
    if dropout is None or not dropout[0] > 0:
        return (0, 1.0, 0)
    rate, key = float(dropout[0]), int(dropout[1])
    return (int(round(rate * 2**24)), 1.0 / (1.0 - rate), key)


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

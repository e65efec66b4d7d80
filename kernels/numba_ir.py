"""All the hand-written LLVM IR of the Numba backend.

The register-tiled GEMM micro-kernel, the one kernel Numba's own loops cannot express well (its
accumulators must live in registers across the whole k loop), the
atomic operations the threads' barrier is made of (kernels/numba_sync.py),
a prefetch for writing that Numba has no expression for (the training
worker's update, kernels/numba_train.py ``claim_piece``), and ``borrow`` /
``borrow_block``, views without the reference count Numba gives every view.

bench/test_bench_tiles.py times it against its plain-Numba twin
(kernels/numba_tiles.py ``tile_plain``) after checking both against NumPy;
it is kept because it wins there (the figures are in bench/README.md).

The tile: C[c0 + q, j0 + j] = bias[j0 + j] + sum_t Ap[t*MR + q] * Bs[ks[t], j]
for q < nrows (<= MR), j < NR = NV vectors (masked past C's last column),
t < count, added in the order t = 0, 1, ... as fused multiply-adds. It is the
inner block of every product of the backend: X @ W (ks: the pixels where one
of the MR images is nonzero), X.T @ dY (ks: the images where one of MR pixels
is nonzero) and dY @ W.T, so dense and sparse layers share one kernel.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .numba_target import vector_bytes

# Vector registers of the CPU the kernels are compiled for (numba_target.py):
# 64 bytes with AVX-512, else 32 (AVX2). Numba's cache is keyed by that CPU.
VECTOR_BYTES = vector_bytes()
# Rows per tile and vectors per row: MR * NV accumulators plus NV loads and a
# broadcast must fit the register file (16 registers with AVX2, 32 with AVX-512).
MR = 8 if VECTOR_BYTES == 64 else 4
NV = 2
# Bytes of a cache line (x86): the stride of prefetch_for_write.
CACHE_LINE = 64


def lanes(itemsize: int) -> int:
    """Elements per vector register for an element of ``itemsize`` bytes."""
    return VECTOR_BYTES // itemsize


def _call(builder, name, ret, values):
    """Call the LLVM function (an intrinsic, or a libc symbol) ``name``
    returning ``ret``, declaring it in the module on first use."""
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ret, [v.type for v in values]), name)
    return builder.call(fn, values)


def _splat(builder, value, vec):
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(i32, 0))
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, vec.count), [0] * vec.count))


class _Tile:
    """The IR of one tile call; its methods emit the phases of the codegen.
    ``names`` name the call's arguments (the two tiles differ only in where
    the a values come from: a packed panel Ap, or A's rows in place)."""

    def __init__(self, context, builder, sig, args, names):
        self.ctx, self.b = context, builder
        arg = dict(zip(names, zip(sig.args, args)))
        arr = lambda name: context.make_array(arg[name][0])(context, builder, arg[name][1])  # noqa: E731
        intp = context.get_value_type(types.intp)
        self.intp = intp
        cast = lambda name, ty=types.intp: context.cast(builder, arg[name][1], arg[name][0], ty)  # noqa: E731
        self.B, self.ks, self.C, self.bias = arr("Bs"), arr("ks"), arr("C"), arr("bias")
        self.count, self.c0, self.nrows, self.j0 = (cast(n) for n in ("count", "c0", "nrows", "j0"))
        self.relu, self.accumulate = cast("relu", types.boolean), cast("accumulate", types.boolean)
        self.elt = context.get_data_type(arg["C"][0].dtype)
        self.size = context.get_abi_sizeof(self.elt)
        self.vec = ir.VectorType(self.elt, VECTOR_BYTES // self.size)
        self.L = self.vec.count
        if "Ap" in arg:
            self.ap = arr("Ap")
        else:
            self.a_rows = self._source_rows(arr("A"), arr("rows"))
        suffix = f"v{self.L}{'f32' if self.size == 4 else 'f64'}"
        vptr = self.vec.as_pointer()
        i32 = ir.IntType(32)
        self.mask_ty = ir.VectorType(ir.IntType(1), self.L)
        fn = lambda ret, argtys, name: cgutils.get_or_insert_function(  # noqa: E731
            builder.module, ir.FunctionType(ret, argtys), name)
        self.fma = fn(self.vec, [self.vec] * 3, f"llvm.fma.{suffix}")
        self.mload = fn(self.vec, [vptr, i32, self.mask_ty, self.vec], f"llvm.masked.load.{suffix}.p0")
        self.mstore = fn(ir.VoidType(), [self.vec, vptr, i32, self.mask_ty],
                         f"llvm.masked.store.{suffix}.p0")
        self.zero = ir.Constant(self.vec, [0.0] * self.L)
        self.o = cgutils.unpack_tuple(builder, self.C.shape, 2)[1]

    def _source_rows(self, A, rows):
        """Pointers to the start of A[rows[c0 + q]] for q < MR; the rows past
        nrows point at row c0's (their sums are computed and never stored)."""
        b = self.b
        pointers = []
        for q in range(MR):
            r = b.select(b.icmp_signed("<", self.const(q), self.nrows),
                         b.add(self.c0, self.const(q)), self.c0)
            source = b.load(b.gep(rows.data, [r]))
            pointers.append(self.row_ptr(A, source, self.const(0)))
        return pointers

    def a_value(self, q, t, k):
        """Row q's a at step t (inner index k): the panel's Ap[t*MR + q], or A[rows[c0 + q], k]."""
        b = self.b
        if hasattr(self, "ap"):
            return b.load(b.gep(self.ap.data, [b.add(b.mul(t, self.const(MR)), self.const(q))]))
        return b.load(b.gep(self.a_rows[q], [k]))

    def const(self, v):
        return ir.Constant(self.intp, v)

    def masks(self):
        """One lane mask per vector: lane j of vector v is column j0 + v*L + j < o."""
        b, i32 = self.b, ir.IntType(32)
        ivec = ir.VectorType(i32, self.L)
        left = b.trunc(b.sub(self.o, self.j0), i32)
        return [b.icmp_signed("<", ir.Constant(ivec, [v * self.L + j for j in range(self.L)]),
                              _splat(b, left, ivec)) for v in range(NV)]

    def load(self, ptr, mask):
        ptr = self.b.bitcast(ptr, self.vec.as_pointer())
        if mask is None:
            return self.b.load(ptr, align=self.size)
        return self.b.call(self.mload, [ptr, ir.Constant(ir.IntType(32), self.size), mask, self.zero])

    def store(self, value, ptr, mask):
        ptr = self.b.bitcast(ptr, self.vec.as_pointer())
        if mask is None:
            self.b.store(value, ptr, align=self.size)
        else:
            self.b.call(self.mstore, [value, ptr, ir.Constant(ir.IntType(32), self.size), mask])

    def row_ptr(self, array, row, column=None):
        """Pointer to array[row, column (default j0)] of a 2-D C-contiguous array."""
        b = self.b
        stride = cgutils.unpack_tuple(b, array.strides, 2)[0]
        base = b.gep(b.bitcast(array.data, ir.IntType(8).as_pointer()), [b.mul(row, stride)])
        return b.gep(b.bitcast(base, self.elt.as_pointer()), [self.j0 if column is None else column])

    def emit(self, masks):
        """The whole tile with the given lane masks (None: full vectors)."""
        b = self.b
        bias_ptr = b.gep(self.bias.data, [self.j0])
        bias = [self.load(b.gep(bias_ptr, [self.const(v * self.L)]), masks[v]) for v in range(NV)]
        start = [self.start_row(q, bias, masks) for q in range(MR)]
        acc = self.k_loop(start, masks)
        self.write(acc, masks)

    def start_row(self, q, bias, masks):
        """Row q's starting sums: C's own row when accumulating (q < nrows), else the bias."""
        b = self.b
        use_c = b.and_(self.accumulate, b.icmp_signed("<", self.const(q), self.nrows))
        entry = b.block
        with b.if_then(use_c):
            cptr = self.row_ptr(self.C, b.add(self.c0, self.const(q)))
            loaded = [self.load(b.gep(cptr, [self.const(v * self.L)]), masks[v]) for v in range(NV)]
            then_block = b.block
        start = []
        for v in range(NV):
            phi = b.phi(self.vec)
            phi.add_incoming(bias[v], entry)
            phi.add_incoming(loaded[v], then_block)
            start.append(phi)
        return start

    def k_loop(self, acc, masks):
        """acc[q][v] += Ap[t*MR + q] * B[ks[t], v-th vector] for t < count."""
        b = self.b
        entry = b.block
        loop, body, done = (b.append_basic_block(n) for n in ("k.loop", "k.body", "k.done"))
        b.branch(loop)
        b.position_at_end(loop)
        t = b.phi(self.intp)
        t.add_incoming(self.const(0), entry)
        phis = [[b.phi(self.vec) for _ in range(NV)] for _ in range(MR)]
        for q in range(MR):
            for v in range(NV):
                phis[q][v].add_incoming(acc[q][v], entry)
        b.cbranch(b.icmp_signed("<", t, self.count), body, done)
        b.position_at_end(body)
        k = b.sext(b.load(b.gep(self.ks.data, [t])), self.intp)
        brow = self.row_ptr(self.B, k, self.const(0))
        rows = [self.load(b.gep(brow, [self.const(v * self.L)]), None) for v in range(NV)]
        new = []
        for q in range(MR):
            a = _splat(b, self.a_value(q, t, k), self.vec)
            new.append([b.call(self.fma, [a, rows[v], phis[q][v]]) for v in range(NV)])
        t_next = b.add(t, self.const(1))
        b.branch(loop)
        t.add_incoming(t_next, b.block)
        for q in range(MR):
            for v in range(NV):
                phis[q][v].add_incoming(new[q][v], b.block)
        b.position_at_end(done)
        return phis

    def write(self, acc, masks):
        """C rows c0 .. c0 + nrows - 1 = acc (after ReLU if asked)."""
        b = self.b
        for q in range(MR):
            with b.if_then(b.icmp_signed("<", self.const(q), self.nrows)):
                cptr = self.row_ptr(self.C, b.add(self.c0, self.const(q)))
                for v in range(NV):
                    value = acc[q][v]
                    negative = b.fcmp_ordered("<", value, self.zero)
                    clipped = b.select(negative, self.zero, value)
                    value = b.select(self.relu, clipped, value)
                    self.store(value, b.gep(cptr, [self.const(v * self.L)]), masks[v])


def _tile_codegen(names):
    """The codegen of a tile intrinsic whose arguments are ``names``: full
    vectors where the strip's NR columns are all inside C, else lane masks."""
    def codegen(context, builder, signature, args):
        tile = _Tile(context, builder, signature, args, names)
        full = builder.icmp_signed("<=", builder.add(tile.j0, tile.const(NV * tile.L)), tile.o)
        with builder.if_else(full) as (then, other):
            with then:
                tile.emit([None] * NV)
            with other:
                tile.emit(tile.masks())
        return context.get_dummy_value()
    return codegen


@intrinsic
def tile_fma(typingctx, Ap, count, Bs, ks, C, c0, nrows, j0, bias, relu, accumulate):
    """C[c0 + q, j0:j0 + NR] = S + sum_t Ap[t*MR + q] * Bs[ks[t], :NR],
    then max(., 0) if relu; for q < nrows, columns past
    C.shape[1] untouched. S is C's own row if accumulate (a later block of k),
    else bias[j0:j0 + NR] (a zero row where there is none). Ap: (>= count*MR,)
    Bs: (K, NR) C-contiguous, a packed strip
    ks: (>= count,) int32  C: (rows, o) C-contiguous  bias: (>= o,)."""
    sig = types.none(Ap, count, Bs, ks, C, c0, nrows, j0, bias, relu, accumulate)
    return sig, _tile_codegen(("Ap", "count", "Bs", "ks", "C", "c0", "nrows", "j0", "bias",
                               "relu", "accumulate"))


@intrinsic
def tile_rows_fma(typingctx, A, rows, count, Bs, ks, C, c0, nrows, j0, bias, relu, accumulate):
    """tile_fma with the a values read from A's rows in place instead of a
    packed panel: C[c0 + q, j0:j0 + NR] = S + sum_t A[rows[c0 + q], ks[t]] *
    Bs[ks[t], :NR], the same sums in the same order (so the same bits).
    Reading in place costs the same loads per step as the panel (MR
    broadcasts) and saves the copy into it, which cost as much as the
    products on a dense layer (bench/README.md). A: (N, K) C-contiguous
    rows: (>= c0 + nrows,) int64, the rest as tile_fma."""
    sig = types.none(A, rows, count, Bs, ks, C, c0, nrows, j0, bias, relu, accumulate)
    return sig, _tile_codegen(("A", "rows", "count", "Bs", "ks", "C", "c0", "nrows", "j0",
                               "bias", "relu", "accumulate"))


@intrinsic
def move_group(typingctx, A, row, c0, Ap, g, c):
    """Ap[g, c*MR : (c+1)*MR] = A[row, c0 : c0 + MR] as one vector load and
    store; returns whether any of the MR values is nonzero (NaN counts, -0.0
    does not, like v != 0). The inner step of numba_tiles.pack_cols.
    A: (N, K) with c0 + MR <= K  Ap: (groups, >= (c+1)*MR), both C-contiguous."""
    sig = types.boolean(A, row, c0, Ap, g, c)

    def codegen(context, builder, signature, args):
        aty, _, _, apty, _, _ = signature.args
        src, dst = (context.make_array(t)(context, builder, v)
                    for t, v in ((aty, args[0]), (apty, args[3])))
        row, c0, g, c = (context.cast(builder, args[i], signature.args[i], types.intp)
                         for i in (1, 2, 4, 5))
        elt = context.get_data_type(aty.dtype)
        size = context.get_abi_sizeof(elt)
        vec = ir.VectorType(elt, MR)
        intp = context.get_value_type(types.intp)

        def element(array, i, j):
            stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]
            base = builder.gep(builder.bitcast(array.data, ir.IntType(8).as_pointer()),
                               [builder.mul(i, stride)])
            return builder.bitcast(builder.gep(builder.bitcast(base, elt.as_pointer()), [j]),
                                   vec.as_pointer())

        values = builder.load(element(src, row, c0), align=size)
        builder.store(values, element(dst, g, builder.mul(c, ir.Constant(intp, MR))), align=size)
        nonzero = builder.fcmp_unordered("!=", values, ir.Constant(vec, [0.0] * MR))
        bits = builder.bitcast(nonzero, ir.IntType(MR))
        return builder.icmp_unsigned("!=", bits, ir.Constant(ir.IntType(MR), 0))

    return sig, codegen


@intrinsic
def borrow(typingctx, A, i):
    """A[i] as a view with no reference count: an (N-1)-D C-contiguous view
    of row i of A (N-D C-contiguous, N >= 2; i not checked, as A[i] is not).
    Numba's own A[i] increments A's reference count and decrements it when the
    view dies, two atomic operations through a call: ~19 ns a view (row_bits
    over 256 rows of 64 values: 22 ns a row with A[i], 3 ns borrowed), and on
    two threads both cores write the same count (every thread views P and the
    batch's buffers). The view owns nothing, so A must outlive it: use it as a
    call's argument, never store or return it."""
    if not isinstance(A, types.Array) or A.ndim < 2 or A.layout != "C":
        return None
    sig = A.copy(ndim=A.ndim - 1, layout="C")(A, i)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        view = context.make_array(signature.return_type)(context, builder)
        nd = signature.args[0].ndim
        shape = cgutils.unpack_tuple(builder, arr.shape, nd)
        strides = cgutils.unpack_tuple(builder, arr.strides, nd)
        row = context.cast(builder, args[1], signature.args[1], types.intp)
        start = builder.gep(builder.bitcast(arr.data, ir.IntType(8).as_pointer()),
                            [builder.mul(row, strides[0])])
        context.populate_array(view, data=builder.bitcast(start, arr.data.type),
                               shape=shape[1:], strides=strides[1:], itemsize=arr.itemsize,
                               meminfo=None, parent=None)
        return view._getvalue()

    return sig, codegen


@intrinsic
def borrow_block(typingctx, a, start, shape):
    """a[start:start + prod(shape)].reshape(shape) with no reference count:
    a C-contiguous view of a block of the 1-D C-contiguous array a (not
    checked, as a slice is not). Numba's slice and reshape each make a
    counted view; the training worker takes a dozen such blocks of P, G and
    the batch's buffers per piece of work, on every thread. The same rule as
    ``borrow``: a must outlive the view."""
    if (not isinstance(a, types.Array) or a.ndim != 1 or a.layout != "C"
            or not isinstance(shape, types.UniTuple)):
        return None
    sig = a.copy(ndim=shape.count, layout="C")(a, start, shape)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        view = context.make_array(signature.return_type)(context, builder)
        start = context.cast(builder, args[1], signature.args[1], types.intp)
        dims = [context.cast(builder, d, signature.args[2].dtype, types.intp)
                for d in cgutils.unpack_tuple(builder, args[2], signature.args[2].count)]
        strides, step = [], arr.itemsize
        for d in reversed(dims):
            strides.insert(0, step)
            step = builder.mul(step, d)
        context.populate_array(view, data=builder.gep(arr.data, [start]), shape=dims,
                               strides=strides, itemsize=arr.itemsize, meminfo=None, parent=None)
        return view._getvalue()

    return sig, codegen


@intrinsic
def nonzero_bits(typingctx, x, k):
    """A uint64 whose bit j says x[k + j] != 0, for j < 64 (NaN counts, -0.0
    does not): 64 compares in a few vector instructions. x: (>= k + 64,)."""
    sig = types.uint64(x, k)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        k = context.cast(builder, args[1], signature.args[1], types.intp)
        elt = context.get_data_type(signature.args[0].dtype)
        vec = ir.VectorType(elt, 64)
        values = builder.load(builder.bitcast(builder.gep(arr.data, [k]), vec.as_pointer()),
                              align=context.get_abi_sizeof(elt))
        nonzero = builder.fcmp_unordered("!=", values, ir.Constant(vec, [0.0] * 64))
        return builder.bitcast(nonzero, ir.IntType(64))

    return sig, codegen


@intrinsic
def lowest_bit(typingctx, word):
    """The index of the lowest set bit of a nonzero 64-bit word (int64 or
    uint64): count trailing zeros, one instruction."""
    sig = types.int64(word)

    def codegen(context, builder, signature, args):
        return _call(builder, "llvm.cttz.i64", ir.IntType(64),
                     [args[0], ir.Constant(ir.IntType(1), 0)])

    return sig, codegen


@intrinsic
def highest_bit(typingctx, word):
    """The index of the highest set bit of a nonzero 64-bit word: 63 minus
    the count of leading zeros."""
    sig = types.int64(word)

    def codegen(context, builder, signature, args):
        zeros = _call(builder, "llvm.ctlz.i64", ir.IntType(64),
                      [args[0], ir.Constant(ir.IntType(1), 0)])
        return builder.sub(ir.Constant(ir.IntType(64), 63), zeros)

    return sig, codegen


@intrinsic
def set_bit_indices(typingctx, word, base, ks, at):
    """ks[at + i] = base + (index of the i-th lowest set bit of word), for
    every set bit of the uint64 word, 16 bits at a time (AVX-512's
    vpcompressd: the indices of a 16-bit mask in one instruction, where
    visiting the bits one by one is a chain of dependent steps per set bit).
    Returns at + the count of set bits. ks: (>= at + popcount,) int32; AVX-512
    builds only (kernels/numba_tiles.expand_bits chooses)."""
    sig = types.int64(word, base, ks, at)

    def codegen(context, builder, signature, args):
        word, base = args[0], context.cast(builder, args[1], signature.args[1], types.int64)
        arr = context.make_array(signature.args[2])(context, builder, args[2])
        at = context.cast(builder, args[3], signature.args[3], types.int64)
        i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
        v16 = ir.VectorType(i32, 16)
        lanes16 = ir.Constant(v16, list(range(16)))
        ptr = builder.gep(arr.data, [at])
        for q in range(4):
            bits = builder.trunc(builder.lshr(word, ir.Constant(i64, 16 * q)), i16)
            mask = builder.bitcast(bits, ir.VectorType(ir.IntType(1), 16))
            first = builder.trunc(builder.add(base, ir.Constant(i64, 16 * q)), i32)
            _call(builder, "llvm.masked.compressstore.v16i32", ir.VoidType(),
                  [builder.add(_splat(builder, first, v16), lanes16), ptr, mask])
            ptr = builder.gep(ptr, [builder.zext(_call(builder, "llvm.ctpop.i16", i16, [bits]),
                                                 i64)])
        return builder.add(at, _call(builder, "llvm.ctpop.i64", i64, [word]))

    return sig, codegen


@intrinsic
def bit_count(typingctx, word):
    """How many bits of a uint64 are set (popcount)."""
    sig = types.int64(word)

    def codegen(context, builder, signature, args):
        return _call(builder, "llvm.ctpop.i64", ir.IntType(64), [args[0]])

    return sig, codegen


def _prefetch(rw):
    """The codegen of a prefetch of a[lo:hi], line by line (llvm.prefetch:
    rw 1 write, 0 read; locality 3, keep in every level; cache 1, data)."""
    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        lo, hi = (context.cast(builder, v, t, types.intp)
                  for v, t in zip(args[1:], signature.args[1:]))
        i8p, i32, intp = ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(64)
        start = builder.bitcast(builder.gep(arr.data, [lo]), i8p)
        itemsize = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        nbytes = builder.mul(builder.sub(hi, lo), ir.Constant(intp, itemsize))
        with cgutils.for_range_slice(builder, ir.Constant(intp, 0), nbytes,
                                     ir.Constant(intp, CACHE_LINE)) as (offset, _):
            _call(builder, "llvm.prefetch.p0i8", ir.VoidType(),
                  [builder.gep(start, [offset]), ir.Constant(i32, rw), ir.Constant(i32, 3),
                   ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return codegen


@intrinsic
def prefetch_for_write(typingctx, a, lo, hi):
    """Ask for the cache lines of a[lo:hi] ahead, for writing (x86
    ``prefetchw``, given the prfchw feature, see kernels/numba_target.py): a
    line another core holds is then taken from it while this one computes,
    not when the store reaches it. No effect on any value. a: (n,)
    contiguous, 0 <= lo <= hi <= n."""
    return types.none(a, lo, hi), _prefetch(1)


@intrinsic
def prefetch_for_read(typingctx, a, lo, hi):
    """Ask for the cache lines of a[lo:hi] ahead, for reading (x86
    ``prefetcht0``): memory the next phase reads arrives while this one
    computes. No effect on any value. a: (n,) contiguous, 0 <= lo <= hi <= n."""
    return types.none(a, lo, hi), _prefetch(0)


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma), as the micro-kernel adds its
    products: a row computed one product at a time then matches a tile's bits."""
    sig = c(c, c, c)

    def codegen(context, builder, signature, args):
        ty = context.get_data_type(signature.return_type)
        a, b, c = (context.cast(builder, v, t, signature.return_type)
                   for v, t in zip(args, signature.args))
        name = "llvm.fma.f32" if signature.return_type.bitwidth == 32 else "llvm.fma.f64"
        return _call(builder, name, ty, [a, b, c])

    return sig, codegen

# ------------------------------------------------------------ thread sync
# The training threads meet twice per batch (kernels/numba_sync.py); these
# are the atomic operations that barrier is made of (Numba has none).

@intrinsic
def atomic_add(typingctx, a, i, value):
    """a[i] += value atomically (sequentially consistent); returns the old
    value. a: (n,) int64."""
    sig = types.int64(a, i, value)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", builder.gep(arr.data, [i]), v, "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, a, i):
    """a[i], read atomically (sequentially consistent). a: (n,) int64."""
    sig = types.int64(a, i)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        load = builder.load_atomic(builder.gep(arr.data, [i]), "seq_cst", 8)
        return load

    return sig, codegen


@intrinsic
def atomic_store(typingctx, a, i, value):
    """a[i] = value atomically (sequentially consistent). a: (n,) int64."""
    sig = types.none(a, i, value)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(v, builder.gep(arr.data, [i]), "seq_cst", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def spin_pause(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``): a waiting thread lets its
    core's sibling and the memory system breathe."""
    sig = types.none()

    def codegen(context, builder, signature, args):
        _call(builder, "llvm.x86.sse2.pause", ir.VoidType(), [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def yield_cpu(typingctx):
    """sched_yield(): give the core to another runnable thread (a spinning
    thread whose partner was preempted must not hold the core it needs)."""
    sig = types.none()

    def codegen(context, builder, signature, args):
        _call(builder, "sched_yield", ir.IntType(32), [])
        return context.get_dummy_value()

    return sig, codegen

"""kernels/numba_ir.py ``borrow`` and ``borrow_block``; numba_tiles' inner cut;
the packing of the parameters into the kernels' layout (pack_layer).

``borrow(A, i)`` must be A[i] in every way the kernels use a view (values,
shape, strides, writes through to A, read-only stays read-only), and
``borrow_block(a, start, shape)`` a[start:...].reshape(shape); the cut of
the inner dimension into blocks must cover 0..K once, in order, with the
short tail joined to the block before it."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from fastmlp.kernels.numba_ir import borrow, borrow_block
from fastmlp.kernels.numba_tiles import KC, TAIL, block_end


@njit
def _row_sum_and_scale(A, i, factor):
    """Sum of A[i] read through a borrowed view, then A[i] *= factor through it."""
    row = borrow(A, i)
    total = row.sum()
    for j in range(row.shape[0]):
        row[j] *= factor
    return total, row.shape[0], row.strides[0]


@njit
def _plane(A, s):
    return borrow(A, s).copy()


@njit
def _read_only_sum(A, i):
    return borrow(A, i).sum()


@njit
def _write_read_only(A, i):
    borrow(A, i)[0] = 1.0


def test_a_borrowed_row_is_the_row_and_writes_go_to_the_array():
    A = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = A.copy()
    expected[1] *= 2
    total, width, stride = _row_sum_and_scale(A, 1, np.float32(2))
    assert (total, width, stride) == (4 + 5 + 6 + 7, 4, 4)
    np.testing.assert_array_equal(A, expected)


def test_a_borrowed_plane_of_a_3d_array_is_that_plane():
    A = np.arange(2 * 3 * 5, dtype=np.float64).reshape(2, 3, 5)
    np.testing.assert_array_equal(_plane(A, 1), A[1])


def test_a_borrowed_view_of_a_read_only_array_stays_read_only():
    A = np.ones((2, 3), np.float32)
    A.flags.writeable = False
    assert _read_only_sum(A, 1) == 3.0
    with pytest.raises(TypingError):
        _write_read_only(A, 0)


def test_only_c_contiguous_arrays_of_two_or_more_dimensions_are_borrowed():
    with pytest.raises(TypingError):
        _read_only_sum(np.ones((4, 6), np.float32)[:, ::2], 0)   # strided: layout 'A'
    with pytest.raises(TypingError):
        _plane(np.ones(5), 0)


def _blocks(K):
    k0, cut = 0, []
    while k0 < K:
        k1 = block_end(k0, K)
        cut.append((k0, k1))
        k0 = k1
    return cut


@pytest.mark.parametrize("K", [1, 10, 64, 255, 256, 257, 320, 321, 512, 784, 1024, 1100])
def test_the_inner_dimension_is_cut_once_in_order_with_the_tail_joined(K):
    cut = _blocks(K)
    assert cut[0][0] == 0 and cut[-1][1] == K
    assert all(a[1] == b[0] for a, b in zip(cut, cut[1:]))
    assert all(k0 % 64 == 0 for k0, _ in cut)          # row_bits words start blocks
    assert all(k1 - k0 <= KC + TAIL for k0, k1 in cut)  # the ks rows are that long
    assert all(k1 - k0 == KC for k0, k1 in cut[:-1])
    assert len(cut) == 1 or cut[-1][1] - cut[-1][0] > TAIL


def test_784_inputs_are_cut_256_256_272():
    assert _blocks(784) == [(0, 256), (256, 512), (512, 784)]


@njit
def _block(a, start, shape):
    return borrow_block(a, start, shape).copy()


@njit
def _fill_block(a, start, rows, cols):
    block = borrow_block(a, start, (rows, cols))
    for i in range(rows):
        for j in range(cols):
            block[i, j] = 10 * i + j


def test_a_borrowed_block_is_the_slice_reshaped():
    a = np.arange(40, dtype=np.float32)
    np.testing.assert_array_equal(_block(a, 5, (2, 3, 4)), a[5:29].reshape(2, 3, 4))
    np.testing.assert_array_equal(_block(a, 7, (6,)), a[7:13])


def test_writes_through_a_borrowed_block_land_in_its_slice_only():
    a = np.zeros(20, np.float64)
    _fill_block(a, 4, 2, 3)
    expected = np.zeros(20)
    expected[4:10] = [0, 1, 2, 10, 11, 12]
    np.testing.assert_array_equal(a, expected)


def test_only_1d_c_contiguous_arrays_are_cut_in_blocks():
    with pytest.raises(TypingError):
        _block(np.ones((4, 5)), 0, (2, 2))
    with pytest.raises(TypingError):
        _block(np.ones(10)[::2], 0, (2,))


@pytest.mark.parametrize("sizes", [(784, 128, 64, 10), (20, 33, 7, 3), (5, 64, 1)])
def test_packed_parameters_are_the_strips_and_zeros_whatever_the_vector_held(sizes):
    """numba_backend._pack writes every entry of P (it starts uninitialised):
    each W[l] in strips of NR columns with zeros past its last column, each
    b[l], and zeros in every gap between blocks; checked on a vector that
    held NaN everywhere before."""
    from fastmlp.kernels.numba_train import layout, pack_layer, parameter_count
    rng = np.random.default_rng(1)
    Ws = [rng.standard_normal((i, o)).astype(np.float32) for i, o in zip(sizes, sizes[1:])]
    bs = [rng.standard_normal(o).astype(np.float32) for o in sizes[1:]]
    lay = layout(np.array(sizes), 16, np.float32)
    P = np.full(parameter_count(lay), np.nan, np.float32)
    ends = [int(at) for at in lay.w_at[1:]] + [P.size]
    for l, (w, b) in enumerate(zip(Ws, bs)):
        pack_layer(w, b, P, int(lay.w_at[l]), int(lay.b_at[l]), ends[l], int(lay.nr))
    expected = np.zeros_like(P)
    for l, (w, b) in enumerate(zip(Ws, bs)):
        i, o = w.shape
        padded = np.zeros((i, lay.strips[l] * lay.nr), np.float32)
        padded[:, :o] = w
        strips = padded.reshape(i, lay.strips[l], lay.nr).transpose(1, 0, 2).ravel()
        expected[lay.w_at[l]:lay.w_at[l] + strips.size] = strips
        expected[lay.b_at[l]:lay.b_at[l] + o] = b
    np.testing.assert_array_equal(P, expected)


def test_the_set_bits_of_a_word_come_out_lowest_first_as_the_plain_loop_gives():
    """numba_ir.set_bit_indices (16 bits at a time) against its plain twin on
    edge words and random words of every density, appended after what ks holds."""
    from fastmlp.kernels.numba_ir import set_bit_indices
    from fastmlp.kernels.numba_tiles import set_bit_indices_plain

    @njit
    def both(word, base, at, a, b):
        return set_bit_indices(word, base, a, at), set_bit_indices_plain(word, base, b, at)

    rng = np.random.default_rng(0)
    edges = [0, 1, 1 << 15, 1 << 16, 1 << 63, 0xFFFF, 0xFFFF0000FFFF0000, (1 << 64) - 1]
    words = edges + [int(w) for d in (0.02, 0.3, 0.5, 0.9)
                     for w in (rng.random((20, 64)) < d) @ (1 << np.arange(64, dtype=np.uint64))]
    for i, word in enumerate(words):
        a, b = np.full(80, -7, np.int32), np.full(80, -7, np.int32)
        at, base = i % 5, 64 * (i % 13)
        ca, cb = both(np.uint64(word), base, at, a, b)
        expected = [base + j for j in range(64) if word >> j & 1]
        assert ca == cb == at + len(expected)
        np.testing.assert_array_equal(a, b)
        assert list(a[at:ca]) == expected and (a[:at] == -7).all() and (a[ca:] == -7).all()

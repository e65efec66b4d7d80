"""Pen strokes (kernels/pen_numpy.py and its twin kernels/pen_numba.py): the
centre lines by construction (a bar thins to one line in its middle, lines
stay inside the ink and keep its pieces connected), the pen by construction
(a straight line drawn with radius r is 2r wide), the twins against each
other to the bit on MNIST digits and on generated blobs, the parameters and
the training path."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastmlp import augmentation, train
from fastmlp.augmentation import AugmentConfig, parse, sample_params
from fastmlp.data import load_dataset
from fastmlp.errors import FastmlpError
from fastmlp.kernels import pen_numpy as ref
from test_preprocess import _flood_fill_pieces   # the tests' own flood fill

SIDE, FINE = 28, 56


@pytest.fixture(scope="module")
def fast():
    return pytest.importorskip("fastmlp.kernels.pen_numba")


@pytest.fixture(scope="module")
def digits():
    """(200, 784) float32 MNIST training digits."""
    return np.ascontiguousarray(load_dataset().X_train[:200])


def lines_of(kernel, X):
    return kernel.skeleton(X, np.full((len(X), FINE * FINE), 7, np.uint8))


def drawn(kernel, S, radius, X):
    return kernel.pen_strokes(S, np.asarray(radius, np.float32), X, np.full_like(X, np.nan))


def bar(top, bottom, left=4, right=24):
    """A (1, 784) image of ink 1 on rows top..bottom, columns left..right."""
    x = np.zeros((SIDE, SIDE), np.float32)
    x[top:bottom + 1, left:right + 1] = 1
    return x.reshape(1, -1)


def components(mask):
    """The number of 8-connected pieces of a 2-D bool mask."""
    return len(_flood_fill_pieces(mask))


# ------------------------------------------------------ centre lines

def test_a_bar_thins_to_one_line_along_its_middle():
    # rows 10..14 are fine rows 20..29: the middle is between fine rows 24 and 25.
    S = lines_of(ref, bar(10, 14)).reshape(FINE, FINE)
    rows_per_column = S[:, 14:44].sum(axis=0)   # (thinning shortens the ends)
    assert np.all(rows_per_column == 1), rows_per_column
    assert set(np.nonzero(S[:, 14:44])[0]) <= {24, 25}
    assert components(S.astype(bool)) == 1


def test_lines_lie_inside_the_ink_and_keep_its_pieces(digits):
    X = digits[:40]
    S = lines_of(ref, X).reshape(-1, FINE, FINE).astype(bool)
    ink = ref.upsample2(X.reshape(-1, SIDE, SIDE)) >= ref.INK
    assert not np.any(S & ~ink)
    assert all(components(s) == components(i) for s, i in zip(S, ink))
    # thin: far fewer pixels than the ink (a 5-px-wide fine stroke keeps ~1 in 5)
    assert S.sum() < 0.4 * ink.sum()


def test_blank_images_have_no_lines_and_stay_blank(fast):
    X = np.zeros((3, SIDE * SIDE), np.float32)
    for kernel in (ref, fast):
        S = lines_of(kernel, X)
        assert not S.any()
        np.testing.assert_array_equal(drawn(kernel, S, [1.0, 2.0, 0.0], X), X)


# --------------------------------------------------------------- pen

@pytest.mark.parametrize("radius", [0.75, 1.5, 2.5])
def test_a_straight_line_drawn_with_radius_r_is_2r_wide(fast, radius):
    # Across a continuous line the pen's profile is a box of width 2r blurred
    # by a 1-px box: its samples at whole pixels sum to exactly 2r. The line
    # here is fine points at +-1/4 px from each whole column, so at column c
    # the nearest point is sqrt(dy^2 + 1/16) away: the profile is exactly
    # that, a little narrower than 2r (0.15 px at r = 0.75, 0.05 at 2.5).
    X = bar(10, 14)
    S = lines_of(ref, X)
    (line_row,) = set(np.nonzero(S.reshape(FINE, FINE)[:, 16:40])[0])
    y0 = (line_row - 0.5) / 2                 # the fine row's centre, in pixels
    rows = np.arange(SIDE)
    profile = np.clip(radius + 0.5 - np.sqrt((rows - y0) ** 2 + 1 / 16), 0, 1)
    expected, expected_centre = profile.sum(), (profile * rows).sum() / profile.sum()
    assert abs(expected - 2 * radius) < 0.15
    assert abs(y0 - 12.0) <= 0.25             # the line: in the bar's middle row
    for kernel in (ref, fast):
        image = drawn(kernel, S, [radius], X).reshape(SIDE, SIDE)
        widths = image[:, 8:20].sum(axis=0)
        np.testing.assert_allclose(widths, expected, rtol=1e-6)   # float32 sums
        centre = (image[:, 8:20] * rows[:, None]).sum(axis=0) / widths
        np.testing.assert_allclose(centre, expected_centre, rtol=1e-6)


def test_radius_zero_keeps_the_image_exactly(fast, digits):
    X = digits[:30]
    S = lines_of(ref, X)
    for kernel in (ref, fast):
        np.testing.assert_array_equal(drawn(kernel, S, np.zeros(len(X)), X), X)


def test_drawn_digits_look_like_their_originals(digits):
    # A pen about MNIST's own stroke width redraws the same digit: cosine
    # similarity to the original, median > 0.85, every digit > 0.6.
    X = digits[:100]
    out = drawn(ref, lines_of(ref, X), np.full(len(X), 1.2), X)
    cos = (out * X).sum(axis=1) / np.linalg.norm(out, axis=1) / np.linalg.norm(X, axis=1)
    assert np.median(cos) > 0.85 and cos.min() > 0.6, np.sort(cos)[:5]


# ------------------------------------------------------ the two twins

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_twin_gives_the_same_bits_on_digits(fast, digits, dtype):
    X = digits.astype(dtype)
    S = lines_of(ref, X)
    np.testing.assert_array_equal(lines_of(fast, X), S)
    radius = np.random.default_rng(1).uniform(0, ref.MAX_RADIUS, len(X))
    radius[::4] = 0
    radius[1] = ref.MAX_RADIUS
    np.testing.assert_array_equal(drawn(fast, S, radius, X), drawn(ref, S, radius, X))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), blobs=st.integers(1, 6),
       radius=st.floats(0, ref.MAX_RADIUS))
def test_the_twins_agree_on_generated_blobs(fast, seed, blobs, radius):
    # Random strokes and blobs of any grey level, touching the border or not:
    # the thinning's and the pen's edge cases, not only MNIST's.
    rng = np.random.default_rng(seed)
    x = np.zeros((SIDE, SIDE), np.float32)
    for _ in range(blobs):
        r0, c0 = rng.integers(0, SIDE, 2)
        h, w = rng.integers(1, 12, 2)
        x[r0:r0 + h, c0:c0 + w] = np.maximum(x[r0:r0 + h, c0:c0 + w], rng.uniform(0.2, 1))
    X = x.reshape(1, -1)
    S = lines_of(ref, X)
    np.testing.assert_array_equal(lines_of(fast, X), S)
    np.testing.assert_array_equal(drawn(fast, S, [radius], X), drawn(ref, S, [radius], X))


@pytest.mark.parametrize("bad", ["radius", "lines", "out"])
def test_bad_arguments_are_refused_by_both(fast, digits, bad):
    X = digits[:4]
    S = lines_of(ref, X)
    radius = np.ones(4, np.float32)
    out = np.empty_like(X)
    if bad == "radius":
        radius[2] = ref.MAX_RADIUS + 1
    elif bad == "lines":
        S = S[:, :100]
    else:
        out = X
    for kernel in (ref, fast):
        with pytest.raises(ValueError, match="pen_strokes"):
            kernel.pen_strokes(S, radius, X, out)


# ----------------------------------------------- parameters and training

def test_the_pen_changes_no_other_random_number():
    on = sample_params(parse("default,pen=0.5"), 500, np.random.default_rng(3))
    off = sample_params(parse("default"), 500, np.random.default_rng(3))
    for name in ("A", "D", "thickness"):
        np.testing.assert_array_equal(getattr(on, name), getattr(off, name))
    assert not off.radius.any()
    kept = on.radius == 0
    assert 0.4 < 1 - kept.mean() < 0.6
    lo, hi = augmentation.PEN_RADII
    assert np.all((on.radius[~kept] >= lo) & (on.radius[~kept] <= hi))


def test_pen_spec_round_trips_and_bad_values_are_one_line_errors():
    assert parse("pen=0.25").spec() == "pen=0.25"
    assert parse(parse("default,pen=1").spec()) == AugmentConfig(
        **{**augmentation.DEFAULT.__dict__, "pen": 1.0})
    with pytest.raises(FastmlpError, match="pen=1.5"):
        parse("pen=1.5")


def test_an_epoch_with_the_pen_is_the_same_on_both_backends(digits):
    from fastmlp.kernels import numpy_backend
    numba_backend = pytest.importorskip("fastmlp.kernels.numba_backend")
    config = train.TrainConfig(augment="default,pen=0.5", seed=5)
    notices = []
    images = []
    for backend in (numpy_backend, numba_backend):
        augmenter = train._Augmenter(config, backend, digits, notices.append)
        state = train.TrainState.fresh(config)
        images.append(augmenter.epoch_images(state).copy())
    np.testing.assert_array_equal(images[0], images[1])
    assert len(notices) == 2 and "centre lines" in notices[0]
    # half the digits were re-drawn: they differ from the same epoch without the pen
    plain = train._Augmenter(train.TrainConfig(augment="default", seed=5), numpy_backend,
                             digits, notices.append)
    same = np.all(plain.epoch_images(train.TrainState.fresh(config)) == images[0], axis=1)
    assert 0.3 < 1 - same.mean() < 0.7


def test_prepare_compiles_the_pen_ops_that_training_then_calls(digits):
    """prepare(dtype, pen=True) compiles the specializations that the epoch
    calls (read-only or writable inputs alike): none is added at the first
    epoch, whose seconds are timed."""
    numba_backend = pytest.importorskip("fastmlp.kernels.numba_backend")
    from fastmlp.kernels.pen_numba import _pen_strokes, _skeleton
    numba_backend.prepare(np.float32, pen=True)
    before = (len(_skeleton.signatures), len(_pen_strokes.signatures))
    assert min(before) >= 1
    frozen = np.ascontiguousarray(digits[:5])
    frozen.flags.writeable = False
    config = train.TrainConfig(augment="pen=1", seed=2)
    for X in (frozen, frozen.copy()):
        train._Augmenter(config, numba_backend, X, lambda message: None).epoch_images(
            train.TrainState.fresh(config))
    assert (len(_skeleton.signatures), len(_pen_strokes.signatures)) == before

"""--flagged-ones: training 1s written the European way (fastmlp/styles.py)."""

import numpy as np
import pytest

from fastmlp import styles
from fastmlp.data import load_dataset
from fastmlp.kernels import get_backend
from fastmlp.train import TrainConfig, TrainState, run

SIDE = 28


@pytest.fixture(scope="module")
def ones():
    data = load_dataset()
    return data.X_train[data.y_train == 1][:60]


def _ink(image):
    return image.reshape(SIDE, SIDE) > styles.INK


def test_a_segment_is_as_wide_as_the_pen():
    """A horizontal segment drawn 3 px wide: full ink within 1 px of its
    line, none beyond 2 px (the 1-px ramp), nothing past its ends."""
    ink = styles.segment_ink((14.0, 6.0), (14.0, 20.0), 3.0)
    column = ink[:, 13]
    assert column[13:16].min() == 1.0 and column[:12].max() == 0 and column[17:].max() == 0
    assert ink[14, 3].max() == 0 and ink[14, 23].max() == 0


def test_a_flag_adds_ink_left_of_the_top_and_keeps_the_one(ones):
    """Every flagged 1 keeps all its own ink (up to the move that keeps its
    centre of mass) and gains ink to the left of its top; the frame's edges
    stay empty, and its centre of mass stays within a pixel."""
    rng = np.random.default_rng(0)
    for image in ones:
        flagged = styles.flag_one(image, rng)
        assert flagged.shape == image.shape and flagged.dtype == image.dtype
        a, f = image.reshape(SIDE, SIDE), flagged.reshape(SIDE, SIDE)
        assert f.sum() > a.sum() + 2                         # a flag: at least 2 pixels of ink more
        ca, cf = styles._centre_of_mass(a), styles._centre_of_mass(f)
        assert np.abs(ca - cf).max() <= 1.0
        rows = np.nonzero(_ink(image).any(axis=1))[0]
        top_cols = np.nonzero(_ink(image)[rows[0]:rows[0] + 3].any(axis=0))[0]
        upper = _ink(flagged)[:rows[0] + (rows[-1] - rows[0]) // 2]
        assert np.nonzero(upper.any(axis=0))[0].min() < top_cols.min() - 1   # the flag points left
        assert not _ink(flagged)[[0, -1]].any() and not _ink(flagged)[:, [0, -1]].any()


def test_flagged_ones_come_from_the_seed_alone_and_are_labelled_one(ones):
    data = load_dataset()
    X, y = data.X_train[:2000], data.y_train[:2000]
    n_ones = int((y == 1).sum())
    X2, y2 = styles.with_flagged_ones(X, y, 0.5, seed=3)
    assert len(X2) == len(X) + round(0.5 * n_ones)   # half as many flagged copies as 1s
    np.testing.assert_array_equal(X2[:len(X)], X)
    assert (y2[len(X):] == 1).all() and y2.dtype == y.dtype
    again = styles.with_flagged_ones(X, y, 0.5, seed=3)[0]
    np.testing.assert_array_equal(again, X2)
    assert not np.array_equal(styles.with_flagged_ones(X, y, 0.5, seed=4)[0], X2)
    same = styles.with_flagged_ones(X, y, 0.0, seed=3)
    assert same[0] is X and same[1] is y
    assert len(styles.with_flagged_ones(X, y, 1.0, seed=3)[0]) == len(X) + n_ones


def test_a_picture_with_little_ink_comes_back_unchanged():
    blank = np.zeros(SIDE * SIDE, np.float32)
    assert np.array_equal(styles.flag_one(blank, np.random.default_rng(0)), blank)
    dot = blank.copy()
    dot[14 * SIDE + 14] = 1.0
    assert np.array_equal(styles.flag_one(dot, np.random.default_rng(0)), dot)


def _trained(fraction, backend):
    config = TrainConfig(epochs=1, limit=3000, hidden=(32,), flagged_ones=fraction, outliers=0.1,
                         lr=0.1)
    state = TrainState.fresh(config)
    run(config, load_dataset(), get_backend(backend), state)
    return state


def test_both_backends_train_the_same_epoch_with_flagged_ones():
    ref, fast = _trained(0.5, "numpy"), _trained(0.5, "numba")
    assert fast.history[-1]["loss"] == pytest.approx(ref.history[-1]["loss"], rel=1e-3)
    for a, b in zip(fast.model.W, ref.model.W):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert 0.5 < ref.history[-1]["train_accuracy"] <= 1.0   # of the digits, flagged ones included


def test_flagged_ones_are_a_recipe_setting_checked_like_the_others():
    from fastmlp.errors import FastmlpError
    with pytest.raises(FastmlpError, match=r"--flagged-ones 1.5: must be <= 1"):
        TrainConfig(flagged_ones=1.5)
    assert TrainConfig(flagged_ones=0.5).to_dict()["flagged_ones"] == 0.5

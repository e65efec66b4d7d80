"""Deskewing by second moments (fastmlp.deskew), and a model that was trained deskewed.

The class of inputs: MNIST digits given a known extra slant (a shear of
their columns by alpha per row, alpha in +-0.6, about +-31 degrees), blank
pictures, ink on one row, and arbitrary non-negative images (Hypothesis).
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastmlp import checkpoint
from fastmlp.checkpoint import Checkpoint
from fastmlp.data import load_dataset
from fastmlp.deskew import MAX_SLANT, deskew, slant
from fastmlp.kernels import get_backend
from fastmlp.model import MLP
from fastmlp.train import TrainConfig, TrainState, run

SIDE = 28


@pytest.fixture(scope="module")
def digits():
    return load_dataset().X_test[:300]


def sheared(X, alpha):
    """Each image's columns moved by alpha (r - 13.5) at row r (an extra
    slant), linearly interpolated: a test input, written independently of
    the module (per image, with np.interp)."""
    out = np.zeros_like(X)
    for i, (image, a) in enumerate(zip(X.reshape(-1, SIDE, SIDE), alpha)):
        for r in range(SIDE):
            out[i].reshape(SIDE, SIDE)[r] = np.interp(np.arange(SIDE) - a * (r - 13.5),
                                                      np.arange(SIDE), image[r], left=0, right=0)
    return out


def moments(X):
    images = X.reshape(-1, SIDE, SIDE).astype(np.float64)
    index = np.arange(SIDE)
    mass = images.sum(axis=(1, 2))
    return mass, images.sum(axis=2) @ index / mass, images.sum(axis=1) @ index / mass


def test_a_deskewed_digit_has_no_slant_left(digits):
    """The shear removes the slant it measured: the second moment cov(r, c)
    is 0 afterwards (to rounding: linear interpolation moves a row's first
    moment exactly by its shift when no ink leaves the image)."""
    before, _ = slant(digits.reshape(-1, SIDE, SIDE))
    after, _ = slant(deskew(digits).reshape(-1, SIDE, SIDE))
    assert np.abs(before).mean() > 0.1            # MNIST digits do lean
    assert np.abs(after).max() < 1e-4


def test_ink_and_centroid_stay_where_they_were(digits):
    """A shear about the ink's mean row keeps the ink (no MNIST digit is
    pushed out of the frame) and its centroid (the centre normalize_digit
    chose)."""
    mass, r, c = moments(digits)
    mass2, r2, c2 = moments(deskew(digits))
    np.testing.assert_allclose(mass2, mass, rtol=1e-5)
    np.testing.assert_allclose(r2, r, atol=1e-4)
    np.testing.assert_allclose(c2, c, atol=1e-3)


def test_the_same_digit_at_any_slant_deskews_to_the_same_picture(digits):
    """Extra slants of up to +-31 degrees are undone: the deskewed digit
    matches the deskewed original (cosine > 0.9 each, median > 0.97;
    interpolating twice blurs a little, so not exactly equal)."""
    alpha = np.random.default_rng(0).uniform(-0.6, 0.6, len(digits))
    a, b = deskew(sheared(digits, alpha)), deskew(digits)
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.9 and np.median(cos) > 0.97
    plain = (sheared(digits, alpha) * b).sum(axis=1) / (
        np.linalg.norm(sheared(digits, alpha), axis=1) * np.linalg.norm(b, axis=1))
    assert np.median(cos) > np.median(plain) + 0.05   # deskewing is what made them alike


def test_blank_and_one_row_pictures_are_left_as_they_are():
    blank = np.zeros((2, SIDE * SIDE), np.float32)
    np.testing.assert_array_equal(deskew(blank), blank)
    line = np.zeros((SIDE, SIDE), np.float32)
    line[14, 5:20] = 1.0
    np.testing.assert_array_equal(deskew(line.ravel()), line.ravel())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_and_dtype_are_kept(digits, dtype):
    one = digits[0].astype(dtype)
    assert deskew(one).shape == (SIDE * SIDE,) and deskew(one).dtype == dtype
    many = digits[:5].astype(dtype)
    assert deskew(many).shape == many.shape and deskew(many).dtype == dtype
    np.testing.assert_array_equal(deskew(many)[0], deskew(one))   # images are independent


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (3, SIDE * SIDE), elements=st.floats(0, 1, width=32)))
def test_any_image_stays_in_range_and_slant_is_bounded(X):
    out = deskew(X)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    alpha, _ = slant(X.reshape(-1, SIDE, SIDE))
    assert np.isfinite(alpha).all() and np.abs(alpha).max() <= MAX_SLANT


# ------------------------------------------------------- a deskewing model

def test_a_deskewing_model_reads_deskewed_inputs(digits):
    backend = get_backend("numpy")
    model = MLP.init((16,), seed=0, deskew=True)
    np.testing.assert_array_equal(model.predict_proba(digits[:20], backend),
                                  backend.forward(model.W, model.b, deskew(digits[:20])))
    assert model.copy().deskew


def test_deskew_survives_a_checkpoint_and_old_files_mean_no_deskew(tmp_path):
    path = tmp_path / "m.npz"
    checkpoint.save(path, Checkpoint(MLP.init((8,), seed=0, deskew=True)))
    assert checkpoint.load(path).model.deskew
    checkpoint.save(path, Checkpoint(MLP.init((8,), seed=0)))
    assert not checkpoint.load(path).model.deskew


def test_training_deskewed_is_training_on_deskewed_images():
    """run() with --deskew trains exactly as plain training on images
    deskewed beforehand: same weights to the bit, and the model says so."""
    data = load_dataset()
    backend = get_backend("numpy")
    recipe = dict(epochs=1, limit=512, batch_size=64, hidden=(16,), seed=1)
    skewed = TrainState.fresh(TrainConfig(**recipe, deskew=True))
    run(TrainConfig(**recipe, deskew=True), data, backend, skewed)
    plain_data = dataclasses.replace(data, X_train=deskew(data.X_train[:512]),
                                     y_train=data.y_train[:512])
    plain = TrainState.fresh(TrainConfig(**recipe))
    run(TrainConfig(**recipe), plain_data, backend, plain)
    assert skewed.model.deskew and not plain.model.deskew
    for a, b in zip(skewed.model.W + skewed.model.b, plain.model.W + plain.model.b):
        np.testing.assert_array_equal(a, b)


def test_the_inside_view_traces_what_the_first_layer_reads(digits):
    """The GUI's activation trace (and so its saliency and its 28x28 view)
    starts from the deskewed picture for a deskewing model."""
    from fastmlp import insight
    backend = get_backend("numpy")
    model = MLP.init((16,), seed=0, deskew=True)
    traced = insight.trace(model, backend, digits[0])
    np.testing.assert_array_equal(traced.x, deskew(digits[0]))
    np.testing.assert_allclose(traced.probs, model.predict_proba(digits[0], backend)[0],
                               rtol=1e-5, atol=1e-7)
    again = insight.trace(model, backend, deskew(digits[0]), prepared=True)   # the GUI's call
    for a, b in zip(again.layers, traced.layers):
        np.testing.assert_array_equal(a, b)


def test_the_app_answers_from_and_shows_the_deskewed_picture(digits):
    """gui.inference.classify (the app's and bench/drawn_digits.py's path):
    the answer is the model's on the deskewed input, which is what the
    app's 28x28 view shows (Answer.seen); the normalized picture stays in x."""
    from fastmlp.gui.inference import classify
    backend = get_backend("numpy")
    model = MLP.init((16,), seed=0, deskew=True)
    answer = classify(model, backend, digits[3])
    np.testing.assert_array_equal(answer.x, digits[3])
    np.testing.assert_array_equal(answer.seen, deskew(digits[3]))
    np.testing.assert_array_equal(answer.probs, model.predict_proba(digits[3], backend)[0])

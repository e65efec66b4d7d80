"""fastmlp.finetune: the mix, the untouched original, and that it learns a
style MNIST lacks. The "user" here writes mirrored digits (each MNIST image
flipped left to right): a consistent style the model gets mostly wrong,
which fine-tuning must learn while MNIST is replayed."""

import numpy as np
import pytest

from fastmlp import drawings, finetune
from fastmlp.data import load_dataset
from fastmlp.errors import FastmlpError
from fastmlp.kernels import get_backend
from fastmlp.train import TrainConfig, TrainState, run

REF = get_backend("numpy")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset()


@pytest.fixture(scope="module")
def model(mnist):
    config = TrainConfig(epochs=1, limit=2000, seed=0, hidden=(32,))
    state = TrainState.fresh(config)
    run(config, mnist, REF, state)
    return state.model


@pytest.fixture(scope="module")
def mirrored(mnist):
    """100 mirrored training images (rows MNIST's test set never holds)."""
    rows = slice(50000, 50100)
    images = np.round(mnist.X_train[rows].reshape(-1, 28, 28)[:, :, ::-1] * 255).astype(np.uint8)
    mine = drawings.Drawings.empty()
    for image, label in zip(images, mnist.y_train[rows]):
        mine = mine.added(image, int(label))
    return mine


def test_mixed_data_gives_the_drawings_their_share_and_tests_on_mnist(mnist, mirrored):
    data = finetune.mixed_data(mirrored, mnist, mnist_rows=1200, user_share=0.25)
    n_user = len(mirrored.train_labels)  # 80: every fifth of 100 is held out
    repeats = 5  # 0.25 / 0.75 * 1200 / 80
    assert len(data.X_train) == repeats * n_user + 1200
    np.testing.assert_array_equal(data.X_train[:n_user], mirrored.dataset().X_train)
    np.testing.assert_array_equal(data.y_train[n_user:2 * n_user], mirrored.train_labels)
    assert data.X_test is mnist.X_test
    with pytest.raises(FastmlpError, match="no drawings"):
        finetune.mixed_data(drawings.Drawings.empty(), mnist)


def test_finetuning_learns_the_users_style_and_leaves_the_original_untouched(mnist, model, mirrored):
    original = [w.copy() for w in model.W]
    before = finetune.scores(model, REF, mnist, mirrored)
    config = finetune.config_for(model, epochs=3, lr=2e-3)
    data = finetune.mixed_data(mirrored, mnist, mnist_rows=1000)

    def tune():
        state = finetune.start_state(model, config)
        assert run(config, data, REF, state) == "done"
        return state.model

    tuned = tune()
    after = finetune.scores(tuned, REF, mnist, mirrored)
    assert before.held_out == after.held_out == 20
    # Measured: 30% -> 60% on the 20 held-out mirrored digits, MNIST test 67.5% -> 78.7%.
    assert after.drawings >= before.drawings + 0.15, (before, after)
    assert after.mnist_test >= before.mnist_test - 0.02, (before, after)
    for w, w0 in zip(model.W, original):
        np.testing.assert_array_equal(w, w0)
    # Same seed, data and backend: the same weights.
    for a, b in zip(tuned.W, tune().W):
        np.testing.assert_array_equal(a, b)


def test_scores_without_held_out_drawings_say_none(mnist, model):
    one = drawings.Drawings.empty().added(np.zeros((28, 28), np.uint8), 3)
    result = finetune.scores(model, REF, mnist, one)
    assert result.drawings is None and result.held_out == 0 and 0 < result.mnist_test < 1

"""The training loop on the reference backend: learning, determinism, the
last partial batch, stop-and-resume, divergence, schedules, config checks,
stochastic weight averaging (also on the Numba backend)."""

import numpy as np
import pytest

from fastmlp import checkpoint
from fastmlp.data import load_dataset
from fastmlp.errors import FastmlpError
from fastmlp.evaluate import accuracy
from fastmlp.kernels import get_backend
from fastmlp.schedules import learning_rates
from fastmlp.train import (Diverged, TrainConfig, TrainState, epoch_order, run, to_checkpoint,
                           validation_rows)

ref = get_backend("numpy")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset()


def _train(config, data, state=None, backend=ref, **callbacks):
    state = state or TrainState.fresh(config)
    status = run(config, data, backend, state, **callbacks)
    return state, status


def _params(model):
    return model.W + model.b


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
def test_loss_decreases_on_a_small_subset(mnist, optimizer):
    lr = {"sgd": 0.1, "momentum": 0.05, "adam": 1e-3, "adamw": 1e-3}[optimizer]
    config = TrainConfig(epochs=3, limit=2000, optimizer=optimizer, lr=lr, schedule="constant")
    state, status = _train(config, mnist)
    losses = [r["loss"] for r in state.history]
    assert status == "done"
    assert losses[2] < losses[1] < losses[0]
    assert losses[0] < 2.3  # below chance level, log(10), within the first epoch
    assert state.history[-1]["test_accuracy"] > 0.8


def test_same_seed_same_weights_other_seed_other_weights(mnist):
    config = TrainConfig(epochs=1, limit=1000)
    a, _ = _train(config, mnist)
    b, _ = _train(config, mnist)
    c, _ = _train(TrainConfig(epochs=1, limit=1000, seed=1), mnist)
    for l in range(3):
        assert np.array_equal(a.model.W[l], b.model.W[l])
    assert not np.array_equal(a.model.W[0], c.model.W[0])


def test_last_partial_batch_is_trained(mnist):
    # 300 rows in batches of 128: 128 + 128 + 44, three optimizer steps.
    state, _ = _train(TrainConfig(epochs=2, limit=300, batch_size=128), mnist)
    assert state.optimizer.step == 6


def test_epoch_order_is_a_fresh_permutation_per_epoch():
    first, second = epoch_order(7, 0, 1000), epoch_order(7, 1, 1000)
    assert sorted(first) == list(range(1000))
    assert not np.array_equal(first, second)
    assert np.array_equal(first, epoch_order(7, 0, 1000))


def test_stop_mid_epoch_then_resume_is_bit_identical(mnist):
    config = TrainConfig(epochs=2, limit=3000, optimizer="adam", lr=1e-3)
    whole, _ = _train(config, mnist)

    calls = []
    stopped, status = _train(config, mnist, on_chunk=lambda s, rows, loss: calls.append(rows),
                             should_stop=lambda: len(calls) == 30)
    assert status == "stopped" and stopped.epoch == 1 and stopped.step == 30 - 24
    resumed, status = _train(config, mnist, state=stopped)
    assert status == "done"
    for l in range(3):
        assert np.array_equal(whole.model.W[l], resumed.model.W[l])
        assert np.array_equal(whole.optimizer.slots["m_W"][l], resumed.optimizer.slots["m_W"][l])
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in resumed.history]


def test_non_finite_loss_raises_diverged(mnist):
    config = TrainConfig(epochs=1, limit=2000, optimizer="sgd", lr=1e4, schedule="constant")
    with pytest.raises(Diverged, match="lower --lr"):
        _train(config, mnist)


def test_history_records_every_epoch(mnist):
    state, _ = _train(TrainConfig(epochs=2, limit=500), mnist)
    assert [r["epoch"] for r in state.history] == [1, 2]
    for record in state.history:
        assert set(record) == {"epoch", "loss", "train_accuracy", "test_accuracy", "seconds"}
        assert 0.0 <= record["train_accuracy"] <= 1.0 and record["seconds"] > 0.0


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_schedules_peak_at_lr_and_stay_positive(schedule):
    lrs = learning_rates(schedule, 0.1, 1000)
    assert lrs.shape == (1000,)
    assert lrs.max() == pytest.approx(0.1)
    assert (lrs >= 0).all()
    if schedule != "constant":
        assert lrs[-1] < 0.01 * 0.1 + 1e-12  # annealed to (almost) nothing
    if schedule == "onecycle":
        assert lrs[0] == pytest.approx(0.1 / 25, rel=0.1)  # starts low: the warm-up
        assert np.argmax(lrs) == pytest.approx(300, abs=1)


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("lr", -1.0), ("optimizer", "rmsprop"),
    ("schedule", "step"), ("hidden", "128,0"), ("hidden", "abc"), ("limit", 0),
    ("dtype", "float16"), ("weight_decay", -1.0), ("label_smoothing", 1.0),
    ("swa_start", 0), ("swa_start", 21),  # epochs is 20
])
def test_invalid_config_is_a_one_line_error(field, value):
    with pytest.raises(FastmlpError) as error:
        TrainConfig(**{field: value})
    assert "\n" not in str(error.value)


def test_limit_larger_than_the_data(mnist):
    with pytest.raises(FastmlpError, match="--limit 70000"):
        _train(TrainConfig(epochs=1, limit=70000), mnist)


def test_validation_rows_are_held_out_from_training(mnist):
    from fastmlp.train import training_rows, validation_rows
    config = TrainConfig(epochs=1, limit=1000, validation=200)
    X, y = training_rows(mnist, config)
    X_val, y_val = validation_rows(mnist, config)
    assert len(X) == 800 and len(X_val) == 200
    assert np.array_equal(X_val, mnist.X_train[800:1000])
    state, _ = _train(config, mnist)
    assert 0.3 < state.history[0]["validation_accuracy"] <= 1.0  # well above chance (0.1)
    with pytest.raises(FastmlpError, match="--validation 1000"):
        training_rows(mnist, TrainConfig(epochs=1, limit=1000, validation=1000))


# --------------------------------------------------- stochastic weight averaging

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_swa_is_the_mean_of_the_end_of_epoch_weights(mnist, backend):
    backend = get_backend(backend)
    config = TrainConfig(epochs=4, limit=1000, swa_start=2)
    ends = []  # the live weights after every epoch, copied
    state, status = _train(config, mnist, backend=backend,
                           on_epoch=lambda s, record: ends.append(s.model.copy()))
    assert status == "done" and state.swa_count == 3
    for l, average in enumerate(_params(state.swa)):
        mean = np.mean([_params(model)[l].astype(np.float64) for model in ends[1:]], axis=0)
        assert average.dtype == np.float32
        # float32 rounding only: far below the epoch-to-epoch change of the weights.
        np.testing.assert_allclose(average, mean, rtol=1e-5, atol=1e-7)
    # The last weights are the live ones, and the run produces the average.
    assert all(np.array_equal(a, b) for a, b in zip(_params(state.model), _params(ends[-1])))
    assert state.result is state.swa


def test_swa_does_not_change_training_and_is_reported_once_it_exists(mnist):
    plain, _ = _train(TrainConfig(epochs=3, limit=1000), mnist)
    swa, _ = _train(TrainConfig(epochs=3, limit=1000, validation=200, swa_start=2), mnist)
    for record in plain.history:
        assert "swa_test_accuracy" not in record
    assert "swa_test_accuracy" not in swa.history[0] and "swa_validation_accuracy" not in swa.history[0]
    assert swa.history[-1]["swa_test_accuracy"] == accuracy(swa.swa, mnist.X_test, mnist.y_test, ref)
    X_val, y_val = validation_rows(mnist, TrainConfig(epochs=3, limit=1000, validation=200))
    assert swa.history[-1]["swa_validation_accuracy"] == accuracy(swa.swa, X_val, y_val, ref)
    # Epoch 2 alone: the average of one model is that model.
    assert swa.history[1]["swa_test_accuracy"] == swa.history[1]["test_accuracy"]
    # --validation holds rows out, so compare against a run on the same rows.
    same_rows, _ = _train(TrainConfig(epochs=3, limit=800), mnist)
    assert all(np.array_equal(a, b) for a, b in zip(_params(swa.model), _params(same_rows.model)))
    assert plain.swa is None and plain.result is plain.model


# Stops (numpy: one batch per call, 24 batches per epoch): in epoch 1 (before
# the average exists), in epoch 2, between epochs 2 and 3 (the average holds
# epoch 2), in epoch 3.
@pytest.mark.parametrize("calls", [10, 30, 48, 55])
def test_swa_stop_save_load_resume_is_bit_identical(mnist, tmp_path, calls):
    config = TrainConfig(epochs=3, limit=3000, optimizer="adam", lr=1e-3, swa_start=2)
    whole, _ = _train(config, mnist)

    chunks = []
    stopped, status = _train(config, mnist, on_chunk=lambda s, rows, loss: chunks.append(rows),
                             should_stop=lambda: len(chunks) == calls)
    assert status == "stopped" and (stopped.epoch, stopped.step) == divmod(calls, 24)
    assert stopped.swa_count == max(0, stopped.epoch - 1)
    path = tmp_path / "stopped.npz"
    checkpoint.save(path, to_checkpoint(config, stopped, mnist))
    resumed = TrainState.from_checkpoint(checkpoint.load(path))
    _, status = _train(config, mnist, state=resumed)

    assert status == "done" and resumed.swa_count == whole.swa_count == 2
    for a, b in zip(_params(whole.model) + _params(whole.swa),
                    _params(resumed.model) + _params(resumed.swa)):
        assert np.array_equal(a, b)
    assert [r["swa_test_accuracy"] for r in whole.history[1:]] == \
        [r["swa_test_accuracy"] for r in resumed.history[1:]]


def test_swa_checkpoint_holds_the_average_as_its_model(mnist, tmp_path):
    config = TrainConfig(epochs=2, limit=1000, swa_start=1)
    state, _ = _train(config, mnist)
    path = tmp_path / "swa.npz"
    checkpoint.save(path, to_checkpoint(config, state, mnist))
    saved = checkpoint.load(path)
    assert all(np.array_equal(a, b) for a, b in zip(_params(saved.model), _params(state.swa)))
    assert all(np.array_equal(a, b) for a, b in zip(_params(saved.live), _params(state.model)))
    assert not np.array_equal(saved.model.W[0], saved.live.W[0])
    assert saved.meta["progress"]["swa_count"] == 2

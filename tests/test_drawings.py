"""fastmlp.drawings: the personal IDX data set — atomic saves, verified
loads, and corrupt or newer sets that are reported and never overwritten."""

import json
import os

import numpy as np
import pytest

from fastmlp import drawings
from fastmlp.cli import main
from fastmlp.data import FILE_NAMES, idx_bytes, load_dataset, read_idx
from fastmlp.errors import FastmlpError


def _x(seed):
    """A (784,) network input in [0, 1] with exact uint8 levels."""
    return np.random.default_rng(seed).integers(0, 256, 784).astype(np.float32) / 255


def _snapshot(directory):
    """Every file under directory (links followed) -> its bytes."""
    return {p.relative_to(directory): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_idx_bytes_round_trips_through_the_reader(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    (tmp_path / "i").write_bytes(idx_bytes(images))
    np.testing.assert_array_equal(read_idx(tmp_path / "i"), images)
    (tmp_path / "l").write_bytes(idx_bytes(np.array([1, 9], np.uint8)))
    assert read_idx(tmp_path / "l").tolist() == [1, 9]
    with pytest.raises(ValueError):
        idx_bytes(np.zeros(3, np.float32))


def test_data_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTMLP_DATA_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert drawings.default_path() == tmp_path / "xdg" / "fastmlp" / "drawings"
    monkeypatch.setenv("FASTMLP_DATA_HOME", str(tmp_path / "mine"))
    assert drawings.default_path() == tmp_path / "mine" / "drawings"


def test_added_drawings_are_saved_split_and_reloaded_exactly(tmp_path):
    path = tmp_path / "drawings"
    assert drawings.load(path).count == 0
    for i in range(7):
        saved = drawings.add(_x(i), i % 10, path)
    loaded = drawings.load(path)
    assert loaded.count == saved.count == 7
    # Drawing number 4 (0-based) is the held-out one.
    assert loaded.test_labels.tolist() == [4]
    assert loaded.train_labels.tolist() == [0, 1, 2, 3, 5, 6]
    np.testing.assert_array_equal(loaded.test_images[0], drawings.to_pixels(_x(4)))
    # uint8 levels survive exactly: pixel / 255 in float32 is what MNIST loads as.
    np.testing.assert_array_equal(loaded.dataset().X_train[5], _x(6))
    # One version directory and the link: the replaced ones are gone.
    assert sorted(p.name.startswith("drawings.") for p in tmp_path.iterdir()) == [False, True]


def test_fastmlp_train_on_a_set_with_nothing_held_out_yet_is_one_line(tmp_path, capsys):
    path = tmp_path / "drawings"
    for i in range(3):  # the first held-out drawing is number 5
        drawings.add(_x(i), i, path)
    code = main(["train", "--data", str(path), "--epochs", "1", "--out", str(tmp_path / "m.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "t10k-images-idx3-ubyte: holds no images" in err


def test_fastmlp_train_reads_the_saved_set(tmp_path, capsys):
    path = tmp_path / "drawings"
    for i in range(10):
        drawings.add(_x(i), i % 10, path)
    data = load_dataset(path)
    assert (len(data.X_train), len(data.X_test)) == (8, 2)
    out = tmp_path / "m.npz"
    code = main(["train", "--data", str(path), "--epochs", "1", "--hidden", "8", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert out.is_file()


@pytest.mark.parametrize("damage, message", [
    (lambda d: _flip_last_byte(d / FILE_NAMES["train_images"]), "SHA-256 mismatch"),
    (lambda d: (d / FILE_NAMES["train_images"]).write_bytes(b"\0\0\x08\x03garbage"), "header truncated"),
    (lambda d: (d / drawings.MANIFEST).write_text("{not json"), "corrupt drawing set manifest"),
    (lambda d: (d / drawings.MANIFEST).unlink(), "not a fastmlp drawing set"),
    (lambda d: _set_manifest(d, format_version=2), "newer fastmlp"),
    (lambda d: _set_manifest(d, count=99), "disagree with the manifest"),
])
def test_a_corrupt_or_newer_set_is_one_line_and_never_overwritten(tmp_path, damage, message):
    path = tmp_path / "drawings"
    for i in range(3):
        drawings.add(_x(i), i, path)
    damage(path.resolve())
    before = _snapshot(tmp_path)
    for action in (lambda: drawings.load(path), lambda: drawings.add(_x(9), 1, path)):
        with pytest.raises(FastmlpError, match=message) as info:
            action()
        assert "\n" not in str(info.value)
    assert _snapshot(tmp_path) == before


def _flip_last_byte(path):
    """A pixel changed, the IDX header intact: only the checksum can tell."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _set_manifest(directory, **fields):
    manifest = json.loads((directory / drawings.MANIFEST).read_text())
    manifest.update(fields)
    (directory / drawings.MANIFEST).write_text(json.dumps(manifest))


def test_a_failed_save_leaves_the_old_set_and_no_debris(tmp_path, monkeypatch):
    path = tmp_path / "drawings"
    drawings.add(_x(0), 0, path)
    before = _snapshot(tmp_path)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(FastmlpError, match="No space left"):
        drawings.add(_x(1), 1, path)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before
    assert drawings.load(path).count == 1


def test_bad_input_and_a_real_directory_in_the_way_are_one_line_errors(tmp_path):
    with pytest.raises(FastmlpError, match="label 10"):
        drawings.add(_x(0), 10, tmp_path / "d")
    with pytest.raises(FastmlpError, match="expected 28x28"):
        drawings.add(np.zeros(10), 1, tmp_path / "d")
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep.txt").write_text("mine")
    with pytest.raises(FastmlpError, match="not fastmlp's drawing-set link"):
        drawings.save(drawings.Drawings.empty().added(drawings.to_pixels(_x(0)), 1), real)
    assert (real / "keep.txt").read_text() == "mine"

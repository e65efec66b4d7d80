"""fastmlp.data: strict IDX readers, directory loading, and the shipped MNIST."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from fastmlp import data
from fastmlp.errors import FastmlpError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
LABELS = np.array([0, 9, 3, 3, 7], dtype=np.uint8)


def idx_bytes(array, type_code=0x08):
    """Serialise a uint8 array as IDX: 00 00 <type> <ndim>, big-endian dims, payload."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write(path, content, gz=None):
    """Write ``content`` to ``path``; gzip it if ``gz`` (default: the name ends in .gz)."""
    path = Path(path)
    if gz is None:
        gz = path.suffix == ".gz"
    if gz:
        content = gzip.compress(content)
    path.write_bytes(content)
    return path


def write_split(directory, n_train=5, n_test=3, suffix=""):
    """A valid tiny data set under the standard names."""
    directory.mkdir(exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        write(directory / (data.FILE_NAMES[f"{split}_images"] + suffix), idx_bytes(IMAGES[:n]))
        write(directory / (data.FILE_NAMES[f"{split}_labels"] + suffix), idx_bytes(LABELS[:n]))
    return directory


def raises(match_words, func, *args, **kwargs):
    """Call func expecting a one-line FastmlpError containing every word; return the message."""
    with pytest.raises(FastmlpError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in match_words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


# --- single files -----------------------------------------------------------

@pytest.mark.parametrize("name, gz", [("x.idx", False), ("x.idx.gz", True), ("no-suffix", True)])
def test_round_trip(tmp_path, name, gz):
    # The third case is gzip without a .gz name: detection is by magic bytes.
    images = data.load_images(write(tmp_path / ("i" + name), idx_bytes(IMAGES), gz))
    labels = data.load_labels(write(tmp_path / ("l" + name), idx_bytes(LABELS), gz))
    assert images.dtype == np.uint8 and images.shape == (5, 4, 3)
    np.testing.assert_array_equal(images, IMAGES)
    np.testing.assert_array_equal(labels, LABELS)
    np.testing.assert_array_equal(data.read_idx(tmp_path / ("i" + name)), IMAGES)


GOOD = idx_bytes(IMAGES)

MALFORMED = {  # case: (file content, words the message must contain)
    "truncated": (GOOD[:-1], ["truncated"]),
    "trailing": (GOOD + b"\x00", ["trailing"]),
    "type code": (idx_bytes(IMAGES, type_code=0x0D), ["type code", "0x0d"]),
    "nonzero first bytes": (b"\x01" + GOOD[1:], ["first two bytes must be zero"]),
    "short header": (GOOD[:10], ["header truncated"]),
    "tiny file": (b"\x00\x00", ["header truncated"]),
    "corrupt gzip": (gzip.compress(GOOD)[:-12], ["corrupt gzip"]),
    "labels as images": (idx_bytes(LABELS), ["magic", "2049", "2051"]),
    # no payload (a size is 0), but the others multiply past an array's index
    # (found by tests/test_hardening_properties.py: NumPy's "array is too big")
    "dims past an index": (b"\x00\x00\x08\x03" + struct.pack(">3I", 0, 2**32 - 1, 2**32 - 1),
                           ["dims (0, 4294967295, 4294967295)", "too large"]),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_images(tmp_path, case):
    content, words = MALFORMED[case]
    path = write(tmp_path / "bad-file", content, gz=False)
    raises(["bad-file", *words], data.load_images, path)


def test_missing_file(tmp_path):
    raises(["nope.gz", "no such file"], data.read_idx, tmp_path / "nope.gz")


def test_label_out_of_range(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.array([1, 2, 10, 11], np.uint8)))
    raises(["labels", "label 10 at index 2", "out of range"], data.load_labels, path)


def test_sha256(tmp_path):
    path = write(tmp_path / "images.gz", GOOD)
    right = hashlib.sha256(GOOD).hexdigest()  # of the decompressed bytes, not the .gz
    np.testing.assert_array_equal(data.load_images(path, expected_sha256=right), IMAGES)
    raises(["images.gz", "SHA-256 mismatch", right], data.load_images, path, "0" * 64)


# --- directories ------------------------------------------------------------

def test_directory_round_trip(tmp_path):
    directory = write_split(tmp_path / "d", suffix=".gz")
    # A raw file next to its .gz is ignored: the .gz wins.
    write(directory / data.FILE_NAMES["train_labels"], b"garbage")
    ds = data.load_dataset(directory, dtype=np.float64)
    assert ds.X_train.shape == (5, 12) and ds.X_test.shape == (3, 12)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    np.testing.assert_allclose(ds.X_train, IMAGES.reshape(5, -1) / 255, rtol=1e-7)
    np.testing.assert_array_equal(ds.y_test, LABELS[:3])
    assert not ds.X_train.flags.writeable and not ds.y_train.flags.writeable
    digests = "".join(hashlib.sha256(idx_bytes(a)).hexdigest()
                      for a in (IMAGES, LABELS, IMAGES[:3], LABELS[:3]))
    assert ds.checksum == hashlib.sha256(digests.encode()).hexdigest()
    assert ds.source == str(directory)


def test_directory_count_mismatch(tmp_path):
    directory = write_split(tmp_path / "d")
    write(directory / data.FILE_NAMES["test_labels"], idx_bytes(LABELS[:2]))
    raises(["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "3 images", "2 labels"],
           data.load_dataset, directory)


def test_directory_size_mismatch(tmp_path):
    directory = write_split(tmp_path / "d")
    write(directory / data.FILE_NAMES["test_images"], idx_bytes(IMAGES[:3, :3, :]))
    raises(["4x3", "3x3", "sizes must match"], data.load_dataset, directory)


def test_directory_missing_file(tmp_path):
    directory = write_split(tmp_path / "d")
    (directory / data.FILE_NAMES["train_labels"]).unlink()
    raises(["missing train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"], data.load_dataset, directory)


def test_nonexistent_directory(tmp_path):
    raises([str(tmp_path / "absent"), "no such directory"], data.load_dataset, tmp_path / "absent")


def test_bad_dtype():
    raises(["float16", "float32 or float64"], data.load_dataset, dtype=np.float16)


# --- the shipped MNIST ------------------------------------------------------

@pytest.fixture(scope="module")
def mnist():
    return data.load_dataset()


def test_mnist_shapes_and_values(mnist):
    assert mnist.X_train.shape == (60000, 784) and mnist.X_test.shape == (10000, 784)
    assert mnist.y_train.shape == (60000,) and mnist.y_test.shape == (10000,)
    assert mnist.X_train.dtype == np.float32 and mnist.y_train.dtype == np.int64
    assert mnist.X_train.min() == 0.0 and mnist.X_train.max() == 1.0
    assert abs(mnist.X_train.mean(dtype=np.float64) - 0.1307) < 1e-3
    assert 0.78 < np.mean(mnist.X_train == 0) < 0.84  # the sparsity the compiled backend exploits
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_is_verified_cached_and_read_only(mnist):
    digests = "".join(data.MNIST_SHA256[name] for name in data.FILE_NAMES.values())
    assert mnist.checksum == hashlib.sha256(digests.encode()).hexdigest()
    assert data.load_dataset() is mnist and data.load_dataset(data.MNIST_DIR) is mnist
    with pytest.raises(ValueError):
        mnist.X_train[0, 0] = 1.0


def test_mnist_with_dtype(mnist):
    wide = mnist.with_dtype(np.float64)
    assert wide.X_train.dtype == wide.X_test.dtype == np.float64
    # float64 is an exact widening of the float32 values, so both dtypes see the same inputs.
    np.testing.assert_array_equal(wide.X_test, mnist.X_test)
    assert wide.checksum == mnist.checksum and wide.y_train is mnist.y_train
    assert wide.with_dtype("float32").X_test.dtype == np.float32
    np.testing.assert_array_equal(data.load_dataset(dtype=np.float64).X_test, wide.X_test)


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist():
    ds = data.load_dataset(FASHION)
    assert ds.X_train.shape == (60000, 784) and ds.X_test.shape == (10000, 784)
    assert np.bincount(ds.y_test).tolist() == [1000] * 10

"""MNIST-style IDX data: strict readers and the ``Dataset`` the trainer consumes.

The IDX format (LeCun et al.) is a tiny header followed by raw values::

    bytes 0-1   zero
    byte  2     type code (0x08 = unsigned byte, the only one MNIST uses)
    byte  3     number of dimensions d
    4*d bytes   the dimensions, big-endian uint32
    rest        prod(dims) values, row-major

so an images file starts with the "magic number" 0x00000803 (2051) and a
labels file with 0x00000801 (2049). Every reader here is strict: anything
unexpected becomes a one-line :class:`FastmlpError` naming the file, because a
silently misread data set shows up much later as a model that will not learn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import math
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from fastmlp.errors import FastmlpError, error_at
from fastmlp.memory import require
from fastmlp.safeio import kind, open_regular, os_problem, read_into_buffer

# The data ships inside the package. A plain path next to this module is all
# we need: setuptools installs package data as regular files (no zip imports).
MNIST_DIR: Path = Path(__file__).resolve().parent / "datasets" / "mnist"

# Standard basenames (without ".gz"), in the order used for Dataset.checksum.
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the *decompressed* shipped files (see datasets/mnist/README.md).
# Content, not the .gz bytes: recompressing a file must not break verification.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

IMAGES_MAGIC = 0x00000803  # 2051: uint8, 3 dimensions (n, rows, cols)
LABELS_MAGIC = 0x00000801  # 2049: uint8, 1 dimension (n,)
_UINT8_TYPE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


@dataclasses.dataclass(frozen=True)
class IdxHeader:
    """An IDX header: the raw header bytes (hashed with the payload), the
    dims, and the payload size they declare (a Python int: no overflow)."""

    raw: bytes
    dims: tuple

    @property
    def payload_bytes(self) -> int:
        return math.prod(self.dims)


def _read_exact(path, stream, n: int) -> bytes:
    """Up to ``n`` bytes of ``stream`` (fewer only at its end), gzip errors as FastmlpError."""
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        raise error_at(path, f"corrupt gzip data ({exc})") from None


def _parse_header(path, stream) -> IdxHeader:
    """Read and check the header from ``stream``; nothing beyond it is read."""
    start = _read_exact(path, stream, 4)
    if len(start) < 4:
        raise error_at(path, f"not an IDX file: header truncated ({len(start)} bytes, need at least 4)")
    if start[0] != 0 or start[1] != 0:
        raise error_at(path, f"not an IDX file: first two bytes must be zero, got {start.hex()}")
    if start[2] != _UINT8_TYPE:
        raise error_at(path, f"unsupported IDX type code 0x{start[2]:02x} (only 0x08, unsigned byte, is supported)")
    ndim = start[3]
    if ndim == 0:
        raise error_at(path, "IDX header declares 0 dimensions")
    rest = _read_exact(path, stream, 4 * ndim)
    if len(rest) < 4 * ndim:
        raise error_at(path, f"header truncated: declares {ndim} dimensions ({4 + 4 * ndim} header bytes) "
                           f"but the file has only {4 + len(rest)} bytes")
    dims = struct.unpack(f">{ndim}I", rest)
    # NumPy refuses a shape whose nonzero sizes multiply past its index type
    # even when another size is 0 (so the payload is empty)
    if math.prod(d for d in dims if d) > np.iinfo(np.intp).max:
        raise error_at(path, f"dims {dims} are too large for an array (their product exceeds "
                             f"{np.iinfo(np.intp).max})")
    return IdxHeader(start + rest, dims)


def _read_payload(path, stream, header: IdxHeader, compressed: bool) -> bytearray:
    """Exactly the payload the header declares, read into one buffer, then
    one byte more to prove the file ends there (and, for gzip, to reach the
    end of the stream, where the CRC is checked)."""
    expected = header.payload_bytes
    try:
        payload = read_into_buffer(stream, expected)
    except (OSError, EOFError, zlib.error) as exc:
        raise error_at(path, f"corrupt gzip data ({exc})") from None
    if len(payload) < expected:
        raise error_at(path, f"truncated payload: dims {header.dims} need {expected} bytes, "
                           f"file has {len(payload)}")
    if _read_exact(path, stream, 1):
        what = "decompressed data continue" if compressed else "file continues"
        raise error_at(path, f"trailing bytes: dims {header.dims} need {expected} bytes, the {what} beyond them")
    return payload


@dataclasses.dataclass(frozen=True)
class IdxFile:
    """An open IDX file whose header has been read and checked; ``stream``
    is positioned at the payload (decompressing, if ``compressed``)."""

    path: object
    stream: object
    header: IdxHeader
    compressed: bool


_KINDS = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
# Bytes of memory per value read: the file's byte, plus the float32 pixel
# (Dataset.X_*) or int64 label made of it.
_BYTES_PER_VALUE = {None: 1, IMAGES_MAGIC: 1 + 4, LABELS_MAGIC: 1 + 8}


@contextlib.contextmanager
def _opened(path, magic=None):
    """Open ``path``, gunzipping if it starts with the gzip magic, and read
    its header only; yield an IdxFile. With ``magic``, the header must
    declare that kind of file and at least one image (label).

    Sniffing the magic (not the suffix) means a gzip file without ".gz", or a
    raw file that happens to be named ".gz", both still load. A raw file
    whose size disagrees with its header is refused here, before any payload
    is read; a gzip file's payload is read only as far as the header says.
    """
    f, size = open_regular(path, "IDX file")
    with f:
        compressed = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
        header = _parse_header(path, stream)
        if magic is not None:
            _check_kind(path, header.dims, magic)
        if not compressed:
            got = size - len(header.raw)
            if got < header.payload_bytes:
                raise error_at(path, f"truncated payload: dims {header.dims} need "
                                   f"{header.payload_bytes} bytes, file has {got}")
            if got > header.payload_bytes:
                raise error_at(path, f"trailing bytes: dims {header.dims} need "
                                   f"{header.payload_bytes} bytes, file has {got}")
        yield IdxFile(path, stream, header, compressed)


def _check_kind(path, dims: tuple, magic: int) -> None:
    found = (_UINT8_TYPE << 8) | len(dims)  # _parse_header already enforced 00 00 08
    if found != magic:
        hint = f", an IDX {_KINDS[found]} file" if found in _KINDS else ""
        raise error_at(path, f"wrong magic number 0x{found:08x} ({found}{hint}); "
                           f"expected 0x{magic:08x} ({magic}, {_KINDS[magic]})")
    if magic == IMAGES_MAGIC and 0 in dims[1:]:
        raise error_at(path, f"images have zero size ({dims[1]}x{dims[2]})")


def _read_array(idx: IdxFile, expected_sha256=None) -> tuple[np.ndarray, str]:
    """The payload of an opened file as a read-only uint8 array of its dims,
    and the SHA-256 hex of header and payload (the decompressed content),
    checked against ``expected_sha256`` if given."""
    payload = _read_payload(idx.path, idx.stream, idx.header, idx.compressed)
    digest = hashlib.sha256(idx.header.raw)
    digest.update(payload)
    digest = digest.hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise error_at(idx.path, f"SHA-256 mismatch (expected {expected_sha256}, got {digest}); "
                               "the file is corrupt or not the shipped MNIST")
    array = np.frombuffer(payload, dtype=np.uint8).reshape(idx.header.dims)
    array.flags.writeable = False
    return array, digest


def _read_file(path, magic=None, expected_sha256=None) -> tuple[np.ndarray, str]:
    """One file, refused before its payload is read if it would not fit in memory."""
    with _opened(path, magic) as idx:
        require(idx.header.payload_bytes * _BYTES_PER_VALUE[magic], f"{path}: dims {idx.header.dims}")
        array, digest = _read_array(idx, expected_sha256)
    if magic == LABELS_MAGIC:
        _check_labels(path, array)
    return array, digest


def _check_labels(path, labels: np.ndarray) -> None:
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        i = int(bad[0])
        raise error_at(path, f"label {labels[i]} at index {i} is out of range 0..9 "
                           f"({bad.size} bad label{'s' if bad.size > 1 else ''})")


def read_idx(path) -> np.ndarray:
    """Read a raw or gzipped IDX file of unsigned bytes.

    Returns a read-only ``uint8`` array whose shape is the header's dims.
    Raises :class:`FastmlpError` ("<path>: <problem>") for a missing,
    unreadable or non-regular file, corrupt gzip, a payload that would not
    fit in memory, or any header/payload inconsistency.
    """
    return _read_file(path)[0]


def load_images(path, expected_sha256=None) -> np.ndarray:
    """Read an IDX images file (magic 2051): read-only ``uint8`` of shape (n, rows, cols).

    If ``expected_sha256`` is given, the SHA-256 of the decompressed bytes
    must equal it.
    """
    return _read_file(path, IMAGES_MAGIC, expected_sha256)[0]


def load_labels(path, expected_sha256=None) -> np.ndarray:
    """Read an IDX labels file (magic 2049): read-only ``uint8`` of shape (n,), values 0..9.

    If ``expected_sha256`` is given, the SHA-256 of the decompressed bytes
    must equal it.
    """
    return _read_file(path, LABELS_MAGIC, expected_sha256)[0]


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype) if dtype is not None else None  # np.dtype(None) is float64
    except TypeError:
        dt = None
    # Compare names: ``dtype == None`` is True for float64 in NumPy.
    if dt is None or dt.name not in ("float32", "float64"):
        raise FastmlpError(f"dtype {dtype!r}: expected float32 or float64")
    return dt


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split ready for the model. Arrays are read-only (shared by the cache).

    X_train: (n_train, rows*cols) float32 or float64, pixel / 255 in [0, 1].
             Deliberately NOT mean-centred: ~81% of MNIST pixels are exactly 0
             and the compiled backend skips those zeros.
    y_train: (n_train,) int64, class indices 0..9.
    X_test:  (n_test, rows*cols), same dtype as X_train.
    y_test:  (n_test,) int64.
    source:  the directory the files were loaded from (SHIPPED_SOURCE for ours).
    checksum: SHA-256 hex of the four per-file SHA-256 hex digests of the
             decompressed contents, concatenated in FILE_NAMES order;
             checkpoints record it to tie a model to its data.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: str
    checksum: str

    def with_dtype(self, dtype) -> "Dataset":
        """This data set with X_* cast to ``dtype`` (float32 or float64); labels shared."""
        dt = _check_dtype(dtype)
        if self.X_train.dtype == dt:
            return self
        require((self.X_train.size + self.X_test.size) * dt.itemsize, f"{self.source} as {dt}")
        return dataclasses.replace(self, X_train=_frozen(self.X_train.astype(dt)),
                                   X_test=_frozen(self.X_test.astype(dt)))

    def __repr__(self) -> str:
        return (f"Dataset(source={self.source!r}, X_train={self.X_train.shape} {self.X_train.dtype}, "
                f"X_test={self.X_test.shape}, checksum={self.checksum[:12]}…)")


def _find_file(directory: Path, name: str) -> Path:
    # Prefer the .gz: that is how MNIST and Debian's Fashion-MNIST are
    # distributed, and a stray raw copy next to it is likelier to be partial.
    for candidate in (directory / f"{name}.gz", directory / name):
        try:
            info = os.stat(candidate)
        except FileNotFoundError:
            continue
        except OSError as exc:  # a symlink loop, a directory we may not search
            raise error_at(candidate, os_problem(exc)) from None
        if not stat.S_ISREG(info.st_mode):
            raise error_at(candidate, f"is {kind(info.st_mode)}, not an IDX file")
        return candidate
    expected = ", ".join(FILE_NAMES.values())
    raise FastmlpError(f"{directory}: missing {name} (or {name}.gz); expected the files {expected}, each raw or .gz")


def _pixels(images: np.ndarray) -> np.ndarray:
    # One pass, computed in float32 so that pixel/255 is the correctly rounded
    # float32 value; float64 data sets are exact widenings of these (see
    # load_dataset), so both dtypes train on identical inputs.
    n = images.shape[0]
    return _frozen(np.divide(images.reshape(n, -1), np.float32(255), dtype=np.float32))


SHIPPED_SOURCE = "MNIST (shipped with fastmlp)"


def _load(directory: Path, verify: bool) -> Dataset:
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        raise error_at(directory, "no such directory") from None
    except OSError as exc:
        raise error_at(directory, os_problem(exc)) from None
    if not stat.S_ISDIR(info.st_mode):
        raise error_at(directory, "not a directory")
    paths = {key: _find_file(directory, name) for key, name in FILE_NAMES.items()}
    expected = {key: MNIST_SHA256[name] if verify else None for key, name in FILE_NAMES.items()}
    magics = {key: IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC for key in FILE_NAMES}

    # All four headers first: counts and sizes that disagree, or a data set
    # that would not fit, are refused before any payload is read.
    with contextlib.ExitStack() as stack:
        files = {key: stack.enter_context(_opened(path, magics[key])) for key, path in paths.items()}
        _check_split(paths, {key: idx.header.dims for key, idx in files.items()})
        require(sum(idx.header.payload_bytes * _BYTES_PER_VALUE[magics[key]] for key, idx in files.items()),
                f"{directory}: the data set")
        arrays, digests = {}, {}
        for key, idx in files.items():
            arrays[key], digests[key] = _read_array(idx, expected[key])
    for key in ("train_labels", "test_labels"):
        _check_labels(paths[key], arrays[key])

    checksum = hashlib.sha256("".join(digests[k] for k in FILE_NAMES).encode("ascii")).hexdigest()
    return Dataset(
        X_train=_pixels(arrays["train_images"]),
        y_train=_frozen(arrays["train_labels"].astype(np.int64)),
        X_test=_pixels(arrays["test_images"]),
        y_test=_frozen(arrays["test_labels"].astype(np.int64)),
        source=SHIPPED_SOURCE if verify else str(directory),
        checksum=checksum,
    )


def _check_split(paths: dict, dims: dict) -> None:
    """Images and labels of a split agree in number, and there are some (an
    IDX file of none is valid, e.g. a personal drawing set with nothing held
    out yet, but training and testing need at least one each); train and test
    images agree in size."""
    for split in ("train", "test"):
        images, labels = dims[f"{split}_images"], dims[f"{split}_labels"]
        if images[0] == 0:
            raise FastmlpError(f"{paths[f'{split}_images']}: holds no images (dims {images}); "
                               "training and testing need at least one each")
        if images[0] != labels[0]:
            raise FastmlpError(
                f"{paths[f'{split}_images']} has {images[0]} images but "
                f"{paths[f'{split}_labels']} has {labels[0]} labels; the counts must match")
    train_size, test_size = dims["train_images"][1:], dims["test_images"][1:]
    if train_size != test_size:
        raise FastmlpError(
            f"{paths['train_images']} has {train_size[0]}x{train_size[1]} images but "
            f"{paths['test_images']} has {test_size[0]}x{test_size[1]}; train and test sizes must match")


@functools.lru_cache(maxsize=None)
def _load_shipped(dtype: np.dtype) -> Dataset:
    # The shipped files never change and are hash-verified, so one decode per
    # process and dtype is enough (tests and the CLI load them many times).
    if dtype == np.float32:
        return _load(MNIST_DIR, verify=True)
    return _load_shipped(np.dtype(np.float32)).with_dtype(dtype)


def load_dataset(directory=None, dtype=np.float32) -> Dataset:
    """Load a train/test split of MNIST-format IDX files.

    ``directory=None`` (or the shipped folder itself) loads the bundled MNIST,
    verifying each file's decompressed SHA-256 against ``MNIST_SHA256``; the
    result is cached in-process, so callers must not (and cannot) mutate it.

    Any other directory must hold the four ``FILE_NAMES``, each raw or with a
    ``.gz`` suffix (the .gz wins if both exist), e.g. Debian's Fashion-MNIST
    in /usr/share/datasets/fashion-mnist. Its content is unknown, so it is not
    hash-checked, but ``checksum`` is still computed. Not cached: the files
    may change between calls.

    ``dtype`` (float32 or float64) is the dtype of X_*; float64 values are the
    float32 values widened exactly.
    """
    dt = _check_dtype(dtype)
    # realpath, not Path.resolve: it never raises (a symlink loop is reported by _load).
    if directory is None or Path(os.path.realpath(directory)) == MNIST_DIR:
        return _load_shipped(dt)
    return _load(Path(directory), verify=False).with_dtype(dt)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array (the inverse of read_idx): the
    header 00 00 08 <ndim>, each dimension as a big-endian uint32, then the
    values row-major. array: (n,) labels or (n, rows, cols) images."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or array.ndim == 0:
        raise ValueError(f"IDX here holds uint8 arrays of >= 1 dimension, got {array.dtype} {array.shape}")
    header = bytes([0, 0, _UINT8_TYPE, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()

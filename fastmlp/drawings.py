"""The user's own drawings.

A personal data set in MNIST's IDX format, in the user's data directory, that
``fastmlp train --data`` reads like any other.

Layout (``default_path()`` is ``drawings`` in ``data_home()``)::

    drawings -> drawings.k3j9x2     a symlink, the one thing a save replaces
    drawings.k3j9x2/
        train-images-idx3-ubyte     (n, 28, 28) uint8, the network input * 255
        train-labels-idx1-ubyte     (n,) uint8
        t10k-images-idx3-ubyte      the held-out drawings (every HELD_OUT_EVERY-th)
        t10k-labels-idx1-ubyte
        fastmlp-drawings.json       format, version, count, SHA-256 of each file

Saving is atomic: the whole new set is written to a fresh directory, then the
symlink is replaced in one rename, so a crash leaves the old set or the new
one, never a mix. Loading verifies every file against the manifest. A set
that is corrupt, unreadable or written by a newer fastmlp raises a one-line
FastmlpError, and ``add`` loads first, so such a set is never overwritten.
"""

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastmlp.checkpoint import atomic_write
from fastmlp.data import FILE_NAMES, Dataset, idx_bytes, load_images, load_labels
from fastmlp.errors import FastmlpError
from fastmlp.model import IMAGE_SIDE, N_CLASSES, N_INPUTS

FORMAT = "fastmlp-drawings"
FORMAT_VERSION = 1
MANIFEST = "fastmlp-drawings.json"
# Drawing number 4, 9, 14, ... (0-based, in saving order) is held out: 20%,
# spread over the whole history rather than the latest few.
HELD_OUT_EVERY = 5


def data_home() -> Path:
    """$FASTMLP_DATA_HOME, else $XDG_DATA_HOME/fastmlp, else ~/.local/share/fastmlp
    (the XDG base directory specification's default)."""
    if os.environ.get("FASTMLP_DATA_HOME"):
        return Path(os.environ["FASTMLP_DATA_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "fastmlp"


def default_path() -> Path:
    return data_home() / "drawings"


@dataclass(frozen=True)
class Drawings:
    """train_images / test_images: (n, 28, 28) uint8; train_labels /
    test_labels: (n,) uint8. test_* are the held-out drawings."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @classmethod
    def empty(cls) -> "Drawings":
        images, labels = np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8), np.zeros(0, np.uint8)
        return cls(images, labels, images, labels)

    @property
    def count(self) -> int:
        return len(self.train_labels) + len(self.test_labels)

    def added(self, pixels: np.ndarray, label: int) -> "Drawings":
        """A copy with one more drawing (pixels: (28, 28) uint8), held out
        if it is number HELD_OUT_EVERY - 1, 2 * HELD_OUT_EVERY - 1, ..."""
        image, tag = pixels[None], np.array([label], np.uint8)
        if self.count % HELD_OUT_EVERY == HELD_OUT_EVERY - 1:
            return Drawings(self.train_images, self.train_labels,
                            np.concatenate([self.test_images, image]),
                            np.concatenate([self.test_labels, tag]))
        return Drawings(np.concatenate([self.train_images, image]),
                        np.concatenate([self.train_labels, tag]), self.test_images, self.test_labels)

    def arrays(self) -> dict:
        """FILE_NAMES key -> the uint8 array stored under that name."""
        return {"train_images": self.train_images, "train_labels": self.train_labels,
                "test_images": self.test_images, "test_labels": self.test_labels}

    def dataset(self, dtype=np.float32) -> Dataset:
        """As a Dataset (X: (n, 784) pixel / 255), like fastmlp.data.load_dataset;
        its checksum is empty: it is only scored, never recorded in a checkpoint."""
        def pixels(images):
            return (images.reshape(len(images), N_INPUTS) / np.float32(255)).astype(dtype)
        return Dataset(pixels(self.train_images), self.train_labels.astype(np.int64),
                       pixels(self.test_images), self.test_labels.astype(np.int64),
                       source="your drawings", checksum="")


def to_pixels(x) -> np.ndarray:
    """x: (784,) network input in [0, 1] -> (28, 28) uint8, as MNIST stores it."""
    x = np.asarray(x, dtype=np.float64).reshape(IMAGE_SIDE, IMAGE_SIDE)
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def load(path=None) -> Drawings:
    """The set at ``path`` (default_path()); empty if nothing is there yet."""
    path = Path(path) if path is not None else default_path()
    if not path.exists() and not path.is_symlink():
        return Drawings.empty()
    manifest = _read_manifest(path)
    arrays = {}
    for key, name in FILE_NAMES.items():
        reader = load_images if key.endswith("images") else load_labels
        expected = manifest["sha256"].get(name)
        if not isinstance(expected, str):
            raise FastmlpError(f"{path}: corrupt drawing set: the manifest lists no SHA-256 for {name}")
        arrays[key] = np.array(reader(path / name, expected))  # raises naming the file
    drawings = Drawings(**arrays)
    shapes_ok = all(a.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE) for a in (drawings.train_images, drawings.test_images))
    counts_ok = (len(drawings.train_images) == len(drawings.train_labels)
                 and len(drawings.test_images) == len(drawings.test_labels))
    if not (shapes_ok and counts_ok and drawings.count == manifest.get("count")):
        raise FastmlpError(f"{path}: corrupt drawing set: its files disagree with the manifest "
                           f"({manifest.get('count')} drawings of 28x28)")
    return drawings


def _read_manifest(path: Path) -> dict:
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FastmlpError(f"{file}: missing; {path} is not a fastmlp drawing set (or is corrupt)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FastmlpError(f"{file}: corrupt drawing set manifest ({' '.join(str(exc).split())})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FastmlpError(f"{file}: not a fastmlp drawing set manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FastmlpError(f"{file}: written by a newer fastmlp (format version {version}; this one "
                           f"reads up to {FORMAT_VERSION}); left untouched")
    if not isinstance(manifest.get("sha256"), dict):
        raise FastmlpError(f"{file}: corrupt drawing set manifest (no checksums)")
    return manifest


def add(x, label: int, path=None) -> Drawings:
    """Append one drawing (x: (784,) network input in [0, 1], label 0..9) to
    the set at ``path`` and save it atomically; returns the new set. The
    current set is loaded and verified first: a corrupt or newer one raises
    and is left exactly as it was."""
    path = Path(path) if path is not None else default_path()
    if not (isinstance(label, (int, np.integer)) and 0 <= label < N_CLASSES):
        raise FastmlpError(f"label {label!r}: must be a digit 0..9")
    if np.asarray(x).size != N_INPUTS:
        raise FastmlpError(f"drawing of {np.asarray(x).size} values: expected 28x28 = {N_INPUTS}")
    drawings = load(path).added(to_pixels(x), int(label))
    save(drawings, path)
    return drawings


def save(drawings: Drawings, path) -> None:
    """Write ``drawings`` as a new directory next to ``path``, then point the
    ``path`` symlink at it in one rename and delete the directory it replaced."""
    path = Path(path)
    if path.exists() and not path.is_symlink():
        raise FastmlpError(f"{path}: is not fastmlp's drawing-set link (a real "
                           f"{'directory' if path.is_dir() else 'file'}); move it away to save here")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f"{path.name}.", dir=path.parent))
    except OSError as exc:
        raise FastmlpError(f"{path.parent}: cannot write ({exc.strerror or exc})") from None
    try:
        digests = {}
        for key, array in drawings.arrays().items():
            content = idx_bytes(array)
            digests[FILE_NAMES[key]] = hashlib.sha256(content).hexdigest()
            with atomic_write(fresh / FILE_NAMES[key]) as f:
                f.write(content)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "count": drawings.count,
                    "held_out_every": HELD_OUT_EVERY, "sha256": digests}
        with atomic_write(fresh / MANIFEST) as f:
            f.write(json.dumps(manifest, indent=1).encode("utf-8"))
        old = path.resolve() if path.is_symlink() else None
        link = fresh.with_name(f".{fresh.name}.link")
        os.symlink(fresh.name, link)  # relative: the data directory can move
        os.replace(link, path)  # the commit point
    except BaseException as exc:
        shutil.rmtree(fresh, ignore_errors=True)
        if isinstance(exc, OSError):
            raise FastmlpError(f"{path}: cannot save the drawing set ({exc.strerror or exc})") from None
        raise
    if old is not None and old.parent == path.parent and old.name.startswith(f"{path.name}."):
        shutil.rmtree(old, ignore_errors=True)


def save_pictures(image, x, path) -> tuple[Path, Path]:
    """File > Save drawing: ``image`` (the canvas, a PIL image) as PNG at
    ``path``, and x: (784,) the network input, white on black as MNIST, as
    ``<stem>-28x28.png`` beside it. Each written atomically."""
    from PIL import Image

    path = Path(path)
    small = path.with_name(f"{path.stem}-28x28.png")
    for target, picture in ((path, image), (small, Image.fromarray(to_pixels(x), "L"))):
        with atomic_write(target) as f:
            picture.save(f, "PNG")
    return path, small

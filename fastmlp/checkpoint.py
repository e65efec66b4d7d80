"""Checkpoints: one ``.npz`` holding the weights, the optimizer state and a JSON
metadata entry. Written atomically, read without pickle and validated."""

import contextlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastmlp import __version__
from fastmlp.errors import FastmlpError
from fastmlp.model import MLP
from fastmlp.optim import SLOTS, OptimizerState

FORMAT = "fastmlp-checkpoint"
FORMAT_VERSION = 1
INPUT_SCALING = "pixel / 255 in [0, 1], not mean-subtracted"


@dataclass
class Checkpoint:
    """model: the network. optimizer: its state (None in a weights-only file).
    meta: the JSON metadata (config, history, progress, data checksum, ...).
    live: the weights training continues from, when they are not ``model``
    (with stochastic weight averaging ``model`` is the average); same sizes
    and dtype as ``model``."""

    model: MLP
    optimizer: OptimizerState | None = None
    meta: dict = field(default_factory=dict)
    live: MLP | None = None


def save(path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically: a temporary file in the same
    directory, flushed and fsynced, then renamed over ``path``. A crash or kill
    at any moment leaves either the old file or the new one, never half of one."""
    path = Path(path)
    model = checkpoint.model
    # The caller's meta first: the fields describing this file always win.
    meta = {
        **checkpoint.meta,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "sizes": list(model.sizes),
        "activation": "relu",
        "output": "softmax",
        "dtype": str(model.dtype),
        "input_scaling": INPUT_SCALING,
    }
    meta.pop("optimizer", None)
    meta.pop("live_weights", None)
    arrays = {}
    for l in range(len(model.W)):
        arrays[f"W.{l}"] = model.W[l]
        arrays[f"b.{l}"] = model.b[l]
    if checkpoint.live is not None:
        live = checkpoint.live
        if tuple(live.sizes) != tuple(model.sizes) or live.dtype != model.dtype:
            raise FastmlpError(f"{path}: live weights {live.sizes} {live.dtype} do not match "
                               f"the model's {model.sizes} {model.dtype}")
        meta["live_weights"] = True
        for l in range(len(live.W)):
            arrays[f"live.W.{l}"] = live.W[l]
            arrays[f"live.b.{l}"] = live.b[l]
    if checkpoint.optimizer is not None:
        slots = sorted({key.rsplit("_", 1)[0] for key in checkpoint.optimizer.slots})
        meta["optimizer"] = {"step": checkpoint.optimizer.step, "slots": slots}
        for slot, per_layer in checkpoint.optimizer.slots.items():
            for l, array in enumerate(per_layer):
                arrays[f"opt.{slot}.{l}"] = array
    # A unicode array, not an object array: loadable with allow_pickle=False.
    arrays["meta"] = np.array(json.dumps(meta))

    with atomic_write(path) as f:
        np.savez(f, **arrays)


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file that replaces ``path`` only once fully written:
    a temporary file in the same directory, flushed and fsynced, then renamed.
    A crash, a kill or an exception leaves the old ``path`` untouched."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # e.g. the directory does not exist
        raise FastmlpError(f"{path}: cannot write ({exc.strerror or exc})") from None
    # mkstemp creates the file 0600; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise FastmlpError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a one-line FastmlpError
    naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FastmlpError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # else numpy would try to unpickle it
        raise FastmlpError(f"{path}: not a fastmlp checkpoint (not a valid .npz file)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise FastmlpError(f"{path}: holds pickled objects, which fastmlp never loads") from None
        raise FastmlpError(f"{path}: not a fastmlp checkpoint (not a valid .npz file)") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError):
        raise FastmlpError(f"{path}: not a fastmlp checkpoint (not a valid .npz file)") from None
    except Exception as exc:  # zlib errors and friends from a damaged archive
        raise FastmlpError(f"{path}: damaged checkpoint ({type(exc).__name__})") from None

    meta = _read_meta(path, arrays)
    model = _read_model(path, arrays, meta)
    optimizer = _read_optimizer(path, arrays, meta, model)
    return Checkpoint(model, optimizer, meta, _read_live(path, arrays, meta, model))


def _read_meta(path, arrays) -> dict:
    if "meta" not in arrays:
        raise FastmlpError(f"{path}: not a fastmlp checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError:
        raise FastmlpError(f"{path}: metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FastmlpError(f"{path}: not a fastmlp checkpoint (metadata format is not {FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise FastmlpError(f"{path}: metadata has no integer format_version")
    if version > FORMAT_VERSION:
        raise FastmlpError(f"{path}: format version {version} is newer than this fastmlp "
                           f"reads ({FORMAT_VERSION}); upgrade fastmlp")
    sizes = meta.get("sizes")
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, int) and s > 0 for s in sizes)):
        raise FastmlpError(f"{path}: metadata 'sizes' must be a list of positive integers")
    if meta.get("dtype") not in ("float32", "float64"):
        raise FastmlpError(f"{path}: metadata dtype {meta.get('dtype')!r} is not float32 or float64")
    for key, kind in (("config", dict), ("progress", dict), ("data", dict), ("history", list)):
        if key in meta and not isinstance(meta[key], kind):
            raise FastmlpError(f"{path}: metadata {key!r} is not a JSON {'object' if kind is dict else 'array'}")
    return meta


def _read_model(path, arrays, meta) -> MLP:
    sizes, dtype = tuple(meta["sizes"]), np.dtype(meta["dtype"])
    W, b = [], []
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W.append(_checked(path, arrays, f"W.{l}", (fan_in, fan_out), dtype))
        b.append(_checked(path, arrays, f"b.{l}", (fan_out,), dtype))
    expected = {f"{name}.{l}" for l in range(len(W)) for name in ("W", "b")}
    extra = sorted(k for k in arrays if k.split(".")[0] in ("W", "b") and k not in expected)
    if extra:
        raise FastmlpError(f"{path}: unexpected arrays {', '.join(extra)} for layer sizes {sizes}")
    return MLP(sizes, W, b)


def _read_live(path, arrays, meta, model) -> MLP | None:
    if not meta.get("live_weights"):
        return None
    W = [_checked(path, arrays, f"live.W.{l}", w.shape, w.dtype) for l, w in enumerate(model.W)]
    b = [_checked(path, arrays, f"live.b.{l}", bias.shape, bias.dtype) for l, bias in enumerate(model.b)]
    return MLP(model.sizes, W, b)


def _read_optimizer(path, arrays, meta, model) -> OptimizerState | None:
    info = meta.get("optimizer")
    if info is None:
        return None
    known = {slot for slots in SLOTS.values() for slot in slots}
    if (not isinstance(info, dict) or not isinstance(info.get("slots"), list)
            or not set(info["slots"]) <= known):
        found = info.get("slots") if isinstance(info, dict) else info
        raise FastmlpError(f"{path}: metadata 'optimizer' slots {found!r} are not among {sorted(known)}")
    step = info.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise FastmlpError(f"{path}: metadata optimizer step {step!r} is not a non-negative integer")
    slots = {}
    for slot in info["slots"]:
        slots[f"{slot}_W"] = [_checked(path, arrays, f"opt.{slot}_W.{l}", w.shape, w.dtype)
                              for l, w in enumerate(model.W)]
        slots[f"{slot}_b"] = [_checked(path, arrays, f"opt.{slot}_b.{l}", bias.shape, bias.dtype)
                              for l, bias in enumerate(model.b)]
    return OptimizerState(step=step, slots=slots)


def _checked(path, arrays, key, shape, dtype) -> np.ndarray:
    if key not in arrays:
        raise FastmlpError(f"{path}: missing array {key!r}")
    array = arrays[key]
    if array.shape != tuple(shape):
        raise FastmlpError(f"{path}: array {key!r} has shape {array.shape}, expected {tuple(shape)}")
    if array.dtype != dtype:
        raise FastmlpError(f"{path}: array {key!r} has dtype {array.dtype}, expected {dtype}")
    if not np.isfinite(array).all():
        raise FastmlpError(f"{path}: array {key!r} holds NaN or infinite values")
    return np.ascontiguousarray(array)

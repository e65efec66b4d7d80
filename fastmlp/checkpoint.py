"""Checkpoints: one ``.npz`` holding the weights, the optimizer state and a JSON metadata entry.

Written atomically, read without pickle and validated.

Format 2 (FORMAT_VERSION) adds ``checksums`` to the metadata: the SHA-256 of
every array, verified on load, so a flipped byte or two arrays swapped is a
one-line error, not a model that quietly predicts worse. Format 1 files
(before checksums, e.g. models trained before this version) still load, the
zip's CRC-32 then being their only integrity check; saving one writes format 2."""

import contextlib
import hashlib
import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastmlp import __version__
from fastmlp.errors import FastmlpError
from fastmlp.memory import require
from fastmlp.metadata import CHECKSUMS_SINCE, FILE, FORMAT, FORMAT_VERSION, MAX_LAYERS
from fastmlp.model import MLP
from fastmlp.optim import OptimizerState
from fastmlp.safeio import check_output, open_regular, read_into_buffer, target_lock, temp_name

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
        "deskew": bool(model.deskew),
    }
    for stale in ("optimizer", "live_weights", "checksums"):  # rewritten below for these arrays
        meta.pop(stale, None)
    arrays = {}
    for l in range(len(model.W)):
        arrays[f"W.{l}"] = model.W[l]
        arrays[f"b.{l}"] = model.b[l]
    if checkpoint.live is not None:
        live = checkpoint.live
        if (tuple(live.sizes) != tuple(model.sizes) or live.dtype != model.dtype
                or live.deskew != model.deskew):
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
    meta["checksums"] = {name: digest(array) for name, array in arrays.items()}
    # A unicode array, not an object array: loadable with allow_pickle=False.
    arrays["meta"] = np.array(json.dumps(meta))

    with atomic_write(path) as f:
        np.savez(f, **arrays)


@contextlib.contextmanager
def atomic_write(path, flag: str = "output"):
    """Yield a binary file that replaces ``path`` only once fully written:
    a temporary file in the same directory, flushed and fsynced, then renamed.
    A crash, a kill or an exception leaves the old ``path`` untouched.

    ``path`` must be a regular file if it exists; it is written under
    ``safeio.target_lock`` (one writer at a time, temporary files a killed
    writer left removed first)."""
    path = Path(path)
    check_output(path, flag)
    with target_lock(path, flag):
        tmp = temp_name(path)
        try:
            # 0o666 less the umask: the permissions a plain open() would give.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as exc:  # e.g. the directory does not exist
            raise FastmlpError(f"{path}: cannot write ({exc.strerror or exc})") from None
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
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


# |weight| above this is garbage, not a trained value: fastmlp's He-initialised,
# weight-decayed layers stay far below 10 (the pretrained model's largest is
# 2.1), and it leaves logits finite in float32 for any plausible depth.
MAX_ABS_PARAMETER = 1e6
# Characters of the metadata string: a history record is ~200, so this is
# room for ~40,000 epochs; a ~32 MB string in memory (NumPy stores UCS-4).
MAX_META_CHARS = 8 * 2**20
_NPY_VERSIONS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class Layout:
    """What one member must hold: (shape, dtype), and whether its values are
    weights (bounded by MAX_ABS_PARAMETER) or Adam's v (>= 0)."""

    shape: tuple
    dtype: np.dtype
    kind: str = "parameter"  # "parameter", "slot" or "second moment"


def _not_npz(path) -> FastmlpError:
    return FastmlpError(f"{path}: not a fastmlp checkpoint (not a valid .npz file)")


def load(path) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a one-line FastmlpError
    naming the file. Nothing is read before it is known to be expected: the
    member list, then the metadata (bounded, checked against the schema), then
    each array's .npy header against the layer sizes it declares; only then
    the data, verified against the zip CRC and (format 2) the SHA-256 stored
    in the metadata."""
    path = Path(path)
    f, size = open_regular(path, "checkpoint file")
    with f:
        _check_member_count(path, f, size)
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
            raise _not_npz(path) from None
        with archive:
            members = _members(path, archive)
            meta = _read_meta(path, archive, members)
            layouts = _layouts(meta)
            _check_member_list(path, members, layouts, meta)
            require(sum(math.prod(l.shape) * l.dtype.itemsize for l in layouts.values()),
                    f"{path}: layer sizes {meta['sizes']}")
            arrays = {name: _read_member(path, archive, members[name], name, layout)
                      for name, layout in layouts.items()}
    _verify_checksums(path, arrays, meta)
    model = _mlp(meta, arrays, "")
    live = _mlp(meta, arrays, "live.") if meta.get("live_weights") else None
    return Checkpoint(model, _optimizer(meta, arrays), meta, live)


# Members of any checkpoint fastmlp writes: meta plus, per layer, W and b,
# their live copies and two optimizer slots each (6 per layer).
MAX_MEMBERS = 1 + 6 * (MAX_LAYERS + 1)
_END_OF_DIRECTORY = struct.Struct("<4s4H2LH")  # the zip's end record, its last 22+ bytes


def _check_member_count(path, f, size: int) -> None:
    """Refuse an archive of more members than a checkpoint has before zipfile
    reads its central directory (a ZipInfo per member, however many)."""
    tail_size = min(size, _END_OF_DIRECTORY.size + 65535)  # + the longest zip comment
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    f.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END_OF_DIRECTORY.size:
        raise _not_npz(path)
    entries = _END_OF_DIRECTORY.unpack_from(tail, at)[4]
    if entries > MAX_MEMBERS:  # 0xFFFF (ZIP64: more than 65534) included
        raise FastmlpError(f"{path}: holds {entries} members, more than the {MAX_MEMBERS} "
                           f"of any fastmlp checkpoint")


def _members(path, archive) -> dict:
    """{array name: ZipInfo} of the archive's .npy members; anything else, or a
    name twice, is refused."""
    members = {}
    for info in archive.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else None
        if name is None or name in members:
            what = "twice" if name else "(not an .npy array)"
            raise FastmlpError(f"{path}: unexpected member {info.filename[:80]!r} {what}")
        members[name] = info
    if "meta" not in members:
        raise FastmlpError(f"{path}: not a fastmlp checkpoint (no 'meta' entry)")
    return members


def _open_npy(path, archive, info, name):
    """(member stream positioned at the data, shape, fortran_order, dtype)."""
    try:
        stream = archive.open(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError):
        raise _not_npz(path) from None
    try:
        version = np.lib.format.read_magic(stream)
        shape, fortran, dtype = _NPY_VERSIONS[version](stream)
    except (ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile, SyntaxError, TypeError):
        stream.close()
        raise FastmlpError(f"{path}: array {name!r} is not a valid .npy member (damaged file?)") from None
    if dtype.hasobject:
        stream.close()
        raise FastmlpError(f"{path}: holds pickled objects, which fastmlp never loads")
    return stream, shape, fortran, dtype


def _read_data(path, stream, name, shape, fortran, dtype) -> np.ndarray:
    """Exactly the bytes the header declares, then one more read to reach the
    member's end, where zipfile checks its CRC-32."""
    nbytes = math.prod(shape) * dtype.itemsize
    with stream:
        try:
            data = read_into_buffer(stream, nbytes)
            rest = stream.read(1)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise FastmlpError(f"{path}: array {name!r} is damaged ({_first_line(exc)})") from None
    if len(data) != nbytes or rest:
        raise FastmlpError(f"{path}: array {name!r} holds {'more' if rest else 'fewer'} bytes "
                           f"than its header declares (damaged file?)")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _first_line(exc) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _read_meta(path, archive, members) -> dict:
    stream, shape, fortran, dtype = _open_npy(path, archive, members["meta"], "meta")
    if dtype.kind != "U" or shape != ():
        stream.close()
        raise FastmlpError(f"{path}: metadata is not a string (found {dtype} of shape {shape})")
    if dtype.itemsize // 4 > MAX_META_CHARS:
        stream.close()
        raise FastmlpError(f"{path}: metadata of {dtype.itemsize // 4} characters is longer "
                           f"than the {MAX_META_CHARS} fastmlp reads")
    text = str(_read_data(path, stream, "meta", shape, fortran, dtype)[()])
    try:
        meta = json.loads(text)
    except ValueError:
        raise FastmlpError(f"{path}: metadata is not valid JSON") from None
    except RecursionError:
        raise FastmlpError(f"{path}: metadata JSON is nested too deeply") from None
    _check_meta(path, meta)
    return meta


def _check_meta(path, meta) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FastmlpError(f"{path}: not a fastmlp checkpoint (metadata format is not {FORMAT!r})")
    version = meta.get("format_version")
    if _is_int(version) and version > FORMAT_VERSION:
        raise FastmlpError(f"{path}: format version {version} is newer than this fastmlp "
                           f"reads ({FORMAT_VERSION}); upgrade fastmlp")
    FILE.check(meta, f"{path}: metadata")
    if meta["format_version"] >= CHECKSUMS_SINCE and "checksums" not in meta:
        raise FastmlpError(f"{path}: metadata of format {meta['format_version']} lacks checksums")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _layouts(meta) -> dict:
    """{member name: Layout} of every array ``meta`` declares, in load order."""
    sizes, dtype = meta["sizes"], np.dtype(meta["dtype"])
    params = {}
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W.{l}"], params[f"b.{l}"] = (fan_in, fan_out), (fan_out,)
    layouts = {name: Layout(shape, dtype) for name, shape in params.items()}
    if meta.get("live_weights"):
        layouts.update({f"live.{name}": Layout(shape, dtype) for name, shape in params.items()})
    for slot in (meta.get("optimizer") or {}).get("slots", []):
        kind = "second moment" if slot == "v" else "slot"
        for name, shape in params.items():
            W_or_b, l = name.split(".")
            layouts[f"opt.{slot}_{W_or_b}.{l}"] = Layout(shape, dtype, kind)
    return layouts


def _check_member_list(path, members, layouts, meta) -> None:
    missing = [name for name in layouts if name not in members]
    if missing:
        raise FastmlpError(f"{path}: missing array {missing[0]!r}")
    extra = sorted(name for name in members if name != "meta" and name not in layouts)
    if extra:
        raise FastmlpError(f"{path}: unexpected arrays {', '.join(extra)[:200]} "
                           f"for layer sizes {tuple(meta['sizes'])}")


def _read_member(path, archive, info, name, layout: Layout) -> np.ndarray:
    stream, shape, fortran, dtype = _open_npy(path, archive, info, name)
    problem = None
    if shape != layout.shape:
        problem = f"has shape {shape}, expected {layout.shape}"
    elif dtype != layout.dtype:
        problem = f"has dtype {dtype.str if dtype.name == layout.dtype.name else dtype}, expected {layout.dtype}"
    if problem:
        stream.close()
        raise FastmlpError(f"{path}: array {name!r} {problem}")
    array = _read_data(path, stream, name, shape, fortran, dtype)
    if not np.isfinite(array).all():
        raise FastmlpError(f"{path}: array {name!r} holds NaN or infinite values")
    if layout.kind == "parameter" and array.size and float(np.abs(array).max()) > MAX_ABS_PARAMETER:
        raise FastmlpError(f"{path}: array {name!r} holds values up to {float(np.abs(array).max()):.3g}, "
                           f"beyond the {MAX_ABS_PARAMETER:g} of any trained network")
    if layout.kind == "second moment" and array.size and float(array.min()) < 0:
        raise FastmlpError(f"{path}: array {name!r} holds negative values (an Adam second moment)")
    return np.ascontiguousarray(array)  # C order; a Fortran-order member is copied


def digest(array: np.ndarray) -> str:
    """SHA-256 of an array's values in C order (shape and dtype are checked apart)."""
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _verify_checksums(path, arrays, meta) -> None:
    stored = meta.get("checksums")
    if stored is None:  # format 1: the zip CRC-32 is all there is
        return
    if set(stored) != set(arrays):
        raise FastmlpError(f"{path}: metadata checksums cover {sorted(stored)[:6]}, "
                           f"not the arrays {sorted(arrays)[:6]}")
    for name, array in arrays.items():
        if digest(array) != stored[name]:
            raise FastmlpError(f"{path}: array {name!r} does not match its checksum: "
                               f"the file is damaged")


def _mlp(meta, arrays, prefix) -> MLP:
    layers = range(len(meta["sizes"]) - 1)
    return MLP(tuple(meta["sizes"]), [arrays[f"{prefix}W.{l}"] for l in layers],
               [arrays[f"{prefix}b.{l}"] for l in layers], deskew=meta.get("deskew", False))


def _optimizer(meta, arrays) -> OptimizerState | None:
    info = meta.get("optimizer")
    if info is None:
        return None
    layers = range(len(meta["sizes"]) - 1)
    slots = {f"{slot}_{kind}": [arrays[f"opt.{slot}_{kind}.{l}"] for l in layers]
             for slot in info["slots"] for kind in ("W", "b")}
    return OptimizerState(step=info["step"], slots=slots)

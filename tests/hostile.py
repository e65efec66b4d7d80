"""Hostile inputs, made small: what tests/test_hardening*.py and
tests/hardening_probe.py feed fastmlp. Every file here is generated on the
spot; none is larger than a few MB on disk, whatever it declares or inflates to.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastmlp import checkpoint
from fastmlp.data import FILE_NAMES
from fastmlp.model import MLP

SRC = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------ IDX

def idx_header(dims, type_code=0x08) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def idx_bytes(array: np.ndarray) -> bytes:
    return idx_header(array.shape) + np.ascontiguousarray(array, np.uint8).tobytes()


def write_dataset(directory: Path, n_train=20, n_test=10, side=28, seed=0) -> Path:
    """A valid data set of random images under the four standard names (gzip)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (directory / f"{FILE_NAMES[split + '_images']}.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (directory / f"{FILE_NAMES[split + '_labels']}.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return directory


def gzip_bomb(path: Path, header: bytes, zero_bytes: int) -> Path:
    """A gzip file of ``header`` then ``zero_bytes`` zeros, written in chunks
    (zeros deflate ~1000:1: 1 GiB is ~1 MB on disk)."""
    chunk = bytes(2**22)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as f:
        f.write(header)
        left = zero_bytes
        while left > 0:
            f.write(chunk[:min(left, len(chunk))])
            left -= len(chunk)
    return path


# ----------------------------------------------------------------- checkpoints

def small_checkpoint(path: Path, n_inputs=784, hidden=(8,), optimizer="momentum", seed=0) -> Path:
    """A valid training checkpoint of a tiny network (a few KB)."""
    from fastmlp.optim import OptimizerConfig, init_state

    model = MLP.init(hidden, seed=seed, n_inputs=n_inputs)
    state = init_state(OptimizerConfig(name=optimizer), model.W, model.b)
    checkpoint.save(path, checkpoint.Checkpoint(model, state, {}))
    return path


def npy_bytes(descr: str, shape: tuple, payload: bytes, fortran=False) -> bytes:
    """An .npy member with a header of our choosing (it may lie about the payload)."""
    header = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    header += " " * (-(len(header) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + payload


def members(path: Path) -> dict:
    """{member name: raw bytes} of a zip."""
    return members_of_bytes(Path(path).read_bytes())


def members_of_bytes(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def zip_bytes(content: dict, compression=zipfile.ZIP_STORED) -> bytes:
    """A zip of {member name: bytes}, CRCs valid (an edit, not a disk error)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in content.items():
            z.writestr(name, data)
    return buffer.getvalue()


def write_members(path: Path, content: dict, compression=zipfile.ZIP_STORED) -> Path:
    path.write_bytes(zip_bytes(content, compression))
    return path


def array_member(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def read_meta(content: dict) -> dict:
    return json.loads(str(np.lib.format.read_array(io.BytesIO(content["meta.npy"]))))


def with_meta(content: dict, meta) -> dict:
    text = meta if isinstance(meta, str) else json.dumps(meta)
    return {**content, "meta.npy": array_member(np.array(text))}


def flip_byte(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


# ---------------------------------------------------------------------- images

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int, colour_type=6) -> bytes:
    """A PNG that declares width x height (RGBA by default) with one tiny
    IDAT: what Pillow sees before decoding, at a few dozen bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b""))


def thin_png(width: int, height: int) -> bytes:
    """A real, fully decodable 1-bit PNG (tiny on disk for any thin size)."""
    from PIL import Image

    image = Image.new("1", (width, height), 1)
    image.putpixel((width // 2, height // 2), 0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


EPS_LOOP = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n{ } loop\n%%EOF\n"


# ------------------------------------------------------------------ processes

@dataclass
class Outcome:
    """How one run of ``fastmlp`` ended. ``peak_rss``: bytes (ru_maxrss of the child)."""

    returncode: int | None  # None: killed by the timeout
    stdout: str
    stderr: str
    peak_rss: int

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr or (self.returncode or 0) < 0

    @property
    def clean_error(self) -> bool:
        """Exit 1, 2 or 130 and stderr of fastmlp's own lines: errors ("fastmlp: ..."),
        besides the notice of a slow kernel preparation ("compiling ...", "…ready")."""
        lines = [line for line in self.stderr.strip().splitlines()
                 if not line.startswith(("compiling ", "…ready"))]
        return (self.returncode in (1, 2, 130) and not self.traceback and len(lines) >= 1
                and all(line.startswith("fastmlp") for line in lines))


def environment(backend: str | None = None) -> dict:
    """The children's environment: this source tree, and FASTMLP_BACKEND only if ``backend``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(SRC))
    env.pop("FASTMLP_BACKEND", None)
    if backend:
        env["FASTMLP_BACKEND"] = backend
    return env


def run_limited(argv, address_space: int | None = 3 * 2**30, timeout=120, cwd=None,
                code: str | None = None, backend: str | None = None) -> Outcome:
    """``python -m fastmlp argv`` (or ``python -c code``) under an RLIMIT_AS of
    ``address_space`` bytes, with its own peak resident memory measured.

    Each run is a fresh process via a small launcher that sets the limit,
    runs the child and reports the child's ru_maxrss, so one run's peak is
    not mixed with another's."""
    child = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "fastmlp", *map(str, argv)]
    launcher = (
        "import resource, subprocess, sys, json\n"
        f"limit = {address_space!r}\n"
        "def pre():\n"
        "    if limit: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        f"p = subprocess.run({child!r}, preexec_fn=pre, capture_output=True, text=True, timeout={timeout})\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "sys.stderr.write(p.stderr); sys.stdout.write(p.stdout)\n"
        "sys.stderr.write('\\n@@' + json.dumps([p.returncode, rss]))\n")
    try:
        result = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True,
                                timeout=timeout + 30, env=environment(backend), cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        return Outcome(None, str(exc.stdout or ""), str(exc.stderr or ""), 0)
    if "\n@@" not in result.stderr:  # the launcher itself hit the timeout
        return Outcome(None, result.stdout, result.stderr, 0)
    stderr, report = result.stderr.rsplit("\n@@", 1)
    returncode, rss = json.loads(report)
    return Outcome(returncode, result.stdout, stderr, rss)


def current_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_AS)[0]

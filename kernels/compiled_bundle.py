"""Kernels compiled once and shipped: a first run loads them instead of compiling.

On a fresh Numba cache the kernels that training runs take 8-15 s to compile
(README, "Cold start"). The project ships them compiled: ``bundle/<level>.zip``
holds Numba's own cache files of every kernel ``numba_backend.prepare``
readies in float32 (the training worker, the one-image kernels, the augment
and pen ops), compiled from these very sources for a portable CPU level
(numba_target.py). ``seed`` copies them into the kernels' Numba cache
directory, where Numba finds them as entries of its own and applies its own
checks (its version, the CPU, the sources' digest of numba_jit.py).

A bundle is used only where its manifest matches this process: the digest of
the kernel sources, Numba's version, Python's cache tag and the CPU level.
Anywhere else nothing is copied and the kernels compile on first use, as
before. FASTMLP_NUMBA_BUNDLE=0 turns seeding off (to measure a compile).

After any edit to a kernel source, rebuild (tests/test_bundle.py fails until
then; building compiles each level in a fresh process, ~30 s):

    python -m fastmlp.kernels.compiled_bundle
"""

import io
import json
import os
import pickle
import secrets
import subprocess
import sys
import tempfile
import zipfile

import numba

from . import numba_target
from .numba_jit import KERNEL_DIR, SOURCES_DIGEST

BUNDLE_DIR = os.path.join(KERNEL_DIR, "bundle")
BUNDLE_ENV = "FASTMLP_NUMBA_BUNDLE"
MANIFEST = "manifest.json"


def bundle_path(level: str) -> str:
    return os.path.join(BUNDLE_DIR, f"{level}.zip")


def expected_manifest(level: str) -> dict:
    """What a bundle must say about itself to be loaded by this process."""
    return {"sources_digest": SOURCES_DIGEST, "numba": numba.__version__,
            "python": sys.implementation.cache_tag, "target": level}


def _is_current(index_path: str) -> bool:
    """Whether Numba would use the cache index at ``index_path`` as it is
    (written by this Numba for these sources); False if absent or unreadable."""
    try:
        with open(index_path, "rb") as f:
            version = pickle.load(f)
            stamp, _ = pickle.loads(f.read())
    except Exception:   # absent, truncated, another format: Numba would discard it too
        return False
    return version == numba.__version__ and stamp == SOURCES_DIGEST


def _write_whole(path: str, data: bytes) -> None:
    """Write ``path`` whole or not at all (a rename), as Numba writes its own,
    with the permissions a plain open() gives (0o666 less the umask, as
    fastmlp.checkpoint.atomic_write creates its temporary file; mkstemp's
    0600 would hide a shared install's cache from its other users)."""
    tmp = os.path.join(os.path.dirname(path),
                       f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def seed(cache_dir: str, level: str | None = None) -> int:
    """Copy the bundle of ``level`` (default: the level compiled for) into
    ``cache_dir``, the kernels' Numba cache directory: every entry whose index
    there is missing or stale, its data files first, the index last. Returns
    how many entries were copied; 0 when seeding is off, no bundle matches
    this process, or the directory cannot be written (then the kernels
    compile as they would have)."""
    level = level or numba_target.TARGET
    path = bundle_path(level)
    if os.environ.get(BUNDLE_ENV, "1") == "0" or not os.path.exists(path):
        return 0
    copied = 0
    try:
        with zipfile.ZipFile(path) as bundle:
            if json.loads(bundle.read(MANIFEST))["identity"] != expected_manifest(level):
                return 0
            names = bundle.namelist()
            os.makedirs(cache_dir, exist_ok=True)
            for index in (n for n in names if n.endswith(".nbi")):
                if _is_current(os.path.join(cache_dir, index)):
                    continue
                stem = index[:-len(".nbi")] + "."
                for data in (n for n in names if n.startswith(stem) and n.endswith(".nbc")):
                    _write_whole(os.path.join(cache_dir, data), bundle.read(data))
                _write_whole(os.path.join(cache_dir, index), bundle.read(index))
                copied += 1
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return copied
    return copied


def compile_all() -> None:
    """What a bundle holds: every kernel prepare() readies for float32
    training and inference, with the augment and pen ops."""
    import numpy as np
    from . import numba_backend
    numba_backend.prepare(np.float32, augment=True, pen=True)


def build(level: str) -> str:
    """Compile the bundle of ``level`` in a fresh process on an empty cache
    and write it to bundle_path(level) (whole, or not at all). Returns the path."""
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
        env.update(NUMBA_CACHE_DIR=cache, FASTMLP_NUMBA_TARGET=level, **{BUNDLE_ENV: "0"})
        code = ("from fastmlp.kernels import compiled_bundle as c, numba_target as t; "
                f"assert t.TARGET == {level!r}, t.TARGET; c.compile_all()")
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        files = sorted(os.path.join(d, n) for d, _, ns in os.walk(cache) for n in ns
                       if n.endswith((".nbi", ".nbc")))
        data = io.BytesIO()
        with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bundle:
            manifest = {"identity": expected_manifest(level),
                        "files": [os.path.basename(f) for f in files]}
            bundle.writestr(MANIFEST, json.dumps(manifest, indent=1))
            for f in files:
                bundle.write(f, os.path.basename(f))
    os.makedirs(BUNDLE_DIR, exist_ok=True)
    _write_whole(bundle_path(level), data.getvalue())
    return bundle_path(level)


def main() -> int:
    """Build the bundle of every level this machine can run."""
    host = numba_target.host_features()
    for level, needs in numba_target.LEVELS.items():
        if not set(needs) <= host:
            print(f"{level}: skipped, this CPU cannot run it", file=sys.stderr)
            continue
        print(f"{level}: compiling the kernels in a fresh process (~10-15 s)...", file=sys.stderr,
              flush=True)
        path = build(level)
        print(f"{level}: {path} ({os.path.getsize(path) / 1e6:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

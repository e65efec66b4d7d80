"""Property tests (Hypothesis) for the three readers of untrusted files: the
IDX reader, the checkpoint loader and the image loader. For any input, each
returns a valid result or raises a one-line FastmlpError, nothing else, and
its peak memory (tracemalloc: Python and NumPy allocations) stays under a
bound while the memory budget is set small, so that anything an input
declares beyond it must be refused, not allocated.
"""

import contextlib
import gzip
import io
import json
import tracemalloc
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import hostile
from fastmlp import checkpoint, data, memory, preprocess
from fastmlp.errors import FastmlpError

BUDGET = 16 * 2**20  # what memory.require may grant during these tests
# Peak traced allocation: the budget plus the input file itself, the decoded
# copies a valid small input makes and Pillow's buffers.
PEAK_BOUND = 64 * 2**20
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def bounded():
    """A small memory budget and a peak-memory check around one example."""
    with mock.patch.object(memory, "available_bytes", lambda: BUDGET):
        tracemalloc.start()
        try:
            yield
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < PEAK_BOUND, peak


def clean_error_or(func, *args):
    """func(*args), or None when it raised a one-line FastmlpError naming a file."""
    try:
        result = func(*args)
    except FastmlpError as exc:
        assert "\n" not in str(exc) and str(exc).strip(), repr(exc)
        event("clean error")
        return None
    event("valid result")
    return result


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("hypothesis")


# ------------------------------------------------------------------------ IDX

dims = st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), min_size=0, max_size=4)


@st.composite
def idx_files(draw):
    if draw(st.integers(0, 3)) == 0:  # a valid file, gzipped or not, to check the result too
        array = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3).flatmap(
            lambda shape: st.binary(min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
                lambda payload: np.frombuffer(payload, np.uint8).reshape(shape))))
        content = hostile.idx_bytes(array)
        return gzip.compress(content) if draw(st.booleans()) else content
    shape = draw(dims)
    header = bytes([draw(st.sampled_from([0, 0, 0, 1])), 0,
                    draw(st.sampled_from([0x08, 0x08, 0x08, 0x09, 0x0D])), len(shape)])
    header += b"".join(d.to_bytes(4, "big") for d in shape)
    declared = int(np.prod(shape, dtype=object)) if shape else 0
    length = declared if declared <= 4096 and draw(st.booleans()) else draw(st.integers(0, 64))
    payload = draw(st.binary(min_size=length, max_size=length))
    content = header + payload + draw(st.sampled_from([b"", b"", b"\x00", bytes(5000)]))
    if draw(st.booleans()):
        content = gzip.compress(content)
        cut = draw(st.sampled_from([None, None, 1, 5, 12]))
        content = content[:-cut] if cut else content
    return content[:draw(st.integers(0, len(content)))] if draw(st.integers(0, 4)) == 0 else content


@SETTINGS
@given(content=idx_files())
def test_idx_reader_returns_the_declared_array_or_a_clean_error(scratch, content):
    path = scratch / "x.idx"
    path.write_bytes(content)
    with bounded():
        array = clean_error_or(data.read_idx, path)
    if array is not None:
        raw = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
        ndim = raw[3]
        assert array.dtype == np.uint8 and array.ndim == ndim
        assert array.tobytes() == raw[4 + 4 * ndim:]


# ---------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory):
    """(the file's bytes, what it loads as)."""
    path = hostile.small_checkpoint(tmp_path_factory.mktemp("ck") / "m.npz", n_inputs=12,
                                    hidden=(5, 4), optimizer="adam")
    return path.read_bytes(), checkpoint.load(path)


def arrays_of(ck) -> list:
    return ck.model.W + ck.model.b + [a for name in sorted(ck.optimizer.slots) for a in ck.optimizer.slots[name]]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@st.composite
def damaged_checkpoints(draw, original: bytes):
    kind = draw(st.sampled_from(["flip", "truncate", "member", "header", "meta"]))
    if kind == "flip":
        content = bytearray(original)
        for offset in draw(st.lists(st.integers(0, len(original) - 1), min_size=1, max_size=4)):
            content[offset] ^= draw(st.integers(1, 255))
        return bytes(content)
    if kind == "truncate":
        return original[:draw(st.integers(0, len(original) - 1))]
    members = hostile.members_of_bytes(original)
    names = sorted(members)
    name = draw(st.sampled_from(names))
    if kind == "member":
        action = draw(st.sampled_from(["delete", "rename", "random", "add"]))
        if action == "delete":
            del members[name]
        elif action == "rename":
            members[draw(st.sampled_from(names + ["x.npy", "W.9.npy", "meta"]))] = members.pop(name)
        elif action == "random":
            members[name] = draw(st.binary(max_size=300))
        else:
            # a zip member's name ends at a NUL (zipfile cuts it there), so none in it
            name = draw(st.text(st.characters(blacklist_characters="\x00"), min_size=1,
                                max_size=12))
            members[name] = draw(st.binary(max_size=100))
    elif kind == "header":
        shape = tuple(draw(st.lists(st.integers(0, 2**40), max_size=3)))
        descr = draw(st.sampled_from(["<f4", "<f8", ">f4", "<i4", "|O", "<U10", "|V8", "<c8"]))
        members[name] = hostile.npy_bytes(descr, shape, draw(st.binary(max_size=200)),
                                          fortran=draw(st.booleans()))
    else:
        meta = hostile.read_meta(members)
        if draw(st.booleans()):
            key = draw(st.sampled_from(sorted(meta)))
            meta[key] = draw(json_values)
        else:
            section = draw(st.sampled_from(["optimizer", "config", "progress", "history"]))
            target = meta.setdefault(section, {})
            if isinstance(target, dict):
                target[draw(st.sampled_from(sorted(target) + ["extra"]))] = draw(json_values)
        members = hostile.with_meta(members, meta)
    return hostile.zip_bytes(members)


@SETTINGS
@given(data_=st.data())
def test_checkpoint_loader_returns_a_valid_checkpoint_or_a_clean_error(scratch, valid_checkpoint, data_):
    original, expected = valid_checkpoint
    content = data_.draw(damaged_checkpoints(original))
    path = scratch / "m.npz"
    path.write_bytes(content)
    with bounded():
        loaded = clean_error_or(checkpoint.load, path)
    if loaded is not None:
        # Damage the checksums cannot see (metadata outside the arrays, zip
        # bytes that are not data) may load; the arrays are then the original's, bit for bit.
        assert loaded.model.sizes == expected.model.sizes
        assert loaded.optimizer is not None and sorted(loaded.optimizer.slots) == sorted(expected.optimizer.slots)
        for got, want in zip(arrays_of(loaded), arrays_of(expected), strict=True):
            assert got.dtype == want.dtype and np.array_equal(got, want)


# --------------------------------------------------------------------- images

def _encoded(fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (24, 24), (255, 255, 255))
    ImageDraw.Draw(image).line([(12, 3), (12, 20)], fill=(0, 0, 0), width=3)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


IMAGES = {fmt: _encoded(fmt) for fmt in preprocess.IMAGE_FORMATS}


@st.composite
def image_files(draw):
    kind = draw(st.sampled_from(["damaged", "damaged", "declared", "random", "eps"]))
    if kind == "declared":
        return hostile.png_header_only(draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1)),
                                       draw(st.sampled_from([0, 2, 3, 4, 6])))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "eps":
        return hostile.EPS_LOOP
    content = bytearray(IMAGES[draw(st.sampled_from(sorted(IMAGES)))])
    for offset in draw(st.lists(st.integers(0, len(content) - 1), max_size=4)):
        content[offset] = draw(st.integers(0, 255))
    return bytes(content[:draw(st.integers(0, len(content)))]) if draw(st.booleans()) else bytes(content)


@SETTINGS
@given(content=image_files())
def test_image_loader_returns_a_digit_or_a_clean_error(scratch, content):
    path = scratch / "x.png"
    path.write_bytes(content)
    with bounded(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's warnings about odd files are not errors
        x = clean_error_or(preprocess.load_and_normalize, path)
    if x is not None:
        assert x.shape == (784,) and x.dtype == np.float32
        assert np.isfinite(x).all() and 0.0 <= x.min() and x.max() <= 1.0

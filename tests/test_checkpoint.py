"""fastmlp.checkpoint: round trips, every kind of damaged file, atomic writes.
"""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastmlp import checkpoint
from fastmlp.checkpoint import Checkpoint
from fastmlp.errors import FastmlpError
from fastmlp.model import MLP
from fastmlp.optim import SLOTS, OptimizerConfig, init_state

HIDDEN = (8, 5)
N_INPUTS = 12


def make_model(dtype="float32", seed=0):
    model = MLP.init(HIDDEN, seed=seed, dtype=dtype, n_inputs=N_INPUTS)
    rng = np.random.default_rng(seed + 100)
    # Non-zero biases so that a b/W mix-up cannot go unnoticed.
    model.b = [rng.standard_normal(bias.shape).astype(dtype) for bias in model.b]
    return model


def make_optimizer(name, model, step=7, seed=1):
    state = init_state(OptimizerConfig(name=name), model.W, model.b)
    rng = np.random.default_rng(seed)
    for key, per_layer in state.slots.items():
        for array in per_layer:
            values = rng.standard_normal(array.shape)
            # Adam's second moment is a mean of squares: never negative (load checks it).
            array[...] = np.abs(values) if key.startswith("v_") else values
    state.step = step
    return state


def make_meta(optimizer="adam", dtype="float32"):
    return {
        "config": {"optimizer": optimizer, "lr": 0.001, "epochs": 3, "hidden": list(HIDDEN),
                   "dtype": dtype, "seed": 4, "warmup": None},
        "history": [{"epoch": 1, "loss": 0.123456789012345, "train_accuracy": 0.5,
                     "test_accuracy": 0.25, "seconds": 1.5}],
        "progress": {"epoch": 1, "step": 3, "loss_sum": 2.5, "correct": 17, "seconds": 0.25},
    }


def save_valid(path, optimizer="adam", dtype="float32"):
    model = make_model(dtype)
    state = make_optimizer(optimizer, model)
    checkpoint.save(path, Checkpoint(model, state, make_meta(optimizer, dtype)))
    return model, state


def raw_arrays(path):
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def raw_meta(arrays):
    return json.loads(str(arrays["meta"]))


def write_raw(path, arrays):
    with open(path, "wb") as f:  # a file object: np.savez must not append ".npz"
        np.savez(f, **arrays)


def assert_load_error(path, *fragments):
    """load(path) raises a one-line FastmlpError naming the path (and fragments)."""
    with pytest.raises(FastmlpError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return message


def leftover_temp_files(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------- round trip

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "momentum", "sgd"])
def test_round_trip(tmp_path, optimizer, dtype):
    path = tmp_path / "m.npz"
    model, state = save_valid(path, optimizer, dtype)
    loaded = checkpoint.load(path)

    assert tuple(loaded.model.sizes) == (N_INPUTS, *HIDDEN, 10)
    assert len(loaded.model.W) == len(model.W) == 3
    for saved, got in zip(model.W + model.b, loaded.model.W + loaded.model.b):
        assert got.dtype == np.dtype(dtype)
        assert got.shape == saved.shape
        assert np.array_equal(got, saved)
    assert loaded.model.dtype == np.dtype(dtype)

    assert loaded.optimizer is not None
    assert loaded.optimizer.step == 7
    assert set(loaded.optimizer.slots) == {f"{s}_{p}" for s in SLOTS[optimizer] for p in "Wb"}
    for slot, arrays in state.slots.items():
        for saved, got in zip(arrays, loaded.optimizer.slots[slot]):
            assert got.dtype == np.dtype(dtype)
            assert np.array_equal(got, saved)

    meta = make_meta(optimizer, dtype)
    assert loaded.meta["config"] == meta["config"]
    assert loaded.meta["history"] == meta["history"]  # floats exact through JSON
    assert loaded.meta["progress"] == meta["progress"]
    assert loaded.meta["format"] == checkpoint.FORMAT
    assert loaded.meta["format_version"] == checkpoint.FORMAT_VERSION
    assert loaded.meta["dtype"] == dtype
    assert loaded.meta["sizes"] == [N_INPUTS, *HIDDEN, 10]


def test_loaded_arrays_are_usable(tmp_path):
    """Loaded arrays are writable and contiguous: training can continue on them."""
    path = tmp_path / "m.npz"
    save_valid(path)
    loaded = checkpoint.load(path)
    for array in loaded.model.W + loaded.model.b + loaded.optimizer.slots["m_W"]:
        assert array.flags.c_contiguous and array.flags.writeable
        array += 1  # no "read-only" error


def test_weights_only_round_trip(tmp_path):
    path = tmp_path / "w.npz"
    model = make_model()
    checkpoint.save(path, Checkpoint(model))
    loaded = checkpoint.load(path)
    assert loaded.optimizer is None
    assert all(np.array_equal(a, b) for a, b in zip(loaded.model.W, model.W))
    assert not [k for k in raw_arrays(path) if k.startswith("opt.")]


def test_meta_is_stored_without_pickle(tmp_path):
    path = tmp_path / "m.npz"
    save_valid(path)
    arrays = raw_arrays(path)  # allow_pickle=False: would raise on an object array
    assert arrays["meta"].dtype.kind == "U"
    with zipfile.ZipFile(path) as archive:
        assert "meta.npy" in archive.namelist()


def test_resave_of_loaded_checkpoint_round_trips(tmp_path):
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    save_valid(first, "momentum")
    loaded = checkpoint.load(first)
    checkpoint.save(second, loaded)
    again = checkpoint.load(second)
    assert again.meta == loaded.meta
    assert all(np.array_equal(a, b) for a, b in zip(again.model.W, loaded.model.W))
    assert again.optimizer.step == loaded.optimizer.step


def test_weights_only_export_with_loaded_meta(tmp_path):
    """Regression: save() lets caller meta override the fields that describe the arrays.

    Exporting the weights of a loaded training checkpoint, keeping its meta
    (config, history), writes a file load() rejects: the old 'optimizer_step'
    survives, so load() looks for optimizer arrays that were never written.
    Fix (fastmlp/checkpoint.py, save): build the meta as
    ``{**checkpoint.meta, "format": ..., "sizes": ..., "dtype": ...}`` (the
    fixed fields last, so they always describe what is written) and drop any
    stale ``optimizer_step`` when ``checkpoint.optimizer is None``.
    """
    full, export = tmp_path / "full.npz", tmp_path / "export.npz"
    save_valid(full)
    loaded = checkpoint.load(full)
    checkpoint.save(export, Checkpoint(loaded.model, None, loaded.meta))
    again = checkpoint.load(export)
    assert again.optimizer is None
    assert again.meta["history"] == loaded.meta["history"]


def test_dtype_conversion_with_loaded_meta(tmp_path):
    """Regression: same root cause; a float64 checkpoint converted to float32 and saved
    with its meta is written with meta dtype 'float64' and becomes unloadable.
    Fix: as above, the computed 'dtype'/'sizes' must win over checkpoint.meta."""
    src, dst = tmp_path / "f64.npz", tmp_path / "f32.npz"
    checkpoint.save(src, Checkpoint(make_model("float64"), None, {"history": []}))
    loaded = checkpoint.load(src)
    model32 = MLP(loaded.model.sizes, [w.astype(np.float32) for w in loaded.model.W],
                  [b.astype(np.float32) for b in loaded.model.b])
    checkpoint.save(dst, Checkpoint(model32, None, loaded.meta))
    assert checkpoint.load(dst).model.dtype == np.float32


def test_optimizer_state_without_config_is_never_written_unreadable(tmp_path):
    """Regression: save() accepts optimizer state with meta lacking config['optimizer']
    and writes a file load() rejects ("unknown optimizer None in metadata").
    Everything save() accepts must load. Fix (fastmlp/checkpoint.py): either
    store the slot names in the meta in save() (e.g. ``meta["optimizer_slots"] =
    sorted(checkpoint.optimizer.slots)``) and have _read_optimizer read those,
    or raise FastmlpError in save() when ``checkpoint.optimizer`` is given but
    ``meta['config']['optimizer']`` is not one of SLOTS."""
    path = tmp_path / "m.npz"
    model = make_model()
    state = make_optimizer("adam", model)
    try:
        checkpoint.save(path, Checkpoint(model, state, {}))
    except FastmlpError:
        assert not path.exists()
        return
    loaded = checkpoint.load(path)
    assert loaded.optimizer.step == state.step


# ------------------------------------------ live weights (stochastic weight averaging)

def save_with_live(path, dtype="float32"):
    """model: the average, live: the weights training continues from."""
    average, live = make_model(dtype, seed=0), make_model(dtype, seed=5)
    checkpoint.save(path, Checkpoint(average, make_optimizer("adam", live), make_meta("adam", dtype),
                                     live=live))
    return average, live


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_live_weights_round_trip(tmp_path, dtype):
    path = tmp_path / "m.npz"
    average, live = save_with_live(path, dtype)
    loaded = checkpoint.load(path)
    for saved, got in zip(average.W + average.b + live.W + live.b,
                          loaded.model.W + loaded.model.b + loaded.live.W + loaded.live.b):
        assert got.dtype == np.dtype(dtype) and np.array_equal(got, saved)
    assert loaded.live.sizes == loaded.model.sizes


def test_no_live_weights_loads_as_none(tmp_path):
    path = tmp_path / "m.npz"
    save_valid(path)
    assert checkpoint.load(path).live is None
    assert not [k for k in raw_arrays(path) if k.startswith("live.")]


def test_export_of_a_checkpoint_with_live_weights(tmp_path):
    """Its meta says live weights follow; a re-save without them must not say so."""
    full, export = tmp_path / "full.npz", tmp_path / "export.npz"
    save_with_live(full)
    loaded = checkpoint.load(full)
    checkpoint.save(export, Checkpoint(loaded.model, None, loaded.meta))
    assert checkpoint.load(export).live is None


@pytest.mark.parametrize("live", [make_model(seed=5, dtype="float64"),
                                  MLP.init((8, 4), n_inputs=N_INPUTS)], ids=["dtype", "sizes"])
def test_save_rejects_live_weights_unlike_the_model(tmp_path, live):
    path = tmp_path / "m.npz"
    with pytest.raises(FastmlpError, match="live weights"):
        checkpoint.save(path, Checkpoint(make_model(), None, {}, live=live))
    assert not path.exists()


LIVE_DAMAGE = {
    "missing": (lambda a: a.pop("live.W.1"), ["live.W.1", "missing"]),
    "wrong shape": (lambda a: a.update({"live.b.0": a["live.b.0"][:-1]}), ["live.b.0", "shape"]),
    "NaN": (lambda a: a["live.W.2"].__setitem__((0, 0), np.nan), ["live.W.2", "nan"]),
}


@pytest.mark.parametrize("case", list(LIVE_DAMAGE))
def test_damaged_live_weights(tmp_path, case):
    change, fragments = LIVE_DAMAGE[case]
    path = tmp_path / "m.npz"
    save_with_live(path)
    arrays = raw_arrays(path)
    change(arrays)
    write_raw(path, arrays)
    assert_load_error(path, *fragments)


# -------------------------------------------------------------- damaged files

def test_missing_file(tmp_path):
    assert_load_error(tmp_path / "nope.npz")


def test_directory_is_not_a_checkpoint(tmp_path):
    assert_load_error(tmp_path)


def test_text_file(tmp_path):
    """Regression: a text file is reported as "holds pickled objects", which is false
    and sends the user looking for the wrong problem. np.load falls back to
    unpickling anything that is neither a zip nor a .npy and raises its pickle
    ValueError. Fix (fastmlp/checkpoint.py, load, before np.load): ``if not
    zipfile.is_zipfile(path): raise FastmlpError(f"{path}: not a fastmlp
    checkpoint (not a valid .npz file)")``."""
    path = tmp_path / "notes.npz"
    path.write_text("these are not the weights you are looking for\n")
    message = assert_load_error(path, "not")
    assert "pickle" not in message.lower(), message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert_load_error(path)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_file(tmp_path, fraction):
    path = tmp_path / "m.npz"
    save_valid(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    assert_load_error(path)


def test_corrupted_member_bytes(tmp_path):
    """Bytes flipped inside an array (zip CRC no longer matches)."""
    path = tmp_path / "m.npz"
    save_valid(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("W.0.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.file_size // 2
    for i in range(middle, middle + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_load_error(path)


def test_npy_instead_of_npz(tmp_path):
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 3), np.float32))
    assert_load_error(path)


def test_pickled_object_array(tmp_path):
    path = tmp_path / "evil.npz"
    save_valid(path)
    arrays = raw_arrays(path)
    arrays["W.0"] = np.array([{"payload": 1}, None], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    assert_load_error(path, "pickle")


def test_pickled_object_meta(tmp_path):
    path = tmp_path / "evil.npz"
    save_valid(path)
    arrays = raw_arrays(path)
    arrays["meta"] = np.array([raw_meta(arrays)], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    assert_load_error(path, "pickle")


def _tamper_arrays(path, change):
    save_valid(path)
    arrays = raw_arrays(path)
    change(arrays)
    write_raw(path, arrays)


def _tamper_meta(path, change):
    def edit(arrays):
        meta = raw_meta(arrays)
        change(meta)
        arrays["meta"] = np.array(json.dumps(meta))
    _tamper_arrays(path, edit)


ARRAY_DAMAGE = {
    "missing W.1": (lambda a: a.pop("W.1"), ["W.1", "missing"]),
    "missing b.2": (lambda a: a.pop("b.2"), ["b.2"]),
    "missing optimizer slot": (lambda a: a.pop("opt.v_b.0"), ["opt.v_b.0"]),
    "wrong shape": (lambda a: a.update({"W.0": a["W.0"][:, :-1]}), ["W.0", "shape"]),
    "transposed": (lambda a: a.update({"W.1": np.ascontiguousarray(a["W.1"].T)}), ["W.1", "shape"]),
    "bias as matrix": (lambda a: a.update({"b.0": a["b.0"][None, :]}), ["b.0", "shape"]),
    "float16": (lambda a: a.update({"W.0": a["W.0"].astype(np.float16)}), ["W.0", "float16"]),
    "float64 in float32 file": (lambda a: a.update({"b.1": a["b.1"].astype(np.float64)}), ["b.1", "dtype"]),
    "int": (lambda a: a.update({"W.2": a["W.2"].astype(np.int32)}), ["W.2", "int32"]),
    "string": (lambda a: a.update({"b.0": np.array(["x"] * a["b.0"].size)}), ["b.0", "dtype"]),
    "NaN weight": (lambda a: a["W.1"].__setitem__((0, 0), np.nan), ["W.1", "nan"]),
    "Inf bias": (lambda a: a["b.2"].__setitem__(0, -np.inf), ["b.2", "inf"]),
    "Inf optimizer slot": (lambda a: a["opt.m_W.0"].__setitem__((1, 1), np.inf), ["opt.m_W.0", "inf"]),
    "NaN optimizer slot": (lambda a: a["opt.v_b.2"].__setitem__(0, np.nan), ["opt.v_b.2", "nan"]),
    "no meta": (lambda a: a.pop("meta"), ["meta"]),
    "meta not JSON": (lambda a: a.update({"meta": np.array("{'format': oops")}), ["json"]),
    "meta is a number": (lambda a: a.update({"meta": np.array(5.0)}), []),
    "extra layer": (lambda a: a.update({"W.3": np.zeros((10, 10), np.float32),
                                        "b.3": np.zeros(10, np.float32)}), ["W.3"]),
    "extra bias only": (lambda a: a.update({"b.7": np.zeros(3, np.float32)}), ["b.7"]),
}


@pytest.mark.parametrize("case", list(ARRAY_DAMAGE))
def test_damaged_arrays(tmp_path, case):
    change, fragments = ARRAY_DAMAGE[case]
    path = tmp_path / "m.npz"
    _tamper_arrays(path, change)
    assert_load_error(path, *fragments)


META_DAMAGE = {
    "wrong format": (lambda m: m.update(format="someone-elses-format"), ["format"]),
    "no format": (lambda m: m.pop("format"), ["format"]),
    "newer version": (lambda m: m.update(format_version=99), ["99", "version"]),
    "version not int": (lambda m: m.update(format_version="1"), ["format_version"]),
    "no version": (lambda m: m.pop("format_version"), ["format_version"]),
    "sizes disagree with arrays": (lambda m: m.update(sizes=[N_INPUTS, 9, 5, 10]), ["W.0", "shape"]),
    "sizes not list": (lambda m: m.update(sizes="12-8-5-10"), ["sizes"]),
    "sizes with zero": (lambda m: m.update(sizes=[N_INPUTS, 0, 5, 10]), ["sizes"]),
    "dtype float16": (lambda m: m.update(dtype="float16"), ["float16"]),
    "unknown optimizer slot": (lambda m: m["optimizer"].update(slots=["lion"]), ["lion"]),
    "optimizer disagrees with slots": (lambda m: m["optimizer"].update(slots=["velocity"]),
                                       ["opt.velocity_W.0"]),
}


@pytest.mark.parametrize("case", list(META_DAMAGE))
def test_damaged_meta(tmp_path, case):
    change, fragments = META_DAMAGE[case]
    path = tmp_path / "m.npz"
    _tamper_meta(path, change)
    assert_load_error(path, *fragments)


BUGGY_META = {
    "optimizer step not a number": lambda m: m["optimizer"].update(step="seven"),
    "optimizer step null": lambda m: m["optimizer"].update(step=None),
    "optimizer step negative": lambda m: m["optimizer"].update(step=-3),
    "optimizer not an object": lambda m: m.update(optimizer=["adam"]),
    "config not an object": lambda m: m.update(config=["adam"]),
    "history not a list": lambda m: m.update(history={"epoch": 1}),
}


@pytest.mark.parametrize("case", list(BUGGY_META))
def test_damaged_meta_fields_are_validated(tmp_path, case):
    """Regression: load() trusts 'optimizer_step' and 'config': ``int("seven")`` raises
    ValueError, ``int(None)`` TypeError, a list config AttributeError (tracebacks
    in the CLI), and a negative step loads silently (Adam's bias correction
    then divides by 1 - beta**step < 0 ...). Fix (fastmlp/checkpoint.py,
    _read_optimizer): ``config = meta.get("config", {}); if not
    isinstance(config, dict): raise FastmlpError(f"{path}: metadata 'config'
    is not an object")`` and ``step = meta["optimizer_step"]; if not
    isinstance(step, int) or isinstance(step, bool) or step < 0: raise
    FastmlpError(f"{path}: metadata optimizer_step {step!r} is not a
    non-negative integer")``."""
    path = tmp_path / "m.npz"
    _tamper_meta(path, BUGGY_META[case])
    assert_load_error(path)


def test_error_names_the_path_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("bad.npz").write_text("x")
    with pytest.raises(FastmlpError, match=r"^bad\.npz: "):
        checkpoint.load("bad.npz")


# ------------------------------------------------------------------ atomicity

class Boom(OSError):
    pass


@pytest.mark.parametrize("exception", [Boom("disk full"), KeyboardInterrupt()],
                         ids=["oserror", "keyboardinterrupt"])
def test_failed_save_keeps_old_file(tmp_path, monkeypatch, exception):
    path = tmp_path / "m.npz"
    old_model, _ = save_valid(path)
    old_bytes = path.read_bytes()

    def half_write(f, **arrays):
        f.write(b"PK\x03\x04" + b"\0" * 1000)  # the start of something zip-like
        raise exception

    monkeypatch.setattr(checkpoint.np, "savez", half_write)
    new_model = make_model(seed=9)
    with pytest.raises((type(exception), FastmlpError)):
        checkpoint.save(path, Checkpoint(new_model, None, {}))
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes
    loaded = checkpoint.load(path)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.model.W, old_model.W))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "new.npz"

    def half_write(f, **arrays):
        f.write(b"partial")
        raise Boom("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", half_write)
    with pytest.raises((Boom, FastmlpError)):
        checkpoint.save(path, Checkpoint(make_model()))
    assert list(tmp_path.iterdir()) == []


def test_temp_file_in_same_directory_and_renamed(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "m.npz"
    path.parent.mkdir()
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((Path(src), Path(dst)))
        assert Path(src).exists()
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", spy)
    save_valid(path)
    save_valid(path, "sgd")  # overwrite an existing checkpoint too
    assert len(replaced) == 2
    for src, dst in replaced:
        assert dst == path
        assert src.parent == path.parent
        assert src.name.startswith(".") and src.name.endswith(".tmp")
        assert not src.exists()
    assert leftover_temp_files(path.parent) == []
    assert checkpoint.load(path).optimizer.slots == {}


def test_save_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_valid("rel.npz")
    assert checkpoint.load("rel.npz").optimizer.step == 7
    assert leftover_temp_files(tmp_path) == []


def test_saved_file_gets_normal_permissions(tmp_path):
    """Regression: tempfile.mkstemp creates the temp file with mode 0600 and
    os.replace keeps it, so every checkpoint is private to its owner whatever
    the umask (and overwriting a shared 0644 checkpoint makes it 0600).
    Fix (fastmlp/checkpoint.py, save, right after mkstemp): ``umask =
    os.umask(0); os.umask(umask); os.fchmod(fd, 0o666 & ~umask)``. The PNGs
    written by fastmlp/plots.py:_save have the same problem (same fix)."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "m.npz"
        save_valid(path)
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)

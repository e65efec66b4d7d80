"""The ``fastmlp`` command end to end: train / evaluate / predict, resume,
Ctrl-C, divergence, and one-line errors for every kind of bad input.

Most tests call ``fastmlp.cli.main`` in-process (fast: the shipped MNIST is
decoded once per process); a subprocess is used only where the process itself
matters (signals, ``python -m``, warnings printed to the real stderr).
"""

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import types
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from fastmlp import checkpoint
from fastmlp import confidence as confidence_module
from fastmlp.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOG_KEYS = {"epoch", "loss", "train_accuracy", "test_accuracy", "seconds"}


# -------------------------------------------------------------------- helpers

def run(*argv):
    """fastmlp.cli.main(argv) in-process -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors, --help
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def subprocess_env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("FASTMLP_BACKEND", None)
    return env


def run_module(*argv, timeout=60, cwd=None):
    """python -m fastmlp argv in a subprocess -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "fastmlp", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env(), cwd=cwd)


def assert_one_line_error(stderr, *fragments):
    """stderr is exactly one line, starting with 'fastmlp', with no traceback."""
    text = stderr.strip()
    assert "Traceback" not in stderr, stderr
    assert len(text.splitlines()) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert text.startswith("fastmlp"), text
    for fragment in fragments:
        assert str(fragment).lower() in text.lower(), text
    return text


def leftover_temp_files(directory):
    return sorted(p.name for p in Path(directory).iterdir()
                  if p.name.startswith(".") and p.name.endswith((".tmp", ".png")))


def assert_same_state(a, b):
    """Two checkpoints hold bit-identical weights (model and, with SWA, the
    live ones) and optimizer state."""
    assert a.model.sizes == b.model.sizes
    for x, y in zip(a.model.W + a.model.b, b.model.W + b.model.b):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert (a.live is None) == (b.live is None)
    if a.live is not None:
        for x, y in zip(a.live.W + a.live.b, b.live.W + b.live.b):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    assert a.optimizer.step == b.optimizer.step
    assert a.optimizer.slots.keys() == b.optimizer.slots.keys()
    for slot in a.optimizer.slots:
        for x, y in zip(a.optimizer.slots[slot], b.optimizer.slots[slot]):
            assert np.array_equal(x, y), slot


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def draw_digit(path, digit="1", size=200):
    """A thick dark digit on white paper, the way a user would draw it."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    if digit == "1":
        draw.line([(size // 2, size // 6), (size // 2, size * 5 // 6)], fill=0, width=size // 9)
    else:  # a 7
        draw.line([(size // 5, size // 5), (size * 4 // 5, size // 5)], fill=0, width=size // 10)
        draw.line([(size * 4 // 5, size // 5), (size * 2 // 5, size * 5 // 6)], fill=0,
                  width=size // 10)
    image.save(path)
    return path


# ------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One small training run shared by the evaluate/predict tests."""
    directory = tmp_path_factory.mktemp("trained")
    paths = {name: directory / name for name in ("m.npz", "m.jsonl", "c.png")}
    code, out, err = run("train", "--limit", 1000, "--epochs", 2, "--out", paths["m.npz"],
                         "--log", paths["m.jsonl"], "--plot", paths["c.png"], "--quiet")
    return {"dir": directory, "code": code, "out": out, "err": err, **paths}


@pytest.fixture(scope="session")
def good_image(tmp_path_factory):
    return draw_digit(tmp_path_factory.mktemp("images") / "one.png", "1")


# ------------------------------------------------------------ train end to end

def test_train_end_to_end(trained):
    assert trained["code"] == 0, trained["err"]
    assert "Traceback" not in trained["err"]

    saved = checkpoint.load(trained["m.npz"])
    assert saved.model.sizes == (784, 128, 64, 10)
    assert saved.meta["config"]["limit"] == 1000
    assert saved.meta["progress"]["epoch"] == 2 and saved.meta["progress"]["step"] == 0
    assert len(saved.meta["history"]) == 2

    lines = trained["m.jsonl"].read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    for number, record in enumerate(records, start=1):
        assert set(record) == LOG_KEYS
        assert record["epoch"] == number
        assert 0.0 <= record["train_accuracy"] <= 1.0 and 0.0 <= record["test_accuracy"] <= 1.0
        assert record["loss"] > 0 and record["seconds"] >= 0
    assert without_seconds(records) == without_seconds(saved.meta["history"])

    assert trained["c.png"].read_bytes()[:8] == PNG_MAGIC

    epoch_lines = [line for line in trained["out"].splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 2
    assert epoch_lines[0].split()[:2] == ["epoch", "1"]
    assert epoch_lines[1].split()[:2] == ["epoch", "2"]
    assert leftover_temp_files(trained["dir"]) == []


def test_evaluate_json(trained):
    code, out, err = run("evaluate", trained["m.npz"], "--json")
    assert code == 0, err
    report = json.loads(out)
    assert isinstance(report["accuracy"], float)
    assert len(report["per_class"]) == 10
    assert all(isinstance(x, float) and 0 <= x <= 1 for x in report["per_class"])
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10)
    assert all(isinstance(c, int) for row in report["confusion"] for c in row)
    assert confusion.sum() == 10000
    assert report["accuracy"] == np.trace(confusion) / 10000
    # Same accuracy as the last epoch of training measured.
    assert report["accuracy"] == checkpoint.load(trained["m.npz"]).meta["history"][-1]["test_accuracy"]


def test_evaluate_text_report(trained):
    code, out, err = run("evaluate", trained["m.npz"])
    assert code == 0, err
    assert out.startswith("test accuracy:")


def test_evaluate_plots(trained, tmp_path):
    conf, wrong = tmp_path / "conf.png", tmp_path / "wrong.png"
    code, out, err = run("evaluate", trained["m.npz"], "--plot", conf, "--gallery", wrong)
    assert code == 0, err
    assert conf.read_bytes()[:8] == PNG_MAGIC
    assert wrong.read_bytes()[:8] == PNG_MAGIC
    assert leftover_temp_files(tmp_path) == []


def test_predict_json(trained, good_image, tmp_path):
    seven = draw_digit(tmp_path / "seven.png", "7")
    code, out, err = run("predict", trained["m.npz"], good_image, seven, "--json")
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, (good_image, seven)):
        result = json.loads(line)
        assert set(result) == {"path", "digit", "sure", "probabilities"}
        assert result["path"] == str(path)
        assert isinstance(result["digit"], int) and 0 <= result["digit"] <= 9
        probs = result["probabilities"]
        assert len(probs) == 10 and all(isinstance(p, float) and p >= 0 for p in probs)
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert result["digit"] == int(np.argmax(probs))
        assert result["sure"] == (max(probs) >= confidence_module.NOT_SURE_BELOW)


def test_predict_text(trained, good_image):
    code, out, err = run("predict", trained["m.npz"], good_image)
    assert code == 0, err
    assert out.startswith(f"{good_image}: ")


def test_predict_says_not_sure_below_the_shared_threshold(trained, good_image, monkeypatch):
    # The same image, the threshold just above and just below its confidence.
    code, out, _ = run("predict", trained["m.npz"], good_image, "--json")
    result = json.loads(out)
    confidence = max(result["probabilities"])
    digit = result["digit"]
    monkeypatch.setattr(confidence_module, "NOT_SURE_BELOW", np.nextafter(confidence, 2.0))
    code, out, err = run("predict", trained["m.npz"], good_image)
    assert code == 0, err
    assert out.strip() == f"{good_image}: not sure (best guess {digit}, {confidence * 100:.1f}%)"
    monkeypatch.setattr(confidence_module, "NOT_SURE_BELOW", confidence)
    code, out, err = run("predict", trained["m.npz"], good_image)
    assert out.strip() == f"{good_image}: {digit} ({confidence * 100:.1f}%)"


def test_predict_one_good_one_blank(trained, good_image, tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    code, out, err = run("predict", trained["m.npz"], good_image, blank, "--json")
    assert code != 0
    assert json.loads(out)["path"] == str(good_image)  # exactly one JSON line
    assert_one_line_error(err, blank, "blank")


def test_python_m_help():
    result = run_module("--help")
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "predict"):
        assert command in result.stdout
    result = run_module("train", "--help")
    assert result.returncode == 0 and "--resume" in result.stdout


def test_version():
    code, out, err = run("--version")
    assert code == 0 and out.startswith("fastmlp ")


def test_no_command():
    code, out, err = run()
    assert code == 2
    assert_one_line_error(err)


# ------------------------------------------------------------------------ resume

# Every recipe flag the tests depend on is explicit: the defaults get tuned.
RECIPE = ("--limit", 1000, "--optimizer", "adam", "--lr", 0.001, "--schedule", "constant",
          "--seed", 3, "--batch-size", 100, "--quiet")


def test_resume_is_bit_identical(tmp_path):
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    code, _, err = run("train", *RECIPE, "--epochs", 3, "--out", full)
    assert code == 0, err
    code, _, err = run("train", *RECIPE, "--epochs", 2, "--out", part, "--log", tmp_path / "p.jsonl")
    assert code == 0, err
    code, out, err = run("train", "--resume", part, "--epochs", 3, "--quiet",
                         "--log", tmp_path / "p.jsonl")
    assert code == 0, err
    assert "resuming at epoch 3" in out

    a, b = checkpoint.load(full), checkpoint.load(part)
    assert_same_state(a, b)
    assert without_seconds(a.meta["history"]) == without_seconds(b.meta["history"])
    assert a.meta["config"] == b.meta["config"]
    # The log of the resumed run continues the old one.
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_resume_to_another_out(tmp_path):
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run("train", *RECIPE, "--epochs", 1, "--out", first)[0] == 0
    before = first.read_bytes()
    code, _, err = run("train", "--resume", first, "--epochs", 2, "--out", second, "--quiet")
    assert code == 0, err
    assert first.read_bytes() == before
    assert checkpoint.load(second).meta["progress"]["epoch"] == 2


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "one.npz"
    code, _, err = run("train", *RECIPE, "--epochs", 1, "--out", path)
    assert code == 0, err
    return path


@pytest.mark.parametrize("flag", [("--lr", 0.5), ("--optimizer", "sgd"), ("--seed", 4),
                                  ("--hidden", "32"), ("--batch-size", 7), ("--limit", 999),
                                  ("--schedule", "cosine"), ("--dtype", "float64"),
                                  ("--swa-start", 1), ("--deskew",)],
                         ids=lambda f: f[0])
def test_resume_with_conflicting_flag(one_epoch, flag):
    before = one_epoch.read_bytes()
    code, out, err = run("train", "--resume", one_epoch, "--epochs", 2, *flag)
    assert code == 2
    assert_one_line_error(err, flag[0], "resume")
    assert one_epoch.read_bytes() == before


def test_resume_with_the_same_flags_is_fine(tmp_path, one_epoch):
    copy = tmp_path / "copy.npz"
    copy.write_bytes(one_epoch.read_bytes())
    code, _, err = run("train", "--resume", copy, "--epochs", 2, "--lr", 0.001, "--seed", 3,
                       "--hidden", "128,64", "--limit", 1000, "--quiet")
    assert code == 0, err


def test_resume_with_unparseable_hidden(one_epoch):
    """Regression: on --resume, --hidden is parsed with ``list(map(int, ...))`` in
    fastmlp/cli.py _resumed_config, so ``--hidden abc`` (or ``128,``) raises a
    ValueError traceback. Fix: compare ``list(parse_hidden(value)) == old``
    (fastmlp.model.parse_hidden gives the usual one-line FastmlpError)."""
    result = run_module("train", "--resume", one_epoch, "--epochs", 2, "--hidden", "abc")
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, "--hidden")


def test_resume_when_already_done(one_epoch):
    before = one_epoch.read_bytes()
    code, out, err = run("train", "--resume", one_epoch)
    assert code == 2
    assert_one_line_error(err, "already trained 1 epoch", "--epochs")
    code, out, err = run("train", "--resume", one_epoch, "--epochs", 1)
    assert code == 2
    assert_one_line_error(err, "already trained")
    assert one_epoch.read_bytes() == before


def test_resume_weights_only_checkpoint(tmp_path, one_epoch):
    weights = tmp_path / "w.npz"
    checkpoint.save(weights, checkpoint.Checkpoint(checkpoint.load(one_epoch).model))
    code, out, err = run("train", "--resume", weights, "--epochs", 3)
    assert code == 2
    assert_one_line_error(err, weights)


def test_resume_missing_file(tmp_path):
    code, out, err = run("train", "--resume", tmp_path / "gone.npz")
    assert code == 2
    assert_one_line_error(err, "gone.npz")


@pytest.mark.parametrize("change", [
    lambda meta: meta["progress"].update(bogus=1),
    lambda meta: meta.update(progress=[0, 0]),
    lambda meta: meta["config"].update(bogus=1),
    lambda meta: meta["config"].update(batch_size="many"),
    lambda meta: meta["progress"].update(swa_count=1),
    lambda meta: meta["config"].update(swa_start=1),
], ids=["progress-extra-key", "progress-not-object", "config-extra-key", "config-bad-type",
        "swa-count-without-average", "swa-start-without-average"])
def test_resume_from_tampered_metadata(tmp_path, one_epoch, change):
    """Regression: the CLI builds TrainState(**meta["progress"]) and TrainConfig(**config)
    from unvalidated checkpoint metadata, so an edited (or newer-version) file
    gives a TypeError traceback instead of a one-line error. Fix
    (fastmlp/cli.py, _run_train / _resumed_config): wrap both constructions in
    ``try: ... except (TypeError, ValueError) as exc: raise FastmlpError(
    f"{args.resume}: damaged training state in metadata ({exc})") from None``
    (or validate 'progress' and 'config' keys/types in checkpoint.load)."""
    path = tmp_path / "t.npz"
    with np.load(one_epoch) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    result = run_module("train", "--resume", path, "--epochs", 3, "--quiet")
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, path)


# ---------------------------------------------------------------------- SWA

SWA_LOG_KEYS = LOG_KEYS | {"swa_test_accuracy"}


@pytest.fixture(scope="module")
def swa_run(tmp_path_factory):
    """3 epochs averaging epochs 2 and 3."""
    directory = tmp_path_factory.mktemp("swa")
    paths = {"npz": directory / "swa.npz", "log": directory / "swa.jsonl"}
    code, out, err = run("train", *RECIPE, "--epochs", 3, "--swa-start", 2,
                         "--out", paths["npz"], "--log", paths["log"])
    assert code == 0, err
    return {"out": out, **paths}


def test_swa_saves_the_average_as_the_model(swa_run):
    saved = checkpoint.load(swa_run["npz"])
    assert saved.meta["config"]["swa_start"] == 2 and saved.meta["progress"]["swa_count"] == 2
    assert saved.live is not None and not np.array_equal(saved.model.W[0], saved.live.W[0])
    records = [json.loads(line) for line in swa_run["log"].read_text().splitlines()]
    assert [set(r) for r in records] == [LOG_KEYS, SWA_LOG_KEYS, SWA_LOG_KEYS]
    # evaluate (like predict and the GUI) uses the checkpoint's model: the average.
    code, out, err = run("evaluate", swa_run["npz"], "--json")
    assert code == 0, err
    assert json.loads(out)["accuracy"] == records[-1]["swa_test_accuracy"]
    assert "SWA average of epochs 2-3" in swa_run["out"].splitlines()[-1]
    assert "swa test" in swa_run["out"].splitlines()[-2]


def test_swa_finished_run_extends_bit_identically(tmp_path):
    """A finished SWA run's checkpoint holds the average as its model and the
    live weights beside it: --resume --epochs N continues from the live
    weights, and the average from its count."""
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    code, _, err = run("train", *RECIPE, "--epochs", 3, "--swa-start", 1, "--out", full)
    assert code == 0, err
    code, _, err = run("train", *RECIPE, "--epochs", 2, "--swa-start", 1, "--out", part)
    assert code == 0, err
    code, _, err = run("train", "--resume", part, "--epochs", 3, "--quiet")
    assert code == 0, err
    whole, resumed = checkpoint.load(full), checkpoint.load(part)
    assert_same_state(whole, resumed)
    assert without_seconds(whole.meta["history"]) == without_seconds(resumed.meta["history"])


def test_resume_checkpoint_from_before_swa_existed(tmp_path, one_epoch):
    """Checkpoints written before --swa-start have neither config.swa_start nor
    progress.swa_count: they resume as runs without SWA."""
    old = tmp_path / "old.npz"
    saved = checkpoint.load(one_epoch)
    del saved.meta["config"]["swa_start"], saved.meta["progress"]["swa_count"]
    checkpoint.save(old, saved)
    code, _, err = run("train", "--resume", old, "--epochs", 2, "--quiet")
    assert code == 0, err
    resumed = checkpoint.load(old)
    assert resumed.live is None and resumed.meta["config"]["swa_start"] is None


# ------------------------------------------------- kernels getting ready

COMPILING = "getting numba kernels ready (a first run compiles them)…"
READY = re.compile(r"…ready in (\d+\.\d) s")
SLOW_PREPARE = 0.8  # s: longer than the 0.3 s after which a wait is announced


def fake_numba(monkeypatch, prepare):
    """Make ``--backend numba`` a stand-in whatever the real install's state:
    the reference's kernels with ``prepare`` as its prepare. Like a JIT, its
    kernels wait for the compile that prepare does (at most 5 s), so a command
    that ran them before prepare finished would put that wait in its timings."""
    from fastmlp import kernels
    from fastmlp.kernels import contract, numpy_backend

    compiled = threading.Event()

    def after_compiling(op):
        def call(*args, **kwargs):
            compiled.wait(5)
            return op(*args, **kwargs)
        return call

    def prepare_then_compiled(dtype):
        prepare(dtype)
        compiled.set()

    backend = types.SimpleNamespace(name="numba", **{
        op: after_compiling(getattr(numpy_backend, op)) for op in contract.OPS})
    backend.prepare = prepare_then_compiled
    real = kernels.get_backend
    monkeypatch.setattr(kernels, "get_backend",
                        lambda name=None: backend if name == "numba" else real(name))
    return backend


@pytest.fixture
def data_cached():
    """The shipped MNIST decoded already, so that a SLOW_PREPARE outlasts loading it."""
    from fastmlp.data import load_dataset
    load_dataset()


def test_train_announces_compiling_and_keeps_it_out_of_epoch_seconds(tmp_path, monkeypatch,
                                                                     data_cached):
    import fastmlp.data

    started, prepared, overlapped = threading.Event(), [], []

    def slow_prepare(dtype):
        prepared.append(np.dtype(dtype))
        started.set()
        time.sleep(SLOW_PREPARE)

    real_load = fastmlp.data.load_dataset

    def load_dataset(*args, **kwargs):
        overlapped.append(started.wait(2))  # is it compiling while the data loads?
        return real_load(*args, **kwargs)

    fake_numba(monkeypatch, slow_prepare)
    monkeypatch.setattr(fastmlp.data, "load_dataset", load_dataset)
    log = tmp_path / "log.jsonl"
    code, out, err = run("train", "--backend", "numba", "--limit", 500, "--epochs", 2, "--quiet",
                         "--log", log, "--out", tmp_path / "m.npz")
    assert code == 0, err
    assert prepared == [np.dtype("float32")] and overlapped == [True]
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0] == COMPILING, err
    assert READY.fullmatch(lines[1]) and float(READY.fullmatch(lines[1])[1]) >= SLOW_PREPARE - 0.05
    seconds = [json.loads(line)["seconds"] for line in log.read_text().splitlines()]
    assert len(seconds) == 2 and max(seconds) < SLOW_PREPARE / 2, seconds
    assert "backend numba" in out.splitlines()[0]


def test_a_prepare_that_is_quick_is_not_announced(tmp_path, monkeypatch):
    fake_numba(monkeypatch, lambda dtype: None)
    code, out, err = run("train", "--backend", "numba", "--limit", 500, "--epochs", 1, "--quiet",
                         "--out", tmp_path / "m.npz")
    assert code == 0 and err == "", err


def _command(name, trained, image):
    return {"evaluate": ["evaluate", trained["m.npz"], "--backend", "numba"],
            "predict": ["predict", "--backend", "numba", trained["m.npz"], image],
            "gradcheck": ["gradcheck", "--backends", "numpy,numba", "--hidden", "16",
                          "--entries", 5]}[name]


@pytest.mark.parametrize("command", ["evaluate", "predict", "gradcheck"])
def test_every_command_announces_a_slow_prepare(trained, good_image, monkeypatch, data_cached,
                                                command):
    dtypes = []
    fake_numba(monkeypatch, lambda dtype: dtypes.append(np.dtype(dtype)) or time.sleep(SLOW_PREPARE))
    code, out, err = run(*_command(command, trained, good_image))
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0] == COMPILING and READY.fullmatch(lines[1]), err
    assert dtypes == [np.dtype("float64" if command == "gradcheck" else "float32")]
    assert out


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "gradcheck"])
def test_a_prepare_that_raises_is_a_one_line_error(trained, good_image, tmp_path, monkeypatch,
                                                  command):
    def broken(dtype):
        raise RuntimeError("Failed in nopython mode pipeline\n\nLLVM ERROR: out of registers")

    fake_numba(monkeypatch, broken)
    out_path = tmp_path / "m.npz"
    argv = (["train", "--backend", "numba", "--limit", 500, "--epochs", 1, "--quiet",
             "--out", out_path] if command == "train" else _command(command, trained, good_image))
    code, out, err = run(*argv)
    assert code == 2
    assert_one_line_error(err, "backend 'numba' failed", "RuntimeError",
                          "pipeline LLVM ERROR: out of registers")
    assert "epoch " not in out and not out_path.exists()
    if command != "train":
        assert out == ""


def test_a_prepare_that_raises_after_the_notice_still_ends_in_one_error_line(tmp_path,
                                                                            monkeypatch,
                                                                            data_cached):
    def slow_then_broken(dtype):
        time.sleep(SLOW_PREPARE)
        raise RuntimeError("boom")

    fake_numba(monkeypatch, slow_then_broken)
    code, out, err = run("train", "--backend", "numba", "--limit", 500, "--epochs", 1, "--quiet",
                         "--out", tmp_path / "m.npz")
    assert code == 2
    assert err.splitlines()[0] == COMPILING
    assert_one_line_error(err.split("\n", 1)[1], "backend 'numba' failed", "RuntimeError: boom")


# ------------------------------------------------------------------- Ctrl-C

def _start_training(directory, *argv):
    return subprocess.Popen(
        [sys.executable, "-m", "fastmlp", "train", *map(str, argv)], cwd=directory,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
        # A SIGINT disposition of "ignore" would be inherited: start from the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_line(proc, prefix, timeout=45):
    """Read proc.stdout until a line starting with ``prefix``; returns all lines read."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break  # the process ended
            lines.append(line)
            if line.startswith(prefix):
                return lines
    proc.kill()
    pytest.fail(f"no line starting with {prefix!r} within {timeout} s; got {lines!r}")


INTERRUPT_RECIPE = ("--limit", 3000, "--batch-size", 32, "--optimizer", "adamw", "--lr", 0.001,
                    "--schedule", "constant", "--seed", 5, "--quiet")


@pytest.mark.parametrize("swa", [(), ("--swa-start", 1)], ids=["plain", "swa"])
def test_sigint_saves_and_resumes_bit_identically(tmp_path, swa):
    """With --swa-start 1 the interrupted checkpoint holds the average of the
    epochs done and the live weights; the resumed run must end with the same
    average (the saved model) and live weights as an uninterrupted one."""
    proc = _start_training(tmp_path, *INTERRUPT_RECIPE, *swa, "--epochs", 50, "--out", "ck.npz")
    try:
        _wait_for_line(proc, "epoch ")  # epoch 1 is done and saved; now in epoch 2
        time.sleep(0.1)  # land somewhere inside the epoch
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "resume with" in err and "ck.npz" in err
    assert leftover_temp_files(tmp_path) == []

    ck = tmp_path / "ck.npz"
    saved = checkpoint.load(ck)
    progress = saved.meta["progress"]
    assert (saved.live is not None) == bool(swa)
    assert progress["epoch"] >= 1
    assert 0 <= progress["step"] < -(-3000 // 32)
    epochs = progress["epoch"] + 1  # finish the interrupted epoch (mid-epoch resume)
    print(f"interrupted at epoch {progress['epoch']} step {progress['step']}")

    code, out, err = run("train", "--resume", ck, "--epochs", epochs, "--quiet")
    assert code == 0, err
    reference = tmp_path / "ref.npz"
    code, out, err = run("train", *INTERRUPT_RECIPE, *swa, "--epochs", epochs, "--out", reference)
    assert code == 0, err

    resumed, uninterrupted = checkpoint.load(ck), checkpoint.load(reference)
    assert_same_state(resumed, uninterrupted)
    history = without_seconds(resumed.meta["history"])
    assert history == without_seconds(uninterrupted.meta["history"])
    assert resumed.meta["progress"]["epoch"] == epochs


# --------------------------------------------------------------- divergence

def test_divergence_is_a_one_line_error(tmp_path):
    """Non-finite loss: exit 2, one line naming the fix. Also nothing else on
    stderr: NumPy's overflow RuntimeWarnings (with source lines) used to be
    printed before the error, hence a subprocess (pytest would swallow them)."""
    result = run_module("train", "--limit", 1000, "--epochs", 3, "--lr", 1e6, "--optimizer", "sgd",
                        "--out", "d.npz", "--quiet", cwd=tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "lower --lr", "last good checkpoint: none")
    assert not (tmp_path / "d.npz").exists()
    assert leftover_temp_files(tmp_path) == []


def test_divergence_after_a_good_epoch_keeps_its_checkpoint(tmp_path, monkeypatch):
    """A NaN in epoch 2: the error names the epoch-1 checkpoint, which loads."""
    from fastmlp.kernels import numpy_backend

    real = numpy_backend.train_batches
    calls = []

    def nan_in_epoch_two(W, b, slots, step, X, y, order, batch_size, first, stop, *rest):
        calls.append(first)
        loss, correct = real(W, b, slots, step, X, y, order, batch_size, first, stop, *rest)
        epoch_two = calls.count(0) >= 2
        return (float("nan") if epoch_two and first >= 2 else loss), correct

    monkeypatch.setattr(numpy_backend, "train_batches", nan_in_epoch_two)
    out_path = tmp_path / "g.npz"
    code, out, err = run("train", "--limit", 1000, "--epochs", 3, "--out", out_path, "--quiet")
    assert code == 2
    assert_one_line_error(err, "lower --lr", f"{out_path} (epoch 1)")
    good = checkpoint.load(out_path)
    assert good.meta["progress"] == {**good.meta["progress"], "epoch": 1, "step": 0}
    assert all(np.isfinite(w).all() for w in good.model.W)


# ------------------------------------------------------------ invalid values

INVALID_TRAIN = {
    "batch-size 0": (["--batch-size", "0"], ["--batch-size"]),
    "lr 0": (["--lr", "0"], ["--lr"]),
    "lr -1": (["--lr=-1"], ["--lr"]),
    "lr nan": (["--lr", "nan"], ["--lr"]),
    "epochs 0": (["--epochs", "0"], ["--epochs"]),
    "epochs x": (["--epochs", "x"], ["--epochs", "'x'"]),
    "batch-size 1.5": (["--batch-size", "1.5"], ["--batch-size"]),
    "lr abc": (["--lr", "abc"], ["--lr"]),
    "backend nope": (["--backend", "nope"], ["nope", "numpy", "numba"]),
    "optimizer nope": (["--optimizer", "nope"], ["nope", "adam", "sgd"]),
    "schedule nope": (["--schedule", "nope"], ["nope", "cosine"]),
    "hidden 128,0": (["--hidden", "128,0"], ["--hidden"]),
    "hidden abc": (["--hidden", "abc"], ["--hidden", "abc"]),
    "hidden -5": (["--hidden=-5"], ["--hidden"]),
    "limit 0": (["--limit", "0"], ["--limit"]),
    "limit 70000": (["--limit", "70000"], ["--limit", "70000", "60000"]),
    "momentum 1": (["--momentum", "1"], ["--momentum"]),
    "warmup 1": (["--warmup", "1"], ["--warmup"]),
    "weight-decay -1": (["--weight-decay=-1"], ["--weight-decay"]),
    "label-smoothing 1": (["--label-smoothing", "1"], ["--label-smoothing"]),
    "swa-start 0": (["--swa-start", "0"], ["--swa-start 0"]),
    "swa-start after the last epoch": (["--swa-start", "2"], ["--swa-start 2", "--epochs (1)"]),
    "swa-start x": (["--swa-start", "x"], ["--swa-start", "'x'"]),
    "dtype float16": (["--dtype", "float16"], ["float16"]),
    "unknown flag": (["--lr-max", "3"], ["--lr-max"]),
    "out missing dir": (["--out", "/nonexistent/dir/m.npz"], ["/nonexistent/dir"]),
    "out is a directory": (["--out", "{tmp}"], ["--out", "directory"]),
    "log missing dir": (["--log", "/nonexistent/dir/m.jsonl"], ["--log"]),
    "plot missing dir": (["--plot", "/nonexistent/dir/c.png"], ["--plot"]),
    "data missing": (["--data", "/nonexistent"], ["/nonexistent"]),
    "data is a file": (["--data", "{tmp}/file.txt"], ["file.txt", "not a directory"]),
    "data empty dir": (["--data", "{tmp}/emptydir"], ["emptydir"]),
}


@pytest.mark.parametrize("case", list(INVALID_TRAIN))
def test_invalid_train_values(tmp_path, case):
    argv, fragments = INVALID_TRAIN[case]
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "emptydir").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out_args = [] if "--out" in argv else ["--out", tmp_path / "m.npz"]
    start = time.monotonic()
    code, out, err = run("train", "--epochs", 1, "--limit", 500, "--quiet", *out_args, *argv)
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert "epoch " not in out  # failed before training
    assert time.monotonic() - start < 10
    assert not (tmp_path / "m.npz").exists()


def test_out_in_unwritable_directory(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: a chmod 500 directory is still writable")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, out, err = run("train", "--epochs", 1, "--limit", 500, "--out", locked / "m.npz")
    finally:
        locked.chmod(0o700)
    assert code == 2
    assert_one_line_error(err, "not writable")


def test_invalid_value_in_subprocess_has_no_traceback(tmp_path):
    """The same contract seen from a shell: exit 2 and one line."""
    result = run_module("train", "--batch-size", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "--batch-size")
    assert result.stdout == ""
    result = run_module("train", "--epochs", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "--epochs")


def test_evaluate_missing_model(tmp_path):
    code, out, err = run("evaluate", tmp_path / "missing.npz")
    assert code == 2
    assert_one_line_error(err, "missing.npz")


def test_evaluate_text_file(tmp_path):
    text = tmp_path / "model.txt"
    text.write_text("not a model\n")
    code, out, err = run("evaluate", text, "--json")
    assert code == 2
    assert_one_line_error(err, "model.txt")
    assert out == ""


def test_evaluate_plot_in_missing_directory(trained):
    code, out, err = run("evaluate", trained["m.npz"], "--plot", "/nonexistent/dir/c.png")
    assert code == 2
    assert_one_line_error(err, "--plot", "/nonexistent/dir")
    assert out == ""  # checked before the (slower) evaluation


def test_evaluate_bad_backend(trained):
    code, out, err = run("evaluate", trained["m.npz"], "--backend", "nope")
    assert code == 2
    assert_one_line_error(err, "nope", "numpy")


@pytest.mark.parametrize("content", [b"this is text, not pixels\n", b""], ids=["text", "empty"])
def test_predict_bad_image(trained, tmp_path, content):
    """Regression (exit code): with every image bad, predict exits 1, while the
    project standard is exit 2 for a FastmlpError. Fix (fastmlp/cli.py,
    _run_predict, last line): ``return EXIT_ERROR if failed else 0``."""
    image = tmp_path / "digit.png"
    image.write_bytes(content)
    code, out, err = run("predict", trained["m.npz"], image)
    assert out == ""
    assert_one_line_error(err, image)
    assert code == 2


def test_predict_missing_image_and_model(trained, tmp_path, good_image):
    code, out, err = run("predict", trained["m.npz"], tmp_path / "nope.png")
    assert code != 0
    assert_one_line_error(err, "nope.png")
    code, out, err = run("predict", tmp_path / "nope.npz", good_image)
    assert code == 2
    assert_one_line_error(err, "nope.npz")


def test_predict_model_with_other_input_size(tmp_path, good_image):
    """Regression: predict feeds the 784 normalised pixels to any model; a model
    trained on other-sized images (via --data) crashes in the matmul with a
    ValueError traceback. evaluate checks this, predict does not. Fix
    (fastmlp/cli.py, _run_predict, after loading the model): ``if
    model.sizes[0] != 784: raise FastmlpError(f"{args.model}: expects
    {model.sizes[0]} inputs, but images are normalised to 28x28 = 784
    pixels")``."""
    from fastmlp.model import MLP

    small = tmp_path / "small.npz"
    checkpoint.save(small, checkpoint.Checkpoint(MLP.init((8,), n_inputs=64)))
    result = run_module("predict", small, good_image)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, "small.npz", "784")


def test_checkpoint_write_failure_is_a_one_line_error(tmp_path, monkeypatch):
    """Regression: an OSError while writing the checkpoint (disk full, quota, the
    directory removed mid-run) escapes main() as a traceback. Fix
    (fastmlp/checkpoint.py, save): in the ``except BaseException`` cleanup,
    ``if isinstance(exc, OSError): raise FastmlpError(f"{path}: cannot write
    checkpoint ({exc.strerror or exc})") from None`` after unlinking the temp
    file (or catch OSError around checkpoint.save in cli.py)."""
    def disk_full(f, **arrays):
        f.write(b"PK")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", disk_full)
    try:
        code, out, err = run("train", "--epochs", 1, "--limit", 500, "--quiet",
                             "--out", tmp_path / "m.npz")
    except OSError as exc:
        pytest.fail(f"OSError escaped main(): {exc!r}")
    assert code == 2
    assert_one_line_error(err, "m.npz", "space")
    assert leftover_temp_files(tmp_path) == []

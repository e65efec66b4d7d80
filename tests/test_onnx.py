"""ONNX export: ``fastmlp export`` and ``MLPClassifier.to_onnx``, run back in
onnxruntime and compared with both backends, and its one-line errors.

Tolerance: onnxruntime's float32 Gemm sums each dot product in its own order
(its MLAS kernels), the backends in theirs; each order rounds differently,
by up to about k * 2^-24 relative for a k-term sum (k = 784 in the first
layer). On the 10,000 MNIST test images the largest probability difference
measured was 2.6e-6 (Numba) and 1.8e-6 (NumPy); the bar is 1e-5, which no
real export bug (a transposed or missing layer, a wrong bias) stays under.
In float64 the same reasoning gives ~1e-13; the bar there is 1e-10.
"""

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fastmlp import checkpoint
from fastmlp.cli import main
from fastmlp.data import load_dataset
from fastmlp.errors import FastmlpError
from fastmlp.estimator import MLPClassifier
from fastmlp.evaluate import predict_proba
from fastmlp.kernels import get_backend

PRETRAINED = "fastmlp/pretrained/fastmlp-mnist.npz"
ATOL = {"float32": 1e-5, "float64": 1e-10}


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def onnx_probs(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})[0]


@pytest.fixture(scope="module")
def mnist():
    return load_dataset()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_exported_pretrained_model_matches_the_backend_on_mnist_test(mnist, tmp_path, backend):
    out = tmp_path / "model.onnx"
    assert run_cli("export", PRETRAINED, out)[0] == 0
    model = checkpoint.load(PRETRAINED).model
    # The graph is the network alone: a model trained deskewed says so in its
    # metadata, and its caller deskews first, as fastmlp does before its first layer.
    deskew = onnx.load(str(out)).metadata_props
    assert {p.key: p.value for p in deskew}["deskew"].startswith("true" if model.deskew else "false")
    got = onnx_probs(out, model.prepared(mnist.X_test))
    want = predict_proba(model, mnist.X_test, get_backend(backend))
    assert got.shape == want.shape == (10000, 10)
    assert np.abs(got - want).max() <= ATOL["float32"]
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def test_graph_is_standard_and_carries_scaling_and_classes(tmp_path):
    out = tmp_path / "model.onnx"
    run_cli("export", PRETRAINED, out)
    model = onnx.load(str(out))
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["input_scaling"] == checkpoint.INPUT_SCALING
    assert json.loads(props["classes"]) == list(range(10))
    assert json.loads(props["sizes"]) == [784, 128, 64, 10]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_onnx_of_an_estimator_with_string_labels(tmp_path, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5))
    y = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0)]
    clf = MLPClassifier(hidden=(16, 8), epochs=5, dtype=dtype).fit(X, y)
    out = tmp_path / "clf.onnx"
    clf.to_onnx(out)
    got = onnx_probs(out, X.astype(dtype))
    assert np.abs(got - clf.predict_proba(X)).max() <= ATOL[dtype]
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["classes"]) == ["ant", "bee", "cat"]
    assert "as the arrays given to fit" in props["input_scaling"]


def test_bad_checkpoint_is_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    out = tmp_path / "out.onnx"
    code, _, err = run_cli("export", bad, out)
    assert code == 2 and err.count("\n") == 1 and "bad.npz" in err
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_unwritable_output_is_one_line(tmp_path):
    code, _, err = run_cli("export", PRETRAINED, tmp_path / "missing" / "m.onnx")
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err


def test_failed_export_keeps_the_old_file(tmp_path, monkeypatch):
    from fastmlp import onnx_export

    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")

    class DiskFull:
        def SerializeToString(self):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_export, "build_graph", lambda saved: DiskFull())
    with pytest.raises(FastmlpError, match="m.onnx: cannot write .No space left on device"):
        MLPClassifier(epochs=1, hidden=(4,)).fit(np.eye(4), [0, 1, 0, 1]).to_onnx(out)
    assert out.read_bytes() == b"old" and not list(tmp_path.glob("*.tmp"))


def test_without_onnx_the_command_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None\n"
            "from fastmlp.cli import main\n"
            f"sys.exit(main(['export', {PRETRAINED!r}, {str(tmp_path / 'm.onnx')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ('fastmlp: error: ONNX export needs the onnx package: '
                                   'pip install "fastmlp[onnx]" (or pip install onnx)')

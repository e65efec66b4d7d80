"""The network as a standard ONNX graph.

Runnable by onnxruntime (C++, C#, Java, JavaScript in the browser, mobile)
without fastmlp:

    input: (n, d) float  ->  [Gemm -> Relu] per hidden layer  ->  Gemm -> Softmax
    -> probabilities: (n, K)

Gemm(X, W, b) computes X @ W + b, exactly the engine's linear layer; the
weights are stored in the checkpoint's dtype (float32 or float64). The
model's metadata says how inputs must be scaled and which label each output
column is, and (``deskew``) whether they must first be deskewed: a model
trained with ``--deskew`` reads deskewed images, and that step
(``fastmlp.deskew.deskew``, like normalize_digit before it) is not part of the
graph, which is the network alone. Needs the ``onnx`` package: ``pip install "fastmlp[onnx]"``.
"""

import json

from fastmlp import __version__, checkpoint
from fastmlp.errors import FastmlpError

# Softmax with the axis semantics of opset >= 13 (per row, not a flattened
# 2-D coercion); 17 is supported by every onnxruntime since 1.11 (2022).
OPSET = 17
INPUT, OUTPUT = "input", "probabilities"


def _onnx():
    try:
        import onnx
    except ImportError:
        raise FastmlpError('ONNX export needs the onnx package: pip install "fastmlp[onnx]" '
                           "(or pip install onnx)") from None
    return onnx


def build_graph(saved: checkpoint.Checkpoint):
    """The ModelProto of ``saved.model``, checked by onnx.checker."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    model = saved.model
    elem = TensorProto.FLOAT if model.dtype.name == "float32" else TensorProto.DOUBLE
    nodes, weights, current = [], [], INPUT
    for l, (W, b) in enumerate(zip(model.W, model.b)):
        weights += [numpy_helper.from_array(W, f"W{l}"), numpy_helper.from_array(b, f"b{l}")]
        last = l == len(model.W) - 1
        out = "logits" if last else f"relu{l}"
        linear = out if last else f"linear{l}"
        nodes.append(helper.make_node("Gemm", [current, f"W{l}", f"b{l}"], [linear], name=f"layer{l}"))
        if not last:
            nodes.append(helper.make_node("Relu", [linear], [out], name=f"relu{l}"))
        current = out
    nodes.append(helper.make_node("Softmax", [current], [OUTPUT], axis=1, name="softmax"))
    graph = helper.make_graph(
        nodes, "fastmlp_mlp",
        [helper.make_tensor_value_info(INPUT, elem, ["n", model.sizes[0]])],
        [helper.make_tensor_value_info(OUTPUT, elem, ["n", model.sizes[-1]])], weights)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fastmlp", producer_version=__version__)
    helper.set_model_props(proto, metadata(saved))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, ValueError) as exc:  # e.g. over protobuf's 2 GB
        raise FastmlpError(f"cannot export this network as ONNX: {' '.join(str(exc).split())}") from None
    return proto


def metadata(saved: checkpoint.Checkpoint) -> dict:
    """ONNX metadata_props (strings): the input scaling, the labels of the
    output columns, the layer sizes and what the model was trained on."""
    meta = saved.meta
    own = meta.get("estimator") if isinstance(meta.get("estimator"), dict) else {}
    classes = own.get("classes", list(range(saved.model.sizes[-1])))
    scaling = own.get("input_scaling", meta.get("input_scaling", checkpoint.INPUT_SCALING))
    props = {"input_scaling": str(scaling), "classes": json.dumps(classes),
             "sizes": json.dumps(list(saved.model.sizes)), "output": "softmax probabilities",
             "source": "fastmlp checkpoint",
             "deskew": ("true: deskew each image by its second moments (fastmlp.deskew.deskew) "
                        "before it is input" if saved.model.deskew else "false")}
    if isinstance(meta.get("data"), dict):
        props["trained_on"] = json.dumps(meta["data"])
    return props


def write_onnx(saved: checkpoint.Checkpoint, path) -> None:
    """Write the ONNX graph of ``saved`` to ``path`` atomically (the old file,
    if any, stays until the new one is complete)."""
    proto = build_graph(saved)
    with checkpoint.atomic_write(path) as f:
        f.write(proto.SerializeToString())


def export(model_path, onnx_path) -> None:
    """``fastmlp export MODEL.npz MODEL.onnx``: the checkpoint is validated on load."""
    _onnx()  # before reading anything: say what to install first
    write_onnx(checkpoint.load(model_path), onnx_path)

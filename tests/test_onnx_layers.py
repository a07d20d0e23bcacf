"""Networks with convolution, pooling, reshapes and embeddings exported to ONNX (Conv, MaxPool,
AveragePool, Reshape, Flatten, Gather, Concat) compute `net.forward`: in ONNX Runtime where it
has the kernels (float32; float64 for embeddings and max pooling), else in ONNX's own reference
evaluator; and explain refuses them by name."""

from __future__ import annotations

import numpy as np
import pytest
from layer_networks import NETWORKS as NETWORKS_OF
from layer_networks import inputs
from optional import require

import bpcore as bp
from bpcore.bench import cnn

#: The networks exported here (every kind but the parametric activations, which
#: test_onnx_import_layers reads back).
EXPORTED = ("conv1d", "conv2d", "max_pool", "sequence", "tabular")
NETWORKS = {name: NETWORKS_OF[name] for name in EXPORTED}
#: The operators ONNX Runtime's CPU provider runs in float32 only.
FLOAT32_ONLY = {"conv2d", "conv1d"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_exported_model_computes_the_forward_pass(name: str, dtype: str) -> None:
    require("onnx")
    ort = require("onnxruntime")
    from onnx.reference import ReferenceEvaluator

    net = bp.Network(NETWORKS[name](), loss="cross_entropy", dtype=dtype, seed=1)
    X = inputs(name, net)
    model = bp.to_onnx(net, probabilities=True)
    if dtype == "float64" and name in FLOAT32_ONLY:
        out, proba = ReferenceEvaluator(model).run(None, {"input": X})
    else:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        out, proba = session.run(None, {"input": X})
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-13}
    np.testing.assert_allclose(out, net.forward(X), **tol)
    np.testing.assert_allclose(proba, net.predict_proba(X), **tol)
    ops = {node.op_type for node in model.graph.node}
    expected = {
        "conv2d": {"Reshape", "Conv", "MaxPool", "AveragePool", "Flatten"},
        "conv1d": {"Reshape", "Conv", "MaxPool", "AveragePool", "Flatten"},
        "max_pool": {"Reshape", "MaxPool", "Flatten"},
        "tabular": {"Gather", "Cast", "Concat"},
        "sequence": {"Reshape", "Cast", "Gather", "Flatten"},
    }[name]
    assert expected <= ops


def test_the_digits_cnn_exports_for_onnx_runtime() -> None:
    require("onnx")
    ort = require("onnxruntime")
    # The benchmark's digits CNN.
    layers = cnn.layers()
    net = bp.Network(layers, loss="cross_entropy", seed=0)
    X = np.random.default_rng(3).random((300, 64)).astype(np.float32)
    session = ort.InferenceSession(bp.to_onnx(net).SerializeToString())
    np.testing.assert_allclose(session.run(None, {"input": X})[0], net.forward(X), atol=1e-5)


@pytest.mark.parametrize("name", ["conv2d", "tabular"])
def test_explain_refuses_the_layers_it_cannot_show(name: str) -> None:
    net = bp.Network(NETWORKS[name](), loss="cross_entropy")
    X = inputs(name, net)
    first = type(net.layers[0]).__name__
    with pytest.raises(ValueError, match=rf"explain .* cannot show layers\[0\] \({first}\)"):
        bp.explain(net, X[0], 1)

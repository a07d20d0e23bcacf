"""from_onnx of the array, embedding and new activation layers: to_onnx → from_onnx gives back
every layer bpcore has, with the same parameters and outputs; torch.onnx.export's graphs of a
small CNN and of an embedding read as the equal networks; attributes bpcore has no layer for are
refused with the node and the attribute named.

onnx, onnxruntime and torch are optional: without them these tests skip, saying so, except in CI
(BPCORE_REQUIRE_OPTIONAL=1), where they fail."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pytest
from layer_networks import NETWORKS as NETWORKS_OF
from layer_networks import inputs
from optional import require

import bpcore as bp

#: Networks of every layer kind beyond the MLP ones (those are in test_onnx_import).
EXPORTED = ("activations", "conv1d", "conv2d", "sequence", "tabular")
NETWORKS = {name: NETWORKS_OF[name] for name in EXPORTED}


def _inputs(name: str, net: bp.Network) -> np.ndarray:
    return inputs(name, net, scale=2.0)


def _trained(name: str, dtype: str) -> bp.Network:
    """A network whose parameters are not those of its initialization (PReLU's slopes moved)."""
    net = bp.Network(NETWORKS[name](), loss="cross_entropy", dtype=dtype, seed=1)
    X = _inputs(name, net)
    net.fit(X, np.arange(6) % 3, epochs=3, batch_size=3, progress=False)
    return net


@pytest.mark.parametrize("opset", [17, None])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_to_onnx_reads_back_to_the_same_network(name: str, dtype: str, opset: int | None) -> None:
    require("onnx")
    net = _trained(name, dtype)
    back = bp.from_onnx(bp.to_onnx(net, probabilities=True, opset=opset))
    assert back.layers == net.layers
    assert back.dtype == net.dtype and back.loss_function == net.loss_function
    for key, value in net.parameters().items():
        np.testing.assert_array_equal(back.parameters()[key], value, err_msg=key)
    X = _inputs(name, net)
    np.testing.assert_array_equal(back.forward(X), net.forward(X))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_network_read_back_computes_what_onnx_runtime_does(name: str) -> None:
    require("onnx")
    ort = require("onnxruntime")
    model = bp.to_onnx(_trained(name, "float32"))
    back = bp.from_onnx(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    X = _inputs(name, back)
    (expected,) = session.run(None, {"input": X})
    np.testing.assert_allclose(back.forward(X), expected, rtol=1e-5, atol=1e-6)


def _torch_export(torch: Any, module: Any, example: Any, dynamo: bool) -> Any:
    """`module` exported by torch.onnx.export (TorchScript or dynamo) with a dynamic batch."""
    onnx = require("onnx")
    if dynamo:
        require("onnxscript")
        options: dict[str, Any] = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
    else:
        options = {"dynamic_axes": {"x": {0: "batch"}}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation warning
        torch.onnx.export(module, (example,), buffer, input_names=["x"], dynamo=dynamo, **options)
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_a_small_cnn_exported_by_torch_reads_as_the_equal_network(dynamo: bool) -> None:
    torch = require("torch")
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.SiLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.PReLU(6),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 5),
        nn.Mish(),
        nn.Linear(5, 3),
    ).eval()
    with torch.no_grad():
        module[4].weight.uniform_(-0.5, 0.5)  # slopes of their own, not the init's
    x = torch.randn(9, 1, 8, 8)
    net = bp.from_onnx(_torch_export(torch, module, x, dynamo))
    assert net.layers == [
        bp.Reshape((1, 8, 8)),  # the (batch, 1, 8, 8) input, read from flat rows
        bp.Conv2d(1, 4, 3, padding=1),
        bp.SiLU(),
        bp.MaxPool2d(2),
        bp.Conv2d(4, 6, 3, padding=1),
        bp.PReLU(6),
        bp.AvgPool2d(2),
        bp.Flatten(),
        bp.Dense(24, 5),
        bp.Mish(),
        bp.Dense(5, 3),
    ]
    for key, value in module.state_dict().items():
        index, name = key.split(".")
        shifted = f"{int(index) + 1}.{name}"  # behind the Reshape
        np.testing.assert_array_equal(net.parameters()[shifted], value.numpy(), err_msg=key)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(net.forward(x.reshape(9, -1).numpy()), expected, atol=1e-6)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_an_embedding_exported_by_torch_reads_with_its_reshape_first(dynamo: bool) -> None:
    torch = require("torch")
    nn = torch.nn
    torch.manual_seed(1)
    module = nn.Sequential(nn.Embedding(6, 3), nn.Flatten(), nn.Linear(12, 2)).eval()
    indices = torch.randint(0, 6, (5, 4))
    net = bp.from_onnx(_torch_export(torch, module, indices, dynamo))
    assert net.layers == [bp.Reshape((4,)), bp.Embedding(6, 3), bp.Flatten(), bp.Dense(12, 2)]
    with torch.no_grad():
        expected = module(indices).numpy()
    np.testing.assert_allclose(net.forward(indices.numpy().astype(np.float32)), expected, atol=1e-6)


def _with_attribute(model: Any, op: str, **attributes: Any) -> Any:
    """`model` with the attributes of its first `op` node replaced."""
    onnx = require("onnx")
    node = next(n for n in model.graph.node if n.op_type == op)
    for name, value in attributes.items():
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend([*kept, onnx.helper.make_attribute(name, value)])
    return model


def _cnn_model() -> Any:
    layers = [
        bp.Reshape((2, 6, 6)),
        bp.Conv2d(2, 2, 3, padding=1),
        bp.MaxPool2d(2),
        bp.AvgPool2d(3, stride=1, padding=1),
        bp.Flatten(),
        bp.Dense(18, 3),
    ]
    return bp.to_onnx(bp.Network(layers, seed=0))


@pytest.mark.parametrize(
    ("op", "attributes", "message"),
    [
        ("Conv", {"group": 2}, r"'1\.conv2d' \(Conv\): group=2"),
        ("Conv", {"auto_pad": "SAME_UPPER"}, r"'1\.conv2d' \(Conv\): auto_pad='SAME_UPPER'"),
        ("Conv", {"pads": [1, 1, 0, 0]}, r"'1\.conv2d' \(Conv\): pads=\[1, 1, 0, 0\]"),
        ("MaxPool", {"ceil_mode": 1}, r"'2\.max_pool2d' \(MaxPool\): ceil_mode=1"),
        ("MaxPool", {"dilations": [2, 2]}, r"'2\.max_pool2d' \(MaxPool\): dilation"),
        (
            "AveragePool",
            {"count_include_pad": 0},
            r"'3\.avg_pool2d' \(AveragePool\): count_include_pad=0",
        ),
        ("AveragePool", {"ceil_mode": 1}, r"'3\.avg_pool2d' \(AveragePool\): ceil_mode=1"),
        ("Flatten", {"axis": 2}, r"'4\.flatten' \(Flatten\): axis=2"),
    ],
)
def test_attributes_without_a_layer_are_refused_by_node_and_name(
    op: str, attributes: dict[str, Any], message: str
) -> None:
    require("onnx")
    model = _with_attribute(_cnn_model(), op, **attributes)
    with pytest.raises(ValueError, match=rf"from_onnx: cannot take node {message}"):
        bp.from_onnx(model)


def test_a_slope_per_position_is_not_a_prelu() -> None:
    onnx = require("onnx")
    model = bp.to_onnx(
        bp.Network([bp.Reshape((2, 3)), bp.PReLU(2), bp.Flatten(), bp.Dense(6, 1)], seed=0)
    )
    slope = next(t for t in model.graph.initializer if t.name == "1.weight")
    slope.CopyFrom(onnx.numpy_helper.from_array(np.full((1, 3), 0.2, np.float32), "1.weight"))
    with pytest.raises(ValueError, match=r"'1\.prelu' \(PRelu\): the slope has shape \(1, 3\)"):
        bp.from_onnx(model)


def test_a_reshape_that_moves_the_batch_is_refused() -> None:
    onnx = require("onnx")
    model = bp.to_onnx(bp.Network([bp.Reshape((1, 2, 2)), bp.Flatten(), bp.Dense(4, 1)], seed=0))
    shape = next(t for t in model.graph.initializer if t.name == "0.shape")
    shape.CopyFrom(onnx.numpy_helper.from_array(np.array([2, 1, 2, 2]), "0.shape"))
    with pytest.raises(ValueError, match=r"'0\.reshape' \(Reshape\): shape=\[2, 1, 2, 2\]"):
        bp.from_onnx(model)

"""from_onnx: the sequential MLP graphs of to_onnx, torch, Keras-style converters and skl2onnx
read back as bpcore Networks computing the same outputs; anything else refused by node.

onnx is optional (bpcore's `onnx` extra; torch and skl2onnx for their exporters' tests): without
it these tests skip, saying so, except in CI (BPCORE_REQUIRE_OPTIONAL=1), where they fail."""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import numpy as np
import pytest
from optional import require

import bpcore as bp


@pytest.fixture(scope="module")
def onnx() -> Any:
    return require("onnx", install="bpcore[onnx]")


def every_kind(dtype: str) -> bp.Network:
    layers = [
        bp.Dense(5, 8),
        bp.ReLU(),
        bp.GELU(),
        bp.Dense(8, 8),
        bp.LeakyReLU(0.013),
        bp.Dense(8, 8, bias=False),
        bp.ELU(0.37),
        bp.Softplus(beta=0.3, threshold=1.7),
        bp.Softplus(),
        bp.Tanh(),
        bp.Sigmoid(),
        bp.Identity(),
        bp.Dropout(0.3),
        bp.BatchNorm1d(8, eps=1e-3, momentum=0.2),
        bp.LayerNorm(8, eps=1e-4),
        bp.SiLU(),
        bp.Mish(),
        bp.PReLU(),
        bp.PReLU(8),
        bp.Dense(8, 3),
    ]
    rng = np.random.default_rng(1)
    net = bp.Network(layers, loss=bp.CrossEntropyLoss(label_smoothing=0.1), dtype=dtype, seed=2)
    net.fit(rng.normal(size=(64, 5)) * 3, rng.integers(0, 3, 64), epochs=2, progress=False)
    return net


def inputs(n_features: int = 5, dtype: str = "float64") -> np.ndarray:
    return (np.random.default_rng(5).normal(size=(40, n_features)) * 3).astype(dtype)


@pytest.mark.parametrize("opset", [17, None])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_onnx_reads_back_to_the_same_network(onnx, dtype, opset):
    net = every_kind(dtype)
    back = bp.from_onnx(bp.to_onnx(net, probabilities=True, opset=opset))
    assert back.layers == net.layers
    assert back.loss_function == net.loss_function  # kept in the model's metadata
    assert back.dtype == net.dtype
    state, expected = back.state_dict(), net.state_dict()
    assert state.keys() == expected.keys()
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            assert value == 0  # not part of ONNX
        else:
            np.testing.assert_array_equal(value, expected[name], err_msg=name)
    X = inputs(dtype=dtype)
    np.testing.assert_array_equal(back.forward(X), net.forward(X))


def test_a_file_path_reads_too(onnx, tmp_path):
    net = every_kind("float32")
    path = tmp_path / "net.onnx"
    bp.to_onnx(net, path)
    back = bp.from_onnx(path)
    np.testing.assert_array_equal(back.forward(inputs(dtype="float32")), net.forward(inputs()))
    assert bp.from_onnx(str(path), loss="mse").loss_function == bp.MSELoss()


# ----- graphs written with onnx.helper ---------------------------------------------------------


def graph_model(onnx: Any, nodes: list, constants: dict[str, np.ndarray], n_in: int, **kw) -> Any:
    """A model of `nodes` from input "x" (batch, n_in) to output "y"."""
    h = onnx.helper
    graph = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info("x", kw.get("element", 1), ["N", n_in])],
        [h.make_tensor_value_info(o, kw.get("element", 1), None) for o in kw.get("outputs", ["y"])],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", kw.get("opset", 17))])


def weights(*shape: int) -> np.ndarray:
    return np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)


def test_gemm_in_either_weight_layout_with_alpha_and_beta(onnx):
    h = onnx.helper
    w, b = weights(3, 4), weights(3)  # (out, in)
    X = inputs(4, "float32")
    expected = X @ w.T + b
    for transB, stored in ((1, w), (0, w.T.copy())):
        nodes = [h.make_node("Gemm", ["x", "w", "b"], ["y"], transB=transB)]
        net = bp.from_onnx(graph_model(onnx, nodes, {"w": stored, "b": b}, 4))
        assert net.layers == [bp.Dense(4, 3)] and net.dtype == np.float32
        np.testing.assert_allclose(net.forward(X), expected, rtol=1e-6, atol=1e-6)
    nodes = [h.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, alpha=2.0, beta=0.5)]
    net = bp.from_onnx(graph_model(onnx, nodes, {"w": w, "b": b.reshape(1, 3)}, 4))
    np.testing.assert_allclose(net.forward(X), X @ (2 * w).T + 0.5 * b, rtol=1e-6, atol=1e-5)


def test_keras_style_matmul_add_chains_and_a_softmax_head(onnx):
    h = onnx.helper
    w1, b1, w2, b2, w3 = weights(4, 6), weights(1, 6), weights(6, 3), weights(3), weights(3, 2)
    nodes = [
        h.make_node("MatMul", ["x", "w1"], ["m1"]),
        h.make_node("Add", ["b1", "m1"], ["a1"]),  # bias first: Add is commutative
        h.make_node("Relu", ["a1"], ["r1"]),
        h.make_node("MatMul", ["r1", "w2"], ["m2"]),
        h.make_node("Add", ["m2", "b2"], ["a2"]),
        h.make_node("Tanh", ["a2"], ["t2"]),
        h.make_node("MatMul", ["t2", "w3"], ["logits"]),  # no bias
        h.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    model = graph_model(onnx, nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3}, 4)
    net = bp.from_onnx(model)
    assert net.layers == [
        bp.Dense(4, 6),
        bp.ReLU(),
        bp.Dense(6, 3),
        bp.Tanh(),
        bp.Dense(3, 2, bias=False),
    ]
    assert net.loss_function == bp.CrossEntropyLoss()  # what a Softmax head implies
    X = inputs(4, "float32")
    logits = np.tanh(np.maximum(X @ w1 + b1, 0) @ w2 + b2) @ w3
    np.testing.assert_allclose(net.forward(X), logits, rtol=1e-5, atol=1e-6)


def test_constant_nodes_and_transposed_constants_are_folded(onnx):
    h = onnx.helper
    w = weights(3, 4)
    nodes = [
        h.make_node("Constant", [], ["wt"], value=onnx.numpy_helper.from_array(w)),
        h.make_node("Transpose", ["wt"], ["w_in_out"], perm=[1, 0]),
        h.make_node("MatMul", ["x", "w_in_out"], ["y"]),
    ]
    net = bp.from_onnx(graph_model(onnx, nodes, {}, 4))
    X = inputs(4, "float32")
    np.testing.assert_allclose(net.forward(X), X @ w.T, rtol=1e-6, atol=1e-6)


def test_graphs_that_are_not_sequential_mlps_are_refused_by_node(onnx):
    h = onnx.helper
    w = weights(4, 4)
    cases = {
        "'conv' (Conv)": [
            h.make_node("Gemm", ["x", "w"], ["g"], name="gemm"),
            h.make_node("Conv", ["g", "w"], ["y"], name="conv"),
        ],
        "'add' (Add): its input 'g' also feeds 'relu'": [  # a residual connection
            h.make_node("Gemm", ["x", "w"], ["g"], name="gemm"),
            h.make_node("Relu", ["g"], ["r"], name="relu"),
            h.make_node("Add", ["r", "g"], ["y"], name="add"),
        ],
        "'gemm' (Gemm): transA": [h.make_node("Gemm", ["x", "w"], ["y"], name="gemm", transA=1)],
        "'gelu' (Gelu): approximate='tanh'": [
            h.make_node("Gemm", ["x", "w"], ["g"], name="gemm"),
            h.make_node("Gelu", ["g"], ["y"], name="gelu", approximate="tanh"),
        ],
        "'first' (Relu): its input 'x' also feeds 'second'": [
            h.make_node("Relu", ["x"], ["a"], name="first"),
            h.make_node("Sigmoid", ["x"], ["b"], name="second"),
            h.make_node("Add", ["a", "b"], ["y"], name="sum"),
        ],
    }
    for expected, nodes in cases.items():
        model = graph_model(onnx, nodes, {"w": w}, 4, opset=20)
        with pytest.raises(ValueError, match="cannot take node " + re.escape(expected)):
            bp.from_onnx(model)
    with pytest.raises(TypeError, match="path_or_model"):
        bp.from_onnx(42)
    two_inputs = graph_model(onnx, [h.make_node("Add", ["x", "z"], ["y"])], {}, 4)
    two_inputs.graph.input.append(h.make_tensor_value_info("z", 1, ["N", 4]))
    with pytest.raises(ValueError, match="one input"):
        bp.from_onnx(two_inputs)


def test_a_formula_with_other_constants_is_refused(onnx):
    h = onnx.helper
    nodes = [  # LeakyReLU's formula, but comparing with 1 instead of 0
        h.make_node("Gemm", ["x", "w"], ["g"], name="gemm"),
        h.make_node("Greater", ["g", "one"], ["p"], name="positive"),
        h.make_node("Mul", ["g", "slope"], ["s"], name="scaled"),
        h.make_node("Where", ["p", "g", "s"], ["y"], name="where"),
    ]
    constants = {"w": weights(2, 2), "one": np.float32(1.0), "slope": np.float32(0.1)}
    with pytest.raises(ValueError, match=r"'where' \(Where\): its constants"):
        bp.from_onnx(graph_model(onnx, nodes, {k: np.asarray(v) for k, v in constants.items()}, 2))


# ----- what other tools export ------------------------------------------------------------


def torch_sequential(torch: Any, dtype: Any) -> Any:
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Linear(5, 8),
        nn.ReLU(),
        nn.GELU(),
        nn.Linear(8, 8),
        nn.LeakyReLU(0.1),
        nn.Linear(8, 8, bias=False),
        nn.ELU(0.7),
        nn.Softplus(beta=2.0, threshold=3.0),
        nn.Tanh(),
        nn.Sigmoid(),
        nn.Identity(),
        nn.Dropout(0.3),
        nn.BatchNorm1d(8, eps=1e-3, momentum=0.2),
        nn.LayerNorm(8),
        nn.Linear(8, 3),
    ).to(dtype)
    module.train()
    module(torch.randn(32, 5, dtype=dtype) * 3)  # moves the batch-norm statistics
    return module.eval()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_torch_onnx_export_of_a_sequential_reads_back(onnx, dynamo, dtype):
    torch = require("torch", install="bpcore[torch]")
    if dynamo:
        require("onnxscript")
    module = torch_sequential(torch, getattr(torch, dtype))
    x = torch.from_numpy(inputs(5, dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(
                module, (x,), dynamo=True, dynamic_shapes=({0: batch},), verbose=False
            )
            model = program.model_proto
        else:
            buffer = io.BytesIO()
            torch.onnx.export(
                module,
                (x,),
                buffer,
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            )
            model = onnx.load_from_string(buffer.getvalue())
    net = bp.from_onnx(model)
    assert [type(layer) for layer in net.layers] == [
        bp.Dense, bp.ReLU, bp.GELU, bp.Dense, bp.LeakyReLU, bp.Dense, bp.ELU, bp.Softplus,
        bp.Tanh, bp.Sigmoid, bp.BatchNorm1d, bp.LayerNorm, bp.Dense,
    ]  # fmt: skip
    # (nn.Identity and, exported in eval mode, nn.Dropout leave no node.) The TorchScript
    # exporter drops Softplus's threshold (a plain Softplus op reads as threshold 40); torch's
    # dynamo exporter keeps it.
    softplus = net.layers[7]
    assert softplus.beta == 2.0 and softplus.threshold == (3.0 if dynamo else 40.0)
    assert net.layers[10] == bp.BatchNorm1d(8, eps=1e-3, momentum=0.2)
    assert net.layers[11] == bp.LayerNorm(8, eps=1e-5)
    with torch.no_grad():
        expected = module(x).numpy()
    tol = 1e-5 if dtype == "float32" else 1e-12
    if not dynamo:  # then Softplus differs from torch's where 3 < 2 x: compare beyond it
        keep = (2 * bp.Network(net.layers[:7], dtype=dtype).forward(x.numpy())).max(axis=1) < 3
        expected, x = expected[keep], x[keep]
        assert keep.sum() >= 5
    np.testing.assert_allclose(net.forward(x.numpy()), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regressor"])
def test_skl2onnx_exports_of_scikit_learn_mlps_read_back(onnx, kind):
    skl2onnx = require("skl2onnx")
    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    X, y = load_iris(return_X_y=True)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if kind == "regressor":
            model = MLPRegressor(hidden_layer_sizes=(6, 5), max_iter=30, random_state=0).fit(
                X, X[:, 0]
            )
        else:
            labels = y if kind == "multiclass" else y > 0
            model = MLPClassifier((6,), activation="tanh", max_iter=30, random_state=0).fit(
                X, labels
            )
    net = bp.from_onnx(skl2onnx.to_onnx(model, X[:1]))
    out = net.forward(X)
    if kind == "regressor":
        assert net.loss_function == bp.MSELoss()
        np.testing.assert_allclose(out.ravel(), model.predict(X), rtol=1e-5, atol=1e-5)
    elif kind == "multiclass":
        assert net.loss_function == bp.CrossEntropyLoss()
        np.testing.assert_allclose(net.predict_proba(X), model.predict_proba(X), atol=1e-6)
    else:
        assert net.loss_function == bp.BCEWithLogitsLoss() and out.shape == (150, 1)
        proba = net.predict_proba(X)[:, 0]
        np.testing.assert_allclose(proba, model.predict_proba(X)[:, 1], atol=1e-6)
    assert [type(layer) for layer in net.layers][:2] == [
        bp.Dense,
        bp.ReLU if kind == "regressor" else bp.Tanh,
    ]


def test_a_scaler_before_the_network_is_refused_by_name(onnx):
    skl2onnx = require("skl2onnx")
    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(StandardScaler(), MLPClassifier((4,), max_iter=5)).fit(X, y)
    with pytest.raises(ValueError, match=r"\(Scaler\)"):
        bp.from_onnx(skl2onnx.to_onnx(pipe, X[:1].astype(np.float32)))


def test_a_layer_refusing_its_hyperparameters_names_the_node(onnx):
    h = onnx.helper
    nodes = [
        h.make_node("Gemm", ["x", "w"], ["g"], name="gemm"),
        h.make_node("Dropout", ["g", "ratio"], ["y"], name="drop"),
    ]
    model = graph_model(onnx, nodes, {"w": weights(2, 2), "ratio": np.array(1.0, np.float32)}, 2)
    with pytest.raises(ValueError, match=r"cannot take node 'drop' \(Dropout\): p"):
        bp.from_onnx(model)

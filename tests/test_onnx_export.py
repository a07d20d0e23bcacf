"""to_onnx: standard ONNX models that ONNX Runtime runs to net.forward's outputs, every layer kind
in float32 (to 1e-6) and float64 (to 1e-12).

onnx and onnxruntime are optional (bpcore's `onnx` extra): without them these tests skip, saying
so, except in CI (BPCORE_REQUIRE_OPTIONAL=1), where they fail."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from optional import require

import bpcore as bp

#: The agreement asked of ONNX Runtime, per dtype: |onnx - bpcore| <= tol (1 + |bpcore|).
TOLERANCE = {"float32": 1e-6, "float64": 1e-12}

#: One of every layer kind bpcore has, each after a Dense(5, 8) and before a Dense(8, 3).
KINDS = {
    "relu": lambda: bp.ReLU(),
    "leaky_relu": lambda: bp.LeakyReLU(0.013),
    "sigmoid": lambda: bp.Sigmoid(),
    "tanh": lambda: bp.Tanh(),
    "gelu": lambda: bp.GELU(),
    "elu": lambda: bp.ELU(alpha=0.37),
    "softplus": lambda: bp.Softplus(),
    "softplus_beta_threshold": lambda: bp.Softplus(beta=0.3, threshold=1.7),
    "identity": lambda: bp.Identity(),
    "dropout": lambda: bp.Dropout(0.3),
    "batch_norm": lambda: bp.BatchNorm1d(8, eps=1e-3, momentum=0.2),
    "layer_norm": lambda: bp.LayerNorm(8, eps=1e-3),
    "silu": lambda: bp.SiLU(),
    "mish": lambda: bp.Mish(),
    "prelu": lambda: bp.PReLU(),
    "prelu_per_feature": lambda: bp.PReLU(8, init=-0.2),
}


@pytest.fixture(scope="module")
def onnx() -> Any:
    return require("onnx", install="bpcore[onnx]")


@pytest.fixture(scope="module")
def ort() -> Any:
    return require("onnxruntime", install="bpcore[onnx]")


def trained(layers: list[bp.Layer], dtype: str, loss: str = "mse") -> tuple[bp.Network, Any]:
    """A network trained for two epochs (batch-norm statistics moved), and inputs wide enough
    to reach every branch (Softplus's linear part, ELU's and LeakyReLU's negative side)."""
    rng = np.random.default_rng(7)
    net = bp.Network(layers, loss=loss, dtype=dtype, seed=3)
    X = rng.normal(size=(96, 5)) * 3
    n_out = net.n_outputs
    y = rng.integers(0, n_out, 96) if loss == "cross_entropy" else rng.normal(size=(96, n_out))
    if loss == "bce_with_logits":
        y = (y > 0).astype(float)
    net.fit(X, y, epochs=2, batch_size=16, progress=False)
    return net, X.astype(dtype)


def run(ort: Any, model: Any, X: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, {session.get_inputs()[0].name: X}))


def reference_runtime(onnx: Any, model: Any) -> Any:
    """ONNX's reference evaluator with Erf, and Gelu as the ONNX spec defines it from Erf, in
    float64 (its own Erf rounds through float32)."""
    import math

    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    erf = np.vectorize(math.erf, otypes=[np.float64])

    class Erf(OpRun):  # type: ignore[misc]
        op_domain = ""

        def _run(self, x: np.ndarray) -> tuple[np.ndarray]:
            return (erf(x).astype(x.dtype),)

    class Gelu(OpRun):  # type: ignore[misc]
        op_domain = ""

        def _run(self, x: np.ndarray, approximate: str = "none") -> tuple[np.ndarray]:
            assert approximate == "none"
            return ((x * 0.5 * (1.0 + erf(x / math.sqrt(2.0)))).astype(x.dtype),)

    return ReferenceEvaluator(model, new_ops=[Erf, Gelu])


def assert_equal_to(actual: np.ndarray, expected: np.ndarray, dtype: str) -> None:
    assert actual.dtype == np.dtype(dtype) and actual.shape == expected.shape
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_onnx_runtime_equals_forward_for_every_layer_kind(onnx, ort, kind, dtype):
    net, X = trained([bp.Dense(5, 8), KINDS[kind](), bp.Dense(8, 3)], dtype)
    model = bp.to_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    if kind == "gelu" and dtype == "float64":
        # ONNX Runtime's CPU provider has no float64 Erf (so no float64 Gelu); the model is
        # checked by ONNX's own reference runtime instead, with an Erf computed in float64.
        (out,) = reference_runtime(onnx, model).run(None, {"input": X})
        (erf_form,) = reference_runtime(onnx, bp.to_onnx(net, opset=17)).run(None, {"input": X})
        assert_equal_to(erf_form, net.forward(X), dtype)
    else:
        (out,) = run(ort, model, X)
    assert_equal_to(out, net.forward(X), dtype)
    assert np.abs(net.forward(X)).max() > 1.0  # the outputs are not all near zero


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_deep_network_of_every_kind_is_equal_too(ort, dtype):
    layers: list[bp.Layer] = [bp.Dense(5, 8)]
    for kind in sorted(KINDS):
        if not (kind == "gelu" and dtype == "float64"):
            layers += [KINDS[kind](), bp.Dense(8, 8)]
    layers.append(bp.Dense(8, 3))
    net, X = trained(layers, dtype)
    (out,) = run(ort, bp.to_onnx(net), X)
    assert_equal_to(out, net.forward(X), dtype)


def test_the_graph_names_its_input_and_outputs_with_a_dynamic_batch(onnx, ort):
    net, X = trained([bp.Dense(5, 8), bp.ReLU(), bp.Dense(8, 3)], "float32")
    model = bp.to_onnx(net)
    (inp,) = model.graph.input
    assert inp.name == "input"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 5
    assert [o.name for o in model.graph.output] == ["output"]
    assert model.opset_import[0].version == onnx.defs.onnx_opset_version()
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Relu", "Gemm"]
    assert sorted(i.name for i in model.graph.initializer) == sorted(net.parameters())
    for n in (1, 37):
        (out,) = run(ort, model, X[:n])
        assert_equal_to(out, net.forward(X[:n]), "float32")
    named = bp.to_onnx(net, input_name="pixels", output_name="logits")
    assert named.graph.input[0].name == "pixels"
    assert [o.name for o in named.graph.output] == ["logits"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["cross_entropy", "bce_with_logits"])
def test_probabilities_are_predict_proba(ort, loss, dtype):
    net, X = trained([bp.Dense(5, 8), bp.Tanh(), bp.Dense(8, 3)], dtype, loss=loss)
    model = bp.to_onnx(net, probabilities=True)
    assert [o.name for o in model.graph.output] == ["output", "probabilities"]
    out, probabilities = run(ort, model, X)
    assert_equal_to(out, net.forward(X), dtype)
    assert_equal_to(probabilities, net.predict_proba(X), dtype)
    if loss == "cross_entropy":
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
        assert (probabilities.argmax(axis=1) == net.predict(X)).all()


def test_gelu_is_the_gelu_operator_from_opset_20_and_its_erf_form_before(onnx, ort):
    net, X = trained([bp.Dense(5, 8), bp.GELU(), bp.Dense(8, 3)], "float32")
    ops = [n.op_type for n in bp.to_onnx(net, opset=20).graph.node]
    assert ops == ["Gemm", "Gelu", "Gemm"]
    old = bp.to_onnx(net, opset=17)
    assert [n.op_type for n in old.graph.node] == [
        "Gemm",
        "Div",
        "Erf",
        "Add",
        "Mul",
        "Mul",
        "Gemm",
    ]
    assert old.opset_import[0].version == 17
    (out,) = run(ort, old, X)
    assert_equal_to(out, net.forward(X), "float32")


def test_float64_activations_without_float64_kernels_are_written_as_formulas():
    net = bp.Network([bp.Dense(2, 2), bp.LeakyReLU(), bp.ELU(), bp.Softplus()], dtype="float64")
    require("onnx")
    ops = {n.op_type for n in bp.to_onnx(net).graph.node}
    assert not ops & {"LeakyRelu", "Elu", "Softplus"}
    single = bp.Network([bp.Dense(2, 2), bp.LeakyReLU(), bp.ELU(), bp.Softplus()])
    ops = {n.op_type for n in bp.to_onnx(single).graph.node}
    assert {"LeakyRelu", "Elu", "Softplus"} <= ops


def test_saved_file_is_the_returned_model(onnx, ort, tmp_path):
    net, X = trained([bp.Dense(5, 8), bp.BatchNorm1d(8), bp.Dense(8, 3)], "float64")
    path = tmp_path / "net.onnx"
    model = bp.to_onnx(net, path)
    loaded = onnx.load(str(path))
    assert loaded.SerializeToString() == model.SerializeToString()
    (out,) = run(ort, loaded, X)
    assert_equal_to(out, net.forward(X), "float64")


def test_bad_arguments_are_refused_by_name(onnx):
    net = bp.Network([bp.Dense(3, 2), bp.LayerNorm(2)], loss="mse")
    with pytest.raises(TypeError, match="net"):
        bp.to_onnx("not a network")
    with pytest.raises(ValueError, match="probabilities"):
        bp.to_onnx(net, probabilities=True)
    with pytest.raises(TypeError, match="probabilities"):
        bp.to_onnx(net, probabilities=1)
    with pytest.raises(ValueError, match="opset"):
        bp.to_onnx(net, opset=12)
    with pytest.raises(TypeError, match="opset"):
        bp.to_onnx(net, opset="17")
    with pytest.raises(ValueError, match="opset"):
        bp.to_onnx(net, opset=onnx.defs.onnx_opset_version() + 1)
    with pytest.raises(ValueError, match=r"opset: layers\[1\] \(LayerNorm\) needs opset 17"):
        bp.to_onnx(net, opset=16)
    with pytest.raises(TypeError, match="input_name"):
        bp.to_onnx(net, input_name="")
    with pytest.raises(ValueError, match="must differ"):
        bp.to_onnx(net, input_name="x", output_name="x")


def test_missing_onnx_says_which_extra(monkeypatch):
    import builtins
    import sys

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "onnx", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match=r"bpcore\[onnx\]"):
        bp.to_onnx(bp.Network([bp.Dense(2, 1)]))


def test_network_export_onnx_is_to_onnx(onnx, ort, tmp_path):
    net, X = trained([bp.Dense(5, 6), bp.Tanh(), bp.Dense(6, 3)], "float32", "cross_entropy")
    path = tmp_path / "net.onnx"
    model = net.export_onnx(path, probabilities=True)
    want = bp.to_onnx(net, probabilities=True)
    assert model.SerializeToString() == want.SerializeToString()
    assert onnx.load(str(path)).SerializeToString() == want.SerializeToString()
    assert_equal_to(run(ort, model, X)[1], net.predict_proba(X), "float32")

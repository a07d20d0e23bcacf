"""skl2onnx converts pipelines holding bpcore's MLPClassifier and MLPRegressor, and ONNX Runtime
gives the pipeline's predict and predict_proba, with the outputs skl2onnx's own MLP converters
have.

skl2onnx and onnxruntime are optional: without them these tests skip, saying so, except in CI
(BPCORE_REQUIRE_OPTIONAL=1), where they fail."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from optional import require
from sklearn.datasets import load_diabetes, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bpcore.sklearn import MLPClassifier, MLPRegressor


@pytest.fixture(scope="module")
def skl2onnx() -> Any:
    module = require("skl2onnx")
    import bpcore.sklearn_onnx  # noqa: F401  (registers the converters)

    return module


@pytest.fixture(scope="module")
def ort() -> Any:
    return require("onnxruntime", install="bpcore[onnx]")


def run(ort: Any, model: Any, X: np.ndarray) -> list[Any]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, {session.get_inputs()[0].name: X}))


def fitted(estimator: Any, X: np.ndarray, y: np.ndarray) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_pipeline(StandardScaler(), estimator).fit(X, y)


def iris_labels(kind: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    if kind == "strings":
        return X, np.array(["setosa", "versicolor", "virginica"])[y]
    if kind == "binary":
        return X, np.where(y > 0, 11, 0)
    return X, y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("labels", ["integers", "strings", "binary"])
def test_classifier_pipeline_gives_predict_and_predict_proba(skl2onnx, ort, labels, dtype):
    X, y = iris_labels(labels)
    clf = MLPClassifier((16,), max_iter=60, learning_rate_init=0.01, random_state=0, dtype=dtype)
    pipe = fitted(clf, X, y)
    X32 = X.astype(np.float32)
    model = skl2onnx.to_onnx(pipe, X32[:1])
    label, probabilities = run(ort, model, X32)
    # skl2onnx's default for classifiers: labels, and a ZipMap of {class: probability} per row.
    assert [o.name for o in model.graph.output] == ["output_label", "output_probability"]
    assert set(probabilities[0]) == set(pipe.classes_.tolist())
    table = np.array([[row[c] for c in pipe.classes_.tolist()] for row in probabilities])
    expected = pipe.predict_proba(X)
    # The input is float32 and skl2onnx's Scaler computes in float32: 1e-6 relative or so.
    np.testing.assert_allclose(table, expected, rtol=1e-5, atol=1e-6)
    assert (label == pipe.predict(X)).mean() >= 0.99  # all but near-ties of float32 rounding
    sure = np.sort(expected, axis=1)[:, -1] - np.sort(expected, axis=1)[:, -2] > 1e-4
    np.testing.assert_array_equal(label[sure], pipe.predict(X)[sure])

    plain = skl2onnx.to_onnx(pipe, X32[:1], options={id(clf): {"zipmap": False}})
    label, probabilities = run(ort, plain, X32)
    assert probabilities.shape == (150, len(pipe.classes_)) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(label[sure], pipe.predict(X)[sure])


def test_the_outputs_are_those_of_skl2onnx_own_mlp_converter(skl2onnx):
    from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

    X, y = iris_labels("strings")
    X32 = X.astype(np.float32)
    ours = skl2onnx.to_onnx(fitted(MLPClassifier((4,), max_iter=5), X, y), X32[:1])
    theirs = skl2onnx.to_onnx(fitted(SklearnMLPClassifier((4,), max_iter=5), X, y), X32[:1])

    def outputs(model: Any) -> list[tuple[str, str]]:
        return [(o.name, str(o.type).replace(" ", "")) for o in model.graph.output]

    assert outputs(ours) == outputs(theirs)


def test_class_indices_with_the_nocl_option(skl2onnx, ort):
    X, y = iris_labels("strings")
    clf = MLPClassifier((8,), max_iter=30, random_state=0)
    pipe = fitted(clf, X, y)
    model = skl2onnx.to_onnx(
        pipe, X[:1].astype(np.float32), options={id(clf): {"zipmap": False, "nocl": True}}
    )
    label, _ = run(ort, model, X.astype(np.float32))
    expected = np.searchsorted(pipe.classes_, pipe.predict(X))
    assert (label == expected).mean() >= 0.99


@pytest.mark.parametrize("input_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor_pipeline_gives_predict(skl2onnx, ort, input_dtype, n_outputs):
    X, y = load_diabetes(return_X_y=True)
    y = (y - y.mean()) / y.std()
    target = y if n_outputs == 1 else np.column_stack([y, -2 * y])
    pipe = fitted(MLPRegressor(hidden_layer_sizes=(16,), max_iter=40, random_state=0), X, target)
    model = skl2onnx.to_onnx(pipe, X[:1].astype(input_dtype))
    (out,) = run(ort, model, X.astype(input_dtype))
    assert out.shape == (442, n_outputs) and out.dtype == input_dtype
    expected = pipe.predict(X).reshape(442, n_outputs)
    tol = 1e-5 if input_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


def test_a_poisson_regressor_gives_its_rates(skl2onnx, ort):
    X, y = load_diabetes(return_X_y=True)
    counts = np.round(y / 50)  # counts >= 0
    estimator = MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    pipe = fitted(estimator, X, counts)
    model = skl2onnx.to_onnx(pipe, X[:1].astype(np.float64))
    (out,) = run(ort, model, X)
    np.testing.assert_allclose(out.ravel(), pipe.predict(X), rtol=1e-12, atol=1e-12)
    assert (out > 0).all()


def test_float64_inputs_give_predict_proba_to_rounding(skl2onnx, ort):
    X, y = iris_labels("integers")
    pipe = fitted(MLPClassifier((8,), max_iter=30, random_state=0), X, y)
    model = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False})
    label, probabilities = run(ort, model, X)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, pipe.predict_proba(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(label, pipe.predict(X))

"""bpcore's scikit-learn estimators in skl2onnx: importing this module registers a shape
calculator and a converter for `bpcore.sklearn.MLPClassifier` and `MLPRegressor`, so that
``skl2onnx.to_onnx(pipeline, X[:1])`` converts pipelines that hold them.

    import skl2onnx, bpcore.sklearn_onnx
    pipe = make_pipeline(StandardScaler(), MLPClassifier()).fit(X, y)
    model = skl2onnx.to_onnx(pipe, X[:1].astype(np.float32))

The outputs are those of skl2onnx's own converters for scikit-learn's MLPs: a classifier gives
the labels (int64, or strings) and the probabilities, named "output_label" and
"output_probability" (a ZipMap of {class: probability} per sample, skl2onnx's default) or, with
the converter option ``{"zipmap": False}``, "label" and "probabilities" (a (n, n_classes)
tensor); a regressor gives "variable" (n, n_outputs). The network is written by
`bpcore.onnx_export` (the same operators as `to_onnx`) in its own dtype: float64 by default, so
the input is cast to float64 and the outputs back to the input's type (float32 for skl2onnx's
default): ONNX Runtime computes the float64 `predict_proba` and rounds it to the input's type.

What the converters read of a fitted estimator (its public fitted attributes): `net_` (the
trained `bpcore.Network`), `out_activation_` and `n_outputs_` (the output units), and
`classes_` (the labels, in column order) for the classifier.

skl2onnx (and onnx) must be installed: ``pip install skl2onnx``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bpcore.network import Network
from bpcore.onnx_export import onnx_module, write_network


def _skl2onnx() -> Any:
    try:
        import skl2onnx
    except ImportError:
        raise ImportError(
            "converting bpcore's estimators to ONNX needs skl2onnx, which is not installed: "
            "pip install skl2onnx"
        ) from None
    return skl2onnx


class _ContainerBuilder:
    """A GraphBuilder writing into skl2onnx's container, with names unique in its scope."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope = scope
        self.container = container
        opset = container.target_opset
        self.opset = (
            int(opset) if opset is not None else int(onnx_module().defs.onnx_opset_version())
        )

    def constant(self, hint: str, value: np.ndarray) -> str:
        onnx = onnx_module()
        name = str(self.scope.get_unique_variable_name(hint))
        if value.dtype == object:  # strings: ONNX keeps them as a list, never as raw bytes
            strings = onnx.TensorProto.STRING
            self.container.add_initializer(name, strings, list(value.shape), list(value))
            return name
        tensor = onnx.numpy_helper.from_array(np.asarray(value), name)
        self.container.add_initializer(name, tensor.data_type, list(value.shape), tensor)
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attributes: Any) -> str:
        output = str(self.scope.get_unique_variable_name(hint))
        self.write(op, inputs, output, **attributes)
        return output

    def write(self, op: str, inputs: list[str], output: str, **attributes: Any) -> None:
        """Adds a node writing the given output name."""
        name = self.scope.get_unique_operator_name(op)
        self.container.add_node(op, inputs, [output], name=name, **attributes)

    def cast(self, x: str, to: int, output: str | None = None) -> str:
        """`x` cast to the ONNX element type `to` (into `output` if given)."""
        output = output or str(self.scope.get_unique_variable_name("cast"))
        self.write("Cast", [x], output, to=to)
        return output


def _element(dtype: Any) -> int:
    return int(onnx_module().helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def _input_element(operator: Any) -> int:
    """The element type of the operator's input: float64 stays, anything else is float32."""
    double = _element(np.float64)
    return double if _element_of(operator.inputs[0].type) == double else _element(np.float32)


def _element_of(variable_type: Any) -> int:
    from skl2onnx.common.data_types import guess_proto_type

    return int(guess_proto_type(variable_type))


def _network_outputs(scope: Any, operator: Any, container: Any) -> tuple[_ContainerBuilder, str]:
    """Writes the estimator's network on the operator's input; returns the builder and the
    network's output tensor (in the network's dtype)."""
    estimator = operator.raw_operator
    net = estimator.net_
    if not isinstance(net, Network):
        raise TypeError(f"{type(estimator).__name__}.net_: expected a bpcore.Network")
    builder = _ContainerBuilder(scope, container)
    x = builder.cast(operator.inputs[0].full_name, _element(net.dtype))
    return builder, write_network(builder, net, x)


def _classifier_shapes(operator: Any) -> None:
    """skl2onnx's shape calculator for linear classifiers (labels by classes_' type)."""
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    calculate_linear_classifier_output_shapes(operator)


def _regressor_shapes(operator: Any) -> None:
    """(n, n_outputs) in the input's float type."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    double = _input_element(operator) == _element(np.float64)
    kind = DoubleTensorType if double else FloatTensorType
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = kind([n, int(operator.raw_operator.n_outputs_)])


def _convert_classifier(scope: Any, operator: Any, container: Any) -> None:
    """Labels (the most probable class, looked up in classes_) and the probabilities: softmax
    of the outputs for several classes, (1 - p, p) of the one logistic output for two."""
    estimator = operator.raw_operator
    builder, logits = _network_outputs(scope, operator, container)
    if estimator.out_activation_ == "softmax":
        probabilities = builder.node("Softmax", [logits], "probabilities", axis=-1)
    elif estimator.n_outputs_ == 1 and len(estimator.classes_) == 2:
        p = builder.node("Sigmoid", [logits], "p")
        one = builder.constant("one", np.ones((1, 1), dtype=estimator.net_.dtype))
        q = builder.node("Sub", [one, p], "q")
        probabilities = builder.node("Concat", [q, p], "probabilities", axis=1)
    else:
        raise ValueError(
            f"{type(estimator).__name__}: a multi-label classifier ({estimator.n_outputs_} "
            "logistic outputs) has no ONNX converter here; skl2onnx's labels and probabilities "
            "are those of one class per sample"
        )
    builder.cast(probabilities, _input_element(operator), operator.outputs[1].full_name)
    index = builder.node("ArgMax", [probabilities], "argmax", axis=1, keepdims=0)
    classes = np.asarray(operator.raw_operator.classes_)
    if scope.get_options(operator.raw_operator, {"nocl": False})["nocl"]:
        table = np.arange(len(classes), dtype=np.int64)  # skl2onnx's "nocl": class indices
    elif classes.dtype.kind in "OUS":
        table = np.array([str(c).encode("utf-8") for c in classes], dtype=object)
    else:
        table = classes.astype(np.int64)
    names = builder.constant("classes", table)
    builder.write("Gather", [names, index], operator.outputs[0].full_name, axis=0)


def _convert_regressor(scope: Any, operator: Any, container: Any) -> None:
    """The network's outputs (their exponential for the poisson loss, as `predict`), in the
    input's float type."""
    builder, outputs = _network_outputs(scope, operator, container)
    if operator.raw_operator.out_activation_ == "exp":
        outputs = builder.node("Exp", [outputs], "rates")
    builder.cast(outputs, _input_element(operator), operator.outputs[0].full_name)


def register() -> None:
    """Registers bpcore's MLPClassifier and MLPRegressor with skl2onnx (done on import; calling
    it again changes nothing). The classifier takes skl2onnx's options "zipmap" (default True)
    and "nocl" (labels as class indices, default False), as its MLPClassifier does."""
    skl2onnx = _skl2onnx()
    from bpcore.sklearn import MLPClassifier, MLPRegressor

    skl2onnx.update_registered_converter(
        MLPClassifier,
        "BpcoreMLPClassifier",
        _classifier_shapes,
        _convert_classifier,
        options={"zipmap": [True, False, "columns"], "nocl": [False, True]},
    )
    skl2onnx.update_registered_converter(
        MLPRegressor, "BpcoreMLPRegressor", _regressor_shapes, _convert_regressor
    )


register()

__all__ = ["register"]

"""Networks to ONNX: `to_onnx(net)` writes a standard ONNX model that ONNX Runtime (or any ONNX
runtime) serves without bpcore.

Every layer becomes standard operators of the default domain: Dense → Gemm (weight (out, in),
transB=1, as torch exports Linear); ReLU, Sigmoid, Tanh, Identity → their ops; LeakyReLU →
LeakyRelu and ELU → Elu; Softplus → torch's definition, ``where(beta x > threshold, x,
Softplus(beta x) / beta)``; GELU → Gelu (opset 20 and later) or its Erf form
``x (1 + erf(x/√2)) / 2`` as torch exports it; SiLU → Sigmoid and Mul, as torch exports it;
Mish → Mish (opset 18 and later) or ``x tanh(softplus(x))``; PReLU → PRelu, its slopes shaped
(C, 1, ...) to broadcast over a channel's values; Dropout → Dropout in inference (the identity);
BatchNorm1d → BatchNormalization with the running statistics; LayerNorm → LayerNormalization;
Reshape → Reshape (the batch kept), Flatten → Flatten; Conv1d/Conv2d → Conv; MaxPool → MaxPool
and AvgPool → AveragePool (count_include_pad=1); Embedding → Cast to int64 and Gather;
Embeddings → one Gather per column (the embedded ones through their tables) and Concat.

For a float64 network LeakyReLU, ELU, Softplus, Mish and PReLU are written as their elementary
formulas (Where, Exp, Log, Tanh, ...), since ONNX Runtime's CPU kernels for LeakyRelu, Elu,
Softplus and PRelu take float32 only (and it runs a float64 Mish as its Softplus); its Erf (and
so Gelu) is float32-only too, so a float64 network with GELU is valid ONNX that ONNX Runtime's
CPU provider cannot run (export the network in float32 for it). Likewise its Conv and
AveragePool take float32 only: a float64 network with a convolution or average pooling is valid
ONNX (ONNX's own reference evaluator runs it) that ONNX Runtime's CPU provider cannot run.

The layers are written through `GraphBuilder`, so that the skl2onnx converters
(`bpcore.sklearn_onnx`) write the same operators into a scikit-learn pipeline's graph.

onnx is optional (``pip install bpcore[onnx]``) and imported only when `to_onnx` is called.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any, Protocol, Union

import numpy as np

from bpcore.bpcore import describe_tensors
from bpcore.layers import (
    ELU,
    GELU,
    AvgPool1d,
    AvgPool2d,
    BatchNorm1d,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Embedding,
    Embeddings,
    Flatten,
    Identity,
    Layer,
    LayerNorm,
    LeakyReLU,
    MaxPool1d,
    MaxPool2d,
    Mish,
    PReLU,
    ReLU,
    Reshape,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)

if TYPE_CHECKING:
    from bpcore.network import Network

#: The oldest opset `to_onnx` writes: Softmax over the last axis and Dropout's ratio input.
MIN_OPSET = 13
#: LayerNormalization is an operator from this opset on.
LAYER_NORM_OPSET = 17
#: Gelu is an operator from this opset on; before it GELU is written in its Erf form.
GELU_OPSET = 20
#: Mish is an operator from this opset on; before it Mish is written as x · tanh(softplus(x)).
MISH_OPSET = 18
#: The metadata key holding the network's loss (its JSON spec), read back by `from_onnx`.
LOSS_METADATA_KEY = "bpcore.loss"
#: The metadata key saying that float64 batch-norm running variances include eps minus its
#: float32 (see `_write_layer`), for `from_onnx` to take it out again.
VARIANCE_METADATA_KEY = "bpcore.running_var_includes_eps_rounding"
#: The metadata key holding the initial slopes (`init`) of the PReLU layers, in order: ONNX's
#: PRelu holds only the slopes, and `from_onnx` gives the layers back their init.
PRELU_INIT_METADATA_KEY = "bpcore.prelu_init"

PathLike = Union[str, "os.PathLike[str]"]


def onnx_module() -> Any:
    """The `onnx` package, or an ImportError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "bpcore's ONNX exchange needs onnx, which is not installed: "
            "pip install 'bpcore[onnx]' (or pip install onnx onnxruntime)"
        ) from None
    return onnx


class GraphBuilder(Protocol):
    """Where the layers' operators go: a plain ONNX graph or a skl2onnx container."""

    #: The opset of the default domain the graph is written for.
    opset: int

    def constant(self, hint: str, value: np.ndarray) -> str:
        """Adds an initializer holding `value`; returns its name (`hint`, made unique)."""

    def node(self, op: str, inputs: list[str], hint: str, **attributes: Any) -> str:
        """Adds a node of the default domain; returns the name of its one output (`hint`,
        made unique)."""


def _scalar(value: float, dtype: np.dtype) -> np.ndarray:
    return np.array(value, dtype=dtype)


def _write_layer(
    builder: GraphBuilder,
    layer: Layer,
    index: int,
    x: str,
    state: dict[str, np.ndarray],
    dtype: np.dtype,
    shapes: list[tuple[int, ...]],
) -> str:
    """Writes one layer reading tensor `x`; returns the name of the layer's output. `shapes`
    are the per-sample shapes of every layer's input."""
    name = f"{index}.{layer.type_name}"

    def const(suffix: str, value: Any) -> str:
        return builder.constant(f"{index}.{suffix}", np.asarray(value, dtype=dtype))

    shaped = _write_shaped_layer(builder, layer, index, x, state)
    if shaped is not None:
        return shaped
    if isinstance(layer, Dense):
        inputs = [x, builder.constant(f"{index}.weight", state[f"{index}.weight"])]
        if layer.bias:
            inputs.append(builder.constant(f"{index}.bias", state[f"{index}.bias"]))
        return builder.node("Gemm", inputs, name, transB=1)
    simple = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh", Identity: "Identity"}
    for cls, op in simple.items():
        if type(layer) is cls:
            return builder.node(op, [x], name)
    native = dtype == np.float32  # ONNX Runtime has float32 kernels only for LeakyRelu, Elu,
    # Softplus and PRelu
    if isinstance(layer, LeakyReLU):
        if native:
            return builder.node("LeakyRelu", [x], name, alpha=layer.negative_slope)
        positive = builder.node("Greater", [x, const("zero", 0.0)], f"{name}.positive")
        scaled = builder.node(
            "Mul", [x, const("negative_slope", layer.negative_slope)], f"{name}.scaled"
        )
        return builder.node("Where", [positive, x, scaled], name)
    if isinstance(layer, ELU):
        if native:
            return builder.node("Elu", [x], name, alpha=layer.alpha)
        positive = builder.node("Greater", [x, const("zero", 0.0)], f"{name}.positive")
        exp = builder.node("Exp", [x], f"{name}.exp")
        expm1 = builder.node("Sub", [exp, const("one", 1.0)], f"{name}.expm1")
        negative = builder.node("Mul", [expm1, const("alpha", layer.alpha)], f"{name}.negative")
        return builder.node("Where", [positive, x, negative], name)

    def softplus(z: str) -> str:
        """log(1 + e^z): ONNX's Softplus in float32, else its formula."""
        if native:
            return builder.node("Softplus", [z], f"{name}.softplus")
        # log(1 + e^z) = max(z, 0) + log(1 + e^-|z|): no overflow for any z.
        relu = builder.node("Relu", [z], f"{name}.relu")
        absolute = builder.node("Abs", [z], f"{name}.abs")
        negated = builder.node("Neg", [absolute], f"{name}.neg")
        exp = builder.node("Exp", [negated], f"{name}.exp")
        one_plus = builder.node("Add", [exp, const("one", 1.0)], f"{name}.one_plus")
        log = builder.node("Log", [one_plus], f"{name}.log")
        return builder.node("Add", [relu, log], f"{name}.softplus")

    if isinstance(layer, SiLU):
        gate = builder.node("Sigmoid", [x], f"{name}.sigmoid")
        return builder.node("Mul", [x, gate], name)
    if isinstance(layer, Mish):
        # ONNX Runtime runs a float64 Mish of newer opsets as its Softplus, float32 only.
        if builder.opset >= MISH_OPSET and native:
            return builder.node("Mish", [x], name)
        gate = builder.node("Tanh", [softplus(x)], f"{name}.tanh")
        return builder.node("Mul", [x, gate], name)
    if isinstance(layer, Softplus):
        beta = const("beta", layer.beta)
        scaled = builder.node("Mul", [x, beta], f"{name}.scaled")
        soft = softplus(scaled)
        curved = builder.node("Div", [soft, beta], f"{name}.curved")
        linear = builder.node(
            "Greater", [scaled, const("threshold", layer.threshold)], f"{name}.linear"
        )
        return builder.node("Where", [linear, x, curved], name)
    if isinstance(layer, GELU):
        if builder.opset >= GELU_OPSET:
            return builder.node("Gelu", [x], name, approximate="none")
        inner = builder.node("Div", [x, const("sqrt2", math.sqrt(2.0))], f"{name}.scaled")
        erf = builder.node("Erf", [inner], f"{name}.erf")
        one_plus = builder.node("Add", [erf, const("one", 1.0)], f"{name}.one_plus")
        product = builder.node("Mul", [x, one_plus], f"{name}.product")
        return builder.node("Mul", [product, const("half", 0.5)], name)
    if isinstance(layer, Dropout):
        return builder.node("Dropout", [x, const("ratio", layer.p)], name)
    if isinstance(layer, PReLU):
        slopes = state[f"{index}.weight"]
        # PRelu broadcasts its slope from the right: one per channel of (C, ...) rows is
        # (C, 1, ...); one per feature of flat rows is (F,), and a single slope (1,).
        rank = len(shapes[index]) if layer.num_parameters > 1 else 1
        shaped_slopes = builder.constant(
            f"{index}.weight", slopes.reshape(slopes.size, *([1] * (rank - 1)))
        )
        if native:
            return builder.node("PRelu", [x, shaped_slopes], name)
        # LeakyReLU's formula with the slopes as a tensor (LeakyReLU's is a scalar).
        positive = builder.node("Greater", [x, const("zero", 0.0)], f"{name}.positive")
        scaled = builder.node("Mul", [x, shaped_slopes], f"{name}.scaled")
        return builder.node("Where", [positive, x, scaled], name)
    # ONNX keeps epsilon as a float32 attribute. In float64 the difference between eps and its
    # float32 would move the outputs (by 1e-11 for eps=1e-3), so it is made up where the
    # operator allows: in the running variance (var + eps is unchanged), or, for LayerNorm, by
    # scaling the input by k with k² eps = eps32 (LayerNorm(k x, k² eps) = LayerNorm(x, eps)).
    eps32 = float(np.float32(layer.eps)) if isinstance(layer, (BatchNorm1d, LayerNorm)) else 0.0
    if isinstance(layer, BatchNorm1d):
        variance = state[f"{index}.running_var"]
        if dtype == np.float64:
            variance = variance + (layer.eps - eps32)
        inputs = [
            x,
            *(builder.constant(f"{index}.{p}", state[f"{index}.{p}"]) for p in ("weight", "bias")),
            builder.constant(f"{index}.running_mean", state[f"{index}.running_mean"]),
            builder.constant(f"{index}.running_var", variance),
        ]
        # ONNX's momentum weighs the running statistic, torch's (and bpcore's) the batch's.
        return builder.node(
            "BatchNormalization", inputs, name, epsilon=eps32, momentum=1.0 - layer.momentum
        )
    if isinstance(layer, LayerNorm):
        if builder.opset < LAYER_NORM_OPSET:
            raise ValueError(
                f"opset: layers[{index}] (LayerNorm) needs opset {LAYER_NORM_OPSET} or later "
                f"(LayerNormalization), got {builder.opset}"
            )
        if dtype == np.float64 and eps32 != layer.eps:
            # One k per feature, not a scalar: ONNX Runtime folds a scalar factor into the
            # preceding Gemm's alpha, a float32 attribute, which would round k to 1.
            k = np.full(layer.normalized_shape, math.sqrt(eps32 / layer.eps))
            x = builder.node("Mul", [x, const("eps_scale", k)], f"{name}.x")
        inputs = [x] + [
            builder.constant(f"{index}.{part}", state[f"{index}.{part}"])
            for part in ("weight", "bias")
        ]
        return builder.node("LayerNormalization", inputs, name, axis=-1, epsilon=eps32)
    raise TypeError(f"to_onnx: no ONNX operators for the layer {layer!r}")


def _sizes(value: int | tuple[int, ...]) -> list[int]:
    """A layer's size argument as ONNX's per-axis list."""
    return list(value) if isinstance(value, tuple) else [value]


def _write_shaped_layer(
    builder: GraphBuilder, layer: Layer, index: int, x: str, state: dict[str, np.ndarray]
) -> str | None:
    """Writes a layer over rows read as arrays (Reshape, Flatten, convolution, pooling) or of
    indices (Embedding → Gather, Embeddings → a Gather per column and Concat); returns its
    output, or None for another layer. The batch is ONNX's first axis: a Reshape keeps it (0)
    and reads each row as its shape, NCHW as bpcore and torch."""
    name = f"{index}.{layer.type_name}"
    if isinstance(layer, Reshape):
        shape = builder.constant(f"{index}.shape", np.array([0, *layer.shape], dtype=np.int64))
        return builder.node("Reshape", [x, shape], name)
    if isinstance(layer, Flatten):
        return builder.node("Flatten", [x], name, axis=1)
    if isinstance(layer, (Conv1d, Conv2d)):
        inputs = [x, builder.constant(f"{index}.weight", state[f"{index}.weight"])]
        if layer.bias:
            inputs.append(builder.constant(f"{index}.bias", state[f"{index}.bias"]))
        return builder.node(
            "Conv",
            inputs,
            name,
            kernel_shape=_sizes(layer.kernel_size),
            strides=_sizes(layer.stride),
            pads=_sizes(layer.padding) * 2,
            dilations=_sizes(layer.dilation),
        )
    if isinstance(layer, (MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d)):
        pool: Any = layer
        attributes = {
            "kernel_shape": _sizes(pool.kernel_size),
            "strides": _sizes(pool.stride),
            "pads": _sizes(pool.padding) * 2,
        }
        if isinstance(layer, (MaxPool1d, MaxPool2d)):
            return builder.node("MaxPool", [x], name, **attributes)
        return builder.node("AveragePool", [x], name, count_include_pad=1, **attributes)
    if isinstance(layer, Embedding):
        indices = builder.node("Cast", [x], f"{name}.indices", to=_int64())
        table = builder.constant(f"{index}.weight", state[f"{index}.weight"])
        return builder.node("Gather", [table, indices], name, axis=0)
    if isinstance(layer, Embeddings):
        parts = []
        for c in range(layer.in_features):
            at = f"{name}.{c}"
            if c not in layer.columns:
                column = builder.constant(f"{index}.column{c}", np.array([c], dtype=np.int64))
                parts.append(builder.node("Gather", [x, column], at, axis=1))
                continue
            column = builder.constant(f"{index}.column{c}", np.array(c, dtype=np.int64))
            values = builder.node("Gather", [x, column], f"{at}.values", axis=1)
            indices = builder.node("Cast", [values], f"{at}.indices", to=_int64())
            table = builder.constant(
                f"{index}.tables.{c}.weight", state[f"{index}.tables.{c}.weight"]
            )
            parts.append(builder.node("Gather", [table, indices], at, axis=0))
        return builder.node("Concat", parts, name, axis=1)
    return None


def _int64() -> int:
    """ONNX's element type code of int64 (the indices Gather reads)."""
    return int(onnx_module().TensorProto.INT64)


def write_network(builder: GraphBuilder, net: Network, x: str) -> str:
    """Writes all of `net`'s layers (inference mode) reading tensor `x`, whose dtype must be the
    network's; returns the name of the output tensor (the network's outputs, before any softmax)."""
    state = {**net.parameters(), **net.buffers()}
    shapes = [(net.n_features,)] + [
        tuple(shape) for shape in describe_tensors(net.native.spec_json)["output_shapes"]
    ]
    for index, layer in enumerate(net.layers):
        x = _write_layer(builder, layer, index, x, state, net.dtype, shapes)
    return x


class _ModelBuilder:
    """A GraphBuilder collecting plain ONNX nodes and initializers."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx = onnx
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = set()

    def _unique(self, hint: str) -> str:
        name, k = hint, 1
        while name in self._names:
            name, k = f"{hint}_{k}", k + 1
        self._names.add(name)
        return name

    def constant(self, hint: str, value: np.ndarray) -> str:
        name = self._unique(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attributes: Any) -> str:
        output = self._unique(hint)
        self.nodes.append(
            self.onnx.helper.make_node(op, inputs, [output], name=output, **attributes)
        )
        return output

    def rename(self, old: str, new: str) -> None:
        """Renames the output `old` of the last node that wrote it (for the graph's outputs)."""
        for node in reversed(self.nodes):
            if old in node.output:
                node.output[list(node.output).index(old)] = new
                self._names.add(new)
                return
        raise AssertionError(f"no node writes {old!r}")


def _name(value: Any, arg: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{arg}: expected a non-empty string, got {value!r}")
    return value


def to_onnx(
    net: Network,
    path: PathLike | None = None,
    *,
    probabilities: bool = False,
    opset: int | None = None,
    input_name: str = "input",
    output_name: str = "output",
    probabilities_name: str = "probabilities",
) -> Any:
    """The ONNX model (an `onnx.ModelProto`) computing `net.forward`, also saved to `path` if
    given.

    The graph has one input `input_name` of shape ("batch", n_features) and the output
    `output_name` ("batch", n_outputs), in the network's dtype (float32 or float64), with a
    dynamic batch dimension. With `probabilities=True` it has a second output,
    `probabilities_name`: the softmax of the outputs for a cross_entropy network, their sigmoid
    for bce_with_logits (what `net.predict_proba` gives). Layers are written as the module
    docstring says, in inference mode (Dropout is the identity, BatchNorm1d uses its running
    statistics; its num_batches_tracked is not part of ONNX). The network's loss is kept in
    the model's metadata, for `from_onnx`. The model passes `onnx.checker.check_model`.

    Example:
        >>> import bpcore as bp
        >>> net = bp.Network([bp.Dense(4, 8), bp.ReLU(), bp.Dense(8, 3)], loss="cross_entropy")
        >>> model = bp.to_onnx(net, probabilities=True)  # doctest: +SKIP
        >>> [o.name for o in model.graph.output]  # doctest: +SKIP
        ['output', 'probabilities']

    Args:
        net: the network.
        path: where to save the model (a .onnx file); None to only return it.
        probabilities: also output the class probabilities (classification losses only).
        opset: the opset of the default domain, from 13 (17 with LayerNorm); default the newest
            the installed onnx package knows. Before 20, GELU is written in its Erf form; before
            18, Mish as x tanh(softplus(x)).
        input_name, output_name, probabilities_name: the names of the graph's input and outputs.

    Raises:
        ImportError: onnx is not installed (it is the `onnx` extra of bpcore).
        TypeError: `net` is not a Network, `opset` not an integer, or a name not a string.
        ValueError: `probabilities` for a regression loss, or an opset out of range.
    """
    # What a Network offers, asked without importing bpcore.network, which imports this
    # module for Network.export_onnx.
    if not all(hasattr(net, a) for a in ("layers", "parameters", "buffers", "loss_function")):
        raise TypeError(f"net: expected a bpcore.Network, got {type(net).__name__}")
    if not isinstance(probabilities, bool):
        raise TypeError(f"probabilities: expected True or False, got {probabilities!r}")
    names = [
        _name(input_name, "input_name"),
        _name(output_name, "output_name"),
        _name(probabilities_name, "probabilities_name"),
    ]
    if len(set(names[: 3 if probabilities else 2])) != (3 if probabilities else 2):
        raise ValueError(f"input_name, output_name, probabilities_name: must differ, got {names}")
    loss = net.loss_function
    if probabilities and not loss.is_classification:
        raise ValueError(
            f"probabilities: needs a classification loss (cross_entropy or bce_with_logits), "
            f"the network's is {loss.type_name}"
        )
    onnx = onnx_module()
    newest = int(onnx.defs.onnx_opset_version())
    if opset is None:
        opset = newest
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"opset: expected an integer, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset: expected an integer from {MIN_OPSET} to {newest} (the installed onnx's "
            f"newest), got {opset!r}"
        )

    builder = _ModelBuilder(onnx, opset)
    builder._names.update(names)
    out = write_network(builder, net, input_name)
    element = onnx.helper.np_dtype_to_tensor_dtype(net.dtype)
    builder.rename(out, output_name)
    outputs = [onnx.helper.make_tensor_value_info(output_name, element, ["batch", net.n_outputs])]
    if probabilities:
        op, attributes = ("Softmax", {"axis": -1}) if loss.takes_labels else ("Sigmoid", {})
        builder.nodes.append(
            onnx.helper.make_node(
                op, [output_name], [probabilities_name], name=probabilities_name, **attributes
            )
        )
        outputs.append(
            onnx.helper.make_tensor_value_info(
                probabilities_name, element, ["batch", net.n_outputs]
            )
        )
    graph = onnx.helper.make_graph(
        builder.nodes,
        "bpcore_network",
        [onnx.helper.make_tensor_value_info(input_name, element, ["batch", net.n_features])],
        outputs,
        initializer=builder.initializers,
    )
    opsets = [onnx.helper.make_opsetid("", opset)]
    model = onnx.helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="bpcore",
        producer_version=_version(),
        # The oldest IR version that carries this opset: runtimes that lag onnx still load it.
        ir_version=onnx.helper.find_min_ir_version_for(opsets),
    )
    metadata = {LOSS_METADATA_KEY: json.dumps(loss.to_spec())}
    if net.dtype == np.float64 and any(isinstance(la, BatchNorm1d) for la in net.layers):
        metadata[VARIANCE_METADATA_KEY] = "true"
    inits = [la.init for la in net.layers if isinstance(la, PReLU)]
    if inits:
        metadata[PRELU_INIT_METADATA_KEY] = json.dumps(inits)
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save_model(model, os.fspath(path))
    return model


def _version() -> str:
    from bpcore import __version__

    return __version__


__all__ = ["GraphBuilder", "to_onnx", "write_network"]

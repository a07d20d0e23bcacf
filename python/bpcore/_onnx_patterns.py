"""The operator patterns `from_onnx` recognizes as bpcore layers, and how a match becomes one.

A pattern is an expression tree of ONNX operators (`Op`) over the layer's input (`LAYER_INPUT`)
and constants (`Const`, captured by key): one node (Relu, Gemm, ...) or the few nodes of one
formula (GELU's Erf form, torch's Softplus with beta and threshold, SiLU's Sigmoid and Mul,
to_onnx's float64 formulas).
`PATTERNS` pairs each with the function that turns its `Match` into a layer and its parameters,
or refuses it (`RefusedError`, a message naming what does not fit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

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
from bpcore.onnx_export import onnx_module

#: ONNX's Softplus has no linear part; above this beta·x bpcore's and ONNX's agree to within
#: e^-40 (below float64's resolution), so the layer read back computes the same function.
SOFTPLUS_WITHOUT_THRESHOLD = 40.0


@dataclass(frozen=True)
class Const:
    """A pattern leaf: a constant tensor (initializer or Constant node), captured as `key`, of
    a numpy dtype kind in `kinds` (floats unless said)."""

    key: str
    kinds: str = "f"


@dataclass(frozen=True)
class Op:
    """A pattern node: an operator of the default domain applied to its inputs' patterns."""

    op: str
    inputs: tuple[Any, ...]


#: The pattern leaf standing for the layer's input tensor.
LAYER_INPUT = "X"
_X = LAYER_INPUT  # short, for the patterns below
#: Operators whose two inputs a pattern matches in either order.
COMMUTATIVE = ("Add", "Mul")


def _op(op: str, *inputs: Any) -> Op:
    return Op(op, inputs)


@dataclass
class Match:
    """What a pattern matched: its nodes (root last) and captured constants."""

    nodes: list[Any] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    def copy(self) -> Match:
        return Match(list(self.nodes), dict(self.constants))

    @property
    def root(self) -> Any:
        return self.nodes[-1]

    def attribute(self, op: str, name: str, default: Any) -> Any:
        """The attribute `name` of the matched node of type `op` (its default if absent)."""
        node = next(n for n in self.nodes if n.op_type == op)
        for a in node.attribute:
            if a.name == name:
                return onnx_module().helper.get_attribute_value(a)
        return default


class RefusedError(ValueError):
    """A matched node whose attributes or values bpcore cannot take (a message for the user)."""


#: A layer made from a match: (layer, {parameter or buffer suffix: value}); the layer is None
#: for a pattern that computes nothing (a Cast).
Made = tuple[Optional[Layer], dict[str, np.ndarray]]
_FORMULA = "its constants are not those of the formula its operators resemble"


def _float32(value: Any) -> float:
    """An ONNX float attribute (stored as float32) as the shortest decimal float32 rounds to it:
    the value the exporter was given (torch's eps=1e-05 rather than 9.99999975e-06), which
    float64 networks then compute with as the exporting framework did."""
    return float(str(np.float32(value)))


def _scalar(m: Match, key: str) -> float | None:
    value = m.constants[key]
    if value.size != 1:
        return None
    number = value.reshape(-1)[0]
    return _float32(number) if value.dtype == np.float32 else float(number)


def _close(value: float | None, target: float) -> bool:
    return value is not None and math.isclose(value, target, rel_tol=1e-6)


def _vector(value: np.ndarray, size: int, what: str) -> np.ndarray:
    if value.size == size:
        return value.reshape(size)
    if value.size == 1:
        return np.full(size, value.reshape(-1)[0], dtype=value.dtype)
    raise RefusedError(f"{what} has shape {value.shape}, expected ({size},)")


def _dense(weight_in_out: np.ndarray, bias: np.ndarray | None) -> Made:
    if weight_in_out.ndim != 2:
        raise RefusedError(f"the weight has shape {weight_in_out.shape}, expected a matrix")
    n_in, n_out = weight_in_out.shape
    state = {"weight": np.ascontiguousarray(weight_in_out.T)}
    if bias is not None:
        state["bias"] = _vector(bias, n_out, "the bias")
    return Dense(n_in, n_out, bias=bias is not None), state


def _gemm(m: Match) -> Made:
    if m.attribute("Gemm", "transA", 0):
        raise RefusedError("transA=1 (a transposed input) is not a dense layer")
    w, b = m.constants["w"], m.constants.get("b")
    alpha, beta = m.attribute("Gemm", "alpha", 1.0), m.attribute("Gemm", "beta", 1.0)
    if alpha != 1.0:
        w = w * w.dtype.type(alpha)
    if b is not None and beta != 1.0:
        b = b * b.dtype.type(beta)
    # transB=1 stores the weight (out, in), as torch's Linear; transB=0 stores it (in, out).
    return _dense(w.T if m.attribute("Gemm", "transB", 0) else w, b)


def _matmul_add(m: Match) -> Made:
    return _dense(m.constants["w"], m.constants.get("b"))


def _simple(cls: type[Layer]) -> Callable[[Match], Made]:
    return lambda m: (cls(), {})


def _leaky_relu(m: Match) -> Made:
    return LeakyReLU(_float32(m.attribute("LeakyRelu", "alpha", 0.01))), {}


def _leaky_relu_formula(m: Match) -> Made:
    """LeakyReLU's formula: with a scalar slope a LeakyReLU, with a tensor of slopes (to_onnx's
    float64 PReLU) a PReLU."""
    if _scalar(m, "zero") != 0.0:
        raise RefusedError(_FORMULA)
    if m.constants["slope"].ndim > 0:
        return _prelu(m)
    slope = _scalar(m, "slope")
    if slope is None:
        raise RefusedError(_FORMULA)
    return LeakyReLU(slope), {}


def _elu(m: Match) -> Made:
    return ELU(_float32(m.attribute("Elu", "alpha", 1.0))), {}


def _elu_formula(m: Match) -> Made:
    alpha = _scalar(m, "alpha")
    if _scalar(m, "zero") != 0.0 or _scalar(m, "one") != 1.0 or alpha is None:
        raise RefusedError(_FORMULA)
    return ELU(alpha), {}


def _softplus(beta_keys: tuple[str, ...], formula: bool, threshold: bool) -> Callable[..., Made]:
    def make(m: Match) -> Made:
        betas = {_scalar(m, k) for k in beta_keys} if beta_keys else {1.0}
        if len(betas) != 1 or None in betas or (formula and _scalar(m, "one") != 1.0):
            raise RefusedError(_FORMULA)
        beta = betas.pop()
        assert beta is not None
        if beta <= 0:
            raise RefusedError(f"beta must be > 0, got {beta}")
        limit = _scalar(m, "threshold") if threshold else SOFTPLUS_WITHOUT_THRESHOLD
        if limit is None:
            raise RefusedError(_FORMULA)
        return Softplus(beta=beta, threshold=limit), {}

    return make


def _gelu(m: Match) -> Made:
    approximate = m.attribute("Gelu", "approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate != "none":
        raise RefusedError(f"approximate={approximate!r}: only the exact GELU is supported")
    return GELU(), {}


def _gelu_erf(divide: bool) -> Callable[[Match], Made]:
    def make(m: Match) -> Made:
        scale = math.sqrt(2.0) if divide else 1 / math.sqrt(2.0)
        ok = _close(_scalar(m, "scale"), scale) and _scalar(m, "one") == 1.0
        if not ok or _scalar(m, "half") != 0.5:
            raise RefusedError(_FORMULA)
        return GELU(), {}

    return make


def _dropout(m: Match) -> Made:
    if "training" in m.constants and bool(m.constants["training"].reshape(-1)[0]):
        raise RefusedError("training_mode=True: only inference dropout (the identity) is a layer")
    ratio = _scalar(m, "ratio") if "ratio" in m.constants else None
    if ratio is None:
        ratio = _float32(m.attribute("Dropout", "ratio", 0.5))
    return Dropout(ratio), {}


def _epsilon(m: Match, op: str) -> tuple[float, float]:
    """(eps as written, its float32 value as ONNX computes with it) of a normalization."""
    eps32 = float(np.float32(m.attribute(op, "epsilon", 1e-5)))
    return _float32(eps32), eps32


def _batch_norm(m: Match) -> Made:
    if m.attribute("BatchNormalization", "training_mode", 0):
        raise RefusedError("training_mode=1: only inference batch normalization is a layer")
    scale = m.constants["scale"].reshape(-1)
    n = scale.size
    eps = _epsilon(m, "BatchNormalization")[0]
    momentum = round(1.0 - _float32(m.attribute("BatchNormalization", "momentum", 0.9)), 12)
    variance = _vector(m.constants["var"], n, "the variance")
    state = {
        "weight": scale,
        "bias": _vector(m.constants["bias"], n, "the bias"),
        "running_mean": _vector(m.constants["mean"], n, "the mean"),
        "running_var": variance,
        "num_batches_tracked": np.array(0, dtype=np.int64),
    }
    return BatchNorm1d(n, eps=eps, momentum=momentum), state


def _layer_norm(m: Match) -> Made:
    if m.attribute("LayerNormalization", "axis", -1) not in (-1, 1):
        raise RefusedError("only the last axis of (batch, features) inputs can be normalized")
    scale = m.constants["scale"].reshape(-1)
    bias = m.constants.get("bias")
    state = {
        "weight": scale,
        "bias": np.zeros_like(scale) if bias is None else _vector(bias, scale.size, "the bias"),
    }
    eps, eps32 = _epsilon(m, "LayerNormalization")
    if "eps_scale" in m.constants:  # LayerNorm(k x, eps32) = LayerNorm(x, eps32 / k²)
        factors = np.unique(m.constants["eps_scale"])
        k = float(factors[0])
        if factors.size != 1 or k <= 0:
            raise RefusedError(_FORMULA)
        eps = float(f"{eps32 / k**2:.15g}")
    return LayerNorm(scale.size, eps=eps), state


def _cast(m: Match) -> Made:
    to = m.attribute("Cast", "to", 0)
    if to not in (1, 11):  # FLOAT, DOUBLE
        raise RefusedError("a cast to a type other than float32 or float64")
    return None, {}


def _reshape(m: Match) -> Made:
    """A Reshape of each sample, the batch kept (0, or -1 with sizes for the rest): to
    (batch, C, ...) a Reshape layer; to (batch, k) or (batch, -1) a `FlatReshape`."""
    shape = [int(v) for v in m.constants["shape"].reshape(-1)]
    copies_batch = shape[:1] == [0] and not m.attribute("Reshape", "allowzero", 0)
    rest = shape[1:]
    flat = len(rest) == 1 and (rest[0] >= 1 or rest[0] == -1)
    if not (copies_batch or shape[:1] == [-1]) or not (flat or (rest and min(rest) >= 1)):
        raise RefusedError(
            f"shape={shape}: only a reshape of each sample, (0 or -1, sizes...), is a layer"
        )
    if len(rest) == 1:
        return FlatReshape(rest[0]), {}
    return Reshape(tuple(rest)), {}


class FlatReshape(Reshape):
    """A reshape to (batch, k), k = -1 for whatever the row holds. What it is depends on the
    rows it reads, which from_onnx knows: nothing on flat rows of k, a Flatten of shaped ones."""

    def __init__(self, k: int) -> None:
        super().__init__((max(k, 1),))
        self.k = k


def _ints(m: Match, op: str, name: str, default: list[int]) -> list[int]:
    return [int(v) for v in m.attribute(op, name, default)]


def _window(m: Match, op: str, kernel: list[int]) -> dict[str, Any]:
    """kernel_size, stride, padding and dilation of a Conv or pooling node as the layer
    classes take them (ints for 1-d windows, pairs for 2-d), refusing what bpcore lacks."""
    auto_pad = m.attribute(op, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad != "NOTSET":
        raise RefusedError(f"auto_pad={auto_pad!r}: only explicit pads are supported")
    if m.attribute(op, "ceil_mode", 0):
        raise RefusedError("ceil_mode=1: only ceil_mode=0 (torch's default) is supported")
    rank = len(kernel)
    if rank not in (1, 2):
        raise RefusedError(f"kernel_shape={kernel}: only 1-d and 2-d windows are supported")
    pads = _ints(m, op, "pads", [0] * 2 * rank)
    if pads[:rank] != pads[rank:]:
        raise RefusedError(f"pads={pads}: only the same padding at both ends is supported")

    def size(values: list[int]) -> Any:
        return values[0] if rank == 1 else tuple(values)

    return {
        "kernel_size": size(kernel),
        "stride": size(_ints(m, op, "strides", [1] * rank)),
        "padding": size(pads[:rank]),
        "dilation": size(_ints(m, op, "dilations", [1] * rank)),
    }


def _conv(m: Match) -> Made:
    weight, bias = m.constants["w"], m.constants.get("b")
    if weight.ndim not in (3, 4):
        raise RefusedError(f"the weight has shape {weight.shape}: only Conv1d and Conv2d")
    group = m.attribute("Conv", "group", 1)
    if group != 1:
        raise RefusedError(f"group={group}: only group=1 is supported")
    kernel = [int(k) for k in weight.shape[2:]]
    if _ints(m, "Conv", "kernel_shape", kernel) != kernel:
        raise RefusedError(f"kernel_shape does not match the weight's shape {weight.shape}")
    window = _window(m, "Conv", kernel)
    cls = Conv1d if weight.ndim == 3 else Conv2d
    out_channels, in_channels = (int(d) for d in weight.shape[:2])
    layer = cls(in_channels, out_channels, bias=bias is not None, **window)
    state = {"weight": weight}
    if bias is not None:
        state["bias"] = _vector(bias, out_channels, "the bias")
    return layer, state


def _max_pool(m: Match) -> Made:
    if m.attribute("MaxPool", "storage_order", 0):
        raise RefusedError("storage_order=1: only row-major indices are supported")
    window = _window(m, "MaxPool", _ints(m, "MaxPool", "kernel_shape", []))
    cls = MaxPool1d if isinstance(window["kernel_size"], int) else MaxPool2d
    return cls(**window), {}


def _average_pool(m: Match) -> Made:
    window = _window(m, "AveragePool", _ints(m, "AveragePool", "kernel_shape", []))
    padded = window["padding"] not in (0, (0, 0))
    if padded and not m.attribute("AveragePool", "count_include_pad", 0):
        raise RefusedError(
            "count_include_pad=0 with padding: only count_include_pad=1 (torch's default) "
            "is supported"
        )
    if window.pop("dilation") not in (1, (1, 1)):
        raise RefusedError("dilations: only 1 is supported")
    cls = AvgPool1d if isinstance(window["kernel_size"], int) else AvgPool2d
    return cls(**window), {}


def _flatten(m: Match) -> Made:
    axis = m.attribute("Flatten", "axis", 1)
    if axis != 1:
        raise RefusedError(f"axis={axis}: only axis=1 (each sample flat) is supported")
    return Flatten(), {}


def _embedding(m: Match) -> Made:
    axis = m.attribute("Gather", "axis", 0)
    table = m.constants["table"]
    if axis != 0 or table.ndim != 2:
        raise RefusedError(f"axis={axis}: only rows of a (num, dim) table (axis=0) are looked up")
    if any(n.op_type == "Cast" for n in m.nodes) and m.attribute("Cast", "to", 0) not in (6, 7):
        raise RefusedError("the indices are cast to a type other than int32 or int64")
    return Embedding(int(table.shape[0]), int(table.shape[1])), {"weight": table}


def _prelu(m: Match) -> Made:
    slope = m.constants["slope"]
    # The slope's shape against the rows is checked by from_onnx, which knows their shape.
    return PReLU(slope.size), {"weight": slope.reshape(-1)}


def _mish_formula(m: Match) -> Made:
    if _scalar(m, "one") != 1.0:
        raise RefusedError(_FORMULA)
    return Mish(), {}


_W, _B = Const("w"), Const("b")
_ZERO, _ONE = Const("zero"), Const("one")
_SCALED = _op("Mul", _X, Const("beta"))
_SCALED1 = _op("Mul", _X, Const("beta1"))


def _stable_softplus(z: Any) -> Op:
    """log(1 + e^z) as to_onnx writes it in float64: max(z, 0) + log(1 + e^-|z|)."""
    negative_part = _op("Exp", _op("Neg", _op("Abs", z)))
    return _op("Add", _op("Relu", z), _op("Log", _op("Add", negative_part, _ONE)))


_STABLE_SOFTPLUS = _stable_softplus(_SCALED)

#: (pattern, how its match becomes a layer), largest patterns first: the longest match wins.
PATTERNS: list[tuple[Op, Callable[[Match], Made]]] = [
    # Softplus with torch's beta and threshold: to_onnx's float64 formula, then torch's own.
    (
        _op(
            "Where",
            _op("Greater", _SCALED, Const("threshold")),
            _X,
            _op("Div", _STABLE_SOFTPLUS, Const("beta2")),
        ),
        _softplus(("beta", "beta2"), formula=True, threshold=True),
    ),
    (
        _op(
            "Where",
            _op("Greater", _SCALED, Const("threshold")),
            _X,
            _op("Div", _op("Softplus", _SCALED1), Const("beta2")),
        ),
        _softplus(("beta", "beta1", "beta2"), formula=False, threshold=True),
    ),
    (
        _op(
            "Where",
            _op("Greater", _X, Const("threshold")),
            _X,
            _op("Softplus", _X),
        ),
        _softplus((), formula=False, threshold=True),
    ),
    # GELU's Erf form, as torch's exporters write it (by √2 or times 1/√2, either grouping).
    *[
        (
            _op(
                "Mul",
                _op(
                    "Mul",
                    _X,
                    _op("Add", _op("Erf", _op(scale_op, _X, Const("scale"))), _ONE),
                ),
                Const("half"),
            ),
            _gelu_erf(scale_op == "Div"),
        )
        for scale_op in ("Div", "Mul")
    ],
    *[
        (
            _op(
                "Mul",
                _X,
                _op(
                    "Mul",
                    Const("half"),
                    _op("Add", _op("Erf", _op(scale_op, _X, Const("scale"))), _ONE),
                ),
            ),
            _gelu_erf(scale_op == "Div"),
        )
        for scale_op in ("Div", "Mul")
    ],
    (
        _op(
            "Where",
            _op("Greater", _X, _ZERO),
            _X,
            _op("Mul", _op("Sub", _op("Exp", _X), _ONE), Const("alpha")),
        ),
        _elu_formula,
    ),
    (
        _op(
            "Where",
            _op("Greater", _X, _ZERO),
            _X,
            _op("Mul", _X, Const("slope")),
        ),
        _leaky_relu_formula,
    ),
    (
        _op("Div", _op("Softplus", _SCALED), Const("beta2")),
        _softplus(("beta", "beta2"), False, False),
    ),
    # Mish as x tanh(softplus(x)): to_onnx's float64 formula before opset 18, then torch's.
    (_op("Mul", _X, _op("Tanh", _stable_softplus(_X))), _mish_formula),
    (_op("Mul", _X, _op("Tanh", _op("Softplus", _X))), _simple(Mish)),
    (_op("Mul", _X, _op("Sigmoid", _X)), _simple(SiLU)),
    (_op("Gather", Const("table"), _op("Cast", _X)), _embedding),
    (_op("Gather", Const("table"), _X), _embedding),
    (_op("Conv", _X, _W, _B), _conv),
    (_op("Conv", _X, _W), _conv),
    (_op("Add", _op("MatMul", _X, _W), _B), _matmul_add),
    (_op("Gemm", _X, _W, _B), _gemm),
    (_op("Gemm", _X, _W), _gemm),
    (_op("MatMul", _X, _W), _matmul_add),
    (
        _op("BatchNormalization", _X, *map(Const, ("scale", "bias", "mean", "var"))),
        _batch_norm,
    ),
    (
        _op(
            "LayerNormalization",
            _op("Mul", _X, Const("eps_scale")),
            Const("scale"),
            Const("bias"),
        ),
        _layer_norm,
    ),
    (_op("LayerNormalization", _X, Const("scale"), Const("bias")), _layer_norm),
    (_op("LayerNormalization", _X, Const("scale")), _layer_norm),
    (_op("Dropout", _X, Const("ratio"), Const("training", "b")), _dropout),
    (_op("Dropout", _X, Const("ratio")), _dropout),
    (_op("Dropout", _X), _dropout),
    (_op("Softplus", _X), _softplus((), formula=False, threshold=False)),
    (_op("Gelu", _X), _gelu),
    (_op("LeakyRelu", _X), _leaky_relu),
    (_op("Elu", _X), _elu),
    (_op("Relu", _X), _simple(ReLU)),
    (_op("Sigmoid", _X), _simple(Sigmoid)),
    (_op("Tanh", _X), _simple(Tanh)),
    (_op("Identity", _X), _simple(Identity)),
    (_op("Mish", _X), _simple(Mish)),
    (_op("PRelu", _X, Const("slope")), _prelu),
    (_op("MaxPool", _X), _max_pool),
    (_op("AveragePool", _X), _average_pool),
    (_op("Flatten", _X), _flatten),
    (_op("Cast", _X), _cast),
    (_op("Reshape", _X, Const("shape", "iu")), _reshape),
]

#: What the refusal message lists as readable.
SUPPORTED = (
    "Gemm, MatMul (+ Add), Relu, LeakyRelu, Sigmoid, Tanh, Gelu (or its Erf form), Elu, "
    "Softplus (with torch's beta and threshold), SiLU (Sigmoid, Mul), Mish, PRelu, Identity, "
    "Dropout, BatchNormalization, LayerNormalization, Conv, MaxPool, AveragePool, Flatten, "
    "Reshape of each sample, Gather (embeddings, and to_onnx's Embeddings with Concat), Cast, "
    "and a final Softmax"
)

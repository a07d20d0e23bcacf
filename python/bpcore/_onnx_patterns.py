"""The operator patterns `from_onnx` recognizes as bpcore layers, and how a match becomes one.

A pattern is an expression tree of ONNX operators (`Op`) over the layer's input (`LAYER_INPUT`)
and constants (`Const`, captured by key): one node (Relu, Gemm, ...) or the few nodes of one
formula (GELU's Erf form, torch's Softplus with beta and threshold, to_onnx's float64 formulas).
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
    BatchNorm1d,
    Dense,
    Dropout,
    Identity,
    Layer,
    LayerNorm,
    LeakyReLU,
    ReLU,
    Sigmoid,
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
    slope = _scalar(m, "slope")
    if _scalar(m, "zero") != 0.0 or slope is None:
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
    shape = [int(v) for v in m.constants["shape"].reshape(-1)]
    if len(shape) != 2 or shape[0] not in (-1, 0) or shape[1] < 1:
        raise RefusedError(f"a reshape to {shape}, not to (batch, features)")
    return None, {}  # (batch, k) of (batch, k): from_onnx checks k against the width


_W, _B = Const("w"), Const("b")
_ZERO, _ONE = Const("zero"), Const("one")
_SCALED = _op("Mul", _X, Const("beta"))
_SCALED1 = _op("Mul", _X, Const("beta1"))
_STABLE_SOFTPLUS = _op(
    "Add",
    _op("Relu", _SCALED),
    _op("Log", _op("Add", _op("Exp", _op("Neg", _op("Abs", _SCALED))), _ONE)),
)

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
    (_op("Cast", _X), _cast),
    (_op("Reshape", _X, Const("shape", "iu")), _reshape),
]

#: What the refusal message lists as readable.
SUPPORTED = (
    "Gemm, MatMul (+ Add), Relu, LeakyRelu, Sigmoid, Tanh, Gelu (or its Erf form), Elu, "
    "Softplus (with torch's beta and threshold), Identity, Dropout, BatchNormalization, "
    "LayerNormalization, Cast, Reshape to (batch, features), and a final Softmax"
)

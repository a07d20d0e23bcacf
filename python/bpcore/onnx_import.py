"""Networks from ONNX: `from_onnx(model)` reads the sequential MLP graphs that torch
(``torch.onnx.export`` of an ``nn.Sequential``), Keras-style converters (MatMul + Add) and skl2onnx
(MLPClassifier, MLPRegressor) write, and `to_onnx`'s own, into a bpcore Network.

The graph is read as a chain from its one input: at each tensor, the nodes that consume it must
form one layer, found by matching the operator patterns below (a layer is one node, or a few that
compute one formula, such as GELU's Erf form or torch's Softplus with beta and threshold). The
chain ends at a graph output, or at a classifier's probability head: a Softmax (skl2onnx's and
to_onnx's) or skl2onnx's binary head (Sigmoid, then 1 - p beside p). What follows a head (ArgMax,
label lookup, ZipMap) is post-processing, not part of the network. Anything else (a branch, a
convolution, an operator of another domain such as skl2onnx's Scaler) is refused with a
ValueError naming the first node that cannot be taken.
"""

from __future__ import annotations

import json
import math
import os
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
from bpcore.losses import LOSSES, Loss, LossLike
from bpcore.network import Network
from bpcore.onnx_export import LOSS_METADATA_KEY, VARIANCE_METADATA_KEY, PathLike, onnx_module
from bpcore.optimizers import Optimizer

#: ONNX's Softplus has no linear part; above this beta·x bpcore's and ONNX's agree to within
#: e^-40 (below float64's resolution), so the layer read back computes the same function.
SOFTPLUS_WITHOUT_THRESHOLD = 40.0

# ----- patterns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Const:
    """A pattern leaf: a constant tensor (initializer or Constant node), captured as `key`, of
    a numpy dtype kind in `kinds` (floats unless said)."""

    key: str
    kinds: str = "f"


@dataclass(frozen=True)
class _Op:
    """A pattern node: an operator of the default domain applied to its inputs' patterns."""

    op: str
    inputs: tuple[Any, ...]


#: The pattern leaf standing for the layer's input tensor.
_X = "X"
_COMMUTATIVE = ("Add", "Mul")


def _op(op: str, *inputs: Any) -> _Op:
    return _Op(op, inputs)


@dataclass
class _Match:
    """What a pattern matched: its nodes (root last) and captured constants."""

    nodes: list[Any] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    def copy(self) -> _Match:
        return _Match(list(self.nodes), dict(self.constants))

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


class _RefusedError(ValueError):
    """A matched node whose attributes or values bpcore cannot take (a message for the user)."""


#: A layer made from a match: (layer, {parameter or buffer suffix: value}); the layer is None
#: for a pattern that computes nothing (a Cast).
_Made = tuple[Optional[Layer], dict[str, np.ndarray]]
_FORMULA = "its constants are not those of the formula its operators resemble"


def _float32(value: Any) -> float:
    """An ONNX float attribute (stored as float32) as the shortest decimal float32 rounds to it:
    the value the exporter was given (torch's eps=1e-05 rather than 9.99999975e-06), which
    float64 networks then compute with as the exporting framework did."""
    return float(str(np.float32(value)))


def _scalar(m: _Match, key: str) -> float | None:
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
    raise _RefusedError(f"{what} has shape {value.shape}, expected ({size},)")


def _dense(weight_in_out: np.ndarray, bias: np.ndarray | None) -> _Made:
    if weight_in_out.ndim != 2:
        raise _RefusedError(f"the weight has shape {weight_in_out.shape}, expected a matrix")
    n_in, n_out = weight_in_out.shape
    state = {"weight": np.ascontiguousarray(weight_in_out.T)}
    if bias is not None:
        state["bias"] = _vector(bias, n_out, "the bias")
    return Dense(n_in, n_out, bias=bias is not None), state


def _gemm(m: _Match) -> _Made:
    if m.attribute("Gemm", "transA", 0):
        raise _RefusedError("transA=1 (a transposed input) is not a dense layer")
    w, b = m.constants["w"], m.constants.get("b")
    alpha, beta = m.attribute("Gemm", "alpha", 1.0), m.attribute("Gemm", "beta", 1.0)
    if alpha != 1.0:
        w = w * w.dtype.type(alpha)
    if b is not None and beta != 1.0:
        b = b * b.dtype.type(beta)
    # transB=1 stores the weight (out, in), as torch's Linear; transB=0 stores it (in, out).
    return _dense(w.T if m.attribute("Gemm", "transB", 0) else w, b)


def _matmul_add(m: _Match) -> _Made:
    return _dense(m.constants["w"], m.constants.get("b"))


def _simple(cls: type[Layer]) -> Callable[[_Match], _Made]:
    return lambda m: (cls(), {})


def _leaky_relu(m: _Match) -> _Made:
    return LeakyReLU(_float32(m.attribute("LeakyRelu", "alpha", 0.01))), {}


def _leaky_relu_formula(m: _Match) -> _Made:
    slope = _scalar(m, "slope")
    if _scalar(m, "zero") != 0.0 or slope is None:
        raise _RefusedError(_FORMULA)
    return LeakyReLU(slope), {}


def _elu(m: _Match) -> _Made:
    return ELU(_float32(m.attribute("Elu", "alpha", 1.0))), {}


def _elu_formula(m: _Match) -> _Made:
    alpha = _scalar(m, "alpha")
    if _scalar(m, "zero") != 0.0 or _scalar(m, "one") != 1.0 or alpha is None:
        raise _RefusedError(_FORMULA)
    return ELU(alpha), {}


def _softplus(beta_keys: tuple[str, ...], formula: bool, threshold: bool) -> Callable[..., _Made]:
    def make(m: _Match) -> _Made:
        betas = {_scalar(m, k) for k in beta_keys} if beta_keys else {1.0}
        if len(betas) != 1 or None in betas or (formula and _scalar(m, "one") != 1.0):
            raise _RefusedError(_FORMULA)
        beta = betas.pop()
        assert beta is not None
        if beta <= 0:
            raise _RefusedError(f"beta must be > 0, got {beta}")
        limit = _scalar(m, "threshold") if threshold else SOFTPLUS_WITHOUT_THRESHOLD
        if limit is None:
            raise _RefusedError(_FORMULA)
        return Softplus(beta=beta, threshold=limit), {}

    return make


def _gelu(m: _Match) -> _Made:
    approximate = m.attribute("Gelu", "approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate != "none":
        raise _RefusedError(f"approximate={approximate!r}: only the exact GELU is supported")
    return GELU(), {}


def _gelu_erf(divide: bool) -> Callable[[_Match], _Made]:
    def make(m: _Match) -> _Made:
        scale = math.sqrt(2.0) if divide else 1 / math.sqrt(2.0)
        ok = _close(_scalar(m, "scale"), scale) and _scalar(m, "one") == 1.0
        if not ok or _scalar(m, "half") != 0.5:
            raise _RefusedError(_FORMULA)
        return GELU(), {}

    return make


def _dropout(m: _Match) -> _Made:
    if "training" in m.constants and bool(m.constants["training"].reshape(-1)[0]):
        raise _RefusedError("training_mode=True: only inference dropout (the identity) is a layer")
    ratio = _scalar(m, "ratio") if "ratio" in m.constants else None
    if ratio is None:
        ratio = _float32(m.attribute("Dropout", "ratio", 0.5))
    return Dropout(ratio), {}


def _epsilon(m: _Match, op: str) -> tuple[float, float]:
    """(eps as written, its float32 value as ONNX computes with it) of a normalization."""
    eps32 = float(np.float32(m.attribute(op, "epsilon", 1e-5)))
    return _float32(eps32), eps32


def _batch_norm(m: _Match) -> _Made:
    if m.attribute("BatchNormalization", "training_mode", 0):
        raise _RefusedError("training_mode=1: only inference batch normalization is a layer")
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


def _layer_norm(m: _Match) -> _Made:
    if m.attribute("LayerNormalization", "axis", -1) not in (-1, 1):
        raise _RefusedError("only the last axis of (batch, features) inputs can be normalized")
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
            raise _RefusedError(_FORMULA)
        eps = float(f"{eps32 / k**2:.15g}")
    return LayerNorm(scale.size, eps=eps), state


def _cast(m: _Match) -> _Made:
    to = m.attribute("Cast", "to", 0)
    if to not in (1, 11):  # FLOAT, DOUBLE
        raise _RefusedError("a cast to a type other than float32 or float64")
    return None, {}


def _reshape(m: _Match) -> _Made:
    shape = [int(v) for v in m.constants["shape"].reshape(-1)]
    if len(shape) != 2 or shape[0] not in (-1, 0) or shape[1] < 1:
        raise _RefusedError(f"a reshape to {shape}, not to (batch, features)")
    return None, {}  # (batch, k) of (batch, k): from_onnx checks k against the width


_W, _B = _Const("w"), _Const("b")
_ZERO, _ONE = _Const("zero"), _Const("one")
_SCALED = _op("Mul", _X, _Const("beta"))
_SCALED1 = _op("Mul", _X, _Const("beta1"))
_STABLE_SOFTPLUS = _op(
    "Add",
    _op("Relu", _SCALED),
    _op("Log", _op("Add", _op("Exp", _op("Neg", _op("Abs", _SCALED))), _ONE)),
)

#: (pattern, how its match becomes a layer), largest patterns first: the longest match wins.
_PATTERNS: list[tuple[_Op, Callable[[_Match], _Made]]] = [
    # Softplus with torch's beta and threshold: to_onnx's float64 formula, then torch's own.
    (
        _op(
            "Where",
            _op("Greater", _SCALED, _Const("threshold")),
            _X,
            _op("Div", _STABLE_SOFTPLUS, _Const("beta2")),
        ),
        _softplus(("beta", "beta2"), formula=True, threshold=True),
    ),
    (
        _op(
            "Where",
            _op("Greater", _SCALED, _Const("threshold")),
            _X,
            _op("Div", _op("Softplus", _SCALED1), _Const("beta2")),
        ),
        _softplus(("beta", "beta1", "beta2"), formula=False, threshold=True),
    ),
    (
        _op(
            "Where",
            _op("Greater", _X, _Const("threshold")),
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
                _op("Mul", _X, _op("Add", _op("Erf", _op(scale_op, _X, _Const("scale"))), _ONE)),
                _Const("half"),
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
                    _Const("half"),
                    _op("Add", _op("Erf", _op(scale_op, _X, _Const("scale"))), _ONE),
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
            _op("Mul", _op("Sub", _op("Exp", _X), _ONE), _Const("alpha")),
        ),
        _elu_formula,
    ),
    (
        _op("Where", _op("Greater", _X, _ZERO), _X, _op("Mul", _X, _Const("slope"))),
        _leaky_relu_formula,
    ),
    (
        _op("Div", _op("Softplus", _SCALED), _Const("beta2")),
        _softplus(("beta", "beta2"), False, False),
    ),
    (_op("Add", _op("MatMul", _X, _W), _B), _matmul_add),
    (_op("Gemm", _X, _W, _B), _gemm),
    (_op("Gemm", _X, _W), _gemm),
    (_op("MatMul", _X, _W), _matmul_add),
    (
        _op("BatchNormalization", _X, *map(_Const, ("scale", "bias", "mean", "var"))),
        _batch_norm,
    ),
    (
        _op(
            "LayerNormalization",
            _op("Mul", _X, _Const("eps_scale")),
            _Const("scale"),
            _Const("bias"),
        ),
        _layer_norm,
    ),
    (_op("LayerNormalization", _X, _Const("scale"), _Const("bias")), _layer_norm),
    (_op("LayerNormalization", _X, _Const("scale")), _layer_norm),
    (_op("Dropout", _X, _Const("ratio"), _Const("training", "b")), _dropout),
    (_op("Dropout", _X, _Const("ratio")), _dropout),
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
    (_op("Reshape", _X, _Const("shape", "iu")), _reshape),
]

#: What the refusal message lists as readable.
_SUPPORTED = (
    "Gemm, MatMul (+ Add), Relu, LeakyRelu, Sigmoid, Tanh, Gelu (or its Erf form), Elu, "
    "Softplus (with torch's beta and threshold), Identity, Dropout, BatchNormalization, "
    "LayerNormalization, Cast, Reshape to (batch, features), and a final Softmax"
)

# ----- the graph --------------------------------------------------------------------------


def _fold(onnx: Any, node: Any, constants: dict[str, np.ndarray]) -> np.ndarray | None:
    """The value of a node computed from constants alone (exporters leave a few), else None."""
    if node.op_type == "Constant":
        attribute = node.attribute[0]
        value = onnx.helper.get_attribute_value(attribute)
        if attribute.name == "value":
            return np.asarray(onnx.numpy_helper.to_array(value))
        if attribute.name in ("value_float", "value_floats"):
            return np.asarray(value, dtype=np.float32)
        if attribute.name in ("value_int", "value_ints"):
            return np.asarray(value, dtype=np.int64)
        return None
    if not node.input or any(i not in constants for i in node.input):
        return None
    args = [constants[i] for i in node.input]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Identity":
        return args[0]
    if node.op_type == "Transpose":
        return np.transpose(args[0], attributes.get("perm"))
    if node.op_type == "Cast":
        return args[0].astype(onnx.helper.tensor_dtype_to_np_dtype(attributes["to"]))
    return None


class _Graph:
    """The nodes of a graph with what a walk along it needs: producers, consumers, constants."""

    def __init__(self, onnx: Any, graph: Any) -> None:
        self.constants: dict[str, np.ndarray] = {
            t.name: np.asarray(onnx.numpy_helper.to_array(t)) for t in graph.initializer
        }
        self.nodes: list[Any] = []
        for node in graph.node:
            value = _fold(onnx, node, self.constants) if node.domain in ("", "ai.onnx") else None
            if value is not None and len(node.output) == 1:
                self.constants[node.output[0]] = value
            else:
                self.nodes.append(node)
        self.order = {id(n): k for k, n in enumerate(self.nodes)}
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for i in dict.fromkeys(n.input):
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.outputs = [o.name for o in graph.output]
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(
                f"from_onnx: expected a graph with one input, got {[i.name for i in inputs]}"
            )
        self.input = inputs[0]

    def used(self, tensor: str) -> bool:
        return tensor in self.consumers or tensor in self.outputs

    def match(self, pattern: Any, tensor: str, x: str, m: _Match) -> _Match | None:
        """`m` extended by `pattern` matched at `tensor` (the layer's input being `x`)."""
        if pattern == _X:
            return m if tensor == x else None
        if isinstance(pattern, _Const):
            value = self.constants.get(tensor)
            if value is None or value.dtype.kind not in pattern.kinds:
                return None
            known = m.constants.get(pattern.key)
            if known is not None and not np.array_equal(known, value):
                return None
            m = m.copy()
            m.constants[pattern.key] = value
            return m
        node = self.producer.get(tensor)
        if node is None or node.op_type != pattern.op or node.domain not in ("", "ai.onnx"):
            return None
        inputs = list(node.input)
        while inputs and not inputs[-1]:
            inputs.pop()  # trailing optional inputs left out
        if len(inputs) != len(pattern.inputs):
            return None
        orders = [inputs]
        if pattern.op in _COMMUTATIVE:
            orders.append(inputs[::-1])
        for order in orders:
            found: _Match | None = m
            for sub, t in zip(pattern.inputs, order):
                found = self.match(sub, t, x, found) if found is not None else None
            if found is not None:
                if all(n is not node for n in found.nodes):
                    found.nodes.append(node)
                return found
        return None

    def layer_at(self, x: str) -> tuple[_Match, Callable[[_Match], _Made]] | None:
        """The largest pattern taking all consumers of `x` and only their chain."""
        best: tuple[_Match, Callable[[_Match], _Made]] | None = None
        users = {id(n) for n in self.consumers.get(x, [])}
        for pattern, make in _PATTERNS:
            for node in self.nodes:
                if node.op_type != pattern.op or not node.output:
                    continue
                m = self.match(pattern, node.output[0], x, _Match())
                if m is None or (best is not None and len(m.nodes) <= len(best[0].nodes)):
                    continue
                taken = {id(n) for n in m.nodes}
                private = all(
                    c is not None and id(c) in taken
                    for n in m.nodes[:-1]
                    for o in n.output
                    for c in self.consumers.get(o, [None])
                ) and not any(o in self.outputs for n in m.nodes[:-1] for o in n.output)
                extra = any(self.used(o) for o in m.root.output[1:])
                if users <= taken and private and not extra:
                    m.nodes.sort(key=lambda n: self.order[id(n)])
                    m.nodes.remove(node)
                    m.nodes.append(node)
                    best = (m, make)
        return best

    def head_at(self, x: str) -> str | None:
        """The loss a probability head reading `x` implies, if `x`'s consumers are one."""
        users = self.consumers.get(x, [])
        if len(users) != 1 or users[0].domain not in ("", "ai.onnx"):
            return None
        head = users[0]
        if head.op_type in ("Softmax", "LogSoftmax"):
            axis = next((a.i for a in head.attribute if a.name == "axis"), -1)
            return "cross_entropy" if axis in (-1, 1) else None
        if head.op_type == "Sigmoid":  # skl2onnx's binary classifier: [1 - p, p]
            after = sorted(n.op_type for n in self.consumers.get(head.output[0], []))
            return "bce_with_logits" if after == ["Concat", "Sub"] else None
        return None

    def downstream(self, tensor: str) -> set[int]:
        """The nodes computed from `tensor`."""
        seen: set[int] = set()
        todo = [tensor]
        while todo:
            for n in self.consumers.get(todo.pop(), []):
                if id(n) not in seen:
                    seen.add(id(n))
                    todo.extend(n.output)
        return seen


def _refuse(node: Any, why: str) -> ValueError:
    return ValueError(f"from_onnx: cannot take node {node.name!r} ({node.op_type}): {why}")


def _read_model(path_or_model: Any) -> Any:
    onnx = onnx_module()
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (str, os.PathLike)):
        try:
            return onnx.load_model(os.fspath(path_or_model))
        except OSError:
            raise
        except Exception as e:
            raise ValueError(f"path_or_model: {path_or_model!s} is not an ONNX model: {e}") from e
    raise TypeError(
        f"path_or_model: expected a path or an onnx.ModelProto, got {type(path_or_model).__name__}"
    )


def _loss_from_metadata(metadata: dict[str, str]) -> Loss | None:
    """The loss `to_onnx` kept in the metadata, if the model has one bpcore can read."""
    if LOSS_METADATA_KEY not in metadata:
        return None
    try:
        spec = json.loads(metadata[LOSS_METADATA_KEY])
        hyper = {k: v for k, v in spec.items() if k != "type"}
        loss: Loss = LOSSES[spec["type"]](**hyper)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return loss


def from_onnx(
    path_or_model: PathLike | Any,
    loss: LossLike | None = None,
    optimizer: Optimizer | str | None = None,
    seed: int = 0,
) -> Network:
    """The bpcore Network computing an ONNX model's sequential MLP graph, with its weights.

    Read are: Gemm (either weight layout, transB=0 or 1, alpha and beta folded in) and MatMul
    (+ Add of a bias) as Dense; Relu, LeakyRelu, Sigmoid, Tanh, Identity; Gelu (exact) and its
    Erf form; Elu; Softplus, also with torch's beta and threshold (a plain Softplus has
    threshold 40, see SOFTPLUS_WITHOUT_THRESHOLD); Dropout (inference) as Dropout;
    BatchNormalization (num_batches_tracked 0) and LayerNormalization; Casts to float32/float64
    are passed through. The chain ends at a graph output or a probability head (see the module
    docstring). The dtype is the weights' (float32 or float64).

    Example:
        >>> import bpcore as bp
        >>> net = bp.Network([bp.Dense(4, 8), bp.GELU(), bp.Dense(8, 3)], loss="cross_entropy")
        >>> back = bp.from_onnx(bp.to_onnx(net))  # doctest: +SKIP
        >>> back.layers  # doctest: +SKIP
        [Dense(in_features=4, out_features=8, bias=True), GELU(), Dense(...)]

    Args:
        path_or_model: a .onnx file or an `onnx.ModelProto`.
        loss: the network's loss; default the one `to_onnx` stored in the model, else
            "cross_entropy" after a Softmax head, "bce_with_logits" after skl2onnx's binary
            head, and "mse" otherwise.
        optimizer, seed: the Network's own arguments (ONNX models hold none).

    Raises:
        ImportError: onnx is not installed.
        TypeError: `path_or_model` is neither a path nor a ModelProto.
        ValueError: the graph is not a sequential MLP: the message names the first node that
            cannot be taken.
    """
    onnx = onnx_module()
    model = _read_model(path_or_model)
    graph = _Graph(onnx, model.graph)
    layers: list[Layer] = []
    state: dict[str, np.ndarray] = {}
    taken: set[int] = set()
    x = graph.input.name
    head: str | None = None
    while x not in graph.outputs:
        head = graph.head_at(x)
        if head is not None:
            break
        found = graph.layer_at(x)
        if found is None:
            users = sorted(graph.consumers.get(x, []), key=lambda n: graph.order[id(n)])
            if not users:
                raise ValueError(f"from_onnx: the tensor {x!r} leads to no graph output")
            if len(users) > 1:
                # Name the node where the branches meet if there is one (a residual Add).
                joins = [
                    n for n in users if any(i != x and i not in graph.constants for i in n.input)
                ]
                node = joins[0] if joins else users[0]
                others = ", ".join(repr(n.name) for n in users if n is not node)
                raise _refuse(node, f"its input {x!r} also feeds {others}: the graph branches")
            raise _refuse(
                users[0], f"not a layer of a sequential network (supported: {_SUPPORTED})"
            )
        m, make = found
        try:
            made = make(m)
        except (ValueError, TypeError) as e:  # also a layer refusing its hyperparameters
            raise _refuse(m.root, str(e)) from None
        layer, values = made
        if m.root.op_type == "Reshape":
            widths = [la.out_features for la in layers if isinstance(la, Dense)]
            if not widths or int(m.constants["shape"].reshape(-1)[1]) != widths[-1]:
                width = widths[-1] if widths else "unknown"
                raise _refuse(m.root, f"a reshape of {width} features to another width")
        if layer is not None:
            index = len(layers)
            layers.append(layer)
            state.update({f"{index}.{k}": v for k, v in values.items()})
        taken.update(id(n) for n in m.nodes)
        x = m.root.output[0]
    if head is None:  # a head after the output (to_onnx's probabilities) still says the loss
        ops = {n.op_type for n in graph.consumers.get(x, [])}
        head = "cross_entropy" if ops & {"Softmax", "LogSoftmax"} else None
    after = graph.downstream(x)
    for node in graph.nodes:
        if id(node) not in taken and id(node) not in after:
            raise _refuse(node, "it is not on the chain from the input to the output")
    if not layers:
        raise ValueError("from_onnx: the graph has no layer")
    dtypes = {v.dtype for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if not dtypes:
        element = graph.input.type.tensor_type.elem_type
        dtypes = {np.dtype(onnx.helper.tensor_dtype_to_np_dtype(element))}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise ValueError(
            f"from_onnx: weights must all be float32 or all float64, got {sorted(map(str, dtypes))}"
        )
    metadata = {p.key: p.value for p in model.metadata_props}
    if metadata.get(VARIANCE_METADATA_KEY) == "true":  # to_onnx's eps rounding, taken out
        for index, layer in enumerate(layers):
            name = f"{index}.running_var"
            if isinstance(layer, BatchNorm1d) and state[name].dtype == np.float64:
                moved = state[name] + (float(np.float32(layer.eps)) - layer.eps)
                state[name] = np.maximum(moved, 0.0)
    if loss is None:
        loss = _loss_from_metadata(metadata) or head or "mse"
    net = Network(layers, loss=loss, optimizer=optimizer, dtype=next(iter(dtypes)), seed=seed)
    net.load_state_dict(state)
    return net


__all__ = ["SOFTPLUS_WITHOUT_THRESHOLD", "from_onnx"]

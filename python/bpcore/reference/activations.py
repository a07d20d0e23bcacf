"""Element-wise activations: each is a pair (f, f') of scalar functions.

The forward pass applies ``f`` to every element of a row. The backward pass is the chain
rule for an element-wise map ``h = f(z)``: each output depends only on its own input, so

    ∂L/∂z = ∂L/∂h · ∂h/∂z = ∂L/∂h · f'(z)

term by term. The derivative is taken at the layer's *input* ``z``; at a kink the value is
torch's (relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .specs import layer_spec

Scalar = Callable[[float], float]

_SQRT1_2 = math.sqrt(0.5)  # 1/√2
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)  # 1/√(2π), the normal density's constant
_EXP_LIMIT = 700.0  # math.exp overflows a float just above 709


def sigmoid(x: float) -> float:
    """The logistic function 1 / (1 + e^-x), computed without overflow for any x."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)  # x < 0: e^x is small, so e^x / (1 + e^x) cannot overflow
    return e / (1.0 + e)


def _relu() -> tuple[Scalar, Scalar]:
    def f(x: float) -> float:
        return max(x, 0.0)  # x first, so that NaN passes through, as in torch

    def df(x: float) -> float:
        return 1.0 if x > 0.0 else 0.0

    return f, df


def _leaky_relu(slope: float) -> tuple[Scalar, Scalar]:
    def f(x: float) -> float:
        return x if x > 0.0 else x * slope

    def df(x: float) -> float:
        return 1.0 if x > 0.0 else slope

    return f, df


def _sigmoid() -> tuple[Scalar, Scalar]:
    def df(x: float) -> float:
        s = sigmoid(x)
        return s * (1.0 - s)  # d/dx 1/(1+e^-x) = e^-x/(1+e^-x)^2 = s(1-s)

    return sigmoid, df


def _tanh() -> tuple[Scalar, Scalar]:
    def df(x: float) -> float:
        t = math.tanh(x)
        return 1.0 - t * t  # d/dx tanh = sech^2 = 1 - tanh^2

    return math.tanh, df


def _gelu() -> tuple[Scalar, Scalar]:
    # GELU(x) = x Φ(x), Φ the standard normal CDF = ½(1 + erf(x/√2)).
    def f(x: float) -> float:
        return x * 0.5 * (1.0 + math.erf(x * _SQRT1_2))

    def df(x: float) -> float:
        # product rule: d/dx [x Φ(x)] = Φ(x) + x φ(x), φ(x) = e^{-x²/2}/√(2π)
        cdf = 0.5 * (1.0 + math.erf(x * _SQRT1_2))
        pdf = math.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return cdf + x * pdf

    return f, df


def _elu(alpha: float) -> tuple[Scalar, Scalar]:
    def f(x: float) -> float:
        return x if x > 0.0 else alpha * math.expm1(x)  # alpha (e^x - 1)

    def df(x: float) -> float:
        return 1.0 if x > 0.0 else alpha * math.exp(x)  # d/dx alpha (e^x - 1)

    return f, df


def _softplus(beta: float, threshold: float) -> tuple[Scalar, Scalar]:
    # softplus(x) = log(1 + e^{βx}) / β, switched to the identity where βx > threshold
    # (there the two agree to float precision), exactly as torch.nn.Softplus.
    def f(x: float) -> float:
        bx = beta * x
        if bx > threshold:
            return x
        if bx > _EXP_LIMIT:  # only with a huge threshold: the same value without overflow
            return (bx + math.log1p(math.exp(-bx))) / beta
        return math.log1p(math.exp(bx)) / beta

    def df(x: float) -> float:
        bx = beta * x
        if bx > threshold:
            return 1.0
        # d/dx log(1 + e^{βx}) / β = e^{βx} / (1 + e^{βx}) = sigmoid(βx)
        if bx > _EXP_LIMIT:
            return sigmoid(bx)
        z = math.exp(bx)
        return z / (z + 1.0)

    return f, df


def _silu() -> tuple[Scalar, Scalar]:
    # SiLU(x) = x σ(x).
    def f(x: float) -> float:
        return x * sigmoid(x)

    def df(x: float) -> float:
        # product rule: σ(x) + x σ(x)(1 - σ(x)) = σ(x)(1 + x(1 - σ(x)))
        s = sigmoid(x)
        return s * (1.0 + x * (1.0 - s))

    return f, df


_MISH_SOFTPLUS_THRESHOLD = 20.0  # torch.nn.Softplus's default: above it softplus(x) is x


def _mish() -> tuple[Scalar, Scalar]:
    # Mish(x) = x tanh(softplus(x)).
    def gate(x: float) -> float:
        softplus = x if x > _MISH_SOFTPLUS_THRESHOLD else math.log1p(math.exp(x))
        return math.tanh(softplus)

    def f(x: float) -> float:
        return x * gate(x)

    def df(x: float) -> float:
        # product rule with t = tanh(softplus(x)): t + x (1 - t²) softplus'(x), where
        # softplus'(x) = σ(x)
        t = gate(x)
        return t + x * (1.0 - t * t) * sigmoid(x)

    return f, df


def _identity() -> tuple[Scalar, Scalar]:
    def f(x: float) -> float:
        return x

    def df(x: float) -> float:
        return 1.0

    return f, df


def scalar_functions(spec: Any) -> tuple[Scalar, Scalar]:
    """The pair ``(f, f')`` of scalar functions for an activation spec."""
    spec = layer_spec(spec)
    kind = spec["type"]
    if kind == "relu":
        return _relu()
    if kind == "leaky_relu":
        return _leaky_relu(spec["negative_slope"])
    if kind == "sigmoid":
        return _sigmoid()
    if kind == "tanh":
        return _tanh()
    if kind == "gelu":
        return _gelu()
    if kind == "elu":
        return _elu(spec["alpha"])
    if kind == "softplus":
        return _softplus(spec["beta"], spec["threshold"])
    if kind == "silu":
        return _silu()
    if kind == "mish":
        return _mish()
    if kind == "identity":
        return _identity()
    raise ValueError(f"{kind!r} is not an activation")


def activation_forward(spec: Any, row: Sequence[float]) -> list[float]:
    """``f`` applied to every element of ``row`` (one sample's features)."""
    f, _ = scalar_functions(spec)
    return [f(x) for x in row]


def activation_backward(spec: Any, row: Sequence[float], grad_out: Sequence[float]) -> list[float]:
    """∂L/∂z for one row: ``grad_out[j] · f'(row[j])``, where ``row`` is the layer's input."""
    if len(row) != len(grad_out):
        raise ValueError("row and grad_out must have the same length")
    _, df = scalar_functions(spec)
    return [g * df(x) for x, g in zip(row, grad_out)]

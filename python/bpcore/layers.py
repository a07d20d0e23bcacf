"""Layers of a sequential network, as torch.nn's: Dense (Linear) and the activations.

A layer here is a description: it holds its hyperparameters and gives the JSON-ready spec that
the Rust core builds from. Parameters live in the network.
"""

from __future__ import annotations

from typing import Any

from bpcore._checks import boolean, positive_int, real


class Layer:
    """Base of all layers: a named description with a `to_spec()` dict."""

    type_name: str = ""

    def to_spec(self) -> dict[str, Any]:
        """The layer's description as the core reads it: {"type": ..., hyperparameters...}."""
        return {"type": self.type_name, **self._hyper()}

    def _hyper(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_spec() == other.to_spec()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self._hyper().items()))))


class Dense(Layer):
    """Fully connected layer `y = x Wᵀ + b`, weight (out_features, in_features): torch.nn.Linear."""

    type_name = "dense"

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.bias = boolean(bias, "bias")

    def _hyper(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
        }


class ReLU(Layer):
    """max(0, x)."""

    type_name = "relu"


class LeakyReLU(Layer):
    """x for x > 0, else negative_slope · x."""

    type_name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = real(negative_slope, "negative_slope")

    def _hyper(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class Sigmoid(Layer):
    """1 / (1 + e^-x)."""

    type_name = "sigmoid"


class Tanh(Layer):
    """tanh(x)."""

    type_name = "tanh"


class GELU(Layer):
    """The exact GELU, x Φ(x) = x (1 + erf(x/√2)) / 2."""

    type_name = "gelu"


class ELU(Layer):
    """x for x > 0, else alpha (e^x - 1)."""

    type_name = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = real(alpha, "alpha")

    def _hyper(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Softplus(Layer):
    """log(1 + e^(beta x)) / beta, and x where beta x > threshold (as torch)."""

    type_name = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        self.beta = real(beta, "beta", low=0.0, low_open=True)
        self.threshold = real(threshold, "threshold")

    def _hyper(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}


class Identity(Layer):
    """x, unchanged."""

    type_name = "identity"


ACTIVATIONS: tuple[type[Layer], ...] = (
    ReLU,
    LeakyReLU,
    Sigmoid,
    Tanh,
    GELU,
    ELU,
    Softplus,
    Identity,
)

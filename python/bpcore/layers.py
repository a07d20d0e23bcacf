"""Layers of a sequential network, as torch.nn's: Dense (Linear) and the activations.

A layer here is a description: it holds its hyperparameters and gives the JSON-ready spec that
the Rust core builds from. Parameters live in the network.
"""

from __future__ import annotations

from typing import Any

from bpcore._checks import boolean, real, width
from bpcore._spec import Described


class Layer(Described):
    """Base of all layers: a named description with a `to_spec()` dict."""


class Dense(Layer):
    """Fully connected layer `y = x Wᵀ + b`, weight (out_features, in_features): torch.nn.Linear.

    Example:
        >>> import bpcore as bp
        >>> net = bp.Network([bp.Dense(3, 2)], loss="mse", seed=0)
        >>> {name: p.shape for name, p in net.parameters().items()}
        {'0.weight': (2, 3), '0.bias': (2,)}
    """

    type_name = "dense"

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        self.in_features = width(in_features, "in_features")
        self.out_features = width(out_features, "out_features")
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


#: Largest magnitude of an activation's scale (LeakyReLU's negative_slope, ELU's alpha,
#: Softplus's beta and 1/beta): beyond it one layer multiplies float32 values towards infinity
#: (LeakyReLU(1e308) or Softplus(beta=1e-300) make every output infinite), far above any
#: useful setting (torch's defaults are 0.01 and 1).
MAX_ACTIVATION_SCALE = 1e3


def _scale(value: float, arg: str) -> float:
    return real(value, arg, low=-MAX_ACTIVATION_SCALE, high=MAX_ACTIVATION_SCALE)


class LeakyReLU(Layer):
    """x for x > 0, else negative_slope · x (|negative_slope| <= MAX_ACTIVATION_SCALE)."""

    type_name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = _scale(negative_slope, "negative_slope")

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
    """x for x > 0, else alpha (e^x - 1) (|alpha| <= MAX_ACTIVATION_SCALE)."""

    type_name = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = _scale(alpha, "alpha")

    def _hyper(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Softplus(Layer):
    """log(1 + e^(beta x)) / beta, and x where beta x > threshold (as torch); beta in
    [1/MAX_ACTIVATION_SCALE, MAX_ACTIVATION_SCALE]."""

    type_name = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        self.beta = real(beta, "beta", low=1 / MAX_ACTIVATION_SCALE, high=MAX_ACTIVATION_SCALE)
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


def _eps(eps: float) -> float:
    return real(eps, "eps", low=0.0, low_open=True)


class Dropout(Layer):
    """Inverted dropout, as torch.nn.Dropout: in training mode (gradients, train_step, fit,
    loss(training=True)) each value is zeroed with probability p and the kept ones are scaled
    by 1/(1-p); in inference (forward, predict, evaluate) it is the identity.

    The masks are a hash of (network seed, training-forward count, layer index, row, column):
    the same seed and data give the same masks, however a step is split over threads.
    """

    type_name = "dropout"

    def __init__(self, p: float = 0.5) -> None:
        self.p = real(p, "p", low=0.0, high=1.0, high_open=True)

    def _hyper(self) -> dict[str, Any]:
        return {"p": self.p}


class BatchNorm1d(Layer):
    """Batch normalization over (n, num_features) inputs, as torch.nn.BatchNorm1d.

    Training mode normalizes by the batch's mean and biased variance and moves the running
    statistics: running_mean = (1 - momentum) running_mean + momentum mean, running_var likewise
    with the unbiased variance, num_batches_tracked += 1 — at every training-mode forward, as in
    torch (so gradients() and loss(training=True) move them too). Inference uses the running
    statistics. Parameters "i.weight" (1) and "i.bias" (0); buffers "i.running_mean",
    "i.running_var", "i.num_batches_tracked" (see Network.buffers()). A training batch needs at
    least 2 samples; a network with BatchNorm1d runs each step on one thread (whole-batch
    statistics).
    """

    type_name = "batch_norm1d"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        self.num_features = width(num_features, "num_features")
        self.eps = _eps(eps)
        if momentum is None:
            raise ValueError(
                "momentum: None (a cumulative average) is not supported; give a number in [0, 1]"
            )
        self.momentum = real(momentum, "momentum", low=0.0, high=1.0)
        if not boolean(affine, "affine"):
            raise ValueError("affine: only affine=True (learned weight and bias) is supported")
        if not boolean(track_running_stats, "track_running_stats"):
            raise ValueError("track_running_stats: only track_running_stats=True is supported")

    def _hyper(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}


class LayerNorm(Layer):
    """Layer normalization of each sample over its features, as torch.nn.LayerNorm: the same in
    training and inference. `normalized_shape` is the feature count (an int, or a 1-tuple).
    Parameters "i.weight" (1) and "i.bias" (0)."""

    type_name = "layer_norm"

    def __init__(
        self, normalized_shape: int | tuple[int], eps: float = 1e-5, elementwise_affine: bool = True
    ) -> None:
        if isinstance(normalized_shape, (tuple, list)):
            if len(normalized_shape) != 1:
                raise ValueError(
                    "normalized_shape: only the last dimension of (n, features) inputs can be "
                    f"normalized; give an int or a 1-tuple, got {tuple(normalized_shape)}"
                )
            normalized_shape = normalized_shape[0]
        self.normalized_shape = width(normalized_shape, "normalized_shape")
        self.eps = _eps(eps)
        if not boolean(elementwise_affine, "elementwise_affine"):
            raise ValueError(
                "elementwise_affine: only elementwise_affine=True (learned weight and bias) "
                "is supported"
            )

    def _hyper(self) -> dict[str, Any]:
        return {"normalized_shape": self.normalized_shape, "eps": self.eps}


#: Every layer class by its spec type name (what saved files and the core call it).
_ALL: tuple[type[Layer], ...] = (Dense, *ACTIVATIONS, Dropout, BatchNorm1d, LayerNorm)
LAYERS: dict[str, type[Layer]] = {cls.type_name: cls for cls in _ALL}

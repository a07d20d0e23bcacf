"""Losses, mean-reduced as torch.nn's. Softmax and sigmoid live inside the losses that need them."""

from __future__ import annotations

from typing import Any, Union

from bpcore._checks import real
from bpcore._spec import Described


class Loss(Described):
    """Base of all losses: a description with a `to_spec()` dict."""

    #: Whether targets are integer class labels (n,) rather than values of the output's shape.
    takes_labels: bool = False
    #: Whether the outputs are logits of a classifier (so predict gives classes).
    is_classification: bool = False


class MSELoss(Loss):
    """Mean squared error, mean((output - y)²)."""

    type_name = "mse"


class L1Loss(Loss):
    """Mean absolute error, mean(|output - y|)."""

    type_name = "l1"


class HuberLoss(Loss):
    """0.5 d² where |d| <= delta, else delta (|d| - delta/2); mean over elements."""

    type_name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = real(delta, "delta", low=0.0, low_open=True)

    def _hyper(self) -> dict[str, Any]:
        return {"delta": self.delta}


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on integer class labels, with optional label smoothing.

    Example:
        >>> import numpy as np, bpcore as bp
        >>> net = bp.Network([bp.Dense(2, 3)], loss=bp.CrossEntropyLoss(), seed=0)
        >>> net.set_parameters({"0.weight": np.zeros((3, 2)), "0.bias": np.zeros(3)})
        >>> round(net.loss(np.ones((4, 2)), np.array([0, 1, 2, 0])), 4)  # ln 3: uniform odds
        1.0986
    """

    type_name = "cross_entropy"
    takes_labels = True
    is_classification = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = real(label_smoothing, "label_smoothing", low=0.0, high=1.0)

    def _hyper(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing}


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits, targets in [0, 1] of the output's shape."""

    type_name = "bce_with_logits"
    is_classification = True


class PoissonNLLLoss(Loss):
    """Poisson negative log-likelihood on log-rates, torch's ``PoissonNLLLoss(log_input=True,
    full=False)``: the output x is log λ and the loss mean(e^x - y·x); targets y >= 0."""

    type_name = "poisson"


LOSSES: dict[str, type[Loss]] = {
    "mse": MSELoss,
    "l1": L1Loss,
    "huber": HuberLoss,
    "cross_entropy": CrossEntropyLoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "poisson": PoissonNLLLoss,
}

LossLike = Union[str, Loss]


def get_loss(loss: LossLike) -> Loss:
    """A Loss from its name ("mse", "cross_entropy", ...) or the Loss itself."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss: unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
        return LOSSES[loss]()
    raise TypeError(f"loss: expected a name or a bpcore Loss, got {type(loss).__name__}")

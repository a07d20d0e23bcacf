"""Losses, mean-reduced as torch.nn's. Softmax and sigmoid live inside the losses that need them."""

from __future__ import annotations

import difflib
import functools
import json
from typing import Any, Union

import numpy as np

from bpcore._checks import real
from bpcore._spec import Described
from bpcore.bpcore import loss_takes_labels


@functools.cache
def _takes_labels(type_name: str) -> bool:
    """The core's answer (its losses with their defaults), asked once per kind of loss."""
    return loss_takes_labels(json.dumps({"type": type_name}))


def _loss_weights(value: Any, arg: str) -> tuple[float, ...] | None:
    """`value` (None, a sequence, a NumPy array or a torch tensor of numbers) as a tuple of
    finite floats >= 0, or a TypeError/ValueError naming `arg`. Its length is checked against
    the network's outputs when a network is built."""
    if value is None:
        return None
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu().numpy()
    if isinstance(value, (str, bytes)) or np.ndim(value) != 1:
        raise TypeError(
            f"{arg}: expected a 1-d list or array of numbers, got {type(value).__name__}"
        )
    a = np.asarray(value)
    if a.dtype.kind not in "biuf" or a.size == 0:
        raise ValueError(f"{arg}: expected one or more numbers, got {value!r}")
    a = a.astype(np.float64)
    bad = ~(np.isfinite(a) & (a >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{arg}: weights must be finite and >= 0, got {a[i]} at index {i}")
    return tuple(float(v) for v in a)


class Loss(Described):
    """Base of all losses: a description with a `to_spec()` dict."""

    #: Whether the outputs are logits of a classifier (so predict gives classes).
    is_classification: bool = False

    @property
    def takes_labels(self) -> bool:
        """Whether targets are integer class labels (n,) rather than values of the output's
        shape: the core's answer for this loss."""
        return _takes_labels(self.type_name)


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
    """Softmax cross-entropy on integer class labels, torch's ``CrossEntropyLoss(weight,
    label_smoothing)``.

    With class weights ``weight`` (one per class, finite and >= 0), sample i of label y counts
    ``weight[y]`` times and the batch's mean divides by the sum of its targets' class weights,
    ``Σ_i weight[y_i]``, as torch; with label smoothing ε each class c's share ε/C of the
    target is weighted by ``weight[c]`` too, and the divisor stays ``Σ_i weight[y_i]``.
    `fit`'s ``sample_weight`` multiplies each sample's term and leaves the divisor as it is
    (all-ones sample weights change nothing). A batch whose targets all have class weight 0
    has loss 0 (torch: NaN). In training, each mini-batch is such a mean over its own samples,
    as torch's loop over a DataLoader takes it (fit's reported "loss" is the mean of the
    batches' losses weighted by their sizes); `Network.loss` and "val_loss" are the weighted
    mean over all the samples given. For Keras's ``class_weight``, whose batch loss divides by
    the batch's size instead, use ``fit(class_weight=...)``.

    Example:
        >>> import numpy as np, bpcore as bp
        >>> net = bp.Network([bp.Dense(2, 3)], loss=bp.CrossEntropyLoss(), seed=0)
        >>> net.set_parameters({"0.weight": np.zeros((3, 2)), "0.bias": np.zeros(3)})
        >>> round(net.loss(np.ones((4, 2)), np.array([0, 1, 2, 0])), 4)  # ln 3: uniform odds
        1.0986
    """

    type_name = "cross_entropy"
    is_classification = True

    def __init__(self, label_smoothing: float = 0.0, *, weight: Any = None) -> None:
        self.label_smoothing = real(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        #: The class weights (one per class), or None.
        self.weight = _loss_weights(weight, "weight")

    def _hyper(self) -> dict[str, Any]:
        hyper: dict[str, Any] = {"label_smoothing": self.label_smoothing}
        if self.weight is not None:
            hyper["weight"] = list(self.weight)
        return hyper


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits, targets in [0, 1] of the output's shape, torch's
    ``BCEWithLogitsLoss(pos_weight)``.

    ``pos_weight`` (one per output, or one for all; finite and >= 0) multiplies the positive
    term of each output's loss, ``-(p·y·log σ(x) + (1-y)·log(1-σ(x)))``: p > 1 raises recall,
    and torch suggests p = negatives / positives for an imbalanced output. The mean still
    divides by the number of elements.
    """

    type_name = "bce_with_logits"
    is_classification = True

    def __init__(self, *, pos_weight: Any = None) -> None:
        #: The positive-class weights (one per output, or one for all), or None.
        self.pos_weight = _loss_weights(pos_weight, "pos_weight")

    def _hyper(self) -> dict[str, Any]:
        return {} if self.pos_weight is None else {"pos_weight": list(self.pos_weight)}


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


#: Other libraries' names for bpcore's losses, with what to know when switching. Softmax and
#: sigmoid live inside bpcore's losses, so a network ends with its last Dense layer.
_OTHER_NAMES: dict[str, str] = {
    "categorical_crossentropy": (
        "use loss='cross_entropy' (torch's CrossEntropyLoss): it takes integer class labels "
        "(n,), so pass y.argmax(axis=1) instead of one-hot rows, and the network's raw outputs "
        "(logits): the softmax is inside the loss, so end the network with Dense, no softmax"
    ),
    "sparse_categorical_crossentropy": (
        "use loss='cross_entropy' (torch's CrossEntropyLoss) with the same integer labels: the "
        "softmax is inside the loss (Keras's from_logits=True), so end the network with Dense"
    ),
    "binary_crossentropy": (
        "use loss='bce_with_logits' (torch's BCEWithLogitsLoss) with targets in [0, 1] of the "
        "output's shape: the sigmoid is inside the loss (Keras's from_logits=True), so end the "
        "network with Dense, no Sigmoid; or, for one label per sample, two outputs and "
        "loss='cross_entropy'"
    ),
    "bce": "use loss='bce_with_logits': the sigmoid is inside the loss, so end with Dense",
    "bceloss": (
        "use loss='bce_with_logits' (torch's BCEWithLogitsLoss): bpcore has no separate "
        "sigmoid-then-BCELoss, so drop the final Sigmoid and end the network with Dense"
    ),
    "nllloss": (
        "use loss='cross_entropy': torch's NLLLoss after log_softmax is CrossEntropyLoss on the "
        "logits, so drop the final log-softmax"
    ),
    "kl_divergence": "bpcore has no KL-divergence loss; for class labels use 'cross_entropy'",
    "mean_squared_error": "use loss='mse'",
    "mean_absolute_error": "use loss='l1'",
    "mae": "use loss='l1' (\"mae\" is a metric name in fit's metrics)",
    "huber_loss": "use loss='huber' or bp.HuberLoss(delta=...)",
    "smoothl1loss": (
        "use bp.HuberLoss(delta=1.0): torch's SmoothL1Loss(beta=1) equals HuberLoss(delta=1); "
        "for another beta, SmoothL1 is Huber(delta=beta) divided by beta"
    ),
    "poisson_nll": "use loss='poisson' (torch's PoissonNLLLoss(log_input=True))",
}


def _compact(name: str) -> str:
    """A name as it is compared with the tables: lower case, without underscores, dashes or
    spaces, so that Keras's "categorical_crossentropy" and "CategoricalCrossentropy" and
    torch's "MSELoss" all match."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _unknown_loss(name: str) -> ValueError:
    """The error for a loss name bpcore does not have: what to use instead when it is another
    library's name, else the closest names."""
    key = _compact(name)
    ours = {_compact(type_name): type_name for type_name in LOSSES}
    ours.update({_compact(cls.__name__): type_name for type_name, cls in LOSSES.items()})
    theirs = {_compact(other): other for other in _OTHER_NAMES}
    if key in theirs:
        return ValueError(f"loss: {name!r} is not a bpcore loss name; {_OTHER_NAMES[theirs[key]]}")
    if key in ours:  # another spelling, or torch's class name such as "MSELoss"
        type_name = ours[key]
        return ValueError(
            f"loss: unknown loss {name!r}; did you mean {type_name!r} "
            f"(bp.{LOSSES[type_name].__name__}())?"
        )
    close = difflib.get_close_matches(key, [*ours, *theirs], n=1, cutoff=0.75)
    hint = ""
    if close and close[0] in ours:
        hint = f"; did you mean {ours[close[0]]!r}?"
    elif close:
        hint = f"; {theirs[close[0]]!r}? {_OTHER_NAMES[theirs[close[0]]]}"
    return ValueError(f"loss: unknown loss {name!r}; expected one of {sorted(LOSSES)}{hint}")


def get_loss(loss: LossLike) -> Loss:
    """A Loss from its name ("mse", "cross_entropy", ...) or the Loss itself. Another
    library's name ("categorical_crossentropy", "binary_crossentropy", "MSELoss", ...) is a
    ValueError saying what to use instead."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise _unknown_loss(loss)
        return LOSSES[loss]()
    raise TypeError(f"loss: expected a name or a bpcore Loss, got {type(loss).__name__}")

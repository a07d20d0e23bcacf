"""Metrics that `Network.fit` reports per epoch, each the same number scikit-learn's
`sklearn.metrics` gives on the same predictions.

A metric is a name below or a function ``fn(y_true, y_pred) -> float`` (wrap it in `Metric` to
give it probabilities, a name, or a direction). Predictions are what `Network.predict` gives:
the class labels for cross_entropy, the 0/1 decision of every output (logit > 0) for
bce_with_logits, the outputs themselves for regression losses; probabilities are what
`Network.predict_proba` gives (for two classes, or one logit, the positive class's (n,)).

Summed by the core, as Keras reports them — running values over the epoch's training steps,
from each step's own training-mode outputs, at no extra pass over the data:

- ``"accuracy"``: the fraction of samples predicted right, scikit-learn's ``accuracy_score``
  (argmax = label for cross_entropy; for bce_with_logits a sample is right when every output
  is, so with several outputs (multi-label) this is exact-match accuracy).
- ``"binary_accuracy"`` (bce_with_logits): the fraction of output *elements* predicted right,
  Keras's ``binary_accuracy`` (what Keras's "accuracy" means next to its binary
  cross-entropy). With one output it equals "accuracy".
- ``"mae"``, ``"r2"`` (regression): mean |output - y| over all elements; scikit-learn's
  ``r2_score`` (per column, averaged; a constant column scores 1.0 when predicted exactly,
  else 0.0).

Computed at the end of each epoch from predictions of the whole set (for training, an extra
inference pass over the training samples; no dropout, batch norm's running statistics): the
training value is the metric of the network *as it is after the epoch* on the training
samples, not a running value over the epoch's steps as for the loss and the summed metrics.

- ``"precision"``, ``"recall"``, ``"f1"``: of the positive class 1, for two classes or one
  logit (scikit-learn's ``average="binary"``); ``"precision_macro"``, ``"f1_micro"``, ... for
  any classification (``average="macro"``: unweighted mean over the labels present in the
  targets or the predictions; ``"micro"``: from the counts pooled over them; for multi-label
  outputs, every output is a label). A 0/0 counts 0, as scikit-learn's zero_division default.
- ``"roc_auc"``: scikit-learn's ``roc_auc_score`` on the probabilities: for two classes or one
  logit of the positive class; for several outputs the mean over the outputs; for several
  classes one-vs-rest, averaged over the classes (``multi_class="ovr"``). NaN when a class is
  missing from the targets (scikit-learn raises there).
- ``"top_2_accuracy"``, ``"top_5_accuracy"``, ... (cross_entropy): the fraction of samples
  whose label is among the k most probable classes, scikit-learn's ``top_k_accuracy_score``.
- a function: see `Metric`.

In a data-parallel fit (``comm=``) the summed metrics are summed over the ranks; the others
are refused (each rank holds predictions of its own shard only).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union, overload

import numpy as np

from bpcore.losses import Loss

if TYPE_CHECKING:
    from bpcore.network import Network

#: Metrics the core sums over an epoch's steps.
SUMMED = ("accuracy", "binary_accuracy", "mae", "r2")
CLASSIFICATION_METRICS = ("accuracy", "binary_accuracy")
REGRESSION_METRICS = ("mae", "r2")
_AVERAGED = tuple(
    f"{kind}{average}"
    for kind in ("precision", "recall", "f1")
    for average in ("", "_macro", "_micro")
)
_TOP_K = re.compile(r"top_([1-9][0-9]*)_accuracy")
#: Names other libraries use, with what to ask for instead.
_OTHER_NAMES = {
    "acc": "'accuracy'",
    "auc": "'roc_auc'",
    "f1_score": "'f1' (two classes), 'f1_macro' or 'f1_micro'",
    "top_k_accuracy": "'top_2_accuracy' (scikit-learn's default k) or 'top_5_accuracy' (Keras's)",
    "top_k_categorical_accuracy": "'top_5_accuracy' (Keras's default k), or another k",
    "sparse_top_k_categorical_accuracy": "'top_5_accuracy' (Keras's default k), or another k",
    "categorical_accuracy": "'accuracy'",
    "sparse_categorical_accuracy": "'accuracy'",
    "mean_absolute_error": "'mae'",
}


@dataclass(frozen=True)
class Metric:
    """A function as a metric: ``fn(y_true, y_pred) -> float``, reported under `name`.

    `y_true` is what fit was given, converted (labels for cross_entropy, float targets of the
    output's shape otherwise); `y_pred` is `Network.predict`'s, or with ``proba=True``
    `Network.predict_proba`'s (the positive class's (n,) for two classes or one logit, as
    scikit-learn's scorers take it). `greater_is_better` tells the callbacks' ``mode="auto"``
    which way is better (scikit-learn's ``make_scorer`` spelling). A bare function in fit's
    `metrics` is ``Metric(fn)``, named by its ``__name__``.

    Example:
        >>> from sklearn.metrics import balanced_accuracy_score
        >>> Metric(balanced_accuracy_score).name
        'balanced_accuracy_score'
    """

    fn: Callable[[np.ndarray, np.ndarray], float]
    name: str = ""
    proba: bool = False
    greater_is_better: bool = True

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"metrics: expected a function, got {type(self.fn).__name__}")
        if not self.name:
            name = getattr(self.fn, "__name__", "")
            if not name or name.startswith("<"):
                raise ValueError(
                    f"metrics: {self.fn!r} has no name to report it under; give one with "
                    "bp.metrics.Metric(fn, name='my_metric')"
                )
            object.__setattr__(self, "name", name)
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(
                f"metrics: a metric's name is a log key such as 'my_metric', got {self.name!r}"
            )


MetricLike = Union[str, Metric, Callable[[np.ndarray, np.ndarray], float]]


class Metrics(Sequence[str]):
    """The metrics of one fit: a sequence of their names (the log keys, in order), with the
    functions behind those that are functions."""

    def __init__(self, names: Sequence[str], functions: Mapping[str, Metric] | None = None):
        self.names = list(names)
        self.functions = dict(functions or {})

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self.names[index]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Metrics):
            return self.names == other.names and self.functions == other.functions
        return isinstance(other, list) and self.names == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Metrics({self.names!r})"

    def summed(self) -> list[str]:
        """The names the core sums over the epoch's steps."""
        return [name for name in self.names if name in SUMMED and name not in self.functions]


def _binary(loss: Loss, width: int) -> bool:
    """Whether the outputs are one binary decision per sample: two classes or one logit."""
    return loss.is_classification and width == (2 if loss.takes_labels else 1)


def _check_name(name: str, loss: Loss, width: int) -> None:
    """Refuses a metric name that does not exist or does not apply to the loss, saying what
    would."""
    kind = "classification" if loss.is_classification else "regression"
    top_k = _TOP_K.fullmatch(name)
    known = name in SUMMED or name in _AVERAGED or name == "roc_auc" or top_k is not None
    if not known:
        hint = f"; did you mean {_OTHER_NAMES[name]}?" if name in _OTHER_NAMES else ""
        options = [*CLASSIFICATION_METRICS, *_AVERAGED, "roc_auc", "top_5_accuracy"]
        allowed = options if loss.is_classification else list(REGRESSION_METRICS)
        raise ValueError(
            f"metrics: unknown metric {name!r}{hint}; expected one of {allowed} for loss "
            f"{loss.type_name}, or a function (y_true, y_pred) -> float"
        )
    if (name in REGRESSION_METRICS) == loss.is_classification:
        raise ValueError(f"metrics: {name!r} does not apply to the {kind} loss {loss.type_name}")
    if name == "binary_accuracy" and loss.takes_labels:
        raise ValueError(
            "metrics: 'binary_accuracy' counts output elements of bce_with_logits; with "
            "cross_entropy use 'accuracy'"
        )
    if name in ("precision", "recall", "f1") and not _binary(loss, width):
        what = f"{width} classes" if loss.takes_labels else f"{width} outputs"
        raise ValueError(
            f"metrics: {name!r} is of the positive class of a binary problem, but the network "
            f"has {what}; choose {name + '_macro'!r} or {name + '_micro'!r}"
        )
    if top_k is not None:
        if not loss.takes_labels:
            raise ValueError(f"metrics: {name!r} ranks the classes of cross_entropy")
        if int(top_k.group(1)) >= width:
            raise ValueError(
                f"metrics: {name!r} needs more than {top_k.group(1)} classes, the network "
                f"has {width} (every label is among the top {top_k.group(1)})"
            )


def resolve_metrics(
    metrics: Sequence[MetricLike] | None,
    loss: Loss,
    width: int = 0,
    data_parallel: bool = False,
) -> Metrics:
    """The metrics fit reports for a network of `width` outputs: `metrics` checked against the
    loss, or the default (["accuracy"] for classification losses, [] for regression). In a
    data-parallel fit only the summed metrics are allowed."""
    if metrics is None:
        return Metrics(["accuracy"] if loss.is_classification else [])
    if isinstance(metrics, (str, Metric)) or not isinstance(metrics, Sequence):
        example = ["accuracy"] if loss.is_classification else list(REGRESSION_METRICS)
        raise TypeError(
            f"metrics: expected a list of metric names such as {example} or functions, "
            f"got {type(metrics).__name__} {metrics!r}"
        )
    names: list[str] = []
    functions: dict[str, Metric] = {}
    for item in metrics:
        if isinstance(item, str):
            _check_name(item, loss, width)
            name = item
            if name in functions:
                raise ValueError(f"metrics: two different metrics are named {name!r}")
        else:
            metric = item if isinstance(item, Metric) else Metric(item)
            name = metric.name
            if name in names and functions.get(name) != metric:
                raise ValueError(f"metrics: two different metrics are named {name!r}")
            functions[name] = metric
        if data_parallel and (name in functions or name not in SUMMED):
            raise ValueError(
                f"metrics: {name!r} is computed from predictions of the whole set, which a "
                f"data-parallel fit does not gather on one rank; use {list(SUMMED)} there, "
                "or compute it after fit with net.predict"
            )
        if name not in names:
            names.append(name)
    return Metrics(names, functions)


def greater_is_better(name: str) -> bool | None:
    """Whether a higher value of the metric `name` (or ``val_`` of it) is better: True for the
    classification scores above and names ending in "accuracy", "_auc" or "_score", False
    for the losses and errors (names ending in "loss" or "error"), None when unknown."""
    base = name[4:] if name.startswith("val_") else name
    if base in ("loss", "mae") or base.endswith(("loss", "error")):
        return False
    scores = (*CLASSIFICATION_METRICS, "r2", *_AVERAGED, "roc_auc", "acc", "auc")
    # scikit-learn's convention: *_score functions are better higher, *_error/_loss lower.
    higher = ("accuracy", "_auc", "_score")
    if base in scores or _TOP_K.fullmatch(base) or base.endswith(higher):
        return True
    return None


# ----- the metrics, from outputs ---------------------------------------------------------------


def _predictions(outputs: np.ndarray, loss: Loss) -> np.ndarray:
    """`Network.predict` of these outputs."""
    if loss.takes_labels:
        labels: np.ndarray = outputs.argmax(axis=1)
        return labels
    return (outputs > 0).astype(np.int64)


def probabilities(outputs: np.ndarray, loss: Loss) -> np.ndarray:
    """`Network.predict_proba` of these outputs: softmax for cross_entropy, sigmoid else."""
    z = np.asarray(outputs, dtype=np.float64)
    if loss.takes_labels:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return p
    return 1.0 / (1.0 + np.exp(-z))


def _positive_scores(proba: np.ndarray, loss: Loss, width: int) -> np.ndarray:
    """The probabilities as scikit-learn's scorers take them: the positive class's (n,) for a
    binary problem, else all of them."""
    if _binary(loss, width):
        return proba[:, 1] if loss.takes_labels else proba[:, 0]
    return proba


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division default)."""
    out = np.zeros(np.shape(num))
    np.divide(num, den, out=out, where=den > 0)
    return out


def precision_recall_f1(name: str, outputs: np.ndarray, targets: np.ndarray, loss: Loss) -> float:
    """Precision, recall or F1 (`name`, with its average) as scikit-learn's."""
    kind, _, average = name.partition("_")
    predicted = _predictions(outputs, loss)
    one_logit = not loss.takes_labels and outputs.shape[1] == 1
    if loss.takes_labels or one_logit:
        # Classes (one logit: its 0/1 decision), as scikit-learn's 1-d targets.
        truth = np.asarray(targets if loss.takes_labels else targets[:, 0] > 0.5, dtype=np.int64)
        classes = predicted.ravel()
        # Binary: the positive class 1; averaged: the labels of the targets or predictions.
        labels = np.union1d(truth, classes) if average else np.array([1])
        tp = np.array([np.sum((classes == c) & (truth == c)) for c in labels], dtype=float)
        n_pred = np.array([np.sum(classes == c) for c in labels], dtype=float)
        n_true = np.array([np.sum(truth == c) for c in labels], dtype=float)
    else:
        # Multi-label: every output is a label.
        positive = (np.asarray(targets) > 0.5).reshape(len(targets), -1)
        decided = predicted.reshape(len(predicted), -1).astype(bool)
        tp = np.sum(decided & positive, axis=0).astype(float)
        n_pred = np.sum(decided, axis=0).astype(float)
        n_true = np.sum(positive, axis=0).astype(float)
    if average == "micro":
        tp, n_pred, n_true = (
            tp.sum(keepdims=True),
            n_pred.sum(keepdims=True),
            n_true.sum(keepdims=True),
        )
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_true)
    values = {"precision": precision, "recall": recall}.get(kind)
    if values is None:  # F1 = 2·tp / (predicted + true), 0 when both are 0
        values = _ratio(2 * tp, n_pred + n_true)
    return float(np.mean(values))


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve of scores for the binary `truth`: the Mann-Whitney
    statistic with ties counted half, which is the trapezoidal area scikit-learn computes.
    NaN when one class is missing."""
    truth = truth.astype(bool)
    n_pos = int(truth.sum())
    n_neg = len(truth) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # Average rank (1-based) of every group of tied scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(outputs: np.ndarray, targets: np.ndarray, loss: Loss) -> float:
    """scikit-learn's roc_auc_score on the probabilities (see the module docstring)."""
    width = outputs.shape[1]
    scores = _positive_scores(probabilities(outputs, loss), loss, width)
    if loss.takes_labels:
        labels = np.asarray(targets)
        if scores.ndim == 1:
            return _auc(labels == 1, scores)
        return float(np.mean([_auc(labels == c, scores[:, c]) for c in range(width)]))
    truth = (np.asarray(targets) > 0.5).reshape(len(targets), -1)
    scores = scores.reshape(len(scores), -1)
    return float(np.mean([_auc(truth[:, c], scores[:, c]) for c in range(truth.shape[1])]))


def top_k_accuracy(k: int, outputs: np.ndarray, labels: np.ndarray, loss: Loss) -> float:
    """scikit-learn's top_k_accuracy_score on the probabilities, ties ranked as its stable
    sort ranks them."""
    proba = probabilities(outputs, loss)
    ranked = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float(np.mean((ranked == np.asarray(labels)[:, None]).any(axis=1)))


def _one(name: str, outputs: np.ndarray, targets: Any, metrics: Sequence[str], loss: Loss) -> float:
    function = metrics.functions.get(name) if isinstance(metrics, Metrics) else None
    if function is not None:
        if function.proba:
            y_pred = _positive_scores(probabilities(outputs, loss), loss, outputs.shape[1])
        elif loss.is_classification:
            y_pred = _predictions(outputs, loss)
        else:
            y_pred = outputs
        return float(function.fn(targets, y_pred))
    if name in SUMMED:
        raise ValueError(
            f"metrics: {name!r} is summed by the core, not computed from outputs; use "
            "bpcore.metrics.values(names, net, X, y)"
        )
    if name == "roc_auc":
        return roc_auc(outputs, targets, loss)
    top_k = _TOP_K.fullmatch(name)
    if top_k is not None:
        return top_k_accuracy(int(top_k.group(1)), outputs, targets, loss)
    return precision_recall_f1(name, outputs, targets, loss)


def compute(
    names: Sequence[str], outputs: np.ndarray, targets: Any, loss: Loss
) -> dict[str, float]:
    """The named metrics of `outputs` (network outputs) against `targets` (converted); `names`
    may be a fit's `Metrics`, whose functions are called."""
    return {name: _one(name, outputs, targets, names, loss) for name in names}


# ----- the core's running sums -----------------------------------------------------------------


def from_sums(
    names: Sequence[str], sums: Mapping[str, Any], loss: Loss, width: int
) -> dict[str, float]:
    """The summed metrics among `names` from the native epoch's running sums (see the module
    docstring), for a network with `width` outputs; the others are left out.

    R² uses SS_tot = Σy² − (Σy)²/n per column, the same quantity as scikit-learn's up to
    rounding.
    """
    rows = int(sums["rows"])
    values: dict[str, float] = {}
    functions = names.functions if isinstance(names, Metrics) else {}
    for name in names:
        if name not in SUMMED or name in functions:
            continue
        if name == "accuracy":
            right = sums["correct"] if loss.takes_labels else sums["exact"]
            values[name] = float(right) / rows if rows else float("nan")
        elif name == "binary_accuracy":
            elements = rows * width
            values[name] = float(sums["correct"]) / elements if elements else float("nan")
        elif name == "mae":
            elements = rows * width
            values[name] = float(sums["abs_err"]) / elements if elements else float("nan")
        else:
            ss_res = np.asarray(sums["sq_err"], dtype=np.float64)
            y_sum = np.asarray(sums["y_sum"], dtype=np.float64)
            ss_tot = np.asarray(sums["y_sq_sum"], dtype=np.float64) - y_sum**2 / max(rows, 1)
            ss_tot = np.maximum(ss_tot, 0.0)
            scores = np.where(ss_res == 0, 1.0, 0.0)
            nonconstant = ss_tot > 1e-12 * np.maximum(np.abs(y_sum), 1.0) ** 2 / max(rows, 1)
            scores[nonconstant] = 1.0 - ss_res[nonconstant] / ss_tot[nonconstant]
            values[name] = float(scores.mean()) if len(scores) else float("nan")
    return values


def values(
    metrics: Sequence[str],
    net: Network,
    x: np.ndarray,
    t: np.ndarray,
    sums: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """The named metrics of `net` on the samples `x` (targets `t`, both converted), in
    `metrics`' order: the summed ones from the core's `sums` (a training epoch's running
    sums, or by default the core's sums of the network's outputs of `x`: one definition of
    each), the others from the network's predictions of `x`."""
    loss, width = net.loss_function, net.n_outputs
    if sums is None and any(name in SUMMED for name in metrics):
        sums = net.native.metric_sums(x, t)
    values = from_sums(metrics, sums, loss, width) if sums is not None else {}
    rest = [name for name in metrics if name not in values]
    if rest:
        outputs = net.forward(x)
        for name in rest:
            values[name] = _one(name, outputs, t, metrics, loss)
    return {name: values[name] for name in metrics}

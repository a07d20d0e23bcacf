"""Metrics that `Network.fit` reports per epoch.

Validation metrics are computed with NumPy from the network's inference outputs. Training
metrics are, as Keras reports them, running values over the epoch's training steps, from each
step's own (training-mode) outputs: the native loop sums them as it goes (`from_sums`), so they
cost no extra pass of the network over the data.

- ``"accuracy"`` (classification losses): the fraction of samples whose predicted class is the
  label — argmax of the outputs for cross_entropy; for bce_with_logits the fraction of output
  elements whose decision (logit > 0) equals the target rounded (target > 0.5).
- ``"mae"`` (regression losses): mean |output - y| over all elements.
- ``"r2"`` (regression losses): the coefficient of determination 1 - SS_res / SS_tot per output
  column, averaged over the columns, as scikit-learn's ``r2_score`` (a constant column scores
  1.0 when predicted exactly, else 0.0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bpcore.losses import Loss

CLASSIFICATION_METRICS = ("accuracy",)
REGRESSION_METRICS = ("mae", "r2")


def resolve_metrics(metrics: Sequence[str] | None, loss: Loss) -> list[str]:
    """The metric names fit reports: `metrics` checked against the loss, or the default
    (["accuracy"] for classification losses, [] for regression)."""
    allowed = CLASSIFICATION_METRICS if loss.is_classification else REGRESSION_METRICS
    if metrics is None:
        return ["accuracy"] if loss.is_classification else []
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise TypeError(
            f"metrics: expected a list of metric names such as {list(allowed)}, "
            f"got {type(metrics).__name__} {metrics!r}"
        )
    out: list[str] = []
    for name in metrics:
        if name not in CLASSIFICATION_METRICS + REGRESSION_METRICS:
            raise ValueError(
                f"metrics: unknown metric {name!r}; expected one of {list(allowed)} "
                f"for loss {loss.type_name}"
            )
        if name not in allowed:
            kind = "classification" if loss.is_classification else "regression"
            raise ValueError(
                f"metrics: {name!r} does not apply to the {kind} loss {loss.type_name}; "
                f"expected one of {list(allowed)}"
            )
        if name not in out:
            out.append(name)
    return out


def accuracy(outputs: np.ndarray, targets: np.ndarray, loss: Loss) -> float:
    """Fraction right: argmax vs labels for cross_entropy, logit > 0 vs target > 0.5 else."""
    if loss.takes_labels:
        return float(np.mean(outputs.argmax(axis=1) == targets))
    return float(np.mean((outputs > 0) == (targets > 0.5)))


def mae(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Mean absolute error over all elements."""
    return float(np.mean(np.abs(outputs.astype(np.float64) - targets)))


def r2(outputs: np.ndarray, targets: np.ndarray) -> float:
    """scikit-learn's r2_score with multioutput="uniform_average"."""
    y = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    p = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    ss_res = ((y - p) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    scores = np.where(ss_res == 0, 1.0, 0.0)
    nonconstant = ss_tot != 0
    scores[nonconstant] = 1.0 - ss_res[nonconstant] / ss_tot[nonconstant]
    return float(scores.mean())


def from_sums(
    names: Sequence[str], sums: Mapping[str, Any], loss: Loss, width: int
) -> dict[str, float]:
    """The named metrics from the native epoch's running sums (see the module docstring), for a
    network with `width` outputs.

    R² uses SS_tot = Σy² − (Σy)²/n per column, the same quantity as scikit-learn's up to
    rounding.
    """
    rows = int(sums["rows"])
    values: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            count = rows if loss.takes_labels else rows * width
            values[name] = float(sums["correct"]) / count if count else float("nan")
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


def sums(
    names: Sequence[str], outputs: np.ndarray, targets: np.ndarray, loss: Loss
) -> dict[str, Any]:
    """The sums `from_sums` reads (those the native training loop keeps, see the module
    docstring) of `outputs` against `targets`: sums over several sets of outputs, such as a
    data-parallel fit's ranks, add up to the sums of all of them together."""
    y = np.asarray(targets, dtype=np.float64)
    p = np.asarray(outputs, dtype=np.float64)
    width = p.shape[1] if p.ndim == 2 else 1
    out: dict[str, Any] = {"rows": len(p), "correct": 0.0, "abs_err": 0.0}
    zeros = np.zeros(width)
    out.update(sq_err=zeros, y_sum=zeros, y_sq_sum=zeros)
    if "accuracy" in names:
        if loss.takes_labels:
            out["correct"] = float(np.sum(p.argmax(axis=1) == y)) if len(p) else 0.0
        else:
            out["correct"] = float(np.sum((p > 0) == (y > 0.5)))
    if "mae" in names or "r2" in names:
        y2 = y.reshape(len(y), -1)
        err = p.reshape(len(p), -1) - y2
        out.update(
            abs_err=float(np.abs(err).sum()),
            sq_err=(err**2).sum(axis=0),
            y_sum=y2.sum(axis=0),
            y_sq_sum=(y2**2).sum(axis=0),
        )
    return out


def compute(
    names: Sequence[str], outputs: np.ndarray, targets: Any, loss: Loss
) -> dict[str, float]:
    """The named metrics of `outputs` (network outputs) against `targets` (converted)."""
    values: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            values[name] = accuracy(outputs, targets, loss)
        elif name == "mae":
            values[name] = mae(outputs, targets)
        else:
            values[name] = r2(outputs, targets)
    return values

"""What cross_entropy's targets are when they are not class labels, and what to pass instead:
strings (encode them), one-hot or probability rows (take the argmax), several 1s a row (a
multi-label problem, for bce_with_logits). Checked before the labels are converted, so that
the error teaches instead of naming a dtype or a shape."""

from __future__ import annotations

from typing import Any

import numpy as np


def _first_string(a: np.ndarray) -> str | None:
    """The first string of an array of strings or of objects holding strings, else None."""
    if a.dtype.kind in "US":
        return str(a.flat[0]) if a.size else ""
    if a.dtype.kind == "O":
        for value in a.flat:
            if isinstance(value, (str, bytes)):
                return str(value)
    return None


def refuse_non_labels(y: Any, arg: str) -> None:
    """Raises, saying what to pass instead, when `y` holds strings (TypeError) or rows of
    one-hot, probability or multi-label targets (ValueError) rather than one integer class
    label per sample; returns for anything else (the labels' own checks follow)."""
    if hasattr(y, "detach") or isinstance(y, np.ma.MaskedArray):
        return  # tensors and masked arrays have their own conversion and messages
    try:
        a = np.asarray(y)
    except (ValueError, TypeError):
        return  # ragged: the conversion's own error names it
    text = _first_string(a)
    if text is not None:
        raise TypeError(
            f"{arg}: cross_entropy takes integer class labels (0 to n_classes - 1), got "
            f"strings such as {text!r}; encode them first, e.g. "
            "classes, labels = np.unique(y, return_inverse=True) (classes[k] names label k), "
            "or use bpcore.sklearn.MLPClassifier, which encodes labels itself"
        )
    if a.ndim != 2 or a.shape[1] < 2 or a.dtype.kind not in "biuf" or a.size == 0:
        return
    values = a.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        return
    rows = values.sum(axis=1)
    binary = np.isin(values, (0.0, 1.0)).all()
    if np.allclose(rows, 1.0):
        what = "one-hot rows" if binary else "rows of class probabilities"
        raise ValueError(
            f"{arg}: cross_entropy takes one integer class label per sample, got {what} of "
            f"shape {a.shape}; pass the class indices, y.argmax(axis=1)"
        )
    if binary:
        raise ValueError(
            f"{arg}: got rows of 0/1 targets of shape {a.shape} with {int(rows.max())} ones "
            "in a row: several labels a sample is a multi-label problem; use "
            f"loss='bce_with_logits' with {a.shape[1]} outputs and these rows as targets"
        )

"""`fit(class_weight=...)`: Keras's class weights, turned into per-sample weights.

Keras's rule (``keras.src.trainers.data_adapters.data_adapter_utils
.class_weight_to_sample_weights``): each training sample of class c weighs
``class_weight[c]`` (1.0 for a class the dict leaves out), multiplied by its ``sample_weight``
when both are given, and the batch's loss is the sample-weighted one, Σ_i w_i·l_i / n_batch
("sum over batch size"). ``"balanced"`` takes scikit-learn's weights,
``n_samples / (n_classes · count(c))`` over the classes present in the training samples
(``sklearn.utils.class_weight.compute_class_weight``), which give every class the same total
weight.

For torch's rule, where a batch's mean divides by the sum of its targets' class weights
instead, give the loss its weights: ``bp.CrossEntropyLoss(weight=...)``.

Both work data-parallel (`fit(comm=...)`) as they do alone: "balanced" counts the classes of
every rank's shard (summed once per fit, when the ranks meet), and a step whose mean divides by
its targets' class weights divides by their sum over every rank (one more number in each step's
Allreduce; network/epoch.rs).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from bpcore.losses import Loss

if TYPE_CHECKING:
    from bpcore.network import Network


def _classes(targets: np.ndarray, loss: Loss, n_outputs: int) -> tuple[np.ndarray, int]:
    """(each sample's class, the number of classes) of the converted training targets, or a
    ValueError when the loss has no classes to weight."""
    if loss.takes_labels:
        return targets, n_outputs
    if loss.is_classification and n_outputs == 1:
        # One logit: the class is the target rounded, as Keras rounds it.
        return (targets[:, 0] > 0.5).astype(np.int64), 2
    if loss.is_classification:
        raise ValueError(
            f"class_weight: a {loss.type_name} network with {n_outputs} outputs has one "
            "binary target per output, not one class per sample; weight each output's "
            "positives with bp.BCEWithLogitsLoss(pos_weight=[...]) instead"
        )
    raise ValueError(
        f"class_weight: needs a classification loss (cross_entropy, bce_with_logits), the "
        f"network's is {loss.type_name}; weight samples with sample_weight instead"
    )


def _balanced(counts: np.ndarray) -> np.ndarray:
    """scikit-learn's "balanced" weight of every class from its sample `counts`:
    n / (classes present · count); a class without samples keeps 1.0 (it weighs nothing in
    this fit anyway)."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.ones(len(counts))
    weights[present] = counts.sum() / (int(present.sum()) * counts[present])
    return weights


def _from_dict(class_weight: Mapping[Any, Any], n_classes: int) -> np.ndarray:
    """The weight of every class 0..n_classes-1 from a {class: weight} dict (1.0 where
    missing), or a TypeError/ValueError naming class_weight."""
    weights = np.ones(n_classes)
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            raise TypeError(
                f"class_weight: keys are class labels (integers 0 to {n_classes - 1}), got "
                f"{type(key).__name__} {key!r}"
            )
        if not 0 <= int(key) < n_classes:
            raise ValueError(
                f"class_weight: class {int(key)} is not one of the network's classes, 0 to "
                f"{n_classes - 1}"
            )
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"class_weight[{int(key)}]: expected a number, got {type(value).__name__}"
            )
        w = float(value)
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"class_weight[{int(key)}]: must be finite and >= 0, got {w}")
        weights[int(key)] = w
    return weights


def class_weights(
    class_weight: Any, classes: np.ndarray, n_classes: int, counts: np.ndarray | None = None
) -> np.ndarray:
    """The weight of every class (n_classes,) that `class_weight` ("balanced" or a dict)
    gives for training samples of these `classes` ("balanced": of these class `counts`, when
    given, such as every rank's)."""
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight: expected 'balanced' or a dict {{class: weight}}, got "
                f"{class_weight!r}"
            )
        if counts is None:
            counts = np.bincount(classes, minlength=n_classes)
        return _balanced(counts)
    if isinstance(class_weight, Mapping):
        return _from_dict(class_weight, n_classes)
    raise TypeError(
        "class_weight: expected 'balanced' or a dict {class: weight}, got "
        f"{type(class_weight).__name__}"
    )


def class_counts(class_weight: Any, targets: np.ndarray, net: Network) -> np.ndarray:
    """The training samples' count of every class (float64), for `class_weight`'s
    "balanced" over several shards; a ValueError/TypeError for what `with_class_weights`
    refuses."""
    classes, n_classes = _classes(targets, net.loss_function, net.n_outputs)
    class_weights(class_weight, classes, n_classes)  # the same checks
    return np.bincount(classes, minlength=n_classes).astype(np.float64)


def with_class_weights(
    class_weight: Any,
    targets: np.ndarray,
    sample_weight: np.ndarray | None,
    net: Network,
    counts: np.ndarray | None = None,
) -> np.ndarray | None:
    """The training samples' weights with `class_weight` folded in (Keras's product with
    `sample_weight`), in the network's dtype; `sample_weight` itself when `class_weight` is
    None. `targets` are the training targets as the network converted them; `counts`, the
    class counts "balanced" uses (default: these targets')."""
    if class_weight is None:
        return sample_weight
    classes, n_classes = _classes(targets, net.loss_function, net.n_outputs)
    per_sample = class_weights(class_weight, classes, n_classes, counts)[classes].astype(net.dtype)
    if sample_weight is None:
        return np.ascontiguousarray(per_sample)
    return np.ascontiguousarray(sample_weight * per_sample)

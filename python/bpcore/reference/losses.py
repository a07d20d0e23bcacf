"""Mean-reduced losses, as ``torch.nn``, with their gradient with respect to the outputs.

Each loss takes the network's outputs (n rows of C values) and the targets, and returns
``(L, ∂L/∂outputs)``. The mean divides by the number of terms N, so every element's
gradient carries a factor 1/N: N = n·C for the element-wise losses, N = n (samples) for
cross-entropy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .activations import sigmoid
from .specs import loss_spec

Rows = Sequence[Sequence[float]]


def _check_targets(outputs: Rows, targets: Rows) -> int:
    """The number of elements N, after checking that targets match outputs in shape."""
    if not outputs:
        raise ValueError("the loss of an empty batch is undefined")
    width = len(outputs[0])
    if len(targets) != len(outputs) or any(len(t) != width for t in targets):
        raise ValueError(f"targets must have shape ({len(outputs)}, {width}) to match the outputs")
    return len(outputs) * width


def mse(outputs: Rows, targets: Rows) -> tuple[float, list[list[float]]]:
    """Mean squared error: L = (1/N) Σ d², d = output - target; ∂L/∂output = 2d/N."""
    n = _check_targets(outputs, targets)
    total = 0.0
    grad = []
    for out, tgt in zip(outputs, targets):
        d = [o - t for o, t in zip(out, tgt)]
        total += sum(e * e for e in d)
        grad.append([2.0 * e / n for e in d])
    return total / n, grad


def l1(outputs: Rows, targets: Rows) -> tuple[float, list[list[float]]]:
    """Mean absolute error: L = (1/N) Σ |d|; ∂L/∂output = sign(d)/N, with sign(0) = 0."""
    n = _check_targets(outputs, targets)
    total = 0.0
    grad = []
    for out, tgt in zip(outputs, targets):
        d = [o - t for o, t in zip(out, tgt)]
        total += sum(abs(e) for e in d)
        grad.append([(1.0 if e > 0.0 else -1.0 if e < 0.0 else 0.0) / n for e in d])
    return total / n, grad


def huber(outputs: Rows, targets: Rows, delta: float = 1.0) -> tuple[float, list[list[float]]]:
    """Huber loss: ½d² for |d| <= delta, else delta(|d| - ½delta); mean over N.

    Its derivative is d inside the quadratic zone and ±delta outside, i.e. d clipped to
    [-delta, delta], divided by N.
    """
    n = _check_targets(outputs, targets)
    total = 0.0
    grad = []
    for out, tgt in zip(outputs, targets):
        row = []
        for o, t in zip(out, tgt):
            d = o - t
            if abs(d) <= delta:
                total += 0.5 * d * d
            else:
                total += delta * (abs(d) - 0.5 * delta)
            row.append(min(max(d, -delta), delta) / n)
        grad.append(row)
    return total / n, grad


def cross_entropy(
    logits: Rows, labels: Sequence[int], label_smoothing: float = 0.0
) -> tuple[float, list[list[float]]]:
    """Softmax cross-entropy on integer labels, with label smoothing ε; mean over samples.

    log p_c = z_c - logsumexp(z), computed as m + log Σ e^{z_c - m} with m = max z, so
    logits of any size stay finite. Per sample,
        loss = (1-ε)(-log p_y) + (ε/C) Σ_c (-log p_c).
    The target is the distribution q_c = (1-ε)[c = y] + ε/C, which sums to 1, and since
    ∂(-log p_k)/∂z_c = p_c - [c = k], the gradient is Σ_k q_k (p_c - [c = k]) = p_c - q_c,
    divided by the number of samples n.
    """
    n = len(logits)
    if n == 0:
        raise ValueError("the loss of an empty batch is undefined")
    if len(labels) != n:
        raise ValueError(f"labels must have length {n} to match the outputs")
    classes = len(logits[0])
    eps = label_smoothing
    total = 0.0
    grad = []
    for z, y in zip(logits, labels):
        if not 0 <= y < classes:
            raise ValueError(f"label {y} is out of range for {classes} classes")
        m = max(z)
        log_sum = m + math.log(sum(math.exp(v - m) for v in z))
        log_p = [v - log_sum for v in z]
        loss = -(1.0 - eps) * log_p[y]
        if eps:
            loss -= eps / classes * sum(log_p)
        total += loss
        row = [(math.exp(lp) - eps / classes) / n for lp in log_p]
        row[y] -= (1.0 - eps) / n
        grad.append(row)
    return total / n, grad


def bce_with_logits(logits: Rows, targets: Rows) -> tuple[float, list[list[float]]]:
    """Binary cross-entropy on logits x and targets y in [0, 1]; mean over N elements.

    -[y log σ(x) + (1-y) log(1-σ(x))] = max(x, 0) - x y + log(1 + e^{-|x|}), the stable
    form. Its derivative is σ(x) - y (the familiar logistic-regression gradient), over N.
    """
    n = _check_targets(logits, targets)
    total = 0.0
    grad = []
    for out, tgt in zip(logits, targets):
        for x, y in zip(out, tgt):
            total += max(x, 0.0) - x * y + math.log1p(math.exp(-abs(x)))
        grad.append([(sigmoid(x) - y) / n for x, y in zip(out, tgt)])
    return total / n, grad


def loss_value_and_grad(spec: Any, outputs: Rows, y: Any) -> tuple[float, list[list[float]]]:
    """``(L, ∂L/∂outputs)`` for a loss spec (dict, name or object with ``.to_spec()``).

    ``y`` is a list of integer labels for cross-entropy, else a list of rows shaped like
    ``outputs`` (see ``Network`` for the flat form it also accepts).
    """
    spec = loss_spec(spec)
    kind = spec["type"]
    if kind == "mse":
        return mse(outputs, y)
    if kind == "l1":
        return l1(outputs, y)
    if kind == "huber":
        return huber(outputs, y, spec["delta"])
    if kind == "cross_entropy":
        return cross_entropy(outputs, y, spec["label_smoothing"])
    return bce_with_logits(outputs, y)


def loss_value(spec: Any, outputs: Rows, y: Any) -> float:
    """The loss alone (see ``loss_value_and_grad``)."""
    return loss_value_and_grad(spec, outputs, y)[0]

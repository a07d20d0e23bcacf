"""Mean-reduced losses, as ``torch.nn``, with their gradient with respect to the outputs.

Each loss takes the network's outputs (n rows of C values) and the targets, and returns
``(L, ∂L/∂outputs)``. The mean divides by the number of terms N, so every element's
gradient carries a factor 1/N: N = n·C for the element-wise losses, N = n (samples) for
cross-entropy (the sum of the targets' class weights with cross-entropy's ``weight``).

Every loss also takes optional per-sample weights ``sample_weight`` (Keras's): sample i's
loss l_i (the mean over its C elements, or its cross-entropy) counts w_i times, and the
batch's loss is L = (1/n) Σ_i w_i l_i — "sum over batch size": n counts every sample, zero
weights included. The chain rule through that sum multiplies sample i's gradient row by w_i
and nothing else; with no weights every w_i is 1 and L is the plain mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .activations import sigmoid
from .specs import loss_spec

Rows = Sequence[Sequence[float]]


def _weights(sample_weight: Sequence[float] | None, n: int) -> list[float]:
    """The weight of each of the n samples: 1.0 each without weights."""
    if sample_weight is None:
        return [1.0] * n
    weights = [float(w) for w in sample_weight]
    if len(weights) != n:
        raise ValueError(f"sample_weight must have length {n}, got {len(weights)}")
    if not all(math.isfinite(w) and w >= 0.0 for w in weights):
        raise ValueError("sample_weight must be finite and >= 0")
    return weights


def _check_targets(outputs: Rows, targets: Rows) -> int:
    """The number of elements N, after checking that targets match outputs in shape."""
    if not outputs:
        raise ValueError("the loss of an empty batch is undefined")
    width = len(outputs[0])
    if len(targets) != len(outputs) or any(len(t) != width for t in targets):
        raise ValueError(f"targets must have shape ({len(outputs)}, {width}) to match the outputs")
    return len(outputs) * width


def mse(
    outputs: Rows, targets: Rows, sample_weight: Sequence[float] | None = None
) -> tuple[float, list[list[float]]]:
    """Mean squared error: L = (1/N) Σ w d², d = output - target; ∂L/∂output = 2wd/N."""
    n = _check_targets(outputs, targets)
    total = 0.0
    grad = []
    for out, tgt, w in zip(outputs, targets, _weights(sample_weight, len(outputs))):
        d = [o - t for o, t in zip(out, tgt)]
        total += w * sum(e * e for e in d)
        grad.append([w * 2.0 * e / n for e in d])
    return total / n, grad


def l1(
    outputs: Rows, targets: Rows, sample_weight: Sequence[float] | None = None
) -> tuple[float, list[list[float]]]:
    """Mean absolute error: L = (1/N) Σ w |d|; ∂L/∂output = w sign(d)/N, with sign(0) = 0."""
    n = _check_targets(outputs, targets)
    total = 0.0
    grad = []
    for out, tgt, w in zip(outputs, targets, _weights(sample_weight, len(outputs))):
        d = [o - t for o, t in zip(out, tgt)]
        total += w * sum(abs(e) for e in d)
        grad.append([w * (1.0 if e > 0.0 else -1.0 if e < 0.0 else 0.0) / n for e in d])
    return total / n, grad


def huber(
    outputs: Rows,
    targets: Rows,
    delta: float = 1.0,
    sample_weight: Sequence[float] | None = None,
) -> tuple[float, list[list[float]]]:
    """Huber loss: ½d² for |d| <= delta, else delta(|d| - ½delta); (weighted) mean over N.

    Its derivative is d inside the quadratic zone and ±delta outside, i.e. d clipped to
    [-delta, delta], times the sample's weight, divided by N.
    """
    n = _check_targets(outputs, targets)
    total = 0.0
    grad = []
    for out, tgt, w in zip(outputs, targets, _weights(sample_weight, len(outputs))):
        row = []
        for o, t in zip(out, tgt):
            d = o - t
            if abs(d) <= delta:
                total += w * (0.5 * d * d)
            else:
                total += w * (delta * (abs(d) - 0.5 * delta))
            row.append(w * min(max(d, -delta), delta) / n)
        grad.append(row)
    return total / n, grad


def cross_entropy(
    logits: Rows,
    labels: Sequence[int],
    label_smoothing: float = 0.0,
    sample_weight: Sequence[float] | None = None,
    weight: Sequence[float] | None = None,
) -> tuple[float, list[list[float]]]:
    """Softmax cross-entropy on integer labels, with label smoothing ε and class weights w
    (torch's ``weight``; all 1 when None).

    log p_c = z_c - logsumexp(z), computed as m + log Σ e^{z_c - m} with m = max z, so
    logits of any size stay finite. The target is the distribution q_c = (1-ε)[c = y] + ε/C,
    which sums to 1, and each class's term counts w_c times: per sample,
        loss = Σ_c q_c w_c (-log p_c) = (1-ε) w_y (-log p_y) + (ε/C) Σ_c w_c (-log p_c).
    The batch's loss divides the sum by D = Σ_i w_{y_i}, the targets' class weights (torch's
    weighted mean; D = n without weights). Since ∂(-log p_k)/∂z_c = p_c - [c = k], the
    gradient is Σ_k q_k w_k (p_c - [c = k]) = p_c Σ_k q_k w_k - q_c w_c, divided by D: without
    class weights p_c - q_c over n. A sample weight s multiplies the sample's loss and so its
    gradient row, leaving D as it is. A batch with D = 0 has loss 0 and gradient 0.
    """
    n = len(logits)
    if n == 0:
        raise ValueError("the loss of an empty batch is undefined")
    if len(labels) != n:
        raise ValueError(f"labels must have length {n} to match the outputs")
    classes = len(logits[0])
    w = [1.0] * classes if weight is None else [float(v) for v in weight]
    if len(w) != classes:
        raise ValueError(f"weight must have one value per class ({classes}), got {len(w)}")
    for y in labels:
        if not 0 <= y < classes:
            raise ValueError(f"label {y} is out of range for {classes} classes")
    divisor = float(n) if weight is None else sum(w[y] for y in labels)
    if divisor == 0.0:
        return 0.0, [[0.0] * classes for _ in logits]
    eps = label_smoothing
    total = 0.0
    grad = []
    for z, y, s in zip(logits, labels, _weights(sample_weight, n)):
        m = max(z)
        log_sum = m + math.log(sum(math.exp(v - m) for v in z))
        log_p = [v - log_sum for v in z]
        q = [eps / classes + ((1.0 - eps) if c == y else 0.0) for c in range(classes)]
        total += s * sum(-q_c * w_c * lp for q_c, w_c, lp in zip(q, w, log_p))
        qw = sum(q_c * w_c for q_c, w_c in zip(q, w))
        grad.append(
            [s * (math.exp(lp) * qw - q_c * w_c) / divisor for lp, q_c, w_c in zip(log_p, q, w)]
        )
    return total / divisor, grad


def bce_with_logits(
    logits: Rows,
    targets: Rows,
    sample_weight: Sequence[float] | None = None,
    pos_weight: Sequence[float] | None = None,
) -> tuple[float, list[list[float]]]:
    """Binary cross-entropy on logits x and targets y in [0, 1]; mean over N elements.

    With the positive weight p of the element's column (torch's ``pos_weight``: one per
    column, or one for all; 1 when None), -[p y log σ(x) + (1-y) log(1-σ(x))]. Since
    -log σ(x) = log(1 + e^{-x}) = softplus(-x) and -log(1-σ(x)) = x + softplus(-x), this is
    (1-y) x + (1 + (p-1) y) softplus(-x), with softplus(-x) = max(-x, 0) + log(1 + e^{-|x|})
    the stable form. Its derivative is (1 + (p-1) y) σ(x) - p y (σ(x) - y, the familiar
    logistic-regression gradient, when p = 1), times the sample's weight, over N.
    """
    n = _check_targets(logits, targets)
    width = len(logits[0])
    p_of = [1.0] * width if pos_weight is None else [float(v) for v in pos_weight]
    if len(p_of) == 1:
        p_of = p_of * width
    if len(p_of) != width:
        raise ValueError(f"pos_weight must have one value per output ({width}), got {len(p_of)}")
    total = 0.0
    grad = []
    for out, tgt, w in zip(logits, targets, _weights(sample_weight, len(logits))):
        row = []
        for x, y, p in zip(out, tgt, p_of):
            softplus_neg = max(-x, 0.0) + math.log1p(math.exp(-abs(x)))
            total += w * ((1.0 - y) * x + (1.0 + (p - 1.0) * y) * softplus_neg)
            row.append(w * ((1.0 + (p - 1.0) * y) * sigmoid(x) - p * y) / n)
        grad.append(row)
    return total / n, grad


def poisson(
    log_rates: Rows, targets: Rows, sample_weight: Sequence[float] | None = None
) -> tuple[float, list[list[float]]]:
    """Poisson negative log-likelihood on log-rates x and counts y >= 0; mean over N elements.

    With λ = e^x, -log P(y | λ) = λ - y log λ + log y! = e^x - y x + log y!; the last term does
    not depend on x and is left out (torch's ``full=False``). The derivative is e^x - y, times
    the sample's weight, over N.
    """
    n = _check_targets(log_rates, targets)
    if any(not y >= 0.0 for tgt in targets for y in tgt):
        raise ValueError("poisson targets must be >= 0")
    total = 0.0
    grad = []
    for out, tgt, w in zip(log_rates, targets, _weights(sample_weight, len(log_rates))):
        total += w * sum(math.exp(x) - y * x for x, y in zip(out, tgt))
        grad.append([w * (math.exp(x) - y) / n for x, y in zip(out, tgt)])
    return total / n, grad


def loss_value_and_grad(
    spec: Any, outputs: Rows, y: Any, sample_weight: Sequence[float] | None = None
) -> tuple[float, list[list[float]]]:
    """``(L, ∂L/∂outputs)`` for a loss spec (dict, name or object with ``.to_spec()``).

    ``y`` is a list of integer labels for cross-entropy, else a list of rows shaped like
    ``outputs`` (see ``Network`` for the flat form it also accepts). ``sample_weight``: one
    weight per sample, L = (1/n) Σ w_i l_i (see the module's docstring).
    """
    spec = loss_spec(spec)
    kind = spec["type"]
    w = sample_weight
    if kind == "mse":
        return mse(outputs, y, w)
    if kind == "l1":
        return l1(outputs, y, w)
    if kind == "huber":
        return huber(outputs, y, spec["delta"], w)
    if kind == "cross_entropy":
        return cross_entropy(outputs, y, spec["label_smoothing"], w, spec.get("weight"))
    if kind == "poisson":
        return poisson(outputs, y, w)
    return bce_with_logits(outputs, y, w, spec.get("pos_weight"))


def loss_value(spec: Any, outputs: Rows, y: Any) -> float:
    """The loss alone (see ``loss_value_and_grad``)."""
    return loss_value_and_grad(spec, outputs, y)[0]

"""Batch normalization (``torch.nn.BatchNorm1d``) and layer normalization
(``torch.nn.LayerNorm``) on (n, features) batches, forward and backward by the chain rule.

Both compute, over some set S of values (a feature's column across the batch for batch norm,
a sample's row across its features for layer norm):

    μ = (1/m) Σ_S x,   σ² = (1/m) Σ_S (x - μ)²   (biased),   x̂ = (x - μ) / √(σ² + eps),
    y = γ x̂ + β

(γ, β one per feature). Every x̂ in S depends on every x in S through μ and σ², so the backward
pass has three paths from an input to the loss: directly through its own x̂, through σ², and
through μ; the functions below add the three term by term.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Rows = Sequence[Sequence[float]]


def _normalize_group(values: Sequence[float], eps: float) -> tuple[list[float], float]:
    """(x̂ of every value, 1/√(σ² + eps)) of one group S."""
    m = len(values)
    mean = sum(values) / m
    var = sum((v - mean) ** 2 for v in values) / m  # biased, as torch normalizes
    inv_std = 1.0 / math.sqrt(var + eps)
    return [(v - mean) * inv_std for v in values], inv_std


def _group_backward(values: Sequence[float], grad_xhat: Sequence[float], eps: float) -> list[float]:
    """∂L/∂x of one group S from ∂L/∂x̂, by the chain rule through x̂, σ² and μ."""
    m = len(values)
    mean = sum(values) / m
    var = sum((v - mean) ** 2 for v in values) / m
    inv_std = 1.0 / math.sqrt(var + eps)
    # σ² enters every x̂ as (x - μ)(σ² + eps)^(-1/2):
    #   ∂L/∂σ² = Σ ∂L/∂x̂ · (x - μ) · (-1/2)(σ² + eps)^(-3/2)
    grad_var = sum(g * (v - mean) for g, v in zip(grad_xhat, values)) * -0.5 * inv_std**3
    # μ enters every x̂ directly (∂x̂/∂μ = -1/√(σ² + eps)) and σ² (∂σ²/∂μ = -(2/m) Σ (x - μ),
    # zero by the definition of μ but kept so each path of the chain rule is visible).
    grad_mean = (
        sum(g * -inv_std for g in grad_xhat) + grad_var * sum(-2.0 * (v - mean) for v in values) / m
    )
    # Each x reaches L through its own x̂ (∂x̂/∂x = 1/√(σ² + eps)), through σ²
    # (∂σ²/∂x = 2(x - μ)/m) and through μ (∂μ/∂x = 1/m).
    return [
        g * inv_std + grad_var * 2.0 * (v - mean) / m + grad_mean / m
        for g, v in zip(grad_xhat, values)
    ]


def _affine(xhat: Rows, gamma: Sequence[float], beta: Sequence[float]) -> list[list[float]]:
    """y = γ x̂ + β, feature by feature."""
    return [[h * g + b for h, g, b in zip(row, gamma, beta)] for row in xhat]


def _affine_grads(xhat: Rows, grad_y: Rows) -> tuple[list[float], list[float]]:
    """∂L/∂γ = Σ_rows ∂L/∂y · x̂ and ∂L/∂β = Σ_rows ∂L/∂y (γ and β serve every row)."""
    grad_gamma = [sum(g * h for g, h in zip(gc, hc)) for gc, hc in zip(zip(*grad_y), zip(*xhat))]
    grad_beta = [sum(gc) for gc in zip(*grad_y)]
    return grad_gamma, grad_beta


# ------------------------------------------------------------------------- batch norm


def batch_stats(x: Rows) -> tuple[list[float], list[float], list[float]]:
    """Per feature: the batch mean, the biased variance and the unbiased variance."""
    n = len(x)
    means, biased, unbiased = [], [], []
    for col in zip(*x):
        mean = sum(col) / n
        ss = sum((v - mean) ** 2 for v in col)
        means.append(mean)
        biased.append(ss / n)
        unbiased.append(ss / (n - 1))
    return means, biased, unbiased


def batch_norm_forward_train(
    x: Rows, gamma: Sequence[float], beta: Sequence[float], eps: float
) -> list[list[float]]:
    """Training mode: each feature normalized by the batch's own mean and biased variance."""
    cols = [_normalize_group(list(col), eps)[0] for col in zip(*x)]
    return _affine([list(r) for r in zip(*cols)], gamma, beta)


def batch_norm_forward_infer(
    x: Rows,
    gamma: Sequence[float],
    beta: Sequence[float],
    running_mean: Sequence[float],
    running_var: Sequence[float],
    eps: float,
) -> list[list[float]]:
    """Inference mode: the running statistics stand in for the batch's (a fixed affine map)."""
    xhat = [
        [(v - m) * (1.0 / math.sqrt(s + eps)) for v, m, s in zip(row, running_mean, running_var)]
        for row in x
    ]
    return _affine(xhat, gamma, beta)


def batch_norm_backward(
    x: Rows, gamma: Sequence[float], grad_y: Rows, eps: float
) -> tuple[list[float], list[float], list[list[float]]]:
    """(∂L/∂γ, ∂L/∂β, ∂L/∂x) of the training-mode forward, through the batch statistics."""
    xhat_cols = [_normalize_group(list(col), eps)[0] for col in zip(*x)]
    xhat = [list(r) for r in zip(*xhat_cols)]
    grad_gamma, grad_beta = _affine_grads(xhat, grad_y)
    # y = γ x̂ + β: ∂L/∂x̂ = ∂L/∂y · γ; then each column is one group S.
    grad_x_cols = [
        _group_backward(list(col), [g * gj for g in gcol], eps)
        for col, gcol, gj in zip(zip(*x), zip(*grad_y), gamma)
    ]
    return grad_gamma, grad_beta, [list(r) for r in zip(*grad_x_cols)]


def update_running(
    x: Rows,
    running_mean: list[float],
    running_var: list[float],
    momentum: float,
) -> None:
    """torch's update, in place: r ← (1 - momentum) r + momentum · batch value, the variance
    unbiased (n - 1 in the denominator)."""
    means, _, unbiased = batch_stats(x)
    for j, (m, v) in enumerate(zip(means, unbiased)):
        running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * m
        running_var[j] = (1.0 - momentum) * running_var[j] + momentum * v


# ------------------------------------------------------------------------- layer norm


def layer_norm_forward(
    x: Rows, gamma: Sequence[float], beta: Sequence[float], eps: float
) -> list[list[float]]:
    """Each sample normalized over its own features; the same in training and inference."""
    return _affine([_normalize_group(list(row), eps)[0] for row in x], gamma, beta)


def layer_norm_backward(
    x: Rows, gamma: Sequence[float], grad_y: Rows, eps: float
) -> tuple[list[float], list[float], list[list[float]]]:
    """(∂L/∂γ, ∂L/∂β, ∂L/∂x): each row is one group S."""
    xhat = [_normalize_group(list(row), eps)[0] for row in x]
    grad_gamma, grad_beta = _affine_grads(xhat, grad_y)
    grad_x = [
        _group_backward(list(row), [g * gj for g, gj in zip(grow, gamma)], eps)
        for row, grow in zip(x, grad_y)
    ]
    return grad_gamma, grad_beta, grad_x

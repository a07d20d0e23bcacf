"""The dense (fully connected) layer, ``z = x Wᵀ + b``, exactly ``torch.nn.Linear``.

Shapes: ``x`` is a batch of n rows of ``in`` features, ``W`` has ``out`` rows of ``in``
weights, ``b`` has ``out`` entries, ``z`` is n rows of ``out`` values:

    z[n][o] = Σ_i x[n][i] · W[o][i] + b[o]

Matrices are lists of rows; a column is reached through ``zip(*rows)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import mul

Rows = Sequence[Sequence[float]]


def dense_forward(x: Rows, weight: Rows, bias: Sequence[float] | None) -> list[list[float]]:
    """``z = x Wᵀ + b``: each output is the dot product of an input row and a weight row."""
    if bias is None:
        return [[sum(map(mul, row, w)) for w in weight] for row in x]
    return [[sum(map(mul, row, w)) + b for w, b in zip(weight, bias)] for row in x]


def dense_backward(
    x: Rows, weight: Rows, grad_z: Rows, *, input_grad: bool = True
) -> tuple[list[list[float]], list[float], list[list[float]] | None]:
    """``(∂L/∂W, ∂L/∂b, ∂L/∂x)`` from the layer input ``x`` and ``grad_z = ∂L/∂z``.

    With ``input_grad=False`` (the first layer, whose input is data) ∂L/∂x is not computed
    and ``None`` is returned in its place. The batch must not be empty.
    """
    # Columns: grad_cols[o] = (∂L/∂z[n][o] for every sample n), x_cols[i] likewise.
    grad_cols = list(zip(*grad_z))
    x_cols = list(zip(*x))

    # z[n][o] depends on W[o][i] through the term x[n][i] W[o][i], so ∂z[n][o]/∂W[o][i] =
    # x[n][i]; W[o][i] is used by every sample, so the chain rule sums over the batch:
    #   ∂L/∂W[o][i] = Σ_n ∂L/∂z[n][o] · x[n][i]            (= grad_zᵀ x)
    grad_w = [[sum(map(mul, g, xc)) for xc in x_cols] for g in grad_cols]

    # ∂z[n][o]/∂b[o] = 1, summed over the batch:  ∂L/∂b[o] = Σ_n ∂L/∂z[n][o]
    grad_b = [sum(g) for g in grad_cols]

    if not input_grad:
        return grad_w, grad_b, None
    # x[n][i] feeds every output o of its own sample through W[o][i]:
    #   ∂L/∂x[n][i] = Σ_o ∂L/∂z[n][o] · W[o][i]            (= grad_z W)
    w_cols = list(zip(*weight))
    grad_x = [[sum(map(mul, g_row, wc)) for wc in w_cols] for g_row in grad_z]
    return grad_w, grad_b, grad_x

"""The parametric ReLU, as ``torch.nn.PReLU``: ``y = x`` for x > 0, else ``a x``, where the
slope ``a`` is learned — one for every value, or one per channel.

A row of the batch is flat; its values come in runs of ``per_slope`` that share one slope:
the whole row for a single slope, each channel's (H, W) or (L) values for one slope per
channel, each feature for one per feature of a flat row. Value ``j`` of a row uses slope
``(j // per_slope) % len(slopes)``.

Backward, by the chain rule, with ``g = ∂L/∂y``:

    ∂L/∂x = g            where x > 0,   a g   elsewhere
    ∂L/∂a = Σ g x        over the batch and the slope's values where x <= 0

(at x = 0 both forms give y = 0; torch takes the second, whose x g is 0 anyway).
"""

from __future__ import annotations


def _slope_of(j: int, per_slope: int, slopes: list[float]) -> int:
    return (j // per_slope) % len(slopes)


def prelu_forward(h: list[list[float]], slopes: list[float], per_slope: int) -> list[list[float]]:
    """``y`` of every row of ``h``."""
    return [
        [x if x > 0.0 else slopes[_slope_of(j, per_slope, slopes)] * x for j, x in enumerate(row)]
        for row in h
    ]


def prelu_backward(
    h: list[list[float]], slopes: list[float], grad: list[list[float]], per_slope: int
) -> tuple[list[float], list[list[float]]]:
    """``(∂L/∂slopes, ∂L/∂h)`` given the layer's input ``h`` and ``∂L/∂y``."""
    grad_slopes = [0.0] * len(slopes)
    grad_x = []
    for row, g_row in zip(h, grad):
        out = []
        for j, (x, g) in enumerate(zip(row, g_row)):
            c = _slope_of(j, per_slope, slopes)
            if x > 0.0:
                out.append(g)
            else:
                out.append(slopes[c] * g)
                grad_slopes[c] += g * x
        grad_x.append(out)
    return grad_slopes, grad_x

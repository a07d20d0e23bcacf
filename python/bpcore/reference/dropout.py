"""Inverted dropout, as ``torch.nn.Dropout(p)``, with bpcore's masks.

Training: ``y = x · m / (1 - p)`` with ``m`` 1 (kept, probability 1 - p) or 0, so that the
expected output is the input; inference: ``y = x``. The backward pass is the chain rule on that
product: ``∂L/∂x = ∂L/∂y · m / (1 - p)``.

The masks are not drawn from a stream: whether element (row, col) of layer ``layer`` is kept in
the network's training forward number ``step`` is a hash of (seed, step, layer, row, col) —
SplitMix64's finalizer folded over the five numbers, exactly as the Rust core
(``rust/core/src/dropout.rs``) computes it. So the reference uses the very masks bpcore uses,
and the parity tests compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment, ⌊2^64/φ⌋


def _mix(z: int) -> int:
    """SplitMix64's finalizer: a bijection of 64-bit integers that spreads every bit."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _combine(h: int, value: int) -> int:
    """Folds ``value`` into the hash ``h``."""
    return _mix(((h ^ value) + _GOLDEN) & _MASK64)


def row_hash(seed: int, step: int, layer: int, row: int) -> int:
    """The hash of one row of one dropout layer in one training forward."""
    return _combine(_combine(_combine(seed, step), layer), row)


def uniform(row_h: int, col: int) -> float:
    """A number in [0, 1) with 53 random bits for element ``col`` of the row."""
    return (_combine(row_h, col) >> 11) * (1.0 / (1 << 53))


def dropout_mask(
    p: float, seed: int, step: int, layer: int, n: int, width: int
) -> list[list[float]]:
    """The 0/1 mask of an ``n`` × ``width`` batch: element kept when its uniform is >= p."""
    mask = []
    for r in range(n):
        h = row_hash(seed, step, layer, r)
        mask.append([1.0 if uniform(h, c) >= p else 0.0 for c in range(width)])
    return mask


def dropout_forward(
    x: Sequence[Sequence[float]], mask: Sequence[Sequence[float]], p: float
) -> list[list[float]]:
    """``y = x · m / (1 - p)``: the kept values scaled up so the expectation is unchanged."""
    scale = 1.0 / (1.0 - p)
    return [[v * m * scale for v, m in zip(xr, mr)] for xr, mr in zip(x, mask)]


def dropout_backward(
    grad_y: Sequence[Sequence[float]], mask: Sequence[Sequence[float]], p: float
) -> list[list[float]]:
    """``∂L/∂x = ∂L/∂y · ∂y/∂x = ∂L/∂y · m / (1 - p)``: a dropped value passes no gradient."""
    scale = 1.0 / (1.0 - p)
    return [[g * m * scale for g, m in zip(gr, mr)] for gr, mr in zip(grad_y, mask)]

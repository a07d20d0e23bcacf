"""Convolution and pooling over rows read as (C, H, W), exactly ``torch.nn.Conv2d``,
``MaxPool2d`` and ``AvgPool2d`` (the 1-d layers are the case H = 1), in plain loops.

A row is flat: value (c, y, x) of a (C, H, W) row sits at ``(c * H + y) * W + x``, torch's
NCHW order. The weight is nested as torch's, ``weight[o][c][ky][kx]``. With stride s, padding
p and dilation d, output (o, oy, ox) reads input (c, oy·s - p + ky·d, ox·s - p + kx·d), a
position outside the input being a zero (convolution) or no candidate (max pooling):

    z[o][oy][ox] = b[o] + Σ_c Σ_ky Σ_kx W[o][c][ky][kx] · x[c][oy·s - p + ky·d][ox·s - p + kx·d]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

Pair = tuple[int, int]
Shape = tuple[int, int, int]


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """torch's output length: floor((size + 2p - d(k - 1) - 1) / s) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _taps(
    shape: Shape, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, oy: int, ox: int
) -> Iterator[tuple[int, int, int, int]]:
    """(ky, kx, y, x) of every window tap of output position (oy, ox) inside the input."""
    _, height, width = shape
    for ky in range(kernel[0]):
        y = oy * stride[0] - padding[0] + ky * dilation[0]
        if not 0 <= y < height:
            continue
        for kx in range(kernel[1]):
            x = ox * stride[1] - padding[1] + kx * dilation[1]
            if 0 <= x < width:
                yield ky, kx, y, x


def _out_shape(shape: Shape, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    return (
        output_size(shape[1], kernel[0], stride[0], padding[0], dilation[0]),
        output_size(shape[2], kernel[1], stride[1], padding[1], dilation[1]),
    )


def conv2d_forward(
    x: Sequence[Sequence[float]],
    weight: Any,
    bias: Sequence[float] | None,
    shape: Shape,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
) -> list[list[float]]:
    """The convolution of each (C, H, W) row of ``x``: rows of (O, OH, OW), flat."""
    channels, height, width = shape
    out_channels = len(weight)
    kernel = (len(weight[0][0]), len(weight[0][0][0]))
    oh, ow = _out_shape(shape, kernel, stride, padding, dilation)
    out = []
    for row in x:
        z = [0.0] * (out_channels * oh * ow)
        for o in range(out_channels):
            for oy in range(oh):
                for ox in range(ow):
                    total = 0.0 if bias is None else bias[o]
                    for ky, kx, y, xx in _taps(shape, kernel, stride, padding, dilation, oy, ox):
                        for c in range(channels):
                            total += weight[o][c][ky][kx] * row[(c * height + y) * width + xx]
                    z[(o * oh + oy) * ow + ox] = total
        out.append(z)
    return out


def conv2d_backward(
    x: Sequence[Sequence[float]],
    weight: Any,
    grad_z: Sequence[Sequence[float]],
    shape: Shape,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    *,
    input_grad: bool = True,
) -> tuple[list[Any], list[float], list[list[float]] | None]:
    """``(∂L/∂W, ∂L/∂b, ∂L/∂x)`` from the input ``x`` and ``grad_z = ∂L/∂z`` (flat rows).

    Each product W[o][c][ky][kx] · x[c][y][x] of the forward adds to z[o][oy][ox], so by the
    chain rule ∂L/∂W[o][c][ky][kx] sums ∂L/∂z[o][oy][ox] · x[c][y][x] and ∂L/∂x[c][y][x] sums
    ∂L/∂z[o][oy][ox] · W[o][c][ky][kx] over every (sample, output position) that used the pair;
    ∂L/∂b[o] sums ∂L/∂z[o][·][·]. With ``input_grad=False`` ∂L/∂x is ``None``.
    """
    channels, height, width = shape
    out_channels = len(weight)
    kernel = (len(weight[0][0]), len(weight[0][0][0]))
    oh, ow = _out_shape(shape, kernel, stride, padding, dilation)
    grad_w = [
        [[[0.0] * kernel[1] for _ in range(kernel[0])] for _ in range(channels)]
        for _ in range(out_channels)
    ]
    grad_b = [0.0] * out_channels
    grad_x = [[0.0] * (channels * height * width) for _ in x] if input_grad else None
    for n, (row, g_row) in enumerate(zip(x, grad_z)):
        for o in range(out_channels):
            for oy in range(oh):
                for ox in range(ow):
                    g = g_row[(o * oh + oy) * ow + ox]
                    grad_b[o] += g
                    for ky, kx, y, xx in _taps(shape, kernel, stride, padding, dilation, oy, ox):
                        for c in range(channels):
                            at = (c * height + y) * width + xx
                            grad_w[o][c][ky][kx] += g * row[at]
                            if grad_x is not None:
                                grad_x[n][at] += g * weight[o][c][ky][kx]
    return grad_w, grad_b, grad_x


def _windows(
    shape: Shape, kernel: Pair, stride: Pair, padding: Pair
) -> Iterator[tuple[int, list[int]]]:
    """(output index, input indices of its window inside the input) of one (C, H, W) row."""
    channels, height, width = shape
    oh, ow = _out_shape(shape, kernel, stride, padding, (1, 1))
    for c in range(channels):
        for oy in range(oh):
            for ox in range(ow):
                taps = _taps(shape, kernel, stride, padding, (1, 1), oy, ox)
                at = [(c * height + y) * width + x for _, _, y, x in taps]
                yield (c * oh + oy) * ow + ox, at


def pool2d_forward(
    x: Sequence[Sequence[float]], kind: str, shape: Shape, kernel: Pair, stride: Pair, padding: Pair
) -> list[list[float]]:
    """Max (``kind="max"``: the window's largest value, padding never taken) or average
    (``"avg"``: the window's sum over kh·kw, padding counted as zeros) of each window."""
    out = []
    for row in x:
        windows = list(_windows(shape, kernel, stride, padding))
        z = [0.0] * len(windows)
        for index, at in windows:
            values = [row[i] for i in at]
            z[index] = max(values) if kind == "max" else sum(values) / (kernel[0] * kernel[1])
        out.append(z)
    return out


def pool2d_backward(
    x: Sequence[Sequence[float]],
    grad_z: Sequence[Sequence[float]],
    kind: str,
    shape: Shape,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
) -> list[list[float]]:
    """∂L/∂x: max pooling's output is its window's first largest value, so its gradient goes
    there alone (∂max/∂x_i = 1 for that i, else 0); the average's ∂z/∂x_i = 1/(kh·kw) for each
    value of the window."""
    grad_x = []
    for row, g_row in zip(x, grad_z):
        g_x = [0.0] * len(row)
        for index, at in _windows(shape, kernel, stride, padding):
            if kind == "max":
                best = at[0]
                for i in at[1:]:
                    if row[i] > row[best]:
                        best = i
                g_x[best] += g_row[index]
            else:
                for i in at:
                    g_x[i] += g_row[index] / (kernel[0] * kernel[1])
        grad_x.append(g_x)
    return grad_x

"""The shape each layer reads its rows as, walked through the layers from the first one that
states a width (a dense or normalization layer's features, or a reshape's shape).

Rows are flat, ``(features,)``, until a reshape reads them as ``(C, H, W)`` or ``(C, L)``;
convolutions and pooling change that shape, a flatten makes it flat again, and dense and
normalization layers need it flat. The 1-d layers are computed as 2-d ones over (C, 1, L)
(``as_2d``, ``geometry``).
"""

from __future__ import annotations

import math
from typing import Any

from .convolution import output_size

#: Layers whose rows are arrays, not flat features.
CONVOLUTIONS = {"conv1d", "conv2d"}
POOLS = {"max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d"}
RESHAPES = {"reshape", "flatten"}
EMBEDDINGS = {"embedding", "embeddings"}
SHAPED = CONVOLUTIONS | POOLS | RESHAPES | EMBEDDINGS
# The key of each layer type that gives its feature count, where it has one.
FEATURES = {
    "dense": "in_features",
    "batch_norm1d": "num_features",
    "layer_norm": "normalized_shape",
}


def _pair(value: Any, two_d: bool, fill: int) -> tuple[int, int]:
    """A 2-d layer's (h, w) pair, or a 1-d layer's size as (fill, size)."""
    return (int(value[0]), int(value[1])) if two_d else (fill, int(value))


def geometry(spec: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """kernel, stride, padding and dilation of a convolution or pooling spec as (h, w) pairs
    (a 1-d layer's as (1, k), (1, s), (0, p), (1, d))."""
    two_d = spec["type"].endswith("2d")
    return {
        "kernel": _pair(spec["kernel_size"], two_d, 1),
        "stride": _pair(spec["stride"], two_d, 1),
        "padding": _pair(spec["padding"], two_d, 0),
        "dilation": _pair(spec.get("dilation", 1 if not two_d else [1, 1]), two_d, 1),
    }


def as_2d(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A (C, H, W) shape as itself, a (C, L) one as (C, 1, L)."""
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else (shape[0], 1, shape[1])


def _first_width(layers: list[dict[str, Any]]) -> int:
    for spec in layers:
        if spec["type"] in FEATURES:
            return int(spec[FEATURES[spec["type"]]])
        if spec["type"] == "reshape":
            return math.prod(spec["shape"])
        if spec["type"] == "embeddings":
            return int(spec["in_features"])
        if spec["type"] in SHAPED:
            raise ValueError(
                f"{spec['type']} needs the shape of its input rows: start with a reshape"
            )
    raise ValueError("the network needs at least one dense layer")


def layer_shapes(layers: list[dict[str, Any]]) -> list[tuple[int, ...]]:
    """The input shape of every layer, then the output's; a ValueError naming the layer whose
    input does not fit it."""
    if not any(spec["type"] == "dense" for spec in layers):
        raise ValueError("the network needs at least one dense layer")
    shape: tuple[int, ...] = (_first_width(layers),)
    shapes = [shape]
    for k, spec in enumerate(layers):
        kind = spec["type"]
        if kind in FEATURES:
            key = FEATURES[kind]
            if len(shape) != 1 or spec[key] != shape[0]:
                raise ValueError(f"layer {k}: {key}={spec[key]} but the input is {shape}")
            shape = (spec["out_features"],) if kind == "dense" else shape
        elif kind == "reshape":
            if math.prod(spec["shape"]) != math.prod(shape):
                raise ValueError(f"layer {k}: cannot reshape {shape} to {spec['shape']}")
            shape = tuple(spec["shape"])
        elif kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "prelu" and spec["num_parameters"] not in (1, shape[0]):
            raise ValueError(
                f"layer {k}: num_parameters={spec['num_parameters']} but the input is {shape}"
            )
        elif kind in EMBEDDINGS:
            if any(s["type"] not in RESHAPES for s in layers[:k]) or len(shape) != 1:
                raise ValueError(f"layer {k}: {kind} must come first, on flat rows")
            if kind == "embedding":
                shape = (shape[0], spec["embedding_dim"])
            else:
                if spec["in_features"] != shape[0]:
                    raise ValueError(f"layer {k}: in_features={spec['in_features']}, input {shape}")
                dims = {c: dim for c, _, dim in spec["columns"]}
                shape = (sum(dims.get(c, 1) for c in range(shape[0])),)
        elif kind in CONVOLUTIONS | POOLS:
            rank = 3 if kind.endswith("2d") else 2
            if len(shape) != rank:
                raise ValueError(f"layer {k}: {kind} cannot read rows of shape {shape}")
            if kind in CONVOLUTIONS and spec["in_channels"] != shape[0]:
                raise ValueError(f"layer {k}: in_channels={spec['in_channels']}, input {shape}")
            g = geometry(spec)
            sizes = as_2d(shape)[1:]
            out = [
                output_size(
                    sizes[a], g["kernel"][a], g["stride"][a], g["padding"][a], g["dilation"][a]
                )
                for a in range(2)
            ]
            if min(out) < 1:
                raise ValueError(f"layer {k}: {kind}'s window does not fit in {shape}")
            channels = spec["out_channels"] if kind in CONVOLUTIONS else shape[0]
            shape = (channels, *out[2 - (rank - 1) :])
        shapes.append(shape)
    return shapes

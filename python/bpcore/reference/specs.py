"""Spec dicts: the JSON shape of layers, losses and optimizers, with their defaults.

The same dicts are read by the Rust core. Here an item is turned into a complete spec:
an object with ``.to_spec()`` is asked for its dict, a bare string names a type, missing
keys take the defaults below (those of ``torch.nn`` / ``torch.optim``), unknown types or
keys and out-of-range values raise ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Any

from bpcore.bpcore import optimizer_defaults

_REQUIRED = object()  # marks a key that has no default
_KERNEL = object()  # marks a pooling stride, whose default is the kernel_size (torch's)

LAYER_DEFAULTS: dict[str, dict[str, Any]] = {
    "dense": {"in_features": _REQUIRED, "out_features": _REQUIRED, "bias": True},
    "relu": {},
    "leaky_relu": {"negative_slope": 0.01},
    "sigmoid": {},
    "tanh": {},
    "gelu": {},
    "elu": {"alpha": 1.0},
    "softplus": {"beta": 1.0, "threshold": 20.0},
    "identity": {},
    "silu": {},
    "mish": {},
    "prelu": {"num_parameters": 1, "init": 0.25},
    "dropout": {"p": 0.5},
    "batch_norm1d": {"num_features": _REQUIRED, "eps": 1e-5, "momentum": 0.1},
    "layer_norm": {"normalized_shape": _REQUIRED, "eps": 1e-5},
    "reshape": {"shape": _REQUIRED},
    "flatten": {},
    "conv1d": {
        "in_channels": _REQUIRED,
        "out_channels": _REQUIRED,
        "kernel_size": _REQUIRED,
        "stride": 1,
        "padding": 0,
        "dilation": 1,
        "bias": True,
    },
    "conv2d": {
        "in_channels": _REQUIRED,
        "out_channels": _REQUIRED,
        "kernel_size": _REQUIRED,
        "stride": [1, 1],
        "padding": [0, 0],
        "dilation": [1, 1],
        "bias": True,
    },
    "embedding": {"num_embeddings": _REQUIRED, "embedding_dim": _REQUIRED},
    "embeddings": {"in_features": _REQUIRED, "columns": _REQUIRED},
    "max_pool1d": {"kernel_size": _REQUIRED, "stride": _KERNEL, "padding": 0},
    "max_pool2d": {"kernel_size": _REQUIRED, "stride": _KERNEL, "padding": [0, 0]},
    "avg_pool1d": {"kernel_size": _REQUIRED, "stride": _KERNEL, "padding": 0},
    "avg_pool2d": {"kernel_size": _REQUIRED, "stride": _KERNEL, "padding": [0, 0]},
}

LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "mse": {},
    "l1": {},
    "huber": {"delta": 1.0},
    "cross_entropy": {"label_smoothing": 0.0},
    "bce_with_logits": {},
    "poisson": {},
}

#: torch.optim's defaults, as the core defines them (a spec is configuration, not arithmetic:
#: the reference computes every step itself). The reference's default optimizer (None) is SGD
#: at lr=0.01.
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = optimizer_defaults()

#: Keys a loss may have without a default: lists of weights, absent when not given.
LOSS_OPTIONAL: dict[str, set[str]] = {
    "cross_entropy": {"weight"},
    "bce_with_logits": {"pos_weight"},
}

_BOOL_KEYS = {"bias", "nesterov", "amsgrad", "centered"}
_INT_KEYS = {
    "in_features",
    "out_features",
    "num_features",
    "normalized_shape",
    "in_channels",
    "out_channels",
    "num_embeddings",
    "embedding_dim",
    "num_parameters",
}
# Sizes of the array layers: an int (1-d layers) or a list of ints (2-d layers, reshape).
_SIZE_KEYS = {"kernel_size", "stride", "padding", "dilation", "shape"}


def _as_dict(item: Any, what: str) -> dict[str, Any]:
    """The raw dict behind ``item``: ``item.to_spec()``, ``{"type": item}`` or ``item``."""
    if hasattr(item, "to_spec"):
        item = item.to_spec()
    if isinstance(item, str):
        item = {"type": item}
    if not isinstance(item, dict):
        raise TypeError(
            f"{what} must be a spec dict, a type name or an object with .to_spec(), "
            f"got {type(item).__name__}"
        )
    return item


def _complete(
    item: Any,
    table: dict[str, dict[str, Any]],
    what: str,
    optional: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    """Fill in defaults and coerce value types; reject unknown types and keys. The `optional`
    keys of a type (lists of weights) are kept, as lists of floats, only when given."""
    raw = _as_dict(item, what)
    kind = raw.get("type")
    if kind not in table:
        raise ValueError(f"unknown {what} type {kind!r}; expected one of {sorted(table)}")
    defaults = table[kind]
    extra = (optional or {}).get(kind, set())
    unknown = sorted(set(raw) - set(defaults) - extra - {"type"})
    if unknown:
        raise ValueError(f"{what} {kind!r}: unknown key(s) {unknown}")
    spec: dict[str, Any] = {"type": kind}
    for key, default in defaults.items():
        value = raw.get(key, default)
        if value is _REQUIRED:
            raise ValueError(f"{what} {kind!r}: missing required key {key!r}")
        if value is _KERNEL:
            value = spec["kernel_size"]
        if key in _BOOL_KEYS:
            value = bool(value)
        elif key in _INT_KEYS:
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(
                    f"{what} {kind!r}: {key} must be a positive integer, got {value!r}"
                )
            value = int(value)
        elif key in _SIZE_KEYS:
            sizes = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, bool) or int(v) != v or v < 0 for v in sizes):
                raise ValueError(f"{what} {kind!r}: {key} must hold sizes, got {value!r}")
            value = [int(v) for v in sizes] if isinstance(value, (list, tuple)) else int(value)
            if kind.endswith("2d") and isinstance(value, int):
                value = [value, value]  # one size for both axes, as torch
        elif key == "columns":
            # [column, num_embeddings, embedding_dim] per embedded column, by column (from
            # that list or a dict of column -> (num_embeddings, embedding_dim)).
            triples = [[c, *t] for c, t in value.items()] if isinstance(value, dict) else value
            value = sorted([int(c), int(num), int(dim)] for c, num, dim in triples)
        elif key == "betas":
            value = [float(b) for b in value]
            if len(value) != 2:
                raise ValueError(f"{what} {kind!r}: betas must hold two numbers")
        else:
            value = float(value)
        spec[key] = value
    for key in sorted(extra):
        if raw.get(key) is not None:
            weights = [float(v) for v in raw[key]]
            if not weights or not all(math.isfinite(v) and v >= 0.0 for v in weights):
                raise ValueError(f"{what} {kind!r}: {key} must be finite numbers >= 0")
            spec[key] = weights
    return spec


def layer_spec(item: Any) -> dict[str, Any]:
    """The complete layer spec for a dict, a type name or an object with ``.to_spec()``."""
    spec = _complete(item, LAYER_DEFAULTS, "layer")
    kind = spec["type"]
    if kind == "dropout" and not 0.0 <= spec["p"] < 1.0:
        raise ValueError(f"layer 'dropout': p must be in [0, 1), got {spec['p']}")
    if "eps" in spec and not spec["eps"] > 0.0:
        raise ValueError(f"layer {kind!r}: eps must be > 0, got {spec['eps']}")
    if kind == "batch_norm1d" and not 0.0 <= spec["momentum"] <= 1.0:
        raise ValueError(
            f"layer 'batch_norm1d': momentum must be in [0, 1], got {spec['momentum']}"
        )
    return spec


def loss_spec(item: Any) -> dict[str, Any]:
    """The complete loss spec for a dict, a type name or an object with ``.to_spec()``."""
    spec = _complete(item, LOSS_DEFAULTS, "loss", LOSS_OPTIONAL)
    if spec["type"] == "huber" and not spec["delta"] > 0.0:
        raise ValueError(f"loss 'huber': delta must be > 0, got {spec['delta']}")
    if spec["type"] == "cross_entropy" and not 0.0 <= spec["label_smoothing"] <= 1.0:
        raise ValueError(
            "loss 'cross_entropy': label_smoothing must be in [0, 1], "
            f"got {spec['label_smoothing']}"
        )
    return spec


def optimizer_spec(item: Any) -> dict[str, Any]:
    """The complete optimizer spec; ``None`` means plain SGD with lr=0.01.

    Ranges are checked as ``torch.optim`` checks them.
    """
    plain = {"type": "sgd", "lr": 0.01}
    spec = _complete(plain if item is None else item, OPTIMIZER_DEFAULTS, "optimizer")
    kind = spec["type"]
    for key in ("lr", "eps", "weight_decay", "momentum", "lr_decay", "alpha"):
        if key in spec and not spec[key] >= 0.0:
            raise ValueError(f"optimizer {kind!r}: {key} must be >= 0, got {spec[key]}")
    for beta in spec.get("betas", []):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"optimizer {kind!r}: betas must be in [0, 1), got {beta}")
    if spec.get("initial_accumulator_value", 0.0) < 0.0:
        raise ValueError(f"optimizer {kind!r}: initial_accumulator_value must be >= 0")
    if spec.get("nesterov") and (spec["momentum"] <= 0.0 or spec["dampening"] != 0.0):
        raise ValueError("optimizer 'sgd': nesterov requires momentum > 0 and zero dampening")
    return spec

"""The estimators' `bpcore.Network`: built as scikit-learn lays its MLP out, started from
scikit-learn's initial weights, and seen as one flat parameter vector by the full-batch solver.

The flat view (`flat_parameters`, `set_flat_parameters`, `loss_and_gradient`, `weight_mask`)
goes through the network's native object, which `Network` does not expose publicly: a full-batch
solver needs the loss and the gradient of one evaluation together, in the core's own flat
order, without building a dict of copies per evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from bpcore.layers import Dense, Dropout, Identity, Layer, ReLU, Sigmoid, Tanh
from bpcore.network import Network
from bpcore.optimizers import Optimizer

_HIDDEN_ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "tanh": Tanh,
    "logistic": Sigmoid,
    "identity": Identity,
}

#: The optimizers' `no_decay` of the estimators: scikit-learn's L2 term is on the weights only,
#: not on the intercepts (the Dense layers' biases; `weight_mask` marks the same).
NO_DECAY = ("bias",)

#: Rows of sparse input made dense at a time: about this many elements per block.
_BLOCK_ELEMENTS = 1 << 20


def build(
    n_features: int,
    hidden: list[int],
    n_outputs: int,
    activation: str,
    dropout: float,
    loss: str,
    optimizer: Optimizer,
    dtype: np.dtype,
    seed: int,
) -> Network:
    """Dense layers of the given widths with the hidden activation between them (and Dropout
    after each with `dropout` > 0); the output layer is linear, its activation in the loss."""
    layers: list[Layer] = []
    width = n_features
    for size in hidden:
        layers += [Dense(width, size), _HIDDEN_ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = size
    layers.append(Dense(width, n_outputs))
    return Network(layers, loss=loss, optimizer=optimizer, dtype=dtype.name, seed=seed)


def glorot_parameters(
    widths: list[int], activation: str, random_state: np.random.RandomState, dtype: np.dtype
) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's initial (coef (fan_in, fan_out), intercept (fan_out,)) per layer: Glorot
    uniform in ±sqrt(6 / (fan_in + fan_out)), factor 2 instead of 6 for a logistic hidden
    activation, intercepts drawn from the same bound, in scikit-learn's order of draws (so a
    `random_state` starts both libraries from the same weights)."""
    factor = 2.0 if activation == "logistic" else 6.0
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        coef = random_state.uniform(-bound, bound, (fan_in, fan_out))
        intercept = random_state.uniform(-bound, bound, fan_out)
        layers.append((coef.astype(dtype, copy=False), intercept.astype(dtype, copy=False)))
    return layers


def dense_layer_names(net: Network) -> list[str]:
    """The index prefixes ("0", "2", ...) of the network's Dense layers, in order."""
    return [str(i) for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]


def set_coefs(net: Network, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Sets every Dense layer from scikit-learn's (coef, intercept) pairs."""
    values = {}
    for name, (coef, intercept) in zip(dense_layer_names(net), layers):
        values[f"{name}.weight"] = coef.T
        values[f"{name}.bias"] = intercept
    net.set_parameters(values)


def coefs(net: Network) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's (coef (fan_in, fan_out), intercept) per Dense layer."""
    p = net.parameters()
    return [
        (np.ascontiguousarray(p[f"{name}.weight"].T), p[f"{name}.bias"])
        for name in dense_layer_names(net)
    ]


def flat_parameters(net: Network) -> np.ndarray:
    """All parameters as one vector, in the core's order."""
    flat: np.ndarray = net.native.params()
    return flat


def set_flat_parameters(net: Network, flat: np.ndarray) -> None:
    """Replaces all parameters from one vector in the core's order."""
    net.native.set_params(np.ascontiguousarray(flat, dtype=net.dtype))


def weight_mask(net: Network) -> np.ndarray:
    """True at the entries of the flat vector that are weights (the L2 penalty's), False at
    the biases."""
    info = net.native.param_info()
    total = sum(int(np.prod(shape)) for _, shape, _ in info)
    mask = np.zeros(total, dtype=bool)
    for name, shape, offset in info:
        if name.endswith(".weight"):
            mask[offset : offset + int(np.prod(shape))] = True
    return mask


def loss_and_gradient(
    net: Network, x: np.ndarray, t: np.ndarray, w: np.ndarray | None
) -> tuple[float, np.ndarray]:
    """The core's loss Σ w_i·l_i / n of the rows `x` (C-contiguous, the network's dtype) against
    `t` (labels or values as the core takes them) and its flat gradient, without an update."""
    loss, flat = net.native.gradients(x, t, w)
    return float(loss), flat


def row_blocks(X: Any, block_rows: int | None = None) -> list[slice]:
    """Slices of rows to make dense at a time: all rows of a dense array, blocks of about a
    million elements of a sparse one."""
    n = X.shape[0]
    if not sp.issparse(X):
        return [slice(0, n)]
    rows = block_rows or max(1, _BLOCK_ELEMENTS // max(1, X.shape[1]))
    return [slice(start, min(n, start + rows)) for start in range(0, n, rows)]


def dense(X: Any, rows: Any, dtype: np.dtype) -> np.ndarray:
    """Rows `rows` (a slice or an index array) of X as a C-contiguous array of `dtype`; sparse
    X is made dense for those rows only."""
    part = X[rows]
    if sp.issparse(part):
        part = part.toarray()
    return np.ascontiguousarray(part, dtype=dtype)


def forward(net: Network, X: Any) -> np.ndarray:
    """The network's outputs for X (dense or sparse, made dense block by block)."""
    blocks = row_blocks(X)
    if len(blocks) == 1:
        return net.forward(dense(X, blocks[0], net.dtype))
    return np.concatenate([net.forward(dense(X, rows, net.dtype)) for rows in blocks])

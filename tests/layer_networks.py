"""Small networks of the array, embedding and parametric activation layers, and inputs for them:
the ONNX export and import tests build the same networks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import bpcore as bp

#: Each network's layers, made fresh per call (a network takes its own layer objects).
NETWORKS: dict[str, Callable[[], list[bp.Layer]]] = {
    "conv2d": lambda: [
        bp.Reshape((2, 6, 7)),
        bp.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        bp.ReLU(),
        bp.MaxPool2d(2, padding=1),
        bp.Conv2d(3, 4, 3, padding=1, bias=False),
        bp.AvgPool2d((2, 1)),
        bp.Flatten(),
        bp.Dense(12, 3),
    ],
    "conv1d": lambda: [
        bp.Reshape((3, 10)),
        bp.Conv1d(3, 4, 3, padding=2, dilation=2),
        bp.Tanh(),
        bp.MaxPool1d(3, stride=2, padding=1),
        bp.Conv1d(4, 2, 2, stride=2, bias=False),
        bp.AvgPool1d(2, padding=1),
        bp.Flatten(),
        bp.Dense(4, 3),
    ],
    "max_pool": lambda: [bp.Reshape((2, 4, 4)), bp.MaxPool2d(2), bp.Flatten(), bp.Dense(8, 3)],
    "tabular": lambda: [bp.Embeddings({1: (4, 3), 3: (3, 2)}, in_features=4), bp.Dense(7, 3)],
    "sequence": lambda: [bp.Reshape((3,)), bp.Embedding(6, 2), bp.Flatten(), bp.Dense(6, 3)],
    "activations": lambda: [
        bp.Reshape((2, 3, 3)),
        bp.Conv2d(2, 3, 2),
        bp.PReLU(3, init=0.1),
        bp.Flatten(),
        bp.Dense(12, 5),
        bp.SiLU(),
        bp.Mish(),
        bp.PReLU(),
        bp.Dense(5, 5),
        bp.PReLU(5),
        bp.Dense(5, 3),
    ],
}


def inputs(name: str, net: bp.Network, scale: float = 1.0) -> np.ndarray:
    """Six rows for network `name`: category indices in range for the embeddings, else normal
    values times `scale`."""
    rng = np.random.default_rng(0)
    if name == "tabular":
        numbers = rng.normal(size=(6, 2))
        rows = [numbers[:, 0], rng.integers(0, 4, 6), numbers[:, 1], rng.integers(0, 3, 6)]
        return np.column_stack(rows).astype(net.dtype)
    if name == "sequence":
        return rng.integers(0, 6, (6, 3)).astype(net.dtype)
    return (rng.normal(size=(6, net.n_features)) * scale).astype(net.dtype)

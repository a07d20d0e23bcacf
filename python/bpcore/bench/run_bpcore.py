"""bpcore through its public API: ``net.fit`` runs a whole epoch in Rust."""

from __future__ import annotations

import numpy as np

import bpcore as bp
from bpcore.bench.timing import best_seconds, median_microseconds, samples_per_second
from bpcore.bench.workloads import Workload


def layers(workload: Workload) -> list[bp.Layer]:
    """Dense layers of ``workload.widths`` with its activation between them."""
    activation = {"tanh": bp.Tanh, "relu": bp.ReLU}[workload.activation]
    out: list[bp.Layer] = []
    for n_in, n_out in zip(workload.widths[:-1], workload.widths[1:]):
        out += [bp.Dense(n_in, n_out), activation()]
    return out[:-1]


def optimizer(workload: Workload) -> bp.Optimizer:
    """The workload's optimizer as a bpcore object (also read by the reference)."""
    if workload.optimizer == "sgd":
        return bp.SGD(lr=workload.lr, momentum=workload.momentum)
    return bp.Adam(lr=workload.lr)


def make_network(workload: Workload, seed: int = 0) -> bp.Network:
    """The workload's network in its dtype; its initial parameters seed every other system."""
    return bp.Network(
        layers(workload),
        loss=workload.loss,
        optimizer=optimizer(workload),
        dtype=workload.dtype,
        seed=seed,
    )


def train_rate(workload: Workload, X: np.ndarray, y: np.ndarray) -> float:
    """Samples per second of ``fit(X, y, epochs=1, batch_size=B, shuffle=True)``."""
    net = make_network(workload)
    warm = 2 * workload.batch_size
    net.fit(X[:warm], y[:warm], epochs=1, batch_size=workload.batch_size)
    return samples_per_second(
        lambda: net.fit(X, y, epochs=1, batch_size=workload.batch_size, shuffle=True),
        len(X),
        workload.min_seconds,
    )


def predict_microseconds(net: bp.Network, x1: np.ndarray, calls: int) -> float:
    """Median microseconds of ``net.forward(x1)`` for one sample."""
    return median_microseconds(lambda: net.forward(x1), calls)


def has_matmul() -> bool:
    """Whether the installed native module exposes ``matmul`` (a rebuild adds it)."""
    return hasattr(bp.bpcore, "matmul")


def matmul_gflops(a: np.ndarray, b: np.ndarray, repeats: int) -> float:
    """GFLOP/s of ``bpcore.bpcore.matmul(a, b)``: 2·m·k·n / best time."""
    seconds = best_seconds(lambda: bp.bpcore.matmul(a, b), repeats)
    return float(2 * a.shape[0] * a.shape[1] * b.shape[1] / seconds / 1e9)

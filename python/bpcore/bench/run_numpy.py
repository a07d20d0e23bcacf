"""The plain NumPy MLP (``numpy_mlp``) timed on the same workloads, and NumPy's sgemm rate."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bpcore.bench.numpy_mlp import Adam, NumpyMLP, SGDMomentum
from bpcore.bench.timing import best_seconds, median_microseconds, samples_per_second
from bpcore.bench.workloads import Workload


def make_mlp(workload: Workload, parameters: Mapping[str, np.ndarray]) -> NumpyMLP:
    """A NumPy network holding ``parameters`` (bpcore's names) with the workload's optimizer."""
    opt = (
        SGDMomentum(workload.lr, workload.momentum)
        if workload.optimizer == "sgd"
        else Adam(workload.lr)
    )
    return NumpyMLP(parameters, workload.activation, workload.loss, opt)


def train_rate(
    workload: Workload, X: np.ndarray, y: np.ndarray, parameters: Mapping[str, np.ndarray]
) -> float:
    """Samples per second of shuffled mini-batch epochs of the NumPy MLP."""
    mlp = make_mlp(workload, parameters)
    rng = np.random.default_rng(0)
    warm = 2 * workload.batch_size
    mlp.fit_epoch(X[:warm], y[:warm], workload.batch_size, rng)
    return samples_per_second(
        lambda: mlp.fit_epoch(X, y, workload.batch_size, rng), len(X), workload.min_seconds
    )


def predict_microseconds(
    workload: Workload, parameters: Mapping[str, np.ndarray], x1: np.ndarray, calls: int
) -> float:
    """Median microseconds of the NumPy forward pass on one sample."""
    mlp = make_mlp(workload, parameters)
    return median_microseconds(lambda: mlp.forward(x1), calls)


def sgemm_gflops(a: np.ndarray, b: np.ndarray, repeats: int) -> float:
    """GFLOP/s of NumPy's ``a @ b`` (its BLAS): 2·m·k·n / best time."""
    seconds = best_seconds(lambda: a @ b, repeats)
    return float(2 * a.shape[0] * a.shape[1] * b.shape[1] / seconds / 1e9)

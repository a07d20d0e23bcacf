"""Synthetic data: float32 inputs in [0, 1) and targets from a fixed random teacher.

There is no network access to download MNIST, so the mnist workload trains on MNIST-shaped data
(60,000 × 784 in [0, 1)) whose labels come from a fixed random linear teacher: learnable, and the
same on every run.
"""

from __future__ import annotations

import numpy as np

from bpcore.bench.workloads import Workload

DATA_NOTE = (
    "data: synthetic, inputs in [0, 1); class labels = argmax of a fixed random linear "
    "teacher, regression targets = sin of one (MNIST-shaped, not MNIST: no download here)"
)


def make_data(workload: Workload, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples for ``workload``: X (n, in) in its dtype, and y — (n,) int64 class labels
    for cross_entropy, (n, out) targets in its dtype for mse. The float64 data are the float32
    data widened."""
    rng = np.random.default_rng(seed)
    n_in, n_out = workload.widths[0], workload.widths[-1]
    X = rng.random((n, n_in), dtype=np.float32)
    teacher = rng.standard_normal((n_in, n_out)).astype(np.float32) / np.sqrt(n_in / 12)
    # In chunks, so that no temporary as large as X raises the process's peak memory.
    scores = np.concatenate([(X[s : s + 8192] - 0.5) @ teacher for s in range(0, n, 8192)])
    if workload.loss == "cross_entropy":
        labels = np.ascontiguousarray(scores.argmax(axis=1), dtype=np.int64)
        return X.astype(workload.dtype, copy=False), labels
    return X.astype(workload.dtype, copy=False), np.sin(scores).astype(workload.dtype)

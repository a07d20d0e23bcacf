"""The pure-Python reference (``bpcore.reference``, float64 lists) on a few hundred samples."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

import numpy as np

from bpcore import reference as ref
from bpcore.bench.run_bpcore import layers, optimizer
from bpcore.bench.workloads import Workload


def train_rate(
    workload: Workload, X: np.ndarray, y: np.ndarray, parameters: Mapping[str, np.ndarray]
) -> float:
    """Samples per second of ``train_step`` over shuffled mini-batches of ``X`` (converted to
    Python lists before the clock starts)."""
    net = ref.Network(layers(workload), loss=workload.loss, optimizer=optimizer(workload))
    net.set_parameters({k: v.astype(np.float64).tolist() for k, v in parameters.items()})
    rows, targets = X.tolist(), y.tolist()
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    B = workload.batch_size
    start = time.perf_counter()
    for s in range(0, len(order), B):
        idx = order[s : s + B]
        net.train_step([rows[i] for i in idx], [targets[i] for i in idx])
    return len(rows) / (time.perf_counter() - start)

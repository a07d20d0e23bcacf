"""Run under ``mpiexec -n N``: a data-parallel fit against one process fed the same global
batches. Rank 0 prints one JSON line per case with the largest parameter difference.

Global batch s is every rank's local batch s in rank order (bpcore.distributed's promise); the
single process takes `train_step` on exactly those batches, so the two must agree to rounding.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from mpi4py import MPI

import bpcore as bp

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
bp.set_num_threads(1)


def network(dtype: str, dropout: bool, optimizer: bp.Optimizer) -> bp.Network:
    layers: list[bp.Layer] = [bp.Dense(6, 16), bp.Tanh()]
    if dropout:
        layers.append(bp.Dropout(0.25))
    layers += [bp.Dense(16, 3)]
    return bp.Network(layers, loss="cross_entropy", optimizer=optimizer, dtype=dtype, seed=7)


def global_batches(order_of: list[np.ndarray], starts: list[int], batch: int) -> list[np.ndarray]:
    """Row indices of each global batch: rank r's local batch s, for r in rank order."""
    steps = max(-(-len(o) // batch) for o in order_of)
    return [
        np.concatenate([starts[r] + o[s * batch : (s + 1) * batch] for r, o in enumerate(order_of)])
        for s in range(steps)
    ]


def case(name: str, dtype: str, dropout: bool, shuffle: bool, make_opt: object) -> None:
    rng = np.random.default_rng(3)
    n, batch, epochs = 101, 8, 3  # 101 rows: the shards and the last batches are uneven
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    X_local, y_local = bp.distributed.shard(X, y, comm=comm)
    net = network(dtype, dropout, make_opt())  # type: ignore[operator]
    history = net.fit(
        X_local,
        y_local,
        epochs=epochs,
        batch_size=batch,
        shuffle=shuffle,
        comm=comm,
        progress=False,
    )
    params = net.parameters()
    gathered = comm.gather(params, root=0)
    if rank != 0:
        return
    # Every rank holds the same network.
    spread = max(float(np.max(np.abs(p[k] - gathered[0][k]))) for p in gathered for k in params)
    single = network(dtype, dropout, make_opt())  # type: ignore[operator]
    bounds = [bp.distributed.shard_bounds(n, rank=r, size=size) for r in range(size)]
    starts = [a for a, _ in bounds]
    losses = []
    for epoch in range(epochs):
        order_of = [
            np.random.default_rng([single.seed, r, epoch]).permutation(b - a)
            if shuffle
            else np.arange(b - a)
            for r, (a, b) in enumerate(bounds)
        ]
        total = 0.0
        for idx in global_batches(order_of, starts, batch):
            total += single.train_step(X[idx], y[idx]) * len(idx)
        losses.append(total / n)
    expected = single.parameters()
    diff = max(float(np.max(np.abs(params[k] - expected[k]))) for k in params)
    loss_diff = max(abs(a - b) for a, b in zip(history.history["loss"], losses))
    print(
        json.dumps(
            {
                "case": name,
                "ranks": size,
                "max_param_diff": diff,
                "rank_spread": spread,
                "max_loss_diff": loss_diff,
                "final_loss": history.history["loss"][-1],
            }
        ),
        flush=True,
    )


CASES = {
    "float64-adam": ("float64", False, False, lambda: bp.Adam(lr=0.01)),
    "float64-sgd-dropout": ("float64", True, False, lambda: bp.SGD(lr=0.1, momentum=0.9)),
    "float64-shuffled-dropout": ("float64", True, True, lambda: bp.AdamW(lr=0.01)),
    "float32-adam": ("float32", False, True, lambda: bp.Adam(lr=0.01)),
}

for name in sys.argv[1:] or CASES:
    dtype, dropout, shuffle, make_opt = CASES[name]
    case(name, dtype, dropout, shuffle, make_opt)

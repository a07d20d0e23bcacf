"""Run under ``mpiexec -n N``: a data-parallel fit against one process fed the same global
batches. Rank 0 prints one JSON line per case with the largest parameter difference.

Global batch s is every rank's local batch s in rank order (bpcore.distributed's promise); the
single process takes `train_step` on exactly those batches, so the two must agree to rounding.
The cases cover uneven shards and last batches (101 samples), dropout (masks keyed by the global
row), shuffling (each rank's own permutation), sample weights, gradient clipping and validation
data given whole to every rank. A batch-norm case checks only that every rank ends with the
same parameters and running statistics: its statistics are per rank's share, as in torch's DDP.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from mpi4py import MPI

import bpcore as bp

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
bp.set_num_threads(1)

CASES: dict[str, dict[str, Any]] = {
    "float64-adam": {"optimizer": lambda: bp.Adam(lr=0.01)},
    "float64-sgd-dropout": {"dropout": True, "optimizer": lambda: bp.SGD(lr=0.1, momentum=0.9)},
    "float64-shuffled-dropout": {"dropout": True, "shuffle": True},
    "float64-weighted-clipped": {"weighted": True, "clip": 0.5, "shuffle": True},
    "float64-validation": {"validation": True, "shuffle": True},
    "float32-adam": {"dtype": "float32", "shuffle": True},
    # Batches of 9 leave no rank a last batch of 1 sample, which batch norm refuses.
    "float64-batchnorm": {"batchnorm": True, "shuffle": True, "batch": 9},
}


def network(options: dict[str, Any]) -> bp.Network:
    layers: list[bp.Layer] = [bp.Dense(6, 16)]
    if options.get("batchnorm"):
        layers.append(bp.BatchNorm1d(16))
    layers.append(bp.Tanh())
    if options.get("dropout"):
        layers.append(bp.Dropout(0.25))
    layers.append(bp.Dense(16, 3))
    make_optimizer = options.get("optimizer", lambda: bp.AdamW(lr=0.01))
    dtype = options.get("dtype", "float64")
    return bp.Network(layers, loss="cross_entropy", optimizer=make_optimizer(), dtype=dtype, seed=7)


def global_batches(order_of: list[np.ndarray], starts: list[int], batch: int) -> list[np.ndarray]:
    """Row indices of each global batch: rank r's local batch s, for r in rank order."""
    steps = max(-(-len(o) // batch) for o in order_of)
    return [
        np.concatenate([starts[r] + o[s * batch : (s + 1) * batch] for r, o in enumerate(order_of)])
        for s in range(steps)
    ]


def case(name: str, options: dict[str, Any]) -> None:
    rng = np.random.default_rng(3)
    n, epochs = 101, 3  # 101 rows: the shards and the last batches are uneven
    batch = options.get("batch", 8)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    w = rng.uniform(0.0, 2.0, size=n) if options.get("weighted") else None
    X_val = rng.normal(size=(30, 6))
    y_val = (X_val[:, 0] > 0).astype(np.int64)
    shuffle = bool(options.get("shuffle"))
    X_local, y_local = bp.distributed.shard(X, y, comm=comm)
    kwargs: dict[str, Any] = {"epochs": epochs, "batch_size": batch, "shuffle": shuffle}
    if w is not None:
        (kwargs["sample_weight"],) = bp.distributed.shard(w, comm=comm)
    if options.get("clip"):
        kwargs["clip_grad_norm"] = options["clip"]
    if options.get("validation"):
        kwargs["validation_data"] = (X_val, y_val)  # the whole set on every rank
    net = network(options)
    history = net.fit(X_local, y_local, comm=comm, progress=False, **kwargs)
    state = {**net.parameters(), **net.buffers()}
    gathered = comm.gather(state, root=0)
    if rank != 0:
        return
    # Every rank holds the same network, buffers included.
    spread = max(
        float(np.max(np.abs(np.asarray(g[k], dtype=np.float64) - np.asarray(gathered[0][k]))))
        for g in gathered
        for k in state
    )
    record: dict[str, Any] = {"case": name, "ranks": size, "rank_spread": spread}
    if not options.get("batchnorm"):
        single = network(options)
        if options.get("clip"):
            single._native.clip_grad_norm = options["clip"]
        bounds = [bp.distributed.shard_bounds(n, rank=r, size=size) for r in range(size)]
        starts = [a for a, _ in bounds]
        losses, val_losses = [], []
        for epoch in range(epochs):
            order_of = [
                np.random.default_rng([single.seed, r, epoch]).permutation(b - a)
                if shuffle
                else np.arange(b - a)
                for r, (a, b) in enumerate(bounds)
            ]
            total = 0.0
            for idx in global_batches(order_of, starts, batch):
                weights = None if w is None else w[idx]
                total += single.train_step(X[idx], y[idx], sample_weight=weights) * len(idx)
            losses.append(total / n)
            val_losses.append(single.loss(X_val, y_val))
        expected = single.parameters()
        params = net.parameters()
        record["max_param_diff"] = max(
            float(np.max(np.abs(params[k] - expected[k]))) for k in params
        )
        record["max_loss_diff"] = max(abs(a - b) for a, b in zip(history.history["loss"], losses))
        if options.get("validation"):
            record["max_val_loss_diff"] = max(
                abs(a - b) for a, b in zip(history.history["val_loss"], val_losses)
            )
    print(json.dumps(record), flush=True)


for name in sys.argv[1:] or CASES:
    case(name, CASES[name])

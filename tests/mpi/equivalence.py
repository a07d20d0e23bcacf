"""Run under ``mpiexec -n N``: a data-parallel fit against a plain `fit` of one process.
Rank 0 prints one JSON line per case with the largest parameter and loss differences.

A data-parallel fit on the shards of a data set takes, step for step, the steps of a plain
`fit` without shuffling, in batches of `batch_size × ranks`, on the samples laid out in the
order `bp.distributed.epoch_order` reports (the core's plan: step s is rows s·batch_size.. of
every shard, each shard permuted first when shuffled). Both must agree to rounding. The cases
cover uneven shards and last batches (101 samples), dropout (masks keyed by the sample's row in
its step), sample weights, gradient clipping and validation data given whole to every rank,
and the steps whose loss divides by what the targets decide: cross_entropy's class weights,
"balanced" class weights (counted over every shard), and sample weights under
"mean_with_sample_weight" (with the weight decay per batch weight), where each step divides by
a divisor summed over the ranks. A batch-norm case checks only that every rank ends with the
same parameters and running statistics: its statistics are per rank's share of a step, as in
torch's DDP.
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
    # Two batches per optimizer step, and a one-cycle rate per step.
    "float64-accumulated-onecycle": {"accumulate": 2, "shuffle": True, "onecycle": True},
    # Batches of 9 leave no rank a last batch of 1 sample, which batch norm refuses.
    "float64-batchnorm": {"batchnorm": True, "shuffle": True, "batch": 9},
    # Divisors summed over the ranks.
    "float64-class-weight-loss": {
        "loss": lambda: bp.CrossEntropyLoss(weight=[0.5, 3.0, 1.5], label_smoothing=0.1),
        "shuffle": True,
        "optimizer": lambda: bp.SGD(lr=0.1, momentum=0.9),
    },
    "float64-class-weight-balanced": {"fit": {"class_weight": "balanced"}, "shuffle": True},
    "float64-weighted-mean-decay": {
        "weighted": True,
        "shuffle": True,
        "optimizer": lambda: bp.SGD(lr=0.1, momentum=0.9, weight_decay=0.5, no_decay=["bias"]),
        "fit": {
            "sample_weight_reduction": "mean_with_sample_weight",
            "weight_decay_per_batch_weight": True,
        },
    },
    # The loss reported is each batch's mean weighted by its rows (Keras's, scikit-learn's),
    # which for weighted means of batches half as large is not the merged batches' mean.
    "float64-weighted-mean-class-weight-accumulated": {
        "weighted": True,
        "accumulate": 2,
        "compare_loss": False,
        "loss": lambda: bp.CrossEntropyLoss(weight=[2.0, 0.5, 1.0]),
        "fit": {"sample_weight_reduction": "mean_with_sample_weight"},
    },
    "float32-class-weight-loss": {
        "dtype": "float32",
        "shuffle": True,
        "loss": lambda: bp.CrossEntropyLoss(weight=[0.5, 3.0, 1.5]),
    },
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
    loss = options.get("loss", lambda: "cross_entropy")()
    return bp.Network(layers, loss=loss, optimizer=make_optimizer(), dtype=dtype, seed=7)


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
    kwargs.update(options.get("fit", {}))
    accumulate = options.get("accumulate", 1)
    if accumulate > 1:
        kwargs["gradient_accumulation_steps"] = accumulate

    def schedule() -> bp.OneCycleLR | None:
        return bp.OneCycleLR(max_lr=0.05, total_steps=20) if options.get("onecycle") else None

    kwargs["schedule"] = schedule()
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
        shards = [
            b - a
            for a, b in (bp.distributed.shard_bounds(n, rank=r, size=size) for r in range(size))
        ]
        orders = bp.distributed.epoch_order(single, shards, batch, shuffle=shuffle, epochs=epochs)
        plain = dict(kwargs, batch_size=batch * size * accumulate, epochs=1, shuffle=False)
        plain.update(gradient_accumulation_steps=1, schedule=schedule())
        expected: dict[str, list[float]] = {}
        for steps in orders:
            rows = np.concatenate(steps)
            if w is not None:
                plain["sample_weight"] = w[rows]
            for key, values in single.fit(
                X[rows], y[rows], progress=False, **plain
            ).history.items():
                expected.setdefault(key, []).extend(values)
        params, want = net.parameters(), single.parameters()
        record["max_param_diff"] = max(float(np.max(np.abs(params[k] - want[k]))) for k in params)
        for key in ("loss", "val_loss") if options.get("compare_loss", True) else ():
            if key in expected:
                got, ref = history.history[key], expected[key]
                record[f"max_{key}_diff"] = max(abs(a - b) for a, b in zip(got, ref))
    print(json.dumps(record), flush=True)


for name in sys.argv[1:] or CASES:
    case(name, CASES[name])

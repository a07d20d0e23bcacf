"""Run under ``mpiexec -n 2``: one rank fails in a data-parallel fit, in the way named by the
first argument, and every rank must stop with a clear error instead of hanging. Each rank
reports one JSON line (printed by rank 0) saying what it raised and what its network holds
afterwards.

Modes that train and save: ``crash`` (a checkpointing job whose rank 1 fails in epoch 3,
exit code 3), ``resume`` (a new job that loads the checkpoint and finishes the 4 epochs) and
``straight`` (the 4 epochs with no failure); the test compares the last two.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import numpy as np
from mpi4py import MPI

import bpcore as bp

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
bp.set_num_threads(1)
mode = sys.argv[1]
checkpoint = sys.argv[2] if len(sys.argv) > 2 else ""
EPOCHS = 4
# The schedule of the checkpointing modes: the resumed job must continue it, not restart it.
SCHEDULE = lambda: bp.StepLR(step_size=1, gamma=0.7)  # noqa: E731


class FailOnRank(bp.Callback):
    """Fails on `rank` as epoch `epoch` (0-based) begins: raises, or sends itself Ctrl-C."""

    def __init__(self, rank: int, epoch: int, how: str = "raise") -> None:
        super().__init__()
        self.rank, self.epoch, self.how = rank, epoch, how

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        if comm.Get_rank() == self.rank and epoch == self.epoch:
            if self.how == "interrupt":
                signal.raise_signal(signal.SIGINT)
            else:
                raise OSError(f"disk of rank {self.rank} is full (injected in epoch {epoch + 1})")


def fail_share_at(step: int) -> None:
    """Makes this rank report, at its `step`-th reduction (counting from 1), that it could not
    compute its share, as the native loop does when a share fails: a failure inside an epoch,
    between two Allreduces."""
    from bpcore import _data_parallel

    reduce = _data_parallel.RankGroup.reduce
    calls = [0]

    def failing(self: Any, index: int, buffer: memoryview, failure: BaseException | None) -> None:
        calls[0] += 1
        if calls[0] == step:
            failure = MemoryError("injected: no memory for this step's gradients")
        reduce(self, index, buffer, failure)

    _data_parallel.RankGroup.reduce = failing  # type: ignore[method-assign]


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 8)).astype(np.float32)
    y = (X[:, 0] - X[:, 3] > 0).astype(np.int64)
    return bp.distributed.shard(X, y, comm=comm)


def network() -> bp.Network:
    layers = [bp.Dense(8, 32), bp.ReLU(), bp.Dropout(0.1), bp.Dense(32, 2)]
    return bp.Network(layers, loss="cross_entropy", optimizer=bp.Adam(lr=0.01), seed=5)


def report(net: bp.Network, error: BaseException | None, **extra: Any) -> None:
    params = net.parameters()
    flat = np.concatenate([v.ravel() for v in params.values()])
    everyone = comm.allgather(flat)
    record = {
        "mode": mode,
        "rank": rank,
        "raised": None if error is None else type(error).__name__,
        "message": None if error is None else str(error),
        "same_weights_on_every_rank": all(np.array_equal(f, everyone[0]) for f in everyone),
        "finite": bool(np.isfinite(flat).all()),
        "epochs_done": net.epochs_done,
        "params": [float(v) for v in flat[:4]],
        "checksum": float(np.sum(flat.astype(np.float64) ** 2)),
        **extra,
    }
    # Rank 0 prints every rank's record: lines printed by several ranks can interleave.
    records = comm.gather(record, root=0)
    if rank == 0:
        for r in records:
            print(json.dumps(r), flush=True)


def fit(net: bp.Network, X: np.ndarray, y: np.ndarray, **kwargs: Any) -> BaseException | None:
    kwargs = {"epochs": EPOCHS, "batch_size": 16, "comm": comm, "progress": False, **kwargs}
    try:
        net.fit(X, y, **kwargs)
    except Exception as e:  # the fit must raise on every rank; we report what
        return e
    return None


X, y = data()
net = network()
before = net.parameters()
if mode == "callback":
    error = fit(net, X, y, callbacks=[FailOnRank(1, 1)])
    report(net, error, failures=getattr(error, "failures", None))
elif mode == "step-fails":
    # 200 samples per rank in batches of 16: 13 steps an epoch; rank 1 fails in the 16th.
    if rank == 1:
        fail_share_at(16)
    error = fit(net, X, y)
    steps = int(net.native.steps)
    report(net, error, failures=getattr(error, "failures", None), optimizer_steps=steps)
elif mode == "interrupt":
    error = fit(net, X, y, callbacks=[FailOnRank(0, 2, "interrupt")])
    report(net, error, failures=getattr(error, "failures", None))
elif mode == "interrupt-in-epoch":
    # Ctrl-C on rank 0 while the native loop runs long epochs: the signal handler marks the
    # rank failed, and the next step's reduction stops every rank at the same step.
    import threading

    rng = np.random.default_rng(1)
    X_big = rng.normal(size=(40_000, 8)).astype(np.float32)
    X, y = bp.distributed.shard(X_big, (X_big[:, 0] > 0).astype(np.int64), comm=comm)
    wide = [bp.Dense(8, 256), bp.ReLU(), bp.Dense(256, 256), bp.ReLU(), bp.Dense(256, 2)]
    net = bp.Network(wide, loss="cross_entropy", seed=5)  # epochs long against the signal
    if rank == 0:
        threading.Timer(0.5, signal.raise_signal, (signal.SIGINT,)).start()
    error = fit(net, X, y, epochs=10_000)
    report(net, error, failures=getattr(error, "failures", None))
elif mode == "bad-labels":
    if rank == 1:
        y = y.copy()
        y[7] = 9
    error = fit(net, X, y)
    unchanged = all(np.array_equal(before[k], v) for k, v in net.parameters().items())
    report(net, error, failures=getattr(error, "failures", None), unchanged=unchanged)
elif mode == "mismatch":
    error = fit(net, X, y, batch_size=16 if rank == 0 else 32)
    report(net, error)
elif mode == "lr-drift":
    # A learning-rate callback given to rank 1 alone: the ranks would drift apart.
    halve = bp.LearningRateScheduler(lambda epoch, lr: lr / 2)
    error = fit(net, X, y, callbacks=[halve] if rank == 1 else [])
    report(net, error, lr=net.lr)
elif mode == "escape":
    # A failure outside every guarded piece (here: a bug planted in the epoch loop of rank 1)
    # cannot be agreed on; the job must end rather than leave rank 0 waiting forever.
    from bpcore import _data_parallel

    if rank == 1:

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a bug in the epoch loop")

        _data_parallel.RankGroup.fit_epoch = broken  # type: ignore[method-assign]
    error = fit(net, X, y)
    report(net, error)  # not reached: MPI_Abort ends every rank
elif mode == "diverges":
    net.lr = 1e30
    error = fit(net, X * 1e20, y)
    report(net, error)
elif mode in ("crash", "straight"):
    saver = bp.ModelCheckpoint(checkpoint, include_optimizer=True)
    fails = [FailOnRank(1, 2)] if mode == "crash" else []
    error = fit(net, X, y, shuffle=True, schedule=SCHEDULE(), callbacks=[saver, *fails])
    report(net, error, saved=os.path.exists(checkpoint), lr=net.lr)
    if error is not None:
        sys.exit(3)
elif mode == "resume":
    # Only rank 0 reads the checkpoint (on a cluster it may be on rank 0's disk alone); fit
    # gives the other ranks its weights, optimizer state, epoch count and schedule position.
    if rank == 0:
        net = bp.Network.load(checkpoint)
    resumed_at = comm.bcast(net.epochs_done, root=0)
    error = fit(net, X, y, shuffle=True, schedule=SCHEDULE(), epochs=EPOCHS - resumed_at)
    report(net, error, resumed_at=resumed_at, lr=net.lr)
else:
    raise SystemExit(f"unknown mode {mode!r}")

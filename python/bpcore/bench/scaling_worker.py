"""One data-parallel epoch of the mnist workload, run by ``bpcore.bench.scaling`` under mpiexec.

``mpiexec -n P python -m bpcore.bench.scaling_worker SAMPLES`` trains the mnist network on
``SAMPLES`` synthetic samples split over the P ranks (``bpcore.distributed.shard``), each rank
with one bpcore thread and a local batch of the mnist batch size ÷ P, so that the global batch
is the single-process row's. Rank 0 prints one JSON object (see `measure_ranks`).

The timing follows the single-process mnist row (``run_bpcore.train_rate``): a warm-up fit on
two batches, then one timed epoch with shuffling, on a fresh network. The clock runs on rank 0
between two ``Barrier`` calls, so the epoch counts until the slowest rank is done.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import numpy as np

import bpcore as bp
from bpcore.bench.data import make_data
from bpcore.bench.run_bpcore import make_network
from bpcore.bench.workloads import TRAINING

# Back-to-back Allreduce calls of the gradient buffer's size timed on their own, after training.
LONE_ALLREDUCES = 50


class TimedComm:
    """An mpi4py communicator that adds up the time spent in its ``Allreduce`` calls.

    Passed to ``fit`` as its ``comm``, it splits a data-parallel step into computing and
    reducing without touching bpcore; every other attribute is the wrapped communicator's.
    The time includes waiting for the slower rank to arrive, not only moving the data.
    """

    def __init__(self, comm: Any) -> None:
        self._comm = comm
        self.allreduce_seconds = 0.0
        self.allreduce_calls = 0

    def Allreduce(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - mpi4py's name
        """``comm.Allreduce``, timed."""
        start = time.perf_counter()
        try:
            return self._comm.Allreduce(*args, **kwargs)
        finally:
            self.allreduce_seconds += time.perf_counter() - start
            self.allreduce_calls += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comm, name)


def lone_allreduce_seconds(comm: Any, mpi: Any, floats: int) -> float:
    """Mean seconds of one in-place float32 sum-Allreduce of ``floats`` numbers, the ranks
    starting together: the cost of the reduction alone, without any rank's compute in it."""
    buffer = np.zeros(floats, dtype=np.float32)
    comm.Allreduce(mpi.IN_PLACE, buffer, op=mpi.SUM)  # untimed: connections set up
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(LONE_ALLREDUCES):
        comm.Allreduce(mpi.IN_PLACE, buffer, op=mpi.SUM)
    return (time.perf_counter() - start) / LONE_ALLREDUCES


def measure_ranks(samples: int) -> dict[str, Any] | None:
    """This rank's part of one measurement; rank 0 returns the result, the others None.

    The result: ``samples`` (global, every rank's), ``seconds`` (the timed epoch on rank 0),
    ``samples_per_second``, ``processes``, ``batch_per_rank``, ``steps``,
    ``allreduce_seconds`` (each rank's time in Allreduce during the timed epoch),
    ``lone_allreduce_seconds``, ``gradient_floats`` and ``mpi_library``.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    processes = comm.Get_size()
    bp.set_num_threads(1)
    mnist = TRAINING["mnist"]
    if mnist.batch_size % processes:
        raise ValueError(f"{processes} processes do not divide the batch of {mnist.batch_size}")
    batch = mnist.batch_size // processes
    workload = dataclasses.replace(mnist, samples=samples, batch_size=batch)
    # Every rank makes the whole data set, as the single-process row does, and keeps its shard:
    # the same samples in the same global batches.
    X, y = make_data(workload, samples)
    X_local, y_local = bp.distributed.shard(X, y, comm=comm)
    shard_rows = comm.allgather(len(X_local))
    steps = max(-(-rows // batch) for rows in shard_rows)

    net = make_network(workload)
    warm = 2 * batch
    net.fit(X_local[:warm], y_local[:warm], epochs=1, batch_size=batch, comm=comm,
            progress=False)  # fmt: skip
    timed = TimedComm(comm)
    comm.Barrier()
    start = time.perf_counter()
    net.fit(X_local, y_local, epochs=1, batch_size=batch, shuffle=True, comm=timed,
            progress=False)  # fmt: skip
    comm.Barrier()
    seconds = time.perf_counter() - start

    gradient_floats = sum(int(p.size) for p in net.parameters().values())
    lone = lone_allreduce_seconds(comm, MPI, gradient_floats)
    allreduce_seconds = comm.gather(timed.allreduce_seconds, root=0)
    if comm.Get_rank() != 0:
        return None
    return {
        "samples": samples,
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        "processes": processes,
        "batch_per_rank": batch,
        "steps": steps,
        "allreduce_calls": timed.allreduce_calls,
        "allreduce_seconds": allreduce_seconds,
        "lone_allreduce_seconds": lone,
        "gradient_floats": gradient_floats,
        "mpi_library": " ".join(MPI.Get_library_version().split("\n", 1)[0].split()),
    }


if __name__ == "__main__":
    result = measure_ranks(int(sys.argv[1]))
    if result is not None:
        print(json.dumps(result), flush=True)

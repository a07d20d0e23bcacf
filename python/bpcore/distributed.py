"""Training one network on many processes: what a user of `Network.fit(..., comm=...)` needs.

bpcore trains data-parallel over MPI (through mpi4py, ``pip install "bpcore[mpi]"``): every
process (rank) holds the same network and a shard of the data, and each step the ranks'
gradients are summed with one Allreduce, so that every rank takes the same optimizer step,
the one a single process would take on the global batch. Launch with
``mpiexec -n 4 python train.py``; see the README's "Training on many processes and machines".

Example:
    >>> import numpy as np, bpcore as bp
    >>> X, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> [len(part) for part, _ in (bp.distributed.shard(X, y, rank=r, size=2) for r in (0, 1))]
    [2, 3]
    >>> bp.distributed.shard_bounds(5, rank=1, size=2)
    (2, 5)
"""

from __future__ import annotations

from typing import Any, TypeVar

from bpcore._checks import integer

__all__ = ["DistributedTrainingError", "shard", "shard_bounds"]

A = TypeVar("A")


class DistributedTrainingError(RuntimeError):
    """Some rank of a data-parallel `fit` failed; every rank raises this instead of waiting
    forever for it in a collective.

    Attributes:
        failures: rank -> "ExceptionType: message" of each rank that failed.
        where: the point of training where the ranks found out ("epoch 3, batch 17", ...).
    """

    def __init__(self, failures: dict[int, str], where: str) -> None:
        self.failures = dict(failures)
        self.where = where
        ranks = ", ".join(f"rank {r}: {m}" for r, m in sorted(self.failures.items()))
        super().__init__(
            f"data-parallel training stopped at {where} on every rank because {ranks}; "
            "the network on every rank keeps the weights of the last step all ranks took"
        )


def _rank_and_size(comm: Any, rank: Any, size: Any) -> tuple[int, int]:
    if comm is not None:
        if rank is not None or size is not None:
            raise ValueError("comm, rank, size: give comm, or rank and size, not both")
        return int(comm.Get_rank()), int(comm.Get_size())
    if rank is None or size is None:
        raise ValueError("comm, rank, size: give comm (an mpi4py communicator), or rank and size")
    size = integer(size, "size", low=1)
    return integer(rank, "rank", low=0, high=size - 1), size


def shard_bounds(
    n: int, comm: Any = None, *, rank: int | None = None, size: int | None = None
) -> tuple[int, int]:
    """Rows [start, end) of `n` that `rank` of `size` ranks holds: contiguous blocks in rank
    order whose sizes differ by at most one (the later ranks get the extra rows).

    Give `comm` (an mpi4py communicator: its rank and size), or `rank` and `size`.
    """
    n = integer(n, "n", low=0)
    r, s = _rank_and_size(comm, rank, size)
    return n * r // s, n * (r + 1) // s


def shard(
    *arrays: A, comm: Any = None, rank: int | None = None, size: int | None = None
) -> tuple[A, ...]:
    """This rank's block of rows of each array (all the same length), by `shard_bounds`.

    Every rank calls it with the same full arrays and gets its own block; the blocks, in rank
    order, are the arrays. Slicing keeps NumPy arrays as views (no copy).
    """
    if not arrays:
        raise ValueError("arrays: give at least one array to shard")
    lengths = [len(a) for a in arrays]  # type: ignore[arg-type]
    if len(set(lengths)) != 1:
        raise ValueError(f"arrays: must all have the same number of rows, got {lengths}")
    start, end = shard_bounds(lengths[0], comm, rank=rank, size=size)
    return tuple(a[start:end] for a in arrays)  # type: ignore[index]

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

from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from bpcore._checks import integer

if TYPE_CHECKING:
    from bpcore.network import Network

__all__ = ["DistributedTrainingError", "epoch_order", "shard", "shard_bounds"]

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


def epoch_order(
    net: Network,
    shard_rows: list[int],
    batch_size: int,
    *,
    shuffle: bool = True,
    epochs: int = 1,
) -> list[list[np.ndarray]]:
    """The samples each step of `net`'s next `epochs` epochs takes in a data-parallel fit
    whose ranks hold shards of `shard_rows` samples (in rank order) and take `batch_size`
    each: one list per epoch, of one array per step, of indices into the whole data set (the
    shards one after another). `net` is not changed; its generator decides the shuffle.

    Step s takes rows s·batch_size.. of every shard, rank 0's first, so the ranks' shares are
    equal while the shards last; shuffled, each shard is permuted first (and each share then
    sorted). One process alone is a group of one shard. A plain ``net.fit(X[order],
    shuffle=False, batch_size=batch_size * len(shard_rows))`` on one epoch's order takes the
    same steps when every step but the last is full, as with `shard`'s blocks.

    Example:
        >>> import bpcore as bp
        >>> net = bp.Network([bp.Dense(2, 1)], loss="mse", seed=0)
        >>> [step.tolist() for step in bp.distributed.epoch_order(net, [3, 2], 2, shuffle=False)[0]]
        [[0, 1, 3, 4], [2]]
    """
    shards = [integer(rows, "shard_rows", low=0) for rows in shard_rows]
    if not shards:
        raise ValueError("shard_rows: give the size of at least one shard")
    batch = integer(batch_size, "batch_size", low=1)
    count = integer(epochs, "epochs", low=0)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle: must be True or False, got {type(shuffle).__name__}")
    order: list[list[np.ndarray]] = net.native.epoch_order(shards, batch, bool(shuffle), count)
    return order

"""The ranks of an MPI communicator training one network together: `Network.fit(..., comm=)`.

Every rank holds the same network and its own shard of the data, and runs the same native
epoch loop as a process alone: the core plans every step over all shards (network/batches.rs),
and between each step's gradients and its update calls this group's `reduce`, which sums the
step's one contiguous buffer over the ranks with one ``Allreduce`` (network/epoch.rs says why
the sum is the step one process would take).

No rank may leave the others waiting in a collective. So every piece of a rank's own work
between two collectives runs through `RankGroup.local`, which keeps the first exception
instead of raising it; the next collective carries a failure flag (a slot of the step buffer,
or the epoch's agreement), and on a failure every rank raises `DistributedTrainingError`
together. Ctrl-C is turned into such a failure too, so that a signal arriving while a rank is
inside a collective cannot make it skip the next one.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from bpcore import metrics as metric_functions
from bpcore.bpcore import TrainingDivergedError, epoch_steps
from bpcore.distributed import DistributedTrainingError
from bpcore.training_state import TrainingState

if TYPE_CHECKING:
    from bpcore.callbacks import Callback
    from bpcore.network import Network

R = TypeVar("R")


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:  # pragma: no cover - a comm implies mpi4py
        raise ImportError(
            'comm: data-parallel fit needs mpi4py; install it with pip install "bpcore[mpi]"'
        ) from e
    return MPI


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _pack_sums(sums: Mapping[str, Any], width: int) -> np.ndarray:
    """The core's metric sums (numbers, and lists of up to `width` per-column sums) as one
    vector to reduce, each list padded to `width`: whatever fields the core gives."""
    parts = []
    for value in sums.values():
        a = np.atleast_1d(np.asarray(value, dtype=np.float64))
        parts.append(a if np.ndim(value) == 0 else np.pad(a, (0, width - len(a))))
    return np.concatenate(parts)


def _unpack_sums(v: np.ndarray, like: Mapping[str, Any], width: int) -> dict[str, Any]:
    """The sums of `_pack_sums`'s vector `v`, with the fields of `like`."""
    out: dict[str, Any] = {}
    at = 0
    for key, value in like.items():
        if np.ndim(value) == 0:
            out[key] = float(v[at])
            at += 1
        else:
            out[key] = v[at : at + width]
            at += width
    out["rows"] = round(out["rows"])
    return out


class RankGroup:
    """One data-parallel `fit` call as seen from one rank of `comm`."""

    def __init__(self, comm: Any, net: Network) -> None:
        needed = ("Get_rank", "Get_size", "Allreduce", "allgather", "bcast", "Abort")
        missing = [name for name in needed if not callable(getattr(comm, name, None))]
        if missing:
            raise TypeError(
                f"comm: expected an mpi4py communicator such as MPI.COMM_WORLD, got "
                f"{type(comm).__name__} (without {', '.join(missing)})"
            )
        self.MPI = _mpi()
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self.net = net
        self.native = net.native
        self.failure: BaseException | None = None
        #: Whether the exception leaving fit was raised by every rank together (else the job
        #: is aborted, since the other ranks may wait for this one in a collective).
        self.agreed = False
        self._interrupted = False
        #: Rows of every rank's training shard, after `setup`.
        self.shard_rows: list[int] = []
        #: The epoch running, for the place a failure names.
        self._epoch = 0
        #: Every rank's training samples per class summed, after `setup` ("balanced" class
        #: weights; None otherwise).
        self.class_counts: np.ndarray | None = None

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0, the rank that shows progress and writes checkpoints."""
        return self.rank == 0

    # ----- failures --------------------------------------------------------------------

    def _failed(self) -> bool:
        """Whether this rank has failed: an exception kept, or a Ctrl-C (kept as one)."""
        if self._interrupted and self.failure is None:
            self.failure = KeyboardInterrupt("interrupted (Ctrl-C)")
        return self.failure is not None

    def local(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R | None:
        """This rank's own work: `fn(*args, **kwargs)`, or None if it raised (the exception is
        kept for the next collective) or an earlier piece already failed."""
        if self._failed():
            return None
        try:
            return fn(*args, **kwargs)
        except BaseException as e:  # every failure, Ctrl-C too, must reach the other ranks
            self.failure = e
            return None

    def _raise_failures(self, where: str) -> None:
        """Collective, after a reduction said some rank failed: every rank learns who and why,
        and raises."""
        mine = None if self.failure is None else _describe(self.failure)
        reports = self.comm.allgather(mine)
        failures = {r: m for r, m in enumerate(reports) if m is not None}
        error = DistributedTrainingError(failures, where)
        self.agreed = True
        if self.failure is not None:
            raise error from self.failure  # the cause carries this rank's traceback
        raise error

    def agree(self, where: str, stop: bool = False, lr: float | None = None) -> bool:
        """Collective: raises on every rank if any rank failed so far, or if the ranks' learning
        rates (`lr`, when given) differ; else returns whether any rank asked to stop."""
        rate = 0.0 if lr is None else lr
        # One reduction by MAX: "any" for the flags, and the largest and smallest rate.
        flags = np.array([self._failed(), bool(stop), rate, -rate], dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, flags, op=self.MPI.MAX)
        if flags[0] > 0:
            self._raise_failures(where)
        if flags[2] != -flags[3]:
            self.agreed = True
            raise ValueError(
                f"lr: the ranks' learning rates differ at {where} (from {-flags[3]:g} to "
                f"{flags[2]:g}), so their weights would drift apart: give every rank the same "
                "schedule and learning-rate callbacks"
            )
        return bool(flags[1] > 0)

    def abort(self, error: BaseException) -> None:
        """The last resort for an exception that escaped a rank outside `local`: the other
        ranks may be waiting for it in a collective, so the whole job is ended. Alone in its
        communicator a rank has no one to wait for it, and the exception is simply raised."""
        if self.size == 1:
            return
        sys.stderr.write(
            f"bpcore rank {self.rank}: {_describe(error)} escaped data-parallel fit outside a "
            "synchronized point; aborting every rank (MPI_Abort) so that none waits forever\n"
        )
        traceback.print_exception(type(error), error, error.__traceback__)
        sys.stderr.flush()
        self.comm.Abort(1)

    @contextmanager
    def catching_interrupts(self) -> Iterator[None]:
        """While training: Ctrl-C marks this rank failed, for every rank to stop together at the
        next collective, instead of raising at once; a second Ctrl-C raises."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.default_int_handler:
            yield  # someone else handles SIGINT; leave it to them
            return

        def interrupted(signum: int, frame: Any) -> None:
            if self._interrupted:
                # A second Ctrl-C, say while another rank hangs: raise at once; escaping fit
                # out of step with the others, it aborts the job.
                signal.default_int_handler(signum, frame)
            self._interrupted = True

        signal.signal(signal.SIGINT, interrupted)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    # ----- setup ----------------------------------------------------------------------

    def setup(
        self, facts: dict[str, Any], n_train: int, class_counts: np.ndarray | None = None
    ) -> None:
        """Collective, before anything changes: checks that every rank runs the same fit of the
        same network, then gives every rank rank 0's training state (parameters, buffers,
        optimizer, learning rate, epochs done, a loaded schedule's position), as Horovod's
        broadcast of the initial state. `class_counts` (this shard's samples per class, for
        "balanced" class weights) are summed over the ranks into `self.class_counts`.
        Raises the same ValueError on every rank when they disagree."""
        native = self.native
        network = json.loads(native.spec_json)
        # The learning rate is rank 0's from here on (broadcast below); a network loaded from a
        # checkpoint of a scheduled fit describes its optimizer with the rate it stopped at.
        network["optimizer"].pop("lr", None)
        mine = {"network": network, "dtype": self.net.dtype.name, **facts}
        reports = self.comm.allgather((mine, n_train, class_counts, self.failure is not None))
        if any(failed for *_, failed in reports):
            self._raise_failures("the start of fit")
        for key in mine:
            values = [report[key] for report, *_ in reports]
            if any(v != values[0] for v in values):
                differing = [r for r, v in enumerate(values) if v != values[0]]
                if key == "network":
                    what = "built another network (layers, loss, optimizer or seed) than rank 0"
                else:
                    what = f"have another {key} than rank 0's {values[0]!r}"
                self.agreed = True
                raise ValueError(
                    "comm: every rank must call fit on the same network with the same "
                    f"arguments, but {key} differs: ranks {differing} {what}"
                )
        self.shard_rows = [rows for _, rows, _, _ in reports]
        counts = [c for _, _, c, _ in reports]
        if all(c is not None for c in counts):
            self.class_counts = np.sum(counts, axis=0)
        self.broadcast_state()

    def check_epochs(self, batch_size: int, shuffle: bool, epochs: int) -> None:
        """Refuses, changing nothing, epochs whose steps the core could not take (batch norm
        meeting a share of one sample): the same plans, so the same answer, on every rank."""
        rows = self.shard_rows[self.rank]
        self.agreed = True
        self.native.check_epochs(
            rows, min(batch_size, self.samples), shuffle, epochs, (self.rank, self.shard_rows)
        )
        self.agreed = False

    def broadcast_state(self) -> None:
        """Collective: every rank takes rank 0's training state, the generator that plans the
        shuffled steps included."""
        native = self.native
        state = None
        if self.is_root:
            running, tracked = native.buffers()
            state = (native.params(), running, tracked, TrainingState.of(self.net))
        params, running, tracked, training = self.comm.bcast(state, root=0)
        if not self.is_root:
            native.set_params(params)
            native.set_buffers(running, tracked)
            training.restore(self.net)

    def broadcast_buffers(self) -> None:
        """Collective: batch norm's running statistics of rank 0 on every rank (each rank's
        moved with its own share of the batches), as torch's DistributedDataParallel."""
        running, tracked = self.native.buffers()
        if len(running) == 0:
            return
        self.comm.Bcast(running, root=0)
        self.comm.Bcast(tracked, root=0)
        self.native.set_buffers(running, tracked)

    # ----- one epoch ------------------------------------------------------------------

    @property
    def samples(self) -> int:
        """Training samples of every rank together, after `setup`."""
        return sum(self.shard_rows)

    def steps(self, batch_size: int, shuffle: bool) -> int:
        """Steps of an epoch of `batch_size` samples per rank, after `setup`, shuffled or not."""
        return epoch_steps(self.shard_rows, batch_size)

    def runs(self, callback: Callback) -> bool:
        """Whether this rank runs `callback`: rank 0 runs every callback, the others all but
        the rank-zero-only ones (checkpoints, progress, warnings)."""
        return self.is_root or not callback.rank_zero_only

    def reduce(self, step: int, buffer: memoryview, failure: BaseException | None) -> None:
        """The native loop's hook between a step's gradients and its update: sums `buffer`
        (`[gradients | loss | divisor | failures]`) over every rank in place; raises on every
        rank if any rank failed (its share, a callback at a progress tick, a Ctrl-C)."""
        values = np.frombuffer(buffer, dtype=self.net.dtype)
        if failure is not None and self.failure is None:
            self.failure = failure
        if self._failed():
            values.fill(0)
            values[-1] = 1
        self.comm.Allreduce(self.MPI.IN_PLACE, values, op=self.MPI.SUM)
        if values[-1] > 0:
            del values  # the buffer's view ends with this call
            self._failed()  # a Ctrl-C during the Allreduce is reported too
            self._raise_failures(f"epoch {self._epoch + 1}, batch {step + 1}")

    def fit_epoch(self, epoch: int, arguments: dict[str, Any]) -> dict[str, Any]:
        """One native epoch of this rank's shard, each step reduced over the ranks. Whatever
        it raises, every rank raises: checks of the plan that all ranks share, a divergence of
        the same sums, or a failure reported through `reduce`."""
        self._epoch = epoch
        ranks = (self.rank, self.shard_rows)
        try:
            result = self.native.fit_epoch(**arguments, ranks=ranks, reduce=self.reduce)
        except (ValueError, TrainingDivergedError, DistributedTrainingError):
            self.agreed = True
            raise
        self.broadcast_buffers()
        return cast("dict[str, Any]", result)

    def end_epoch(
        self,
        result: dict[str, Any],
        names: Sequence[str],
        validation: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """(training metric sums, validation logs) of the epoch over every rank."""
        return self.reduce_epoch(result, names, validation, self._epoch)

    def reduce_epoch(
        self,
        result: dict[str, Any],
        names: Sequence[str],
        validation: tuple[np.ndarray, np.ndarray] | None,
        epoch: int,
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """Collective: the epoch's training metric sums and validation values over all ranks.
        Returns (training metric sums, validation logs)."""
        net, loss = self.net, self.net.loss_function
        width = net.n_outputs
        like = result["metric_sums"]  # the core's fields, the same on every rank
        size = len(_pack_sums(like, width))

        def local_sums() -> np.ndarray:
            train = _pack_sums(like, width)
            if validation is None:
                return np.concatenate([train, [0.0, 0.0], np.zeros(size)])
            x_val, t_val = validation
            if not len(x_val):
                return np.concatenate([train, [0.0, 0.0], np.zeros(size)])
            val_loss = float(self.native.loss(x_val, t_val))
            val = _pack_sums(self.native.metric_sums(x_val, t_val), width)
            return np.concatenate([train, [val_loss * len(x_val), float(len(x_val))], val])

        sums = self.local(local_sums)
        packed = np.zeros(2 * size + 3)
        if sums is not None:
            packed[:-1] = sums
        else:
            packed[-1] = 1
        self.comm.Allreduce(self.MPI.IN_PLACE, packed, op=self.MPI.SUM)
        if packed[-1] > 0:
            self._raise_failures(f"the end of epoch {epoch + 1}")
        train = _unpack_sums(packed[:size], like, width)
        logs: dict[str, float] = {}
        if validation is not None:
            rows = packed[size + 1]
            logs["val_loss"] = float(packed[size] / rows) if rows else float("nan")
            if names:
                val_sums = _unpack_sums(packed[size + 2 : 2 * size + 2], like, width)
                val = metric_functions.from_sums(names, val_sums, loss, width)
                logs.update({f"val_{m}": v for m, v in val.items()})
        return train, logs

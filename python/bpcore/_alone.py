"""The group of a process that trains alone: what `bpcore.training` asks of a group of
processes, done locally. `bpcore._data_parallel.RankGroup` is the other group, the ranks of an
MPI communicator; the fit driver is the same for both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from bpcore import metrics as metric_functions
from bpcore.bpcore import epoch_steps

if TYPE_CHECKING:
    from bpcore.callbacks import Callback
    from bpcore.network import Network

R = TypeVar("R")


class Alone:
    """One process, training on its own: every collective is local and immediate."""

    is_root = True
    #: Whether an exception leaving fit was raised by every process together: trivially so.
    agreed = True

    def __init__(self, net: Network, samples: int) -> None:
        self.net = net
        #: Training samples of the fit (over every process).
        self.samples = samples

    def steps(self, batch_size: int, shuffle: bool) -> int:
        """Steps of an epoch, shuffled or not."""
        return epoch_steps([self.samples], batch_size)

    def check_epochs(self, batch_size: int, shuffle: bool, epochs: int) -> None:
        """Refuses, changing nothing, epochs whose steps the core could not take (batch norm
        meeting a batch of one sample)."""
        self.net.native.check_epochs(self.samples, min(batch_size, self.samples), shuffle, epochs)

    def runs(self, callback: Callback) -> bool:
        """Whether this process runs `callback` (every callback, alone)."""
        return True

    def local(self, fn: Callable[..., R], *args: Any) -> R | None:
        """This process's own work: simply `fn(*args)`."""
        return fn(*args)

    def agree(self, where: str, stop: bool = False, lr: float | None = None) -> bool:
        """Whether to stop: this process's own wish."""
        return stop

    def fit_epoch(self, epoch: int, arguments: dict[str, Any]) -> dict[str, Any]:
        """One native epoch on this process's data (`arguments` as `NativeNetwork.fit_epoch`
        takes them)."""
        result = self.net.native.fit_epoch(**arguments)
        return cast("dict[str, Any]", result)

    def end_epoch(
        self,
        result: dict[str, Any],
        names: Sequence[str],
        validation: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """(training metric sums, validation logs) of the epoch."""
        logs: dict[str, float] = {}
        if validation is not None:
            x_val, t_val = validation
            native = self.net.native
            logs["val_loss"] = float(native.loss(x_val, t_val))
            if names:
                val = metric_functions.values(names, self.net, x_val, t_val)
                logs.update({f"val_{m}": v for m, v in val.items()})
        return result["metric_sums"], logs

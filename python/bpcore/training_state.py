"""Where a network's training stands, in one place: what a checkpoint saves besides the weights
and buffers, and what a data-parallel fit gives every rank from rank 0, so that training resumes
exactly where it stopped.

Most of it lives in the core (the optimizer's steps and moments, the learning rate, the
generator that shuffles, the count of training forwards that keys dropout masks, the clipping
norm); `FitProgress` is the part the Python driver keeps (epochs done, the schedule's
position). `TrainingState.of(net)` reads all of it and `restore(net)` puts it back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bpcore.network import Network

#: The most epochs a network counts (a file's limit): the count stays there, so that what a
#: fit leaves, a file holds.
MAX_EPOCHS_DONE = 2**64 - 1


@dataclass
class FitProgress:
    """What the fit driver keeps of a network's training across fit calls."""

    #: Epochs `fit` has completed, across calls.
    epochs_done: int = 0
    #: The position (`Schedule.state()`) of the schedule of the last scheduled fit.
    schedule: dict[str, Any] | None = None
    #: A position loaded from a file, for the next fit's equal schedule to continue; forgotten
    #: once a fit has begun.
    schedule_to_resume: dict[str, Any] | None = None

    def count_epoch(self) -> None:
        """One more epoch done (saturating)."""
        self.epochs_done = min(self.epochs_done + 1, MAX_EPOCHS_DONE)


@dataclass
class TrainingState:
    """A network's whole resumable training state except its parameters and buffers."""

    optimizer_steps: int
    #: The optimizer's state buffers by the names the core gives them, in the core's order.
    optimizer_state: dict[str, np.ndarray]
    lr: float
    rng_state: list[int]
    training_forwards: int
    clip_grad_norm: float | None
    fit_progress: FitProgress = field(default_factory=FitProgress)

    @classmethod
    def of(cls, net: Network) -> TrainingState:
        """`net`'s training state now (copies, so later training does not change it)."""
        native = net.native
        steps, buffers = native.optimizer_state()
        names = list(native.optimizer_state_names())
        return cls(
            optimizer_steps=int(steps),
            optimizer_state={name: np.array(b) for name, b in zip(names, buffers)},
            lr=float(native.lr),
            rng_state=[int(w) for w in native.rng_state()],
            training_forwards=int(native.training_forwards),
            clip_grad_norm=native.clip_grad_norm,
            fit_progress=copy.deepcopy(net.fit_progress),
        )

    def restore(self, net: Network) -> None:
        """Gives `net` this state (its optimizer's buffers must have the names saved here)."""
        native = net.native
        native.load_optimizer_state(self.optimizer_steps, list(self.optimizer_state.values()))
        native.lr = self.lr
        native.set_rng_state(self.rng_state)
        native.training_forwards = self.training_forwards
        native.clip_grad_norm = self.clip_grad_norm
        net.fit_progress = copy.deepcopy(self.fit_progress)

    def to_metadata(self) -> dict[str, Any]:
        """The state's numbers as a file's JSON ``training_state`` holds them (the buffers are
        tensors of their own, named in ``optimizer_state``)."""
        return {
            "optimizer_steps": self.optimizer_steps,
            "optimizer_state": list(self.optimizer_state),
            "lr": self.lr,
            "rng_state": self.rng_state,
            "training_forwards": self.training_forwards,
            "epochs_done": self.fit_progress.epochs_done,
            "clip_grad_norm": self.clip_grad_norm,
            "schedule": self.fit_progress.schedule,
        }

    @classmethod
    def from_metadata(cls, state: dict[str, Any], buffers: dict[str, np.ndarray]) -> TrainingState:
        """The state a file's checked ``training_state`` and optimizer tensors describe. A
        loaded schedule position is one for the next fit to resume."""
        schedule = state.get("schedule")
        return cls(
            optimizer_steps=int(state["optimizer_steps"]),
            optimizer_state=buffers,
            lr=float(state["lr"]),
            rng_state=[int(w) for w in state["rng_state"]],
            training_forwards=int(state["training_forwards"]),
            clip_grad_norm=state["clip_grad_norm"],
            fit_progress=FitProgress(int(state["epochs_done"]), schedule, schedule),
        )

"""Learning-rate schedules stepped once per epoch, with torch.optim.lr_scheduler's formulas.

A schedule is given to `Network.fit(..., schedule=...)`. When fit first uses it, it takes the
network's current learning rate as its `base_lr`; after every epoch fit calls `step(lr)` with
the learning rate in force and sets the network's learning rate to what it returns — as
`scheduler.step()` at the end of every epoch of a torch training loop. So the learning rate of
epoch e (0-based, counting across repeated fit calls) is torch's after e calls of `step()`.

The updates use torch's *recursive* (chainable) forms, so the values agree with torch's to the
last bits (~1e-15 relative) and a ReduceLROnPlateau acting on the same network composes as it
does in torch. A schedule keeps its position: give each network its own.

A network saved with its optimizer state during a scheduled fit (`ModelCheckpoint(...,
include_optimizer=True)`) keeps the schedule's position too: the next fit of the loaded network
with an equal new schedule (same class and arguments) continues it where it stopped, instead
of starting over from the loaded learning rate.

Example:
    >>> import bpcore as bp
    >>> bp.StepLR(step_size=2, gamma=0.5).values(1.0, 5)
    [1.0, 1.0, 0.5, 0.5, 0.25]
"""

from __future__ import annotations

import math
from typing import Any

from bpcore._checks import positive_int, real

#: Largest `last_epoch`: stepping saturates there, below what a saved file may hold (2**63).
MAX_LAST_EPOCH = 2**63 - 1


class Schedule:
    """Base of the per-epoch learning-rate schedules.

    Attributes:
        base_lr: the learning rate when the schedule started (None before `start`).
        last_epoch: how many times `step` has been called since `start`.
    """

    def __init__(self) -> None:
        self.base_lr: float | None = None
        self.last_epoch: int = 0

    @property
    def started(self) -> bool:
        """Whether the schedule has taken its base learning rate."""
        return self.base_lr is not None

    def start(self, lr: float) -> None:
        """Takes `lr` as the base learning rate and goes back to epoch 0."""
        self.base_lr = real(lr, "lr", low=0.0)
        self.last_epoch = 0

    def state(self) -> dict[str, Any]:
        """Where the schedule stands, as a checkpoint keeps it: its description (`repr`), its
        `base_lr` and `last_epoch`."""
        return {"schedule": repr(self), "base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def resume(self, state: dict[str, Any]) -> None:
        """Goes to the position `state` (from `state()` of an equal schedule) describes."""
        if state.get("schedule") != repr(self):
            raise ValueError(f"state: describes {state.get('schedule')!r}, not {self!r}")
        self.base_lr = real(state["base_lr"], "base_lr", low=0.0)
        self.last_epoch = int(state["last_epoch"])

    def step(self, lr: float) -> float:
        """Advances one epoch; returns the learning rate of the next epoch given the current one."""
        if self.base_lr is None:
            self.start(lr)
        self.last_epoch = min(self.last_epoch + 1, MAX_LAST_EPOCH)
        return float(self._next(float(lr)))

    def _next(self, lr: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def values(self, lr: float, epochs: int) -> list[float]:
        """The learning rates of epochs 0..epochs-1 from base `lr`, without changing this
        schedule (a fresh copy runs them)."""
        epochs = positive_int(epochs, "epochs")
        copy = self._fresh()
        copy.start(lr)
        current = float(lr)
        out = [current]
        for _ in range(epochs - 1):
            current = copy.step(current)
            out.append(current)
        return out

    def _fresh(self) -> Schedule:  # pragma: no cover - abstract
        raise NotImplementedError


class StepLR(Schedule):
    """Multiplies the learning rate by `gamma` every `step_size` epochs (torch's StepLR):
    lr_e = base_lr · gamma^(e // step_size)."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        super().__init__()
        self.step_size = positive_int(step_size, "step_size")
        self.gamma = real(gamma, "gamma", low=0.0, low_open=True)

    def _next(self, lr: float) -> float:
        if self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma

    def _fresh(self) -> StepLR:
        return StepLR(self.step_size, self.gamma)

    def __repr__(self) -> str:
        return f"StepLR(step_size={self.step_size}, gamma={self.gamma})"


class ExponentialLR(Schedule):
    """Multiplies the learning rate by `gamma` every epoch (torch's ExponentialLR):
    lr_e = base_lr · gamma^e."""

    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = real(gamma, "gamma", low=0.0, low_open=True)

    def _next(self, lr: float) -> float:
        return lr * self.gamma

    def _fresh(self) -> ExponentialLR:
        return ExponentialLR(self.gamma)

    def __repr__(self) -> str:
        return f"ExponentialLR(gamma={self.gamma})"


class CosineAnnealingLR(Schedule):
    """Cosine annealing from base_lr down to `eta_min` over `T_max` epochs, then back up
    (torch's CosineAnnealingLR, without restarts):
    lr_e ≈ eta_min + (base_lr - eta_min) · (1 + cos(π e / T_max)) / 2,
    computed with torch's recursive update so the values are torch's bit for bit.

    Example:
        >>> import bpcore as bp
        >>> [round(lr, 3) for lr in bp.CosineAnnealingLR(T_max=4).values(0.1, 6)]
        [0.1, 0.085, 0.05, 0.015, 0.0, 0.015]
    """

    def __init__(self, T_max: int, eta_min: float = 0.0) -> None:
        super().__init__()
        self.T_max = positive_int(T_max, "T_max")
        self.eta_min = real(eta_min, "eta_min", low=0.0)

    def _next(self, lr: float) -> float:
        e, t = self.last_epoch, self.T_max
        base = self.base_lr if self.base_lr is not None else lr
        if (e - 1 - t) % (2 * t) == 0:
            # The trough: the recursive ratio below would divide by 1 + cos(π) = 0.
            return lr + (base - self.eta_min) * (1 - math.cos(math.pi / t)) / 2
        return (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t)) * (
            lr - self.eta_min
        ) + self.eta_min

    def _fresh(self) -> CosineAnnealingLR:
        return CosineAnnealingLR(self.T_max, self.eta_min)

    def __repr__(self) -> str:
        return f"CosineAnnealingLR(T_max={self.T_max}, eta_min={self.eta_min})"

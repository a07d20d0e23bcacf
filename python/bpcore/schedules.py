"""Learning-rate schedules with torch.optim.lr_scheduler's formulas, stepped once per epoch or
once per step (batch).

A schedule is given to `Network.fit(..., schedule=...)`. When fit first uses it, it takes the
network's current learning rate as its `base_lr` (and sets the first rate, which is not the
base for `LinearLR` or `OneCycleLR`). With ``interval="epoch"`` (StepLR, ExponentialLR and
CosineAnnealingLR by default), after every epoch fit calls `step(lr)` with the learning rate in
force and sets the network's learning rate to what it returns — as `scheduler.step()` at the
end of every epoch of a torch training loop. So the learning rate of epoch e (0-based, counting
across repeated fit calls) is torch's after e calls of `step()`. With ``interval="step"``
(LinearLR, OneCycleLR and SequentialLR by default), the schedule is stepped after every batch,
as `scheduler.step()` after each `optimizer.step()`: fit works out the rates of an epoch's
steps before the epoch and the native loop takes them one per step, with no Python call
between batches.

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

import bisect
import math
from collections.abc import Sequence
from typing import Any

from bpcore._checks import positive_int, real

#: Largest `last_epoch`: stepping saturates there, below what a saved file may hold (2**63).
MAX_LAST_EPOCH = 2**63 - 1


#: When a schedule steps.
INTERVALS = ("epoch", "step")


class Schedule:
    """Base of the learning-rate schedules.

    Attributes:
        base_lr: the learning rate when the schedule started (None before `start`).
        last_epoch: how many times `step` has been called since `start` (torch's name: epochs
            or steps, as `interval` says).
        interval: "epoch" or "step": when fit steps the schedule.
    """

    #: The interval of a schedule made without one.
    default_interval = "epoch"

    def __init__(self, interval: str | None = None) -> None:
        self.base_lr: float | None = None
        self.last_epoch: int = 0
        chosen = self.default_interval if interval is None else interval
        if chosen not in INTERVALS:
            raise ValueError(f"interval: expected 'epoch' or 'step', got {interval!r}")
        self.interval = chosen

    def _interval_repr(self) -> str:
        """The `interval` argument for `repr`, only when it is not the default (so that the
        descriptions saved before intervals existed still match)."""
        return "" if self.interval == self.default_interval else f", interval={self.interval!r}"

    def initial_lr(self) -> float:
        """The learning rate of the first epoch or step, once started (torch's lr after
        constructing the scheduler): the base, but for LinearLR and OneCycleLR."""
        if self.base_lr is None:
            raise ValueError("schedule: not started")
        return self._initial(self.base_lr)

    def _initial(self, base: float) -> float:
        return base

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
        """The learning rates of epochs (or steps) 0..epochs-1 from base `lr`, without changing
        this schedule (a fresh copy runs them)."""
        epochs = positive_int(epochs, "epochs")
        copy = self._fresh()
        copy.start(lr)
        current = copy.initial_lr()
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

    def __init__(self, step_size: int, gamma: float = 0.1, interval: str | None = None) -> None:
        super().__init__(interval)
        self.step_size = positive_int(step_size, "step_size")
        self.gamma = real(gamma, "gamma", low=0.0, low_open=True)

    def _next(self, lr: float) -> float:
        if self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma

    def _fresh(self) -> StepLR:
        return StepLR(self.step_size, self.gamma, self.interval)

    def __repr__(self) -> str:
        return f"StepLR(step_size={self.step_size}, gamma={self.gamma}{self._interval_repr()})"


class ExponentialLR(Schedule):
    """Multiplies the learning rate by `gamma` every epoch (torch's ExponentialLR):
    lr_e = base_lr · gamma^e."""

    def __init__(self, gamma: float, interval: str | None = None) -> None:
        super().__init__(interval)
        self.gamma = real(gamma, "gamma", low=0.0, low_open=True)

    def _next(self, lr: float) -> float:
        return lr * self.gamma

    def _fresh(self) -> ExponentialLR:
        return ExponentialLR(self.gamma, self.interval)

    def __repr__(self) -> str:
        return f"ExponentialLR(gamma={self.gamma}{self._interval_repr()})"


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

    def __init__(self, T_max: int, eta_min: float = 0.0, interval: str | None = None) -> None:
        super().__init__(interval)
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
        return CosineAnnealingLR(self.T_max, self.eta_min, self.interval)

    def __repr__(self) -> str:
        return (
            f"CosineAnnealingLR(T_max={self.T_max}, eta_min={self.eta_min}{self._interval_repr()})"
        )


class LinearLR(Schedule):
    """Multiplies the base learning rate by a factor going linearly from `start_factor` to
    `end_factor` over `total_iters` steps, then keeps it (torch's LinearLR): a warm-up.
    Stepped per batch unless ``interval="epoch"``.

    Example:
        >>> import bpcore as bp
        >>> [round(lr, 4) for lr in bp.LinearLR(start_factor=0.25, total_iters=3).values(0.1, 5)]
        [0.025, 0.05, 0.075, 0.1, 0.1]
    """

    default_interval = "step"

    def __init__(
        self,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        interval: str | None = None,
    ) -> None:
        super().__init__(interval)
        self.start_factor = real(start_factor, "start_factor", low=0.0, high=1.0, low_open=True)
        self.end_factor = real(end_factor, "end_factor", low=0.0, high=1.0)
        self.total_iters = positive_int(total_iters, "total_iters")

    def _initial(self, base: float) -> float:
        return base * self.start_factor

    def _next(self, lr: float) -> float:
        e = self.last_epoch
        if e > self.total_iters:
            return lr
        change = self.end_factor - self.start_factor
        return lr * (1.0 + change / (self.total_iters * self.start_factor + (e - 1) * change))

    def _fresh(self) -> LinearLR:
        return LinearLR(self.start_factor, self.end_factor, self.total_iters, self.interval)

    def __repr__(self) -> str:
        return (
            f"LinearLR(start_factor={self.start_factor}, end_factor={self.end_factor}, "
            f"total_iters={self.total_iters}{self._interval_repr()})"
        )


class OneCycleLR(Schedule):
    """The 1cycle policy (torch's OneCycleLR with ``cycle_momentum=False``): from
    max_lr / div_factor up to `max_lr` over the first `pct_start` of `total_steps`, then down to
    max_lr / div_factor / final_div_factor, by cosine ("cos") or linear annealing; with
    `three_phase`, back to the start before the final descent. It sets the learning rate itself
    (the network's is ignored) and cycles no momentum. Stepped per batch unless
    ``interval="epoch"``; a fit that would step it past `total_steps` is refused before it
    starts.

    Example:
        >>> import bpcore as bp
        >>> [round(lr, 3) for lr in bp.OneCycleLR(max_lr=1.0, total_steps=5).values(0.1, 5)]
        [0.04, 0.95, 0.611, 0.188, 0.0]
    """

    default_interval = "step"

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        interval: str | None = None,
    ) -> None:
        super().__init__(interval)
        self.max_lr = real(max_lr, "max_lr", low=0.0)
        self.total_steps = positive_int(total_steps, "total_steps")
        self.pct_start = real(pct_start, "pct_start", low=0.0, high=1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy: expected 'cos' or 'linear', got {anneal_strategy!r}"
            )
        self.anneal_strategy = anneal_strategy
        self.div_factor = real(div_factor, "div_factor", low=0.0, low_open=True)
        self.final_div_factor = real(final_div_factor, "final_div_factor", low=0.0, low_open=True)
        if not isinstance(three_phase, bool):
            raise TypeError(f"three_phase: expected True or False, got {three_phase!r}")
        self.three_phase = three_phase
        initial = self.max_lr / self.div_factor
        low = initial / self.final_div_factor
        up = float(self.pct_start * self.total_steps) - 1
        if three_phase:
            self._phases = [
                (up, initial, self.max_lr),
                (float(2 * self.pct_start * self.total_steps) - 2, self.max_lr, initial),
                (self.total_steps - 1.0, initial, low),
            ]
        else:
            self._phases = [(up, initial, self.max_lr), (self.total_steps - 1.0, self.max_lr, low)]

    def steps_left(self) -> int:
        """How many more times the schedule may be stepped (torch's: `total_steps` in all)."""
        return self.total_steps - self.last_epoch

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _at(self, step: int) -> float:
        start_step = 0.0
        for i, (end_step, start_lr, end_lr) in enumerate(self._phases):
            if step <= end_step or i == len(self._phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                return self._anneal(start_lr, end_lr, pct)
            start_step = end_step
        raise AssertionError("unreachable: the last phase always answers")

    def _initial(self, base: float) -> float:
        return self._at(0)

    def _next(self, lr: float) -> float:
        if self.last_epoch > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped {self.last_epoch} times, past total_steps={self.total_steps}"
            )
        return self._at(self.last_epoch)

    def _fresh(self) -> OneCycleLR:
        return OneCycleLR(
            self.max_lr,
            self.total_steps,
            self.pct_start,
            self.anneal_strategy,
            self.div_factor,
            self.final_div_factor,
            self.three_phase,
            self.interval,
        )

    def __repr__(self) -> str:
        return (
            f"OneCycleLR(max_lr={self.max_lr}, total_steps={self.total_steps}, "
            f"pct_start={self.pct_start}, anneal_strategy={self.anneal_strategy!r}, "
            f"div_factor={self.div_factor}, final_div_factor={self.final_div_factor}, "
            f"three_phase={self.three_phase}{self._interval_repr()})"
        )


class SequentialLR(Schedule):
    """One schedule after another (torch's SequentialLR): `schedules[i]` runs from
    `milestones[i-1]` (restarted there from the base learning rate) until `milestones[i]`.
    Cosine annealing with a linear warm-up of w steps:
    ``SequentialLR([LinearLR(0.01, total_iters=w), CosineAnnealingLR(T_max=n - w)], [w])``.
    Every schedule must step at the same interval (steps unless they say otherwise).

    Example:
        >>> import bpcore as bp
        >>> warm = bp.SequentialLR([bp.LinearLR(0.5, total_iters=2), bp.ExponentialLR(0.5,
        ...     interval="step")], milestones=[2])
        >>> warm.values(1.0, 5)
        [0.5, 0.75, 1.0, 0.5, 0.25]
    """

    default_interval = "step"

    def __init__(self, schedules: Sequence[Schedule], milestones: Sequence[int]) -> None:
        if not isinstance(schedules, Sequence) or not schedules:
            raise ValueError("schedules: give at least one schedule")
        for i, child in enumerate(schedules):
            if not isinstance(child, Schedule) or isinstance(child, SequentialLR):
                raise TypeError(f"schedules[{i}]: expected a bpcore schedule, got {child!r}")
        intervals = {child.interval for child in schedules}
        if len(intervals) != 1:
            raise ValueError(f"schedules: must all step at one interval, got {sorted(intervals)}")
        super().__init__(intervals.pop())
        if len(milestones) != len(schedules) - 1:
            raise ValueError(
                f"milestones: expected {len(schedules) - 1} (one fewer than the schedules), "
                f"got {len(milestones)}"
            )
        self.milestones = [positive_int(m, "milestones") for m in milestones]
        if self.milestones != sorted(self.milestones):
            raise ValueError(f"milestones: must increase, got {self.milestones}")
        self.schedules = [child._fresh() for child in schedules]

    def start(self, lr: float) -> None:
        super().start(lr)
        for child in self.schedules:
            child.start(lr)

    def _initial(self, base: float) -> float:
        return self.schedules[0].initial_lr()

    def resume(self, state: dict[str, Any]) -> None:
        """Goes to the position `state` describes, by replaying the steps from the base."""
        super().resume(state)
        target, base = self.last_epoch, self.base_lr
        assert base is not None  # resume set it
        self.start(base)
        lr = self.initial_lr()
        for _ in range(target):
            lr = self.step(lr)

    def _next(self, lr: float) -> float:
        index = bisect.bisect_right(self.milestones, self.last_epoch)
        child = self.schedules[index]
        if index > 0 and self.milestones[index - 1] == self.last_epoch:
            assert child.base_lr is not None  # started with this schedule
            child.start(child.base_lr)
            return child.initial_lr()
        return child.step(lr)

    def _fresh(self) -> SequentialLR:
        return SequentialLR(self.schedules, self.milestones)

    def __repr__(self) -> str:
        return f"SequentialLR({self.schedules!r}, milestones={self.milestones})"

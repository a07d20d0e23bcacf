"""Callbacks: code that `Network.fit` calls at fixed points of training, as Keras's.

The protocol — subclass `Callback` and override any of:

- ``on_train_begin(logs)``: once, before the first epoch. ``logs`` holds ``"epochs"``,
  ``"batch_size"``, ``"samples"`` (training samples), ``"steps"`` (optimizer steps per epoch)
  and ``"log_keys"`` (the names every
  epoch's logs will have, e.g. ``["loss", "accuracy", "val_loss", "val_accuracy", "lr",
  "time"]``).
- ``on_epoch_begin(epoch, logs)``: before each epoch; ``logs`` is ``{"lr": current lr}``.
- ``on_batch_end(batch, logs)``: while an epoch runs. Batches run in Rust with the GIL
  released, so this is **not** called after every batch: it is called at the progress ticks,
  about every 0.2 s, with ``batch`` = batches done so far in the epoch and ``logs`` =
  ``{"loss": mean training loss so far, "samples": samples done, "batches": batches done}``.
  An epoch shorter than a tick may call it not at all.
- ``on_epoch_end(epoch, logs)``: after each epoch; ``logs`` has that epoch's values (the
  ``log_keys``). Returning ``True`` — or setting ``self.network.stop_training = True``, here or
  in any other hook — stops training after this epoch. Callbacks run in list order and see the
  same ``logs`` dict: a change made by one is seen by the next and recorded in the History.
  A fit's ``schedule`` has already been stepped: the network's learning rate is the next
  epoch's (``logs["lr"]`` is this epoch's).
- ``on_train_end(logs)``: once, after the last epoch (also after an early stop); ``logs`` are the
  last epoch's.

``epoch`` is the 0-based index of the epoch, counting across repeated `fit` calls on one
network (Keras's convention); the History's ``epoch`` list and messages count from 1.
`fit` calls ``set_network(net)`` on every callback before ``on_train_begin``.

A ``monitor`` (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint) may be any key of the epoch
logs: "loss", any metric of fit's ``metrics`` (names or functions) and, with validation, its
``val_`` twin. One that is not among the logs' keys raises
ValueError naming it and the available keys — at ``on_train_begin``, before any training, so a
typo or a ``"val_loss"`` without validation data never silently disables the callback.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from bpcore._checks import integer, real
from bpcore.metrics import greater_is_better
from bpcore.optimizers import learning_rate

if TYPE_CHECKING:
    from bpcore.network import Network

Logs = dict[str, Any]


class Callback:
    """Base of all callbacks; every hook does nothing. See the module's docstring."""

    #: In a data-parallel fit (``comm=``), whether only rank 0 runs this callback: true for
    #: callbacks with effects outside the network, such as writing files. The others run on
    #: every rank with the same reduced logs, so that their decisions agree.
    rank_zero_only: bool = False

    def __init__(self) -> None:
        self.network: Network | None = None

    def set_network(self, network: Network) -> None:
        """Gives the callback the network being trained (called by fit)."""
        self.network = network

    @property
    def model(self) -> Network | None:
        """The network being trained, by Keras's name for it: the same as `network`."""
        return self.network

    def set_model(self, model: Network) -> None:
        """Keras's name for `set_network`."""
        self.set_network(model)

    def on_train_begin(self, logs: Logs) -> None:
        """Called once before the first epoch."""

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        """Called before each epoch (0-based `epoch`)."""

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        """Called at the progress ticks (about every 0.2 s), not after every batch."""

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        """Called after each epoch; return True to stop training."""
        return None

    def on_train_end(self, logs: Logs) -> None:
        """Called once after the last epoch."""


def _set_lr(network: Network, value: Any, who: str) -> None:
    """Sets the network's learning rate by the one rule (`optimizers.learning_rate`), or raises
    naming `who`."""
    network.lr = learning_rate(value, who)


def _resolve_mode(mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    # Unknown names are taken as losses (lower is better), as Keras's "auto" does.
    return "max" if greater_is_better(monitor) else "min"


class _Monitoring(Callback):
    """A callback that watches one value of the epoch logs."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a log name, got {type(monitor).__name__}")
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor)
        self.min_delta = abs(real(min_delta, "min_delta"))

    def _check_keys(self, keys: Any) -> None:
        if keys is not None and self.monitor not in keys:
            raise ValueError(
                f"{type(self).__name__}: monitor={self.monitor!r} is not in the training logs "
                f"{list(keys)}"
                + (
                    " (val_ values need validation_split or validation_data)"
                    if self.monitor.startswith("val_")
                    else ""
                )
            )

    def _current(self, logs: Logs) -> float:
        if self.monitor not in logs:
            self._check_keys(list(logs))
        return float(logs[self.monitor])

    def _better(self, current: float, best: float) -> bool:
        """Keras's rule: an improvement by more than min_delta."""
        if self.mode == "min":
            return current < best - self.min_delta
        return current > best + self.min_delta

    def _worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf


class EarlyStopping(_Monitoring):
    """Stops training when `monitor` has not improved for `patience` epochs (Keras's rule).

    An epoch improves when the value beats the best so far by more than `min_delta` (lower in
    mode "min", higher in "max"; "auto" takes "max" for the scores — accuracy, precision,
    recall, F1, ROC AUC, top-k accuracy, R², names ending in "_score" — else "min"). After
    `patience` epochs in a row without improvement, training stops. With
    `restore_best_weights`, the parameters of the best epoch are put back when training ends
    (whether it stopped early or not, as Keras 3).

    Attributes after training: `best` (the best value), `best_epoch` (its 0-based epoch),
    `stopped_epoch` (the 0-based epoch training stopped after, or None).

    Example:
        >>> import numpy as np, bpcore as bp
        >>> X = np.linspace(-1, 1, 64, dtype=np.float32).reshape(-1, 1)
        >>> net = bp.Network([bp.Dense(1, 1)], loss="mse", optimizer=bp.SGD(lr=0.01), seed=0)
        >>> stop = bp.EarlyStopping(monitor="loss", patience=2, min_delta=1.0)
        >>> history = net.fit(X, 2 * X, epochs=50, callbacks=[stop], progress=False)
        >>> len(history.epoch), stop.stopped_epoch  # no epoch after the first gains 1.0
        (3, 2)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience: int = integer(patience, "patience", low=0)
        if not isinstance(restore_best_weights, bool):
            raise TypeError("restore_best_weights: expected True or False")
        self.restore_best_weights: bool = restore_best_weights
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.best = self._worst()
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, np.ndarray] | None = None
        self.best_buffers: dict[str, np.ndarray] | None = None
        self._seen = 0

    def on_train_begin(self, logs: Logs) -> None:
        """Resets the state and checks that the monitor will be logged."""
        self._reset()
        self._check_keys(logs.get("log_keys"))

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        """Counts epochs without improvement; True (stop) when they reach `patience`."""
        current = self._current(logs)
        self._seen += 1
        self.wait += 1
        if self._better(current, self.best):
            self.best = current
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights and self.network is not None:
                self.best_weights = self.network.parameters()
                self.best_buffers = self.network.buffers()
            return None
        if self.wait >= self.patience and self._seen > 1:
            self.stopped_epoch = epoch
            return True
        return None

    def on_train_end(self, logs: Logs) -> None:
        """Restores the best epoch's parameters when asked to."""
        if self.restore_best_weights and self.best_weights is not None and self.network is not None:
            self.network.set_parameters(self.best_weights)
            if self.best_buffers:  # batch norm's running statistics belong to the weights too
                self.network.set_buffers(self.best_buffers)
            if self.best_epoch is not None:  # for the History, after this callback
                logs["restored_epoch"] = self.best_epoch + 1

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
            f"min_delta={self.min_delta}, mode={self.mode!r}, "
            f"restore_best_weights={self.restore_best_weights})"
        )


class ReduceLROnPlateau(_Monitoring):
    """Multiplies the learning rate by `factor` when `monitor` stops improving (Keras's rule).

    An epoch improves when the value beats the best so far by more than `min_delta`. After
    `patience` epochs in a row without improvement the learning rate becomes
    max(lr · factor, min_lr) (only if lr > min_lr), then `cooldown` epochs pass before
    epochs without improvement count again. With cooldown=0 this is torch's
    ReduceLROnPlateau(factor, patience=patience - 1, threshold=min_delta, threshold_mode="abs",
    min_lr=min_lr): torch reduces after *more than* its patience bad epochs, Keras after *as
    many as* its patience.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        mode: str = "auto",
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.factor = real(factor, "factor", low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience: int = integer(patience, "patience", low=0)
        self.cooldown = integer(cooldown, "cooldown", low=0)
        self.min_lr = real(min_lr, "min_lr", low=0.0)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.cooldown_counter = 0
        self.best = self._worst()

    def on_train_begin(self, logs: Logs) -> None:
        """Resets the state and checks that the monitor will be logged."""
        self._reset()
        self._check_keys(logs.get("log_keys"))

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        """Counts epochs without improvement and lowers the network's lr after `patience`."""
        current = self._current(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and self.network is not None:
                lr = self.network.lr
                if lr > self.min_lr:
                    _set_lr(self.network, max(lr * self.factor, self.min_lr), "ReduceLROnPlateau")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
        return None

    def __repr__(self) -> str:
        return (
            f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor}, "
            f"patience={self.patience}, min_delta={self.min_delta}, cooldown={self.cooldown}, "
            f"min_lr={self.min_lr}, mode={self.mode!r})"
        )


class LearningRateScheduler(Callback):
    """Sets the learning rate before each epoch to `schedule(epoch, lr)` or `schedule(epoch)`
    (Keras's callback, which takes either).

    `epoch` is the 0-based epoch index (counting across fit calls), `lr` the current learning
    rate; the function returns the new one (a finite number >= 0). Which form `schedule` has is
    read from its signature: one that can take two positional arguments gets both.

    Example:
        >>> import numpy as np, bpcore as bp
        >>> net = bp.Network([bp.Dense(1, 1)], loss="mse", seed=0)
        >>> halve = bp.LearningRateScheduler(lambda epoch: 0.1 * 0.5**epoch)
        >>> history = net.fit(np.ones((4, 1)), np.ones(4), epochs=3, callbacks=[halve])
        >>> history.history["lr"]
        [0.1, 0.05, 0.025]
    """

    def __init__(self, schedule: Callable[[int, float], float] | Callable[[int], float]) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                f"schedule: expected a function epoch -> lr or (epoch, lr) -> lr, got {schedule!r}"
            )
        self.schedule = schedule
        self._takes_lr = _takes_positional(schedule, 2)
        if not self._takes_lr and not _takes_positional(schedule, 1):
            raise TypeError(
                f"schedule: {schedule!r} takes neither (epoch) nor (epoch, lr); give a function "
                "epoch -> lr or (epoch, lr) -> lr"
            )

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        """Sets the network's learning rate for this epoch."""
        if self.network is None:
            return
        schedule: Callable[..., float] = self.schedule  # one of its two forms, as read
        value = schedule(epoch, self.network.lr) if self._takes_lr else schedule(epoch)
        _set_lr(self.network, value, "LearningRateScheduler")
        logs["lr"] = self.network.lr

    def __repr__(self) -> str:
        return f"LearningRateScheduler({self.schedule!r})"


def _takes_positional(function: Callable[..., Any], count: int) -> bool:
    """Whether `function` can be called with `count` positional arguments (True when its
    signature cannot be read, for two: Keras's form)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return count == 2
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


class ModelCheckpoint(_Monitoring):
    """Saves the network after epochs, as Keras's ModelCheckpoint, with `Network.save`.

    `filepath` may name the epoch and logged values, e.g. ``"model-{epoch:02d}-{val_loss:.3f}"``
    (epoch counted from 1). With `save_best_only`, a file is written only when `monitor`
    improves on the best so far (mode as `EarlyStopping`), so a fixed `filepath` always holds the
    best network. Saves are atomic: an interrupted save leaves the previous file intact. With
    `include_optimizer`, training can resume from the file exactly (`Network.load`).

    Attributes: `best` (the monitored value of the last saved epoch when saving the best only),
    `saved` (the paths written, in order).

    In a data-parallel fit only rank 0 saves (every rank holds the same network).
    """

    rank_zero_only = True

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
        include_optimizer: bool = False,
    ) -> None:
        super().__init__(monitor, mode, 0.0)
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath: expected a path, got {type(filepath).__name__}")
        for arg, value in (
            ("save_best_only", save_best_only),
            ("include_optimizer", include_optimizer),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{arg}: expected True or False, got {value!r}")
        self.filepath = os.fspath(filepath)
        self.save_best_only = save_best_only
        self.include_optimizer = include_optimizer
        self.best = self._worst()
        self.saved: list[str] = []

    def on_train_begin(self, logs: Logs) -> None:
        """Checks that the monitor will be logged when only the best is saved."""
        if self.save_best_only:
            self._check_keys(logs.get("log_keys"))

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        """Saves the network (when it improved, with `save_best_only`)."""
        if self.network is None:
            return None
        if self.save_best_only:
            current = self._current(logs)
            if not self._better(current, self.best):
                return None
            self.best = current
        values = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        try:
            path = self.filepath.format(epoch=epoch + 1, **values)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"filepath: cannot fill {self.filepath!r} from epoch and the logged values "
                f"{sorted(values)} ({e})"
            ) from None
        self.network.save(path, include_optimizer=self.include_optimizer)
        self.saved.append(path)
        return None

    def __repr__(self) -> str:
        return (
            f"ModelCheckpoint({self.filepath!r}, monitor={self.monitor!r}, "
            f"save_best_only={self.save_best_only}, mode={self.mode!r}, "
            f"include_optimizer={self.include_optimizer})"
        )

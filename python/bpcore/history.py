"""What `Network.fit` returns: per-epoch records of training, kept by a callback that `fit`
adds after the user's (as Keras's History), so that it records the logs as they left them."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from bpcore.callbacks import Callback, Logs
from bpcore.gradient_health import TensorStats


class History(Callback):
    """Per-epoch training records, as Keras's History, plus the gradients' health.

    Attributes:
        history: metric name -> list of per-epoch values: "loss" (mean training loss over the
            epoch's batches), each metric ("accuracy", "mae", "r2", computed on the training data
            in inference mode after the epoch), "val_loss" and "val_" + metric (with validation),
            "lr" (the learning rate used during the epoch) and "time" (seconds of the epoch).
        epoch: the epoch numbers, from 1, counting on across repeated `fit` calls on one network.
        grad_norms: parameter name -> per-epoch mean L2 norm of its gradient over the epoch's
            optimizer steps (vanishing or exploding gradients show here).
        update_ratios: parameter name -> per-epoch ‖Δp‖ / ‖p‖, how far the epoch moved the
            tensor relative to its size (~1e-3 per epoch is a healthy order of magnitude).
        restored_epoch: the epoch (from 1) whose weights the network holds after the fit when
            EarlyStopping(restore_best_weights=True) put them back, else None; `plot` marks it.
    """

    def __init__(self, tensors: TensorStats | None = None) -> None:
        super().__init__()
        self._tensors = tensors
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.grad_norms: dict[str, list[float]] = {}
        self.update_ratios: dict[str, list[float]] = {}
        self.restored_epoch: int | None = None

    def record(self, epoch: int, **values: float) -> None:
        """Appends one epoch's values."""
        self.epoch.append(epoch)
        for name, value in values.items():
            self.history.setdefault(name, []).append(float(value))

    def record_tensors(
        self, names: Sequence[str], grad_norms: Sequence[float], update_ratios: Sequence[float]
    ) -> None:
        """Appends one epoch's per-parameter gradient norms and update ratios."""
        for name, g, r in zip(names, grad_norms, update_ratios):
            self.grad_norms.setdefault(name, []).append(float(g))
            self.update_ratios.setdefault(name, []).append(float(r))

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        """Records the epoch's numeric logs and, in a fit, its per-tensor statistics."""
        numbers_only = {
            k: float(v)
            for k, v in logs.items()
            if isinstance(v, (numbers.Real, np.floating)) and not isinstance(v, bool)
        }
        self.record(epoch + 1, **numbers_only)
        if self._tensors is not None:
            t = self._tensors
            self.record_tensors(t.names, t.grad_norms, t.update_ratios)
        return None

    def on_train_end(self, logs: Logs) -> None:
        """Notes the epoch whose weights a callback restored (``logs["restored_epoch"]``)."""
        restored = logs.get("restored_epoch")
        if isinstance(restored, int):
            self.restored_epoch = restored

    def __getitem__(self, name: str) -> list[float]:
        return self.history[name]

    def plot(self, path: Any = None, show: bool = False) -> Any:
        """Draws loss and metrics (train and validation in distinct colours, the restored best
        epoch marked, the loss on a log scale when it spans decades) and the per-parameter
        gradient norms on a log scale; saves a PNG at `path` when given, shows the window when
        `show`; returns the matplotlib Figure. Needs matplotlib: ``pip install bpcore[plot]``."""
        from bpcore.plotting import plot_history

        return plot_history(self, path=path, show=show)

    def __repr__(self) -> str:
        keys = ", ".join(self.history)
        return f"History(epochs={len(self.epoch)}, metrics=[{keys}])"

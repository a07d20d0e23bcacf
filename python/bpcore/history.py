"""What `Network.fit` returns: per-epoch records of training."""

from __future__ import annotations


class History:
    """Per-epoch training records, as Keras's History.

    `history` maps a metric name ("loss", ...) to its list of per-epoch values; `epoch` lists
    the epoch numbers (counting on across repeated `fit` calls on one network).
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def record(self, epoch: int, **values: float) -> None:
        """Appends one epoch's values."""
        self.epoch.append(epoch)
        for name, value in values.items():
            self.history.setdefault(name, []).append(float(value))

    def __getitem__(self, name: str) -> list[float]:
        return self.history[name]

    def __repr__(self) -> str:
        keys = ", ".join(self.history)
        return f"History(epochs={len(self.epoch)}, metrics=[{keys}])"

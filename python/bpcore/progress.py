"""The progress bar of `Network.fit`: one bar per epoch over its batches, on stderr.

It shows the epoch, the batches done, the mean training loss so far and samples per second, and
at the end of the epoch that epoch's metrics and validation values. It uses tqdm when tqdm is
installed (``pip install bpcore[progress]``), else a minimal built-in bar that redraws one line
with ``\\r``.

The bar is fed by the native training loop's progress callback, which runs on the main thread
about every 0.2 s while an epoch runs in Rust — never once per batch — so drawing it costs
nothing measurable. ``progress=None`` (fit's default) shows it only when stderr is a terminal;
``False`` never, ``True`` always.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from bpcore.callbacks import Callback, Logs

try:  # tqdm is optional
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # pragma: no cover - depends on the environment
    _tqdm = None


def enabled(progress: Any) -> bool:
    """Whether fit shows a bar: `progress` True/False, or None for "stderr is a terminal"."""
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        try:
            return bool(isatty and isatty())
        except (ValueError, OSError):  # a closed or odd stream
            return False
    if not isinstance(progress, bool):
        raise TypeError(
            f"progress: expected True, False or None (auto), got {type(progress).__name__} "
            f"{progress!r}"
        )
    return progress


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class ProgressBar:
    """Per-epoch bars over batches. Call `epoch_begin`, `update` at ticks, `epoch_end`, `close`.

    Args:
        epochs: epochs this fit call runs (the bar says "epoch k/epochs").
        file: where to draw; the current sys.stderr by default.
        use_tqdm: use tqdm if installed (default) or always the built-in bar.
    """

    def __init__(self, epochs: int, file: TextIO | None = None, use_tqdm: bool = True) -> None:
        self.epochs = epochs
        self.file = file if file is not None else sys.stderr
        self.use_tqdm = use_tqdm and _tqdm is not None
        self._bar: Any = None
        self._total = 0
        self._start = 0.0
        self._desc = ""
        self._last_line = 0

    def epoch_begin(self, k: int, batches: int) -> None:
        """Starts the bar of the k-th epoch (1-based within this fit) of `batches` batches."""
        self._total = batches
        self._start = time.perf_counter()
        self._desc = f"epoch {k}/{self.epochs}"
        if self.use_tqdm:
            self._bar = _tqdm(
                total=batches,
                desc=self._desc,
                unit="batch",
                file=self.file,
                leave=True,
                dynamic_ncols=True,
            )
        else:
            self._draw(0, "")

    def _rate(self, samples: int) -> str:
        elapsed = time.perf_counter() - self._start
        return f"{samples / elapsed:,.0f} samples/s" if elapsed > 0 else ""

    def update(self, batches: int, samples: int, loss: float) -> None:
        """Moves the bar to `batches` done, showing the mean loss so far and the speed."""
        text = f"loss {_fmt(loss)}, {self._rate(samples)}"
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(max(0, batches - self._bar.n))
        else:
            self._draw(batches, text)

    def epoch_end(self, samples: int, logs: dict[str, Any]) -> None:
        """Completes the bar with the epoch's values (loss, metrics, validation)."""
        shown = ", ".join(
            f"{k} {_fmt(v)}" for k, v in logs.items() if k not in ("lr", "time") and _is_num(v)
        )
        text = f"{shown}, {self._rate(samples)}"
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(max(0, self._total - self._bar.n))
            self._bar.close()
            self._bar = None
        else:
            self._draw(self._total, text)
            self.file.write("\n")
            self.file.flush()

    def close(self) -> None:
        """Closes an unfinished bar (training stopped by an error or Ctrl-C)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif not self.use_tqdm and self._last_line:
            self.file.write("\n")
            self.file.flush()
            self._last_line = 0

    def _draw(self, done: int, text: str) -> None:
        width = 24
        filled = width * done // self._total if self._total else width
        line = f"{self._desc} [{'#' * filled}{'.' * (width - filled)}] {done}/{self._total}" + (
            f" {text}" if text else ""
        )
        pad = max(0, self._last_line - len(line))
        self.file.write("\r" + line + " " * pad)
        self.file.flush()
        self._last_line = len(line)
        if done == self._total:
            self._last_line = 0


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ProgressLogger(Callback):
    """The progress bar as a callback, which `fit` adds when it shows progress: a bar per epoch
    over its steps, fed at the progress ticks, completed with the epoch's logs."""

    rank_zero_only = True

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.bar = ProgressBar(epochs)
        self._epoch = 0
        self._samples = 0
        self._steps = 0

    def on_train_begin(self, logs: Logs) -> None:
        """Notes the steps and samples of each epoch (over every rank)."""
        self._samples = int(logs["samples"])
        self._steps = int(logs["steps"])

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        """Starts the epoch's bar."""
        self._epoch += 1
        self.bar.epoch_begin(self._epoch, self._steps)

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        """Moves the bar."""
        self.bar.update(int(logs["batches"]), int(logs["samples"]), float(logs["loss"]))

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        """Completes the bar with the epoch's values."""
        self.bar.epoch_end(self._samples, logs)
        return None

    def close(self) -> None:
        """Closes an unfinished bar (training stopped by an error or Ctrl-C)."""
        self.bar.close()

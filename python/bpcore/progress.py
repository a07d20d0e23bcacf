"""What `Network.fit` shows on stderr while it trains, by `verbose` as Keras's: 0 nothing, 1 a
progress bar per epoch, 2 one line per epoch; "auto" (the default) is 1 where someone watches
(stderr is a terminal, or the code runs in a Jupyter notebook) and 0 elsewhere.

The bar shows the epoch, the batches done, the mean training loss so far, the epoch's elapsed
time and ETA, and the samples per second; it is redrawn in place with ``\\r`` and never wider
than the terminal (80 columns when the width is unknown). It is tqdm's when tqdm is installed
(``pip install bpcore[progress]``; in a notebook with ipywidgets, tqdm's widget), else a small
built-in bar. Each finished epoch is then written as lines of ``name value`` items — the
epoch's time, the fit's ETA, the loss, metrics and validation values — wrapped between items,
never inside one, so that nothing is cut off. Where no one watches a redraw (verbose=1 into a
file or a pipe) only those finished lines are written: a log collects no ``\\r``.

The bar is fed by the native training loop's progress callback, which runs on the main thread
about every 0.2 s while an epoch runs in Rust — never once per batch — so drawing it costs
nothing measurable.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import Any, TextIO

from bpcore.callbacks import Callback, Logs

try:  # tqdm is optional
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # pragma: no cover - depends on the environment
    _tqdm = None

#: The width of a screen whose width is unknown (a notebook, a file).
DEFAULT_WIDTH = 80
#: Keras's `verbose` values besides "auto".
VERBOSE_LEVELS = (0, 1, 2)
#: The widest the built-in bar's "[###...]" part grows.
BAR_WIDTH = 24
#: What separates the items of a finished epoch's lines.
SEPARATOR = " - "
#: The indent of a finished epoch's continuation lines.
INDENT = "    "


def _in_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel (whose stderr is no terminal but is shown)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return shell is not None and hasattr(shell, "kernel")


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or odd stream
        return False


def watched(stream: Any = None) -> bool:
    """Whether someone watches `stream` (sys.stderr by default) redraw: a terminal, or a
    notebook's output."""
    return _is_terminal(sys.stderr if stream is None else stream) or _in_notebook()


def verbosity(verbose: Any, progress: Any = None) -> int:
    """fit's `verbose` ("auto", 0, 1, 2) and its older spelling `progress` (None for auto, True
    for 1, False for 0) as one level 0, 1 or 2, or a TypeError/ValueError naming the argument.
    Both given, they must agree."""
    if verbose != "auto":
        if isinstance(verbose, bool) or not isinstance(verbose, int):
            raise TypeError(
                f"verbose: expected 'auto', 0, 1 or 2, got {type(verbose).__name__} {verbose!r}"
            )
        if verbose not in VERBOSE_LEVELS:
            raise ValueError(
                f"verbose: expected 'auto', 0 (silent), 1 (a progress bar) or 2 (one line per "
                f"epoch), got {verbose!r}"
            )
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(
            f"progress: expected True, False or None (auto), got {type(progress).__name__} "
            f"{progress!r}"
        )
    if progress is None:
        return (1 if watched() else 0) if verbose == "auto" else int(verbose)
    level = 1 if progress else 0
    if verbose != "auto" and int(verbose) != level:
        raise ValueError(
            f"verbose={verbose!r} and progress={progress!r} disagree; give verbose only"
        )
    return level


def enabled(progress: Any) -> bool:
    """Whether fit shows a bar: `progress` True/False, or None for "someone watches stderr"."""
    return verbosity("auto", progress) > 0


def _value(value: float) -> str:
    return f"{value:.4g}"


def duration(seconds: float) -> str:
    """A short duration: "3ms", "4.2s", "42s", "2m05s", "1h02m"."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def wrap_items(items: list[str], width: int) -> list[str]:
    """The items joined by SEPARATOR into lines shorter than `width`, broken only between
    items (a continuation line starts with INDENT); an item too long for any line has one to
    itself."""
    lines: list[str] = []
    line = ""
    for item in items:
        candidate = f"{line}{SEPARATOR}{item}" if line else item
        if len(candidate) < width or not line:
            line = candidate
        else:
            lines.append(line)
            line = INDENT + item
    if line:
        lines.append(line)
    return lines


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ProgressBar:
    """Per-epoch bars over batches and a finished line per epoch. Call `epoch_begin`, `update`
    at ticks, `epoch_end`, `close`.

    Args:
        epochs: epochs this fit call runs (the bar says "epoch k/epochs").
        file: where to draw; the current sys.stderr by default.
        use_tqdm: use tqdm if installed (default) or always the built-in bar.
        verbose: 1 for a bar (redrawn only where someone watches `file`), 2 for the finished
            lines only.
    """

    def __init__(
        self, epochs: int, file: TextIO | None = None, use_tqdm: bool = True, verbose: int = 1
    ) -> None:
        self.epochs = epochs
        self.file = file if file is not None else sys.stderr
        self.redraw = verbose == 1 and watched(self.file)
        self.use_tqdm = self.redraw and use_tqdm and _tqdm is not None
        self._bar: Any = None
        self._total = 0
        self._epoch = 0
        self._start = 0.0
        self._fit_start = time.perf_counter()
        self._last_line = 0

    def width(self) -> int:
        """The columns a line may use: the terminal's, else DEFAULT_WIDTH."""
        if _is_terminal(self.file):
            return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
        return DEFAULT_WIDTH

    def epoch_begin(self, k: int, batches: int) -> None:
        """Starts the bar of the k-th epoch (1-based within this fit) of `batches` batches."""
        self._total = batches
        self._epoch = k
        self._start = time.perf_counter()
        if not self.redraw:
            return
        if self.use_tqdm:
            self._bar = _tqdm(
                total=batches,
                desc=f"epoch {k}/{self.epochs}",
                unit="batch",
                file=self.file,
                leave=False,
                dynamic_ncols=True,
            )
        else:
            self._draw(0, None, 0)

    def update(self, batches: int, samples: int, loss: float) -> None:
        """Moves the bar to `batches` done, showing the mean loss so far, the time and the
        speed."""
        if not self.redraw:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {_value(loss)}", refresh=False)
            self._bar.update(max(0, batches - self._bar.n))
        else:
            self._draw(batches, loss, samples)

    def epoch_end(self, samples: int, logs: dict[str, Any]) -> None:
        """Writes the finished epoch's lines: time, ETA of the fit, loss, metrics, validation."""
        now = time.perf_counter()
        elapsed = now - self._start
        items = [f"epoch {self._epoch}/{self.epochs}", f"{self._total}/{self._total}"]
        items.append(duration(elapsed))
        if elapsed > 0:
            items.append(f"{samples / elapsed:,.0f} samples/s")
        if self._epoch < self.epochs:
            per_epoch = (now - self._fit_start) / self._epoch
            items.append(f"ETA {duration(per_epoch * (self.epochs - self._epoch))}")
        items += [
            f"{k} {_value(v)}" for k, v in logs.items() if k not in ("lr", "time") and _is_number(v)
        ]
        text = "\n".join(wrap_items(items, self.width()))
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            _tqdm.write(text, file=self.file)
            return
        if self._last_line:
            self.file.write("\r" + " " * self._last_line + "\r")
            self._last_line = 0
        self.file.write(text + "\n")
        self.file.flush()

    def close(self) -> None:
        """Closes an unfinished bar (training stopped by an error or Ctrl-C)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._last_line:
            self.file.write("\n")
            self.file.flush()
            self._last_line = 0

    def _draw(self, done: int, loss: float | None, samples: int) -> None:
        """Redraws the bar's line, dropping its least useful parts until it fits."""
        elapsed = time.perf_counter() - self._start
        head = f"epoch {self._epoch}/{self.epochs}"
        count = f"{done}/{self._total}"
        stats = [] if loss is None else [f"loss {_value(loss)}"]
        if done > 0 and elapsed > 0:
            eta = elapsed * (self._total - done) / done
            stats.append(f"{duration(elapsed)}<{duration(eta)}")
            stats.append(f"{samples / elapsed:,.0f} samples/s")
        room = self.width() - 1
        while True:
            text = " ".join([count, *stats])
            bar = min(BAR_WIDTH, room - len(head) - len(text) - 4)
            if bar >= 5 or not stats:
                break
            stats.pop()
        if bar >= 5:
            filled = bar * done // self._total if self._total else bar
            line = f"{head} [{'#' * filled}{'.' * (bar - filled)}] {text}"
        else:
            line = f"{head} {text}"[:room]
        pad = max(0, self._last_line - len(line))
        self.file.write("\r" + line + " " * pad)
        self.file.flush()
        self._last_line = len(line)


class ProgressLogger(Callback):
    """The progress bar as a callback, which `fit` adds when `verbose` is 1 or 2: a bar per
    epoch over its steps, fed at the progress ticks, and the epoch's finished lines.

    Args:
        epochs: the epochs of the fit.
        verbose: 1 (a bar, where someone watches) or 2 (one finished line per epoch).
    """

    rank_zero_only = True

    def __init__(self, epochs: int, verbose: int = 1) -> None:
        super().__init__()
        self.bar = ProgressBar(epochs, verbose=verbose)
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
        """Writes the epoch's finished lines."""
        self.bar.epoch_end(self._samples, logs)
        return None

    def close(self) -> None:
        """Closes an unfinished bar (training stopped by an error or Ctrl-C)."""
        self.bar.close()

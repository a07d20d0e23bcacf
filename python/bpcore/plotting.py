"""Drawing a History with matplotlib (an optional dependency: ``pip install bpcore[plot]``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bpcore.history import History


def _figure(width: float, height: float, show: bool) -> Any:
    """A new Figure: through pyplot when it is to be shown, else a free-standing one (no global
    state, no window, nothing to close)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "History.plot needs matplotlib, which bpcore does not require; install it with "
            "`pip install bpcore[plot]` (or `pip install matplotlib`)"
        ) from None
    if show:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=(width, height))
    return Figure(figsize=(width, height))


#: Colours of (training, validation) curves, one pair per panel line: tab10's, never equal.
_PAIRS = [("C0", "C1"), ("C2", "C3"), ("C4", "C5"), ("C6", "C7"), ("C8", "C9")]
#: Above this many epochs the curves have no markers (which would hide the line styles).
_MARKERS_UP_TO = 50
#: A loss whose largest and smallest positive values differ by this factor gets a log axis.
_LOG_SPAN = 100.0


def _spans_decades(values: list[float]) -> bool:
    positive = [v for v in values if v > 0 and v == v and v != float("inf")]
    return bool(positive) and max(positive) >= _LOG_SPAN * min(positive)


def plot_history(history: History, path: Any = None, show: bool = False) -> Any:
    """A figure of the History: loss panel, metrics panel (if any metrics were recorded) and the
    gradient-norm panel (log scale, one line per parameter tensor). Training and validation
    curves have distinct colours (and solid and dashed lines); the loss axis is logarithmic
    when the loss spans two decades or more; the epoch whose weights EarlyStopping restored
    is marked on the loss and metrics panels. Saved as PNG at `path`."""
    if not history.epoch:
        raise ValueError("History.plot: the history is empty (no epoch recorded)")
    if not isinstance(show, bool):
        raise TypeError(f"show: expected True or False, got {type(show).__name__}")
    epochs = history.epoch
    marker = "." if len(epochs) <= _MARKERS_UP_TO else None
    metrics = [
        k
        for k in history.history
        if k not in ("loss", "val_loss", "lr", "time") and not k.startswith("val_")
    ]
    panels = ["loss"] + (["metrics"] if metrics else []) + (["grads"] if history.grad_norms else [])
    fig = _figure(5.0 * len(panels), 4.0, show)
    axes = fig.subplots(1, len(panels), squeeze=False)
    restored = history.restored_epoch
    for ax, panel in zip(axes[0], panels):
        if panel in ("loss", "metrics"):
            names = ["loss"] if panel == "loss" else metrics
            for name, (train, val) in zip(names, _PAIRS * (1 + len(names) // len(_PAIRS))):
                for key, style, colour in ((name, "-", train), (f"val_{name}", "--", val)):
                    if key in history.history:
                        ax.plot(
                            epochs,
                            history.history[key],
                            style,
                            color=colour,
                            marker=marker,
                            label=key,
                        )
            if restored is not None:
                ax.axvline(
                    restored, color="0.3", linestyle=":", label=f"restored: epoch {restored}"
                )
            ax.set_title(panel)
            if panel == "loss":
                ax.set_ylabel("loss")
                shown = history.history.get("loss", []) + history.history.get("val_loss", [])
                if _spans_decades(shown):
                    ax.set_yscale("log")
        else:
            for name, values in history.grad_norms.items():
                positive = [v if v > 0 else float("nan") for v in values]
                ax.plot(epochs, positive, marker=marker, label=name)
            ax.set_yscale("log")
            ax.set_title("mean gradient norm per epoch")
            ax.set_ylabel("‖∂L/∂p‖")
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=100)
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return fig

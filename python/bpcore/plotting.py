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


def plot_history(history: History, path: Any = None, show: bool = False) -> Any:
    """A figure of the History: loss panel, metrics panel (if any metrics were recorded) and the
    gradient-norm panel (log scale, one line per parameter tensor). Saved as PNG at `path`."""
    if not history.epoch:
        raise ValueError("History.plot: the history is empty (no epoch recorded)")
    if not isinstance(show, bool):
        raise TypeError(f"show: expected True or False, got {type(show).__name__}")
    epochs = history.epoch
    metrics = [
        k
        for k in history.history
        if k not in ("loss", "val_loss", "lr", "time") and not k.startswith("val_")
    ]
    panels = ["loss"] + (["metrics"] if metrics else []) + (["grads"] if history.grad_norms else [])
    fig = _figure(5.0 * len(panels), 4.0, show)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "loss":
            for key, style in (("loss", "-"), ("val_loss", "--")):
                if key in history.history:
                    ax.plot(epochs, history.history[key], style, marker=".", label=key)
            ax.set_title("loss")
            ax.set_ylabel("loss")
        elif panel == "metrics":
            for m in metrics:
                line = ax.plot(epochs, history.history[m], "-", marker=".", label=m)[0]
                if f"val_{m}" in history.history:
                    ax.plot(
                        epochs,
                        history.history[f"val_{m}"],
                        "--",
                        marker=".",
                        color=line.get_color(),
                        label=f"val_{m}",
                    )
            ax.set_title("metrics")
        else:
            for name, values in history.grad_norms.items():
                positive = [v if v > 0 else float("nan") for v in values]
                ax.plot(epochs, positive, marker=".", label=name)
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

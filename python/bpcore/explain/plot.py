"""The pass as a picture (matplotlib): on the left the norms per layer from the loss down,
‖δ‖ and the gradient norms on a log scale, so that a gradient vanishing or exploding on its
way back shows as bars shrinking or growing; on the right |δ| of every unit of every Dense
layer, one row per layer, on a log colour scale."""

# ruff: noqa: RUF001 -- batch and layer norm's parameters are γ and β, as in torch's docs

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bpcore.explain.report import BackwardPass


def _import_matplotlib() -> Any:
    try:
        from matplotlib import colormaps, colors, ticker
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot() needs matplotlib: pip install 'bpcore[plot]'") from None
    return Figure, colors, ticker, colormaps


def plot_backward_pass(
    p: BackwardPass, path: Any = None, *, title: str | None = None, axes: Any = None
) -> Any:
    """Draws `p` on `axes` (a pair of matplotlib Axes) or a new Figure; saves it to `path`."""
    Figure, colors, ticker, colormaps = _import_matplotlib()
    if axes is None:
        fig = Figure(figsize=(11, 4.2))
        norm_ax, unit_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    else:
        norm_ax, unit_ax = axes
        fig = norm_ax.figure
    layers = [s for s in reversed(p.layers) if s.kind == "dense" or s.weight_norm is not None]
    y = np.arange(len(layers))
    series = [
        ("‖δ‖ = ‖∂L/∂z‖", [s.delta_norm for s in layers], "#d9534f"),
        ("‖∂L/∂W‖ (γ)", [s.weight_norm or 0.0 for s in layers], "#337ab7"),
        ("‖∂L/∂b‖ (β)", [s.bias_norm or 0.0 for s in layers], "#5cb85c"),
    ]
    height = 0.27
    for n, (label, values, color) in enumerate(series):
        shown = [v if v > 0 else np.nan for v in values]
        norm_ax.barh(y + (n - 1) * height, shown, height, label=label, color=color)
    norm_ax.set_xscale("log")
    positive_norms = [v for _, values, _ in series for v in values if v > 0]
    if positive_norms:
        norm_ax.set_xlim(min(positive_norms) / 3, max(positive_norms) * 3)
    norm_ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    norm_ax.set_yticks(y, [f"{s.index} {s.name.split('(')[0]}" for s in layers])
    norm_ax.invert_yaxis()  # the loss end on top, as the pass runs
    norm_ax.set_xlabel("norm (log scale)")
    norm_ax.set_title(title or "gradient norms, from the loss (top) down")
    # Below the axis, where no bar can be.
    norm_ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    norm_ax.grid(True, axis="x", which="both", alpha=0.3)

    dense = [s for s in reversed(p.layers) if s.kind == "dense"]
    width = max(len(s.grad_output) for s in dense)
    image = np.full((len(dense), width), np.nan)
    padding = np.full((len(dense), width), 1.0)
    for r, s in enumerate(dense):
        image[r, : len(s.grad_output)] = np.abs(s.grad_output)
        padding[r, : len(s.grad_output)] = np.nan
    positive = image[np.isfinite(image) & (image > 0)]
    if positive.size:
        scale = colors.LogNorm(
            vmin=max(positive.min(), positive.max() * 1e-12), vmax=positive.max()
        )
        image = np.where(image > 0, image, np.nan)
        cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
        shown = unit_ax.imshow(image, aspect="auto", interpolation="nearest", norm=scale, cmap=cmap)
        fig.colorbar(shown, ax=unit_ax, label="|δ_i|")
        # White where a layer has no unit i (it is narrower than the widest).
        blank = colors.ListedColormap(["white"])
        unit_ax.imshow(padding, aspect="auto", interpolation="nearest", cmap=blank)
    unit_ax.set_yticks(range(len(dense)), [f"δ_{s.index}" for s in dense])
    unit_ax.set_xlabel("unit i")
    unit_ax.set_title("|δ| of every unit (grey: δ_i = 0, no gradient)")
    if axes is None:
        fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig

"""`BackwardPass`: the backward pass of one sample, from the loss down to the input, as text,
HTML (in Jupyter) and a picture."""

# ruff: noqa: RUF001 -- batch and layer norm's parameters are γ and β, as in torch's docs

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from bpcore.explain.backward import Pass
from bpcore.explain.checks import Check
from bpcore.explain.formatting import entries, fmt, norm, sum_line
from bpcore.explain.summary import LayerSummary, largest


@dataclass
class BackwardPass:
    """The backward pass of one sample through every layer, with its checks.

    Attributes:
        layers: a `LayerSummary` per layer, input layer first (``layers[k]`` is
            ``net.layers[k]``): names, formulas, the sample's ∂L/∂output and ∂L/∂input rows,
            parameter gradient norms, largest entries and sums, notes.
        notes: notes on the whole pass (a vanished or exploded gradient).
        loss: the sample's loss; output: the network's output o for it; output_gradient: ∂L/∂o.
        gradients: every parameter gradient of the pass (float64), by name;
            rust_gradients, reference_gradients: the same from `net.gradients` (the network's
            dtype) and from `bpcore.reference` (float64).
        checks: each gradient against `net.gradients` (Rust) and `bpcore.reference`.
        training: the mode explained; sample: the row explained; batch_size: rows in the batch.
        raw: the whole computation (`backward.Pass`), every row of every layer.
    """

    layers: list[LayerSummary]
    notes: list[str]
    loss: float
    output: np.ndarray
    output_gradient: np.ndarray
    gradients: dict[str, np.ndarray]
    rust_gradients: dict[str, np.ndarray]
    reference_gradients: dict[str, np.ndarray]
    checks: list[Check]
    training: bool
    sample: int
    batch_size: int
    dtype: str
    loss_name: str
    target: Any
    raw: Pass

    @property
    def matches(self) -> bool:
        """Whether every gradient equals net.gradients' and the reference's within tolerance."""
        return all(c.ok for c in self.checks)

    @property
    def deltas(self) -> dict[int, np.ndarray]:
        """δ_k = ∂L/∂z_k of the sample for each Dense layer k."""
        return {s.index: s.grad_output for s in self.layers if s.kind == "dense"}

    def worst(self, against: str) -> Check:
        """The check with the largest relative difference against one implementation."""
        return max((c for c in self.checks if c.against == against), key=lambda c: c.difference)

    def header(self) -> list[str]:
        """The lines that say what is explained."""
        widths = [str(s.grad_input.shape[0]) for s in self.layers if s.kind == "dense"]
        widths.append(str(self.output.shape[0]))
        mode = "training mode" if self.training else "inference mode"
        which = (
            "one sample"
            if self.batch_size == 1
            else (
                f"sample {self.sample} of a batch of {self.batch_size} (the loss of that sample, "
                "the batch's statistics)"
            )
        )
        return [
            f"The backward pass of {which}, from the loss down to the input",
            f"network {'-'.join(widths)}, {self.dtype} (the numbers here in float64), "
            f"loss {self.loss_name}, {mode}",
            f"target {self.target}; output o = [{', '.join(fmt(v) for v in self.output)}]",
            f"loss L = {self.loss:.6g};  ‖∂L/∂o‖ = {fmt(norm(self.output_gradient))}, largest "
            f"{entries(largest(self.output_gradient, 3), '∂L/∂o')}",
        ]

    def layer_lines(self, s: LayerSummary) -> list[str]:
        """The lines of one layer."""
        lines = [f"layer {s.index}  {s.name}"]
        if s.delta_formula:
            lines.append(f"    {s.delta_formula}")
            top = entries(s.largest, f"δ_{s.index}")
            lines.append(f"    ‖δ_{s.index}‖ = {fmt(s.delta_norm)}; largest {top}")
            grads = f"‖∂L/∂W_{s.index}‖ = {fmt(s.weight_norm or 0.0)}"
            if s.bias_norm is not None:
                grads += f",  ‖∂L/∂b_{s.index}‖ = {fmt(s.bias_norm)}  (∂L/∂b = δ)"
            lines.append(f"    {grads}")
        else:
            lines.append(
                f"    from above: ‖∂L/∂{s.output_symbol}‖ = {fmt(s.delta_norm)}; largest "
                f"{entries(s.largest, '∂L/∂' + s.output_symbol)}"
            )
            if s.weight_norm is not None:
                lines.append(
                    f"    ‖∂L/∂γ_{s.index}‖ = {fmt(s.weight_norm)},  "
                    f"‖∂L/∂β_{s.index}‖ = {fmt(s.bias_norm or 0.0)}"
                )
        if s.index > 0:
            lines.append(f"    passes down {s.formula}")
            line = f"    ‖∂L/∂{s.input_symbol}‖ = {fmt(norm(s.grad_input))}"
            if s.kind != "dense":  # a Dense layer shows its largest entries with their sums
                biggest = largest(s.grad_input, len(s.largest))
                line += f"; largest {entries(biggest, '∂L/∂' + s.input_symbol)}"
            lines.append(line)
            for term in s.sums:
                lines.append(f"      {sum_line(term, s.input_symbol, f'δ_{s.index}')}")
        else:
            lines.append(
                f"    (the input layer: ∂L/∂W_{s.index} = δ_{s.index} xᵀ, nothing below learns)"
            )
        if "f'" in s.local:
            d = s.local["f'"]
            lines.append(
                f"    f'({s.input_symbol}): min {fmt(float(d.min()))}, max {fmt(float(d.max()))}"
            )
        if "mask" in s.local and self.training:
            kept = int(s.local["mask"].sum())
            lines.append(
                f"    mask: {kept} of {len(s.local['mask'])} kept, scale {s.local['scale']:g}"
            )
        lines += [f"    note: {note}" for note in s.notes]
        return lines

    def table(self) -> list[str]:
        """One line per layer: ‖∂L/∂output‖ (δ for Dense layers) and gradient norms."""
        lines = ["layer  kind                ‖∂L/∂output‖   ‖∂L/∂W‖ (γ)    ‖∂L/∂b‖ (β)"]
        for s in reversed(self.layers):
            w = fmt(s.weight_norm) if s.weight_norm is not None else "-"
            b = fmt(s.bias_norm) if s.bias_norm is not None else "-"
            kind = s.name.split(",")[0].split("(")[0]
            lines.append(f"{s.index:5d}  {kind:18s}  {fmt(s.delta_norm):>12}   {w:>12}   {b:>12}")
        return lines

    def check_lines(self) -> list[str]:
        """The verdict of the two checks."""
        lines = []
        for against, what in (
            ("net.gradients", "Rust kernels"),
            ("bpcore.reference", "pure Python"),
        ):
            w = self.worst(against)
            verdict = (
                "equal" if all(c.ok for c in self.checks if c.against == against) else "NOT EQUAL"
            )
            lines.append(
                f"checked: every gradient against {against} ({what}): {verdict}, largest relative "
                f"difference {w.difference:.1e} ({w.name}; tolerance {w.tolerance:g})"
            )
        return lines

    def __str__(self) -> str:
        lines = [*self.header(), ""]
        for s in reversed(self.layers):
            lines += self.layer_lines(s)
        if self.notes:
            lines += ["", *(f"note: {note}" for note in self.notes)]
        lines += ["", *self.table(), "", *self.check_lines()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"BackwardPass(layers={len(self.layers)}, loss={self.loss!r}, "
            f"training={self.training}, matches={self.matches})"
        )

    def print(self, file: TextIO | None = None) -> None:
        """Prints the pass (to stdout, or `file`)."""
        print(str(self), file=file)

    def _repr_html_(self) -> str:
        from bpcore.explain.html import backward_pass_html

        return backward_pass_html(self)

    def plot(self, path: Any = None, *, title: str | None = None, axes: Any = None) -> Any:
        """The pass as a picture: per layer ‖δ‖ and the gradient norms (log scale), and |δ| of
        every unit of each Dense layer. Drawn on `axes` (two matplotlib Axes) or a new Figure,
        saved as PNG to `path` if given; returns the Figure (needs matplotlib:
        ``pip install 'bpcore[plot]'``)."""
        from bpcore.explain.plot import plot_backward_pass

        return plot_backward_pass(self, path, title=title, axes=axes)

"""HTML renderings for Jupyter: a table of the whole pass with bars of ‖δ‖ and the gradient
norms per layer, then a table per layer with its formulas, numbers, notes and a strip of |δ|
over its units. Plain HTML and inline styles (no script), so that it renders the same in a
notebook, a browser or a static page."""

# ruff: noqa: RUF001 -- batch and layer norm's parameters are γ and β, as in torch's docs

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

import numpy as np

from bpcore.explain.formatting import entries, fmt, sum_line

if TYPE_CHECKING:
    from bpcore.explain.report import BackwardPass
    from bpcore.explain.summary import LayerSummary
    from bpcore.explain.weight import Explanation

STYLE = (
    "font-family: DejaVu Sans, Arial, sans-serif; font-size: 13px; color: #222; max-width: 1100px"
)
CELL = "padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top"
BAR_WIDTH = 220  # pixels of the longest bar
COLORS = {"delta": "#d9534f", "weight": "#337ab7", "bias": "#5cb85c"}


def _bar(value: float | None, low: float, high: float, color: str) -> str:
    """A bar whose length is log10(value) between log10(low) and log10(high), and the value."""
    if value is None:
        return f"<td style='{CELL}'>-</td>"
    width: float
    if value <= 0 or high <= low:
        width = 2 if value <= 0 else BAR_WIDTH
    else:
        width = 4 + (BAR_WIDTH - 4) * (math.log10(value) - math.log10(low)) / (
            math.log10(high) - math.log10(low)
        )
    return (
        f"<td style='{CELL}'><div style='display:inline-block; height: 11px; "
        f"width: {width:.0f}px; background: {color}; margin-right: 6px'></div>"
        f"{escape(fmt(value))}</td>"
    )


def _strip(values: np.ndarray, color: str) -> str:
    """|v| of every unit as a row of thin bars, tallest = largest |v| (at most 256 shown)."""
    shown = np.abs(values[:256])
    peak = float(shown.max()) if shown.size else 0.0
    width = max(1, min(8, 512 // max(len(shown), 1)))
    heights = 2 + 38 * shown / peak if peak else np.full(len(shown), 2.0)
    bars = "".join(
        f"<div title='[{i}] {v:.4g}' style='width:{width}px; height:{h:.1f}px; "
        f"background:{color}; margin-right:1px'></div>"
        for i, (v, h) in enumerate(zip(shown, heights))
    )
    more = f" (first 256 of {len(values)})" if len(values) > 256 else ""
    return (
        f"<div style='display:flex; align-items:flex-end; height:42px'>{bars}</div>"
        f"<div style='color:#666'>|value| per unit{more}</div>"
    )


def _row(label: str, content: str) -> str:
    label_cell = f"<th style='{CELL}; width: 150px'>{escape(label)}</th>"
    return f"<tr>{label_cell}<td style='{CELL}'>{content}</td></tr>"


def _layer_table(p: BackwardPass, s: LayerSummary) -> str:
    rows = []
    if s.delta_formula:
        rows.append(_row("error signal", escape(s.delta_formula)))
        rows.append(
            _row(
                f"‖δ_{s.index}‖",
                escape(f"{fmt(s.delta_norm)}; largest ")
                + escape(entries(s.largest, f"δ_{s.index}")),
            )
        )
        rows.append(_row(f"|δ_{s.index}|", _strip(s.grad_output, COLORS["delta"])))
    else:
        rows.append(
            _row(
                f"∂L/∂{s.output_symbol}",
                escape(
                    f"{fmt(s.delta_norm)}; largest {entries(s.largest, '∂L/∂' + s.output_symbol)}"
                ),
            )
        )
        rows.append(_row(f"|∂L/∂{s.output_symbol}|", _strip(s.grad_output, COLORS["delta"])))
    if s.weight_norm is not None:
        w, b = ("W", "b") if s.kind == "dense" else ("γ", "β")
        text = f"‖∂L/∂{w}_{s.index}‖ = {fmt(s.weight_norm)}"
        if s.bias_norm is not None:
            text += f",  ‖∂L/∂{b}_{s.index}‖ = {fmt(s.bias_norm)}"
        rows.append(_row("gradients", escape(text)))
    if s.index > 0:
        rows.append(_row("passes down", escape(s.formula)))
        rows.append(
            _row(f"‖∂L/∂{s.input_symbol}‖", escape(fmt(float(np.linalg.norm(s.grad_input)))))
        )
        for term in s.sums:
            rows.append(_row("formed as", escape(sum_line(term, s.input_symbol, f"δ_{s.index}"))))
    if "f'" in s.local:
        rows.append(_row(f"f'({s.input_symbol})", _strip(s.local["f'"], "#8e6bbf")))
    if "mask" in s.local and p.training:
        rows.append(_row("mask", _strip(s.local["mask"], "#999")))
    for note in s.notes:
        rows.append(_row("note", f"<span style='color:#a94442'>{escape(note)}</span>"))
    return (
        f"<table style='border-collapse: collapse; margin: 8px 0; width: 100%'>"
        f"<caption style='text-align:left; font-weight:bold; padding: 4px 0'>"
        f"layer {s.index} &nbsp; {escape(s.name)}</caption>{''.join(rows)}</table>"
    )


def backward_pass_html(p: BackwardPass) -> str:
    """The HTML of a `BackwardPass`."""
    norms = [v for s in p.layers for v in (s.delta_norm, s.weight_norm, s.bias_norm)]
    positive = [v for v in norms if v is not None and v > 0]
    low, high = (min(positive), max(positive)) if positive else (1.0, 1.0)
    header = "".join(f"<div>{escape(line)}</div>" for line in p.header())
    summary_rows = "".join(
        f"<tr><td style='{CELL}'>{s.index}</td>"
        f"<td style='{CELL}'>{escape(s.name.split(',')[0])}</td>"
        + _bar(s.delta_norm, low, high, COLORS["delta"])
        + _bar(s.weight_norm, low, high, COLORS["weight"])
        + _bar(s.bias_norm, low, high, COLORS["bias"])
        + "</tr>"
        for s in reversed(p.layers)
    )
    summary = (
        f"<table style='border-collapse: collapse; margin: 8px 0'>"
        f"<caption style='text-align:left; font-weight:bold'>per layer, from the loss down "
        f"(bars on a log scale)</caption><tr><th style='{CELL}'>layer</th>"
        f"<th style='{CELL}'>kind</th><th style='{CELL}'>‖∂L/∂output‖ (‖δ‖)</th>"
        f"<th style='{CELL}'>‖∂L/∂W‖ (γ)</th><th style='{CELL}'>‖∂L/∂b‖ (β)</th></tr>"
        f"{summary_rows}</table>"
    )
    notes = "".join(f"<p style='color:#a94442'>{escape(n)}</p>" for n in p.notes)
    layers = "".join(_layer_table(p, s) for s in reversed(p.layers))
    verdict = "".join(f"<div>{escape(line)}</div>" for line in p.check_lines())
    return (
        f"<div class='bpcore-backward-pass' style='{STYLE}'>{header}{summary}{notes}{layers}"
        f"<div style='margin-top: 8px; color: {'#3c763d' if p.matches else '#a94442'}'>"
        f"{verdict}</div></div>"
    )


def weight_html(e: Explanation) -> str:
    """The HTML of an `Explanation`: the chain as a table, the sum term by term."""
    i, j = e.index
    rows = [_row(name, escape(f"{value:.10e}")) for name, value in e.terms]
    if e.chain is not None:
        terms = "".join(
            f"<tr><td style='{CELL}'>k = {t.k}</td><td style='{CELL}'>{t.delta:.6e}</td>"
            f"<td style='{CELL}'>{t.weight:.6e}</td><td style='{CELL}'>{t.value:.6e}</td></tr>"
            for t in e.chain.terms
        )
        if e.chain.rest_count:
            terms += (
                f"<tr><td style='{CELL}' colspan=3>the other {e.chain.rest_count} terms</td>"
                f"<td style='{CELL}'>{e.chain.rest:.6e}</td></tr>"
            )
        rows.insert(
            1,
            _row(
                f"∂L/∂h_{i} = Σ_k",
                f"<table style='border-collapse: collapse'><tr><th style='{CELL}'>k</th>"
                f"<th style='{CELL}'>∂L/∂z_k</th><th style='{CELL}'>w_k,{i}</th>"
                f"<th style='{CELL}'>product</th></tr>{terms}</table>"
                + escape(f" {e.chain_source}"),
            ),
        )
    else:
        rows.insert(1, _row(f"∂L/∂h_{i}", escape(e.chain_source)))
    rows.append(_row("product", escape(f"{e.product:.10e}")))
    if e.other_samples:
        rows.append(_row("+ other samples", escape(f"{e.other_samples:.10e}")))
    rows.append(_row("net.gradients", escape(f"{e.gradient:.10e}")))
    rows.append(_row("bpcore.reference", escape(f"{e.reference_gradient:.10e}")))
    rows += [_row("note", f"<span style='color:#a94442'>{escape(n)}</span>") for n in e.notes]
    return (
        f"<div class='bpcore-explanation' style='{STYLE}'><table style='border-collapse: collapse'>"
        f"<caption style='text-align:left; font-weight:bold'>∂L/∂w[{i},{j}] of layer {e.layer}: "
        f"{'equal' if e.matches else 'NOT EQUAL'} to the gradient</caption>"
        f"{''.join(rows)}</table></div>"
    )

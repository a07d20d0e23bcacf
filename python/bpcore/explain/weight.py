"""One weight, the whole chain: the factors of ∂L/∂w_ij and the sum that forms ∂L/∂h_i.

For the weight w_ij of a Dense layer (row i = output unit, column j = input), with z = W a + b
the layer's pre-activation, h = f(z) the activation after it (if one follows) and L the loss:

    ∂L/∂w_ij = ∂L/∂h_i · ∂h_i/∂z_i · ∂z_i/∂w_ij,      ∂z_i/∂w_ij = a_j

∂L/∂h_i is what flows back from the layers above: at the output it is ∂L/∂o_i; below a Dense
layer u it is the sum over u's units k of what each passes back,

    ∂L/∂h_i = Σ_k ∂L/∂z_k · w_ki       (z_k = Σ_i w_ki h_i + b_k, so ∂z_k/∂h_i = w_ki)

— backpropagation itself, one layer of it. ∂h_i/∂z_i = f'(z_i) is the activation's local
derivative (1 when no activation follows the layer); a_j is the layer's input j.

Below a BatchNorm1d in training mode the other samples of the batch contribute too (their
inputs shape this sample's normalization): ∂L/∂w_ij = Σ_n δ[n, i] · a[n, j], this sample's
term being the product of the three factors.
"""

# ruff: noqa: RUF001 -- batch and layer norm's parameters are γ and β, as in torch's docs
from __future__ import annotations

import math
from typing import TYPE_CHECKING, TextIO

import numpy as np

from bpcore.explain.backward import STRUCTURAL
from bpcore.explain.summary import NAMES, SATURATED, Sum, weighted_sum

if TYPE_CHECKING:
    from bpcore.explain.report import BackwardPass

#: Terms of Σ_k ∂L/∂z_k · w_ki shown one by one; beyond, the largest of them and the rest.
ALL_TERMS = 12


class Explanation:
    """The chain rule for one weight's gradient and one sample.

    Attributes:
        terms: [(name, value)] — ∂L/∂h_i, ∂h_i/∂z_i, ∂z_i/∂w_ij (= a_j).
        product: the product of the terms (float64).
        chain: the sum Σ_k ∂L/∂z_k · w_ki that formed ∂L/∂h_i (a `summary.Sum`), when a Dense
            layer is the next layer above; chain_factor: the Dropout factor m_i/(1-p) between
            them (1 without); chain_source: where ∂L/∂h_i came from, in words.
        other_samples: what the other samples of the batch add (BatchNorm1d in training mode
            below the layers above; 0 otherwise).
        gradient: ``net.gradients(...)[f"{layer}.weight"][i, j]`` from the Rust kernels;
            reference_gradient: the same from `bpcore.reference`.
        matches: whether product + other_samples equals both within tolerance.
        notes: plain-language notes (a dead ReLU, a saturated unit, an input of 0, an
            exploding factor above).
        backward: the whole pass it is part of (a `BackwardPass`).
        loss: the sample's loss; output_gradient: ∂L/∂o.
    """

    def __init__(
        self,
        *,
        layer: int,
        index: tuple[int, int],
        activation: str | None,
        terms: list[tuple[str, float]],
        chain: Sum | None,
        chain_factor: float,
        chain_source: str,
        other_samples: float,
        notes: list[str],
        backward: BackwardPass,
    ) -> None:
        self.layer = layer
        self.index = index
        self.activation = activation
        self.terms = terms
        self.product = math.prod(v for _, v in terms)
        self.chain = chain
        self.chain_factor = chain_factor
        self.chain_source = chain_source
        self.other_samples = other_samples
        self.notes = notes
        self.backward = backward
        i, j = index
        name = f"{layer}.weight"
        self.gradient = float(backward.rust_gradients[name][i, j])
        self.reference_gradient = float(backward.reference_gradients[name][i, j])
        self.dtype = backward.dtype
        self.tolerance = next(c.tolerance for c in backward.checks if c.against == "net.gradients")
        self.loss = backward.loss
        self.output_gradient = [float(v) for v in backward.output_gradient]
        total = self.product + other_samples
        scale = float(np.abs(backward.rust_gradients[name]).max())
        diff = abs(total - self.gradient)
        self.relative_difference = diff / max(abs(total), abs(self.gradient), 1e-300)
        self.matches = diff <= self.tolerance * max(abs(total), abs(self.gradient), scale) and abs(
            total - self.reference_gradient
        ) <= 1e-12 * max(abs(total), scale)

    def chain_lines(self) -> list[str]:
        """Σ_k ∂L/∂z_k · w_ki, term by term (or its largest terms and the rest)."""
        i = self.index[0]
        if self.chain is None:
            return [f"    ∂L/∂h_{i} {self.chain_source}"]
        c = self.chain
        factor = "" if self.chain_factor == 1.0 else f"{self.chain_factor:g} · "
        lines = [
            f"    ∂L/∂h_{i} = {factor}Σ_k ∂L/∂z_k · w_k,{i} {self.chain_source}"
            + (" (largest first):" if c.rest_count == 0 else f" ({len(c.terms)} largest):")
        ]
        for t in c.terms:
            lines.append(f"      k = {t.k:3d}:  {t.delta: .6e} · {t.weight: .6e} = {t.value: .6e}")
        if c.rest_count:
            lines.append(f"      the other {c.rest_count} terms:              {c.rest: .6e}")
        lines.append(
            f"      Σ = {c.value: .10e}" + (f",  · {self.chain_factor:g}" if factor else "")
        )
        return lines

    def __str__(self) -> str:
        i, j = self.index
        act = f"the {self.activation} after it" if self.activation else "no activation after it"
        b = self.backward
        which = (
            "one sample" if b.batch_size == 1 else f"sample {b.sample} of a batch of {b.batch_size}"
        )
        lines = [
            f"∂L/∂w[{i},{j}] of layer {self.layer} ({self.layer}.weight[{i}, {j}]), {which}, "
            f"{act}; loss {self.loss:.6g}",
            f"  ∂L/∂o (at the output) = [{', '.join(f'{v:.6g}' for v in self.output_gradient)}]",
        ]
        notes = (
            "what flows back from the layers above",
            "the activation's local derivative f'(z_i)" if self.activation else "no activation",
            "the layer's input a_j",
        )
        width = max(len(name) for name, _ in self.terms)
        for k, ((name, value), note) in enumerate(zip(self.terms, notes)):
            lines.append(f"  {name:<{width}} = {value: .10e}   ({note})")
            if k == 0:
                lines += self.chain_lines()
        lines.append(f"  {'product':<{width}} = {self.product: .10e}")
        if self.other_samples:
            lines.append(
                f"  {'+ other samples':<{width}} = {self.other_samples: .10e}   "
                "(through the batch's statistics)"
            )
        lines.append(f"  {'gradient':<{width}} = {self.gradient: .10e}   (net.gradients, Rust)")
        lines.append(
            f"  {'reference':<{width}} = {self.reference_gradient: .10e}   (bpcore.reference)"
        )
        verdict = "equal" if self.matches else "NOT EQUAL"
        lines.append(
            f"  product and gradient are {verdict}: relative difference "
            f"{self.relative_difference:.1e} (tolerance {self.tolerance:g} in {self.dtype})"
        )
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Explanation(layer={self.layer}, index={self.index}, product={self.product!r}, "
            f"gradient={self.gradient!r}, matches={self.matches})"
        )

    def print(self, file: TextIO | None = None) -> None:
        """Prints the explanation (to stdout, or `file`)."""
        print(str(self), file=file)

    def _repr_html_(self) -> str:
        from bpcore.explain.html import weight_html

        return weight_html(self)


def explain_weight(backward: BackwardPass, layer: int, index: tuple[int, int]) -> Explanation:
    """The chain for weight `index` of Dense layer `layer`, read from the whole pass."""
    i, j = index
    row = backward.sample
    steps = backward.raw.steps
    specs = [s.spec for s in steps]
    follows = layer + 1 < len(specs) and specs[layer + 1]["type"] not in STRUCTURAL
    top = layer + 1 if follows else layer
    dl_dh = float(steps[top].grad_output[row, i])
    dh_dz = float(steps[top].local["f'"][row, i]) if follows else 1.0
    a_j = float(steps[layer].input[row, j])
    terms = [
        (f"∂L/∂h_{i}", dl_dh),
        (f"∂h_{i}/∂z_{i}", dh_dz),
        (f"∂z_{i}/∂w_{i},{j} = a_{j}", a_j),
    ]
    chain, factor, source = _chain(backward, top, i)
    delta = steps[layer].grad_output[:, i]
    inputs = steps[layer].input[:, j]
    other = float(delta @ inputs - delta[row] * inputs[row])
    notes = _notes(backward, layer, top, index, dh_dz, a_j, follows)
    return Explanation(
        layer=layer,
        index=index,
        activation=NAMES[specs[top]["type"]] if follows else None,
        terms=terms,
        chain=chain,
        chain_factor=factor,
        chain_source=source,
        other_samples=other,
        notes=notes,
        backward=backward,
    )


def _chain(backward: BackwardPass, top: int, i: int) -> tuple[Sum | None, float, str]:
    """The sum that forms ∂L/∂h_i from the next Dense layer up (through a Dropout, if one is
    between), or where ∂L/∂h_i comes from when no Dense layer is next."""
    steps = backward.raw.steps
    row = backward.sample
    above = top + 1
    if above == len(steps):
        return None, 1.0, "= ∂L/∂o_i: h is the network's output o"
    factor = 1.0
    if steps[above].spec["type"] == "dropout" and above + 1 < len(steps):
        factor = float(steps[above].local["mask"][row, i] * steps[above].local["scale"])
        above += 1
    step = steps[above]
    if step.spec["type"] != "dense":
        kind = step.spec["type"]
        mixes = {
            "batch_norm1d": f" mixes feature {i} of every sample in the batch"
            if backward.training
            else f" scales it by γ_{i}/√(running_var_{i} + eps)",
            "layer_norm": " mixes all the features of this sample",
        }.get(kind, "")
        return (
            None,
            1.0,
            f"comes through layer {above} ({NAMES[kind]}), whose backward step{mixes}: see "
            "the whole pass (.backward)",
        )
    width = step.grad_output.shape[1]
    shown = width if width <= ALL_TERMS else ALL_TERMS // 2
    chain = weighted_sum(step.grad_output[row], step.local["W"], i, shown)
    units = "unit" if width == 1 else "units"
    return chain, factor, f"over the {width} {units} k of layer {above}"


def _notes(
    backward: BackwardPass,
    layer: int,
    top: int,
    index: tuple[int, int],
    dh_dz: float,
    a_j: float,
    follows: bool,
) -> list[str]:
    i, j = index
    notes = []
    specs = [s.spec for s in backward.raw.steps]
    if follows and dh_dz == 0.0 and specs[top]["type"] == "relu":
        notes.append(
            f"unit {i} is inactive for this sample ({NAMES[specs[top]['type']]}'(z_{i}) = 0, "
            f"a dead ReLU here): this weight learns nothing from this sample"
        )
    elif follows and abs(dh_dz) < SATURATED * (0.25 if specs[top]["type"] == "sigmoid" else 1.0):
        notes.append(
            f"unit {i} is saturated (f'(z_{i}) = {dh_dz:.2e} ≈ 0): this weight learns almost "
            "nothing from this sample"
        )
    if a_j == 0.0:
        notes.append(f"its input a_{j} is 0: this weight gets no gradient from this sample")
    for s in backward.layers[top + 1 :]:
        notes += [f"above, layer {s.index}: {n}" for n in s.notes if n.startswith("an exploding")]
    return notes

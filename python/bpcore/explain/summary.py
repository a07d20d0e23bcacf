"""What a reader needs from each layer of a pass: names, norms, largest entries, the sums
that formed them, and plain-language notes where the numbers explain the gradient.

Long vectors are never dumped: a vector is its norm and its largest entries by magnitude.
The notes say what a number means for learning: a unit whose local derivative is 0 (an
inactive ReLU) or nearly 0 (a saturated sigmoid or tanh) passes no gradient back, so the
weights into it learn nothing from this sample; an input of 0 gives its weights no gradient
(∂z/∂w = a = 0); a layer through which the gradient's norm grows tenfold or more is an
exploding factor; a gradient whose norm falls by 10³ or more from the output to the first
layer has vanished on the way.
"""

# ruff: noqa: RUF001 -- batch and layer norm's parameters are γ and β, as in torch's docs

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bpcore.explain.backward import STRUCTURAL, LayerStep

Array = np.ndarray

#: Display names of the layer kinds (as the classes in bpcore.layers).
NAMES = {
    "dense": "Dense",
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "gelu": "GELU",
    "elu": "ELU",
    "softplus": "Softplus",
    "identity": "Identity",
    "silu": "SiLU",
    "mish": "Mish",
    "dropout": "Dropout",
    "batch_norm1d": "BatchNorm1d",
    "layer_norm": "LayerNorm",
}
#: The largest value of each activation's derivative, against which "nearly 0" is measured.
PEAK_DERIVATIVE = {"sigmoid": 0.25}
#: f'(z) below this fraction of its peak counts as saturated.
SATURATED = 1e-2
#: A layer that multiplies the gradient's norm by this much or more is an exploding factor.
EXPLODING_FACTOR = 10.0
#: From the output to the first layer, a norm ratio beyond this (either way) is a vanishing
#: or exploding gradient.
VANISHING_RATIO = 1e-3


@dataclass(frozen=True)
class Entry:
    """One entry of a vector: its index and value."""

    index: int
    value: float


@dataclass(frozen=True)
class Term:
    """One term δ_k · w_ki of the sum Σ_k δ_k · w_ki that forms entry i of Wᵀ δ."""

    k: int
    delta: float
    weight: float

    @property
    def value(self) -> float:
        """δ_k · w_ki."""
        return self.delta * self.weight


@dataclass(frozen=True)
class Sum:
    """Entry i of Wᵀ δ = Σ_k δ_k · w_ki: its largest terms and the rest."""

    index: int
    value: float
    terms: list[Term]
    rest: float
    rest_count: int


@dataclass
class LayerSummary:
    """One layer of the pass as the reader sees it (the explained sample's row).

    Attributes:
        index, kind, name: position, spec type and display name ("Dense(64 → 128)").
        output_symbol, input_symbol: the names of its output and input ("z_2", "h_1", "x").
        formula: how ∂L/∂input is formed from ∂L/∂output.
        delta_formula: for Dense layers, how δ = ∂L/∂z was formed from the layer above.
        grad_output, grad_input: the sample's rows of ∂L/∂output and ∂L/∂input.
        gradient_norms: the norm of each parameter gradient, by full name.
        largest: the largest entries of grad_output; sums: for Dense layers, the largest
            entries of ∂L/∂input with the largest terms of their sums.
        notes: plain-language remarks.
    """

    index: int
    kind: str
    name: str
    output_symbol: str
    input_symbol: str
    formula: str
    delta_formula: str | None
    grad_output: Array
    grad_input: Array
    gradient_norms: dict[str, float]
    largest: list[Entry]
    sums: list[Sum] = field(default_factory=list)
    local: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def delta_norm(self) -> float:
        """‖∂L/∂output‖ for the sample (δ for a Dense layer)."""
        return float(np.linalg.norm(self.grad_output))

    @property
    def weight_norm(self) -> float | None:
        """‖∂L/∂W‖ (‖∂L/∂γ‖ for a norm layer), or None for a layer without parameters."""
        return self.gradient_norms.get(f"{self.index}.weight")

    @property
    def bias_norm(self) -> float | None:
        """‖∂L/∂b‖ (‖∂L/∂β‖), or None."""
        return self.gradient_norms.get(f"{self.index}.bias")


def largest(values: Array, top: int) -> list[Entry]:
    """The `top` entries of largest magnitude, largest first (ties by index)."""
    order = sorted(range(len(values)), key=lambda i: (-abs(float(values[i])), i))[:top]
    return [Entry(i, float(values[i])) for i in order]


def weighted_sum(delta: Array, weight: Array, i: int, top: int) -> Sum:
    """Entry i of Wᵀ δ with its `top` largest terms δ_k · w_ki."""
    products = delta * weight[:, i]
    order = sorted(range(len(delta)), key=lambda k: (-abs(float(products[k])), k))
    shown = order[:top]
    terms = [Term(k, float(delta[k]), float(weight[k, i])) for k in shown]
    rest = float(sum(float(products[k]) for k in order[top:]))
    return Sum(i, float(products.sum()), terms, rest, len(order) - len(shown))


def symbols(specs: list[dict[str, Any]]) -> list[str]:
    """The name of each layer's output: z_k (Dense), h_k (activation), d_k (Dropout), n_k
    (normalization)."""
    letters = {"dense": "z", "dropout": "d", "batch_norm1d": "n", "layer_norm": "n"}
    return [f"{letters.get(spec['type'], 'h')}_{k}" for k, spec in enumerate(specs)]


def layer_name(spec: dict[str, Any], training: bool) -> str:
    """ "Dense(64 → 128)", "Dropout(p=0.5), training: this sample's mask", ..."""
    kind = spec["type"]
    name = NAMES[kind]
    if kind == "dense":
        return f"{name}({spec['in_features']} → {spec['out_features']})"
    if kind == "dropout":
        mode = "training: this sample's mask" if training else "inference: the identity"
        return f"{name}(p={spec['p']:g}), {mode}"
    if kind == "batch_norm1d":
        mode = "training: the batch's statistics" if training else "inference: running statistics"
        return f"{name}({spec['num_features']}), {mode}"
    if kind == "layer_norm":
        return f"{name}({spec['normalized_shape']}): this sample's statistics"
    return name


def _local_formula(
    step: LayerStep, sym_in: str, sym_out: str, training: bool, last_dense: bool
) -> str:
    """How the layer turns ∂L/∂(its output) into ∂L/∂(its input), in symbols; for the last
    Dense layer also in the article's names, ∂L/∂h = ∂L/∂o · ∂o/∂h (∂o/∂h = f'(z) · W)."""
    kind = step.kind
    k = step.index
    if kind == "dense":
        article = " = ∂L/∂o · ∂o/∂h" if last_dense else ""
        return (
            f"∂L/∂{sym_in} = W_{k}ᵀ δ_{k}{article}   (∂z/∂a = W; and ∂L/∂W_{k} = "
            f"δ_{k} {sym_in}ᵀ, ∂z/∂w = a)"
        )
    if kind == "dropout":
        if training:
            return f"∂L/∂{sym_in} = ∂L/∂{sym_out} ⊙ m_{k} / (1 - p)   (m_{k}: this sample's mask)"
        return f"∂L/∂{sym_in} = ∂L/∂{sym_out}   (the identity in inference)"
    if kind == "batch_norm1d" and not training:
        return f"∂L/∂{sym_in} = ∂L/∂{sym_out} ⊙ γ / √(running_var + eps)   (a fixed affine map)"
    if kind in ("batch_norm1d", "layer_norm"):
        group = "the batch's column" if kind == "batch_norm1d" else "this sample's features"
        return (
            f"∂L/∂{sym_in} = (g - mean(g) - x̂ ⊙ mean(g ⊙ x̂)) / √(σ² + eps), "
            f"g = γ ⊙ ∂L/∂{sym_out}, means over {group}   (through x̂, σ² and μ)"
        )
    return f"∂L/∂{sym_in} = ∂L/∂{sym_out} ⊙ {NAMES[kind]}'({sym_in})   (∂h/∂z = f'(z))"


def delta_formulas(specs: list[dict[str, Any]], training: bool) -> dict[int, str]:
    """For each Dense layer k, δ_k = ∂L/∂z_k written from the next Dense layer's δ (or from
    ∂L/∂o) through the layers between, e.g. "δ_0 = (W_2ᵀ δ_2) ⊙ ReLU'(z_0)"."""
    syms = symbols(specs)
    dense = [k for k, spec in enumerate(specs) if spec["type"] == "dense"]
    formulas = {}
    for pos, k in enumerate(dense):
        above = dense[pos + 1] if pos + 1 < len(dense) else None
        expr = f"W_{above}ᵀ δ_{above}" if above is not None else "∂L/∂o"
        factors: list[str] = []
        stop = above if above is not None else len(specs)
        for j in range(stop - 1, k, -1):
            kind = specs[j]["type"]
            arg = syms[j - 1]
            if kind == "dropout":
                if training:
                    factors.append(f"m_{j}/(1-p_{j})")
            elif kind == "batch_norm1d" and not training:
                factors.append(f"γ_{j}/√(var_{j}+eps)")
            elif kind in ("batch_norm1d", "layer_norm"):
                inner = " ⊙ ".join([f"({expr})" if factors else expr, *factors])
                expr, factors = f"{NAMES[kind]}_{j}ᵀ[{inner}]", []
            elif kind not in STRUCTURAL and kind != "identity":
                factors.append(f"{NAMES[kind]}'({arg})")
        if factors:
            expr = " ⊙ ".join([f"({expr})", *factors])
        formulas[k] = f"δ_{k} = ∂L/∂z_{k} = {expr}"
    return formulas


def _activation_notes(step: LayerStep, row: int, sym_in: str) -> list[str]:
    derivative = step.local["f'"][row]
    n = len(derivative)
    notes = []
    # Only ReLU is exactly flat on a whole side; elsewhere f' = 0 is f' underflowing.
    zero = int((derivative == 0.0).sum()) if step.kind == "relu" else 0
    name = NAMES[step.kind]
    if zero:
        notes.append(
            f"{zero} of {n} units are inactive for this sample ({sym_in} ≤ 0, {name}' = 0): "
            "no gradient flows back through them, and the weights into them learn nothing "
            "from this sample"
        )
    peak = PEAK_DERIVATIVE.get(step.kind, 1.0)
    saturated = int((np.abs(derivative) < SATURATED * peak).sum()) - zero
    if saturated:
        notes.append(
            f"{saturated} of {n} units are saturated ({name}'({sym_in}) < {SATURATED * peak:g}, "
            f"under 1% of its peak {peak:g}): they pass almost no gradient back, so the weights "
            "into them learn almost nothing from this sample"
        )
    return notes


def summarize(steps: list[LayerStep], row: int, training: bool, top: int) -> list[LayerSummary]:
    """The summary of every layer for sample `row`, input layer first."""
    specs = [step.spec for step in steps]
    syms = symbols(specs)
    deltas = delta_formulas(specs, training)
    n_rows = steps[0].input.shape[0]
    last_dense = max(step.index for step in steps if step.kind == "dense")
    summaries = []
    for step in steps:
        k = step.index
        sym_out = syms[k]
        sym_in = syms[k - 1] if k > 0 else "x"
        g_out, g_in = step.grad_output[row], step.grad_input[row]
        s = LayerSummary(
            index=k,
            kind=step.kind,
            name=layer_name(step.spec, training),
            output_symbol=sym_out,
            input_symbol=sym_in,
            formula=_local_formula(step, sym_in, sym_out, training, k == last_dense),
            delta_formula=deltas.get(k),
            grad_output=g_out,
            grad_input=g_in,
            gradient_norms={name: float(np.linalg.norm(g)) for name, g in step.gradients.items()},
            largest=largest(g_out, top),
        )
        if step.kind == "dense":
            weight = step.local["W"]
            order = largest(g_in, top)
            s.sums = [weighted_sum(g_out, weight, e.index, top) for e in order]
            following = steps[k + 1].kind if k + 1 < len(steps) else None
            if following == "batch_norm1d" and training and f"{k}.bias" in step.gradients:
                s.notes.append(
                    "its bias has no effect before a BatchNorm1d in training mode (the batch "
                    "mean is subtracted): ∂L/∂b is 0 up to rounding"
                )
            zeros = int((step.input[row] == 0.0).sum())
            if zeros and k == 0:  # below, an inactive unit's note already says it
                s.notes.append(
                    f"x[j] = 0 for {zeros} of {len(g_in)} inputs: the weights from them "
                    f"get no gradient from this sample (∂z/∂w = a = 0)"
                )
        elif step.kind == "dropout":
            mask = step.local["mask"][row]
            s.local = {"mask": mask, "scale": float(step.local["scale"])}
            if training:
                dropped = int((mask == 0.0).sum())
                s.notes.append(
                    f"this sample's mask drops {dropped} of {len(mask)} units: they pass no "
                    f"gradient back; the kept ones pass theirs · 1/(1-p) = "
                    f"{float(step.local['scale']):g}"
                )
        elif step.kind in ("batch_norm1d", "layer_norm"):
            s.local = {"x̂": step.local["x̂"][row]}
            if step.kind == "batch_norm1d" and training and n_rows > 1:
                others = np.delete(step.grad_input, row, axis=0)
                s.notes.append(
                    f"through the batch's mean and variance this sample's loss reaches the other "
                    f"{n_rows - 1} samples of the batch too (‖their ∂L/∂{sym_in}‖ = "
                    f"{np.linalg.norm(others):.3e}): the layers below learn from all of them"
                )
        elif step.kind != "identity":
            s.local = {"f'": step.local["f'"][row]}
            s.notes += _activation_notes(step, row, sym_in)
        out_norm, in_norm = float(np.linalg.norm(g_out)), float(np.linalg.norm(g_in))
        if out_norm > 0 and in_norm / out_norm >= EXPLODING_FACTOR and k > 0:
            s.notes.append(
                f"an exploding factor: the gradient's norm grows by a factor "
                f"{in_norm / out_norm:.3g} through this layer (‖∂L/∂{sym_out}‖ = {out_norm:.3e} → "
                f"‖∂L/∂{sym_in}‖ = {in_norm:.3e})"
            )
        summaries.append(s)
    return summaries


def pass_notes(summaries: list[LayerSummary]) -> list[str]:
    """Notes on the whole pass: a gradient that vanished or exploded between the output and
    the first Dense layer."""
    dense = [s for s in summaries if s.kind == "dense"]
    if len(dense) < 2:
        return []
    top, bottom = dense[-1].delta_norm, dense[0].delta_norm
    if top == 0.0:
        return []
    ratio = bottom / top
    if ratio <= VANISHING_RATIO:
        return [
            f"vanishing gradient: ‖δ‖ falls from {top:.3e} at the last Dense layer to "
            f"{bottom:.3e} at the first (a factor {ratio:.1e}); the first layers learn little"
        ]
    if ratio >= 1.0 / VANISHING_RATIO:
        return [
            f"exploding gradient: ‖δ‖ grows from {top:.3e} at the last Dense layer to "
            f"{bottom:.3e} at the first (a factor {ratio:.1e})"
        ]
    return []

"""The forward and backward pass of a batch through a network's layers, in NumPy float64.

This is the computation every explanation reads. It is written for clarity, one layer kind
at a time, and kept apart from the two implementations it is checked against (the Rust
kernels and `bpcore.reference`): the element-wise functions f and f' and the dropout masks
come from the reference (they define what bpcore computes), the chain rule that strings them
together is written out here.

For a layer with input a and output u, the backward step turns ∂L/∂u into ∂L/∂a:

- Dense, u = z = W a + b:          ∂L/∂a = Wᵀ δ with δ = ∂L/∂z; ∂L/∂W = δ aᵀ, ∂L/∂b = δ
- activation, u = h = f(z):        ∂L/∂z = ∂L/∂h ⊙ f'(z)
- Dropout, u = a ⊙ m / (1 - p):    ∂L/∂a = ∂L/∂u ⊙ m / (1 - p)   (m this sample's 0/1 mask)
- BatchNorm1d / LayerNorm, u = γ x̂ + β with x̂ = (a - μ) / √(σ² + eps):
  ∂L/∂γ = Σ ∂L/∂u ⊙ x̂, ∂L/∂β = Σ ∂L/∂u, and ∂L/∂a through x̂ and, where μ and σ² are the
  statistics of a group of values (a batch's column in training mode, a sample's row for
  LayerNorm), through them too: ∂L/∂a = (1/√(σ²+eps)) (g - mean(g) - x̂ mean(g ⊙ x̂)),
  g = γ ⊙ ∂L/∂u, the means over the group. In inference mode BatchNorm1d uses its running
  statistics, constants: ∂L/∂a = ∂L/∂u ⊙ γ / √(running_var + eps).

Rows are samples. One sample is a batch of one row; a sample k of a larger batch (needed by
BatchNorm1d in training mode, whose statistics are the batch's) is explained through the loss
of that sample alone, L = l_k, which `net.gradients` computes with the sample weights n·e_k.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bpcore import reference as ref

Array = npt.NDArray[np.float64]

#: Layer kinds that are not element-wise activations.
STRUCTURAL = {"dense", "dropout", "batch_norm1d", "layer_norm"}


@dataclass
class LayerStep:
    """One layer of the pass: what went in and out, and the gradients on both sides.

    Attributes:
        index: the layer's position in ``net.layers`` (its parameter prefix).
        spec: the layer's complete spec (``{"type": "dense", ...}``).
        input, output: the layer's input and output batch (rows = samples).
        grad_output: ∂L/∂output, what arrived from the layer above.
        grad_input: ∂L/∂input, what this layer passes down.
        local: the layer's local derivative: ``"W"`` (Dense), ``"f'"`` (activations), ``"mask"`` and
            ``"scale"`` (Dropout), ``"x̂"``, ``"mean"``, ``"var"``, ``"inv_std"`` (norms).
        gradients: the layer's parameter gradients by full name ("2.weight", "2.bias").
        magnitudes: for each gradient, the sum of the magnitudes of the terms it sums over
            the batch (Σ_n |δ| |a| for a weight): the scale of its rounding error, much larger
            than the gradient where the terms cancel (a bias before a batch norm: 0).
    """

    index: int
    spec: dict[str, Any]
    input: Array
    output: Array
    grad_output: Array = field(default_factory=lambda: np.zeros(0))
    grad_input: Array = field(default_factory=lambda: np.zeros(0))
    local: dict[str, Array] = field(default_factory=dict)
    gradients: dict[str, Array] = field(default_factory=dict)
    magnitudes: dict[str, Array] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The spec's type name: "dense", "relu", "dropout", "batch_norm1d", ..."""
        return str(self.spec["type"])


@dataclass
class Pass:
    """The result of `run`: the loss, ∂L/∂o and every layer's step, input layer first."""

    loss: float
    outputs: Array
    output_gradient: Array
    steps: list[LayerStep]


def _elementwise(function: Callable[[float], float], values: Array) -> Array:
    return np.array([[function(float(v)) for v in row] for row in values], dtype=np.float64)


def _normalize(a: Array, axis: int, eps: float) -> tuple[Array, Array, Array, Array]:
    """(x̂, mean, biased variance, 1/√(var + eps)) over `axis` (0: batch norm, 1: layer norm)."""
    mean = a.mean(axis=axis, keepdims=True)
    var = ((a - mean) ** 2).mean(axis=axis, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    return (a - mean) * inv_std, mean, var, inv_std


def _forward_step(
    step: LayerStep,
    params: Mapping[str, Array],
    buffers: Mapping[str, Array],
    training: bool,
    seed: int,
    forwards: int,
) -> Array:
    """The layer's output; fills ``step.local`` with what its backward step needs."""
    k, spec, a = step.index, step.spec, step.input
    kind = step.kind
    if kind == "dense":
        step.local["W"] = params[f"{k}.weight"]  # ∂z/∂a
        z = a @ params[f"{k}.weight"].T
        return z + params[f"{k}.bias"] if f"{k}.bias" in params else z
    if kind == "dropout":
        p = float(spec["p"])
        mask: Array
        if training:
            mask = np.array(ref.dropout_mask(p, seed, forwards, k, a.shape[0], a.shape[1]))
            scale = 1.0 / (1.0 - p)
        else:  # inference: the identity
            mask, scale = np.ones_like(a), 1.0
        step.local.update(mask=mask, scale=np.array(scale))
        return a * mask * scale
    if kind in ("batch_norm1d", "layer_norm"):
        gamma, beta = params[f"{k}.weight"], params[f"{k}.bias"]
        eps = float(spec["eps"])
        if kind == "batch_norm1d" and not training:
            mean = buffers[f"{k}.running_mean"][None, :]
            var = buffers[f"{k}.running_var"][None, :]
            inv_std = 1.0 / np.sqrt(var + eps)
            xhat = (a - mean) * inv_std
        else:
            xhat, mean, var, inv_std = _normalize(a, 0 if kind == "batch_norm1d" else 1, eps)
        step.local.update({"x̂": xhat, "mean": mean, "var": var, "inv_std": inv_std})
        return gamma * xhat + beta
    f, df = ref.scalar_functions(spec)
    step.local["f'"] = _elementwise(df, a)
    return _elementwise(f, a)


def _backward_step(step: LayerStep, params: Mapping[str, Array], training: bool) -> Array:
    """∂L/∂input from ``step.grad_output``; fills ``step.gradients``."""
    k, g, a = step.index, step.grad_output, step.input
    kind = step.kind
    if kind == "dense":
        weight = params[f"{k}.weight"]
        step.gradients[f"{k}.weight"] = g.T @ a  # Σ over the batch of δ aᵀ
        step.magnitudes[f"{k}.weight"] = np.abs(g).T @ np.abs(a)
        if f"{k}.bias" in params:
            step.gradients[f"{k}.bias"] = g.sum(axis=0)
            step.magnitudes[f"{k}.bias"] = np.abs(g).sum(axis=0)
        return g @ weight  # row by row, Wᵀ δ
    if kind == "dropout":
        return g * step.local["mask"] * step.local["scale"]
    if kind in ("batch_norm1d", "layer_norm"):
        gamma = params[f"{k}.weight"]
        xhat, inv_std = step.local["x̂"], step.local["inv_std"]
        step.gradients[f"{k}.weight"] = (g * xhat).sum(axis=0)
        step.gradients[f"{k}.bias"] = g.sum(axis=0)
        step.magnitudes[f"{k}.weight"] = np.abs(g * xhat).sum(axis=0)
        step.magnitudes[f"{k}.bias"] = np.abs(g).sum(axis=0)
        grad_xhat = g * gamma
        if kind == "batch_norm1d" and not training:  # fixed statistics: an affine map
            return grad_xhat * inv_std
        axis = 0 if kind == "batch_norm1d" else 1
        mean_g: Array = grad_xhat.mean(axis=axis, keepdims=True)
        mean_gx: Array = (grad_xhat * xhat).mean(axis=axis, keepdims=True)
        return inv_std * (grad_xhat - mean_g - xhat * mean_gx)
    return g * step.local["f'"]


def run(
    specs: list[dict[str, Any]],
    loss_spec: dict[str, Any],
    params: Mapping[str, Array],
    buffers: Mapping[str, Array],
    X: Array,
    targets: Any,
    sample_weight: list[float] | None,
    *,
    training: bool,
    seed: int,
    forwards: int,
) -> Pass:
    """The forward pass of `X` and the backward pass of the (sample-weighted) loss, float64.

    `params` and `buffers` are float64 arrays by name; `targets` as the reference takes them
    (labels or rows); `forwards` is the network's training-forward count, the step of its
    dropout masks.
    """
    steps: list[LayerStep] = []
    h = X
    for k, spec in enumerate(specs):
        step = LayerStep(index=k, spec=spec, input=h, output=h)
        h = _forward_step(step, params, buffers, training, seed, forwards)
        step.output = h
        steps.append(step)
    loss, grad = ref.loss_value_and_grad(loss_spec, h.tolist(), targets, sample_weight)
    output_gradient = np.array(grad, dtype=np.float64)
    g = output_gradient
    for step in reversed(steps):
        step.grad_output = g
        g = _backward_step(step, params, training)
        step.grad_input = g
    return Pass(loss=float(loss), outputs=h, output_gradient=output_gradient, steps=steps)

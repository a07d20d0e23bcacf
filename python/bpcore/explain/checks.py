"""Every number of an explanation, checked against the Rust kernels and `bpcore.reference`.

The parameter gradients of the pass (`backward.py`) are compared tensor by tensor with
`net.gradients` (Rust, the network's dtype) and with `bpcore.reference.Network.gradients`
(pure Python, float64). For one sample ∂L/∂b of a Dense layer is its δ = ∂L/∂z, so the error
signals are checked with the biases; ∂L/∂W = δ aᵀ checks them against the inputs too.

Both of those run in training mode. An explanation in inference mode (dropout off, batch norm
by its running statistics) is checked on the same network with each Dropout replaced by
Identity and each BatchNorm1d folded into the Dense layer it then is, W = diag(γ/s),
b = β - γ μ/s with s = √(running_var + eps): the other layers keep their positions and
parameter names, ∂L/∂β = ∂L/∂b, and ∂L/∂γ = ∂L/∂W_jj / s - ∂L/∂b · μ/s by the chain rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bpcore import reference as ref
from bpcore.layers import Dense, Identity, Layer

if TYPE_CHECKING:
    from bpcore.network import Network

Array = np.ndarray

#: Tolerance of the comparison with the Rust kernels, per network dtype, relative to the
#: largest entry of the tensor; the reference computes in float64 whatever the network's dtype.
RUST_TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
REFERENCE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Check:
    """One gradient tensor of the explanation against another implementation's.

    Attributes:
        name: the parameter ("2.weight"); against: "net.gradients" or "bpcore.reference".
        difference: max |explained - other| over the tensor, relative to its scale: the
            largest of its entries (either implementation's) and of the sums of magnitudes of
            the terms that formed them (where terms cancel, rounding is relative to those).
        tolerance: the largest difference accepted.
    """

    name: str
    against: str
    difference: float
    tolerance: float

    @property
    def ok(self) -> bool:
        """Whether the two agree within the tolerance."""
        return self.difference <= self.tolerance


def compare(
    explained: Mapping[str, Array],
    magnitudes: Mapping[str, Array],
    other: Mapping[str, Array],
    against: str,
    tolerance: float,
) -> list[Check]:
    """A `Check` per parameter of `explained`."""
    checks = []
    for name, value in explained.items():
        theirs = np.asarray(other[name], dtype=np.float64)
        scale = max(
            float(np.abs(value).max(initial=0.0)),
            float(np.abs(theirs).max(initial=0.0)),
            float(magnitudes[name].max(initial=0.0)),
        )
        diff = float(np.abs(value - theirs).max(initial=0.0))
        relative = diff / scale if scale > 0 else diff
        checks.append(Check(name, against, relative, tolerance))
    return checks


@contextmanager
def network_left_as_it_was(net: Network) -> Iterator[int]:
    """Yields the network's training-forward count (the step of the next dropout masks) and
    restores what a training-mode forward changes: batch norm's running statistics (public
    `set_buffers`) and that count, which `Network` exposes to no public setter, so this one
    place reads and writes it on the native network."""
    forwards = int(net.native.training_forwards)
    buffers = net.buffers()
    try:
        yield forwards
    finally:
        if buffers:
            net.set_buffers(buffers)
        net.native.training_forwards = forwards


def fold_for_inference(
    layers: list[Layer],
    specs: list[dict[str, Any]],
    params: Mapping[str, Array],
    buffers: Mapping[str, Array],
) -> tuple[list[Layer], dict[str, Array]]:
    """The network's inference-mode function with Dropout as Identity and each BatchNorm1d as
    a Dense layer, and its parameters (float64)."""
    folded: list[Layer] = []
    values = dict(params)
    for k, (layer, spec) in enumerate(zip(layers, specs)):
        if spec["type"] == "dropout":
            folded.append(Identity())
        elif spec["type"] == "batch_norm1d":
            f = int(spec["num_features"])
            s = np.sqrt(buffers[f"{k}.running_var"] + float(spec["eps"]))
            gamma, beta, mean = (
                params[f"{k}.weight"],
                params[f"{k}.bias"],
                buffers[f"{k}.running_mean"],
            )
            folded.append(Dense(f, f))
            values[f"{k}.weight"] = np.diag(gamma / s)
            values[f"{k}.bias"] = beta - gamma * mean / s
        else:
            folded.append(layer)
    return folded, values


def unfold_gradients(
    specs: list[dict[str, Any]],
    grads: Mapping[str, Array],
    buffers: Mapping[str, Array],
) -> dict[str, Array]:
    """The original network's gradients from those of its folded form."""
    out = {name: np.asarray(g, dtype=np.float64) for name, g in grads.items()}
    for k, spec in enumerate(specs):
        if spec["type"] != "batch_norm1d":
            continue
        s = np.sqrt(buffers[f"{k}.running_var"] + float(spec["eps"]))
        grad_w, grad_b = np.diag(out[f"{k}.weight"]), out[f"{k}.bias"]
        # W_jj = γ_j/s_j and b_j = β_j - γ_j μ_j/s_j both depend on γ_j.
        out[f"{k}.weight"] = grad_w / s - grad_b * buffers[f"{k}.running_mean"] / s
        out[f"{k}.bias"] = grad_b
    return out


def reference_gradients(
    layers: list[Any],
    loss_spec: dict[str, Any],
    params: Mapping[str, Array],
    buffers: Mapping[str, Array],
    X: Array,
    targets: Any,
    sample_weight: list[float] | None,
    seed: int,
    forwards: int,
) -> dict[str, Array]:
    """`bpcore.reference.Network.gradients` on the given parameters and state (float64)."""
    net = ref.Network(layers, loss=loss_spec, seed=seed)
    net.set_parameters({k: v.tolist() for k, v in params.items()})
    if buffers:
        net.set_buffers(
            {
                k: int(v) if k.endswith("num_batches_tracked") else v.tolist()
                for k, v in buffers.items()
            }
        )
    net.training_forwards = forwards
    grads = net.gradients(X.tolist(), targets, sample_weight)
    return {k: np.asarray(v, dtype=np.float64) for k, v in grads.items()}

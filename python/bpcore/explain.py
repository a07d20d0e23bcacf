"""`bp.explain`: the chain rule for one weight and one sample, term by term.

For the weight w_ij of a Dense layer (row i = output unit, column j = input), with z = W a + b
the layer's pre-activation, h = f(z) the activation after it (if one follows) and L the loss:

    ∂L/∂w_ij = ∂L/∂h_i · ∂h_i/∂z_i · ∂z_i/∂w_ij,      ∂z_i/∂w_ij = a_j

∂L/∂h_i is what flows back from the layers above (from ∂L/∂o at the output, through each
layer's local derivative); ∂h_i/∂z_i = f'(z_i) is the activation's local derivative (1 when no
activation follows the layer); a_j is the layer's input j. The factors are computed by the
pure-Python reference (`bpcore.reference`, float64, the readable chain rule) on the network's
own parameters, and their product is checked against the gradient the Rust kernels give
(`net.gradients(x, y)`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from bpcore import reference as ref
from bpcore.layers import Dense

if TYPE_CHECKING:
    from bpcore.network import Network

#: Relative tolerance of the product-versus-gradient check, per network dtype.
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


class Explanation:
    """The chain-rule factors of one weight's gradient for one sample.

    Attributes:
        terms: [(name, value)] — ∂L/∂h_i, ∂h_i/∂z_i, ∂z_i/∂w_ij (= a_j).
        product: the product of the terms (float64).
        gradient: ``net.gradients(x, y)[f"{layer}.weight"][i, j]`` from the Rust kernels.
        matches: whether product ≈ gradient within `tolerance` (relative to the larger of
            |product| and the largest gradient entry of the tensor).
        loss: the sample's loss; output_gradient: ∂L/∂o, the gradient at the network's output.
    """

    def __init__(
        self,
        *,
        layer: int,
        index: tuple[int, int],
        activation: str | None,
        terms: list[tuple[str, float]],
        gradient: float,
        scale: float,
        dtype: str,
        loss: float,
        output_gradient: list[float],
    ) -> None:
        self.layer = layer
        self.index = index
        self.activation = activation
        self.terms = terms
        self.product = math.prod(v for _, v in terms)
        self.gradient = gradient
        self.dtype = dtype
        self.tolerance = TOLERANCE[dtype]
        self.loss = loss
        self.output_gradient = output_gradient
        diff = abs(self.product - gradient)
        self.relative_difference = diff / max(abs(self.product), abs(gradient), 1e-300)
        self.matches = diff <= self.tolerance * max(abs(self.product), abs(gradient), scale)

    def __str__(self) -> str:
        i, j = self.index
        act = f"the {self.activation} after it" if self.activation else "no activation after it"
        lines = [
            f"∂L/∂w[{i},{j}] of layer {self.layer} ({self.layer}.weight[{i}, {j}]), one sample, "
            f"{act}; loss {self.loss:.6g}",
            f"  ∂L/∂o (at the output) = [{', '.join(f'{v:.6g}' for v in self.output_gradient)}]",
        ]
        notes = (
            "what flows back from the layers above",
            "the activation's local derivative f'(z_i)" if self.activation else "no activation",
            "the layer's input a_j",
        )
        width = max(len(name) for name, _ in self.terms)
        for (name, value), note in zip(self.terms, notes):
            lines.append(f"  {name:<{width}} = {value: .10e}   ({note})")
        lines.append(f"  {'product':<{width}} = {self.product: .10e}")
        lines.append(f"  {'gradient':<{width}} = {self.gradient: .10e}   (net.gradients, Rust)")
        verdict = "equal" if self.matches else "NOT EQUAL"
        lines.append(
            f"  product and gradient are {verdict}: relative difference "
            f"{self.relative_difference:.1e} (tolerance {self.tolerance:g} in {self.dtype})"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Explanation(layer={self.layer}, index={self.index}, product={self.product!r}, "
            f"gradient={self.gradient!r}, matches={self.matches})"
        )

    def print(self, file: TextIO | None = None) -> None:
        """Prints the explanation (to stdout, or `file`)."""
        print(str(self), file=file)


def _index(index: Any, rows: int, cols: int) -> tuple[int, int]:
    if (
        not isinstance(index, Sequence)
        or len(index) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in index)
    ):
        raise TypeError(f"index: expected a pair of integers (i, j), got {index!r}")
    i, j = int(index[0]), int(index[1])
    if not (0 <= i < rows and 0 <= j < cols):
        raise ValueError(
            f"index: ({i}, {j}) is outside the weight's shape ({rows}, {cols}) "
            "(i = output unit, j = input)"
        )
    return i, j


def explain(net: Network, x: Any, y: Any, layer: int, index: Any) -> Explanation:
    """The chain-rule factors of ∂L/∂w for the weight `index` = (i, j) of Dense layer `layer`.

    Args:
        net: a bpcore Network of Dense layers and activations.
        x: one sample, shape (n_features,) or (1, n_features).
        y: its target: a class label for cross_entropy, else the output's values.
        layer: the Dense layer's position in ``net.layers`` (its parameter prefix).
        index: (i, j): output unit i, input j, as in ``weight[i, j]``.

    Returns an `Explanation` (print it); `.product` equals `.gradient` up to `.tolerance`.

    Example:
        >>> import numpy as np, bpcore as bp
        >>> net = bp.Network([bp.Dense(2, 3), bp.Sigmoid(), bp.Dense(3, 1)], loss="mse",
        ...                  dtype="float64", seed=0)
        >>> e = bp.explain(net, np.array([0.5, -1.0]), np.array([1.0]), layer=0, index=(1, 0))
        >>> [name for name, _ in e.terms]
        ['∂L/∂h_1', '∂h_1/∂z_1', '∂z_1/∂w_1,0 = a_0']
        >>> e.matches, e.terms[2][1]  # ∂z_i/∂w_ij is the input a_j
        (True, 0.5)
    """
    layers = net.layers
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise TypeError(f"layer: expected an integer position in net.layers, got {layer!r}")
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer: expected 0 <= layer < {len(layers)}, got {layer}")
    dense = layers[layer]
    if not isinstance(dense, Dense):
        raise ValueError(
            f"layer: net.layers[{layer}] is {type(dense).__name__}, not Dense; the Dense layers "
            f"are at {[k for k, lay in enumerate(layers) if isinstance(lay, Dense)]}"
        )
    i, j = _index(index, dense.out_features, dense.in_features)
    specs = [ref.layer_spec(lay.to_spec()) for lay in layers]
    for k, spec in enumerate(specs):
        if spec["type"] == "dense":
            continue
        try:
            ref.scalar_functions(spec)
        except ValueError:
            raise ValueError(
                f"net: layer {k} ({type(layers[k]).__name__}) is not supported by explain yet; "
                "explain handles networks of Dense layers and activations"
            ) from None

    a = np.asarray(x)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2 or a.shape[0] != 1:
        raise ValueError(
            f"x: expected one sample, shape ({net.n_features},) or (1, {net.n_features}), "
            f"got shape {np.shape(x)}"
        )
    x2 = net._x(a)  # in the network's dtype, exactly what the Rust kernels read
    t = net._y(np.reshape(y, -1) if net.loss_function.takes_labels else np.reshape(y, (1, -1)), 1)
    gradients = net.gradients(x2, t)[f"{layer}.weight"]

    # The reference's forward pass in float64, on the network's own parameter values.
    params = {k: v.astype(np.float64).tolist() for k, v in net.parameters().items()}
    h = x2.astype(np.float64).tolist()
    inputs = []
    for k, spec in enumerate(specs):
        inputs.append(h)
        if spec["type"] == "dense":
            h = ref.dense_forward(h, params[f"{k}.weight"], params.get(f"{k}.bias"))
        else:
            h = [ref.activation_forward(spec, row) for row in h]
    targets = t.tolist() if net.loss_function.takes_labels else t.astype(np.float64).tolist()
    loss, grad = ref.loss_value_and_grad(net.loss_function.to_spec(), h, targets)
    output_gradient = list(grad[0])

    # Back from the output to h, the output of the activation after the layer (if any).
    has_activation = layer + 1 < len(specs) and specs[layer + 1]["type"] != "dense"
    top = layer + 1 if has_activation else layer
    for k in range(len(specs) - 1, top, -1):
        if specs[k]["type"] == "dense":
            grad = ref.dense_backward(inputs[k], params[f"{k}.weight"], grad)[2]
        else:
            grad = [ref.activation_backward(specs[k], inputs[k][0], grad[0])]
    dl_dh = grad[0][i]
    if has_activation:
        _, df = ref.scalar_functions(specs[top])
        dh_dz = df(inputs[top][0][i])
    else:
        dh_dz = 1.0
    a_j = inputs[layer][0][j]
    terms = [
        (f"∂L/∂h_{i}", dl_dh),
        (f"∂h_{i}/∂z_{i}", dh_dz),
        (f"∂z_{i}/∂w_{i},{j} = a_{j}", a_j),
    ]
    return Explanation(
        layer=layer,
        index=(i, j),
        activation=type(layers[top]).__name__ if has_activation else None,
        terms=terms,
        gradient=float(gradients[i, j]),
        scale=float(np.abs(gradients).max()),
        dtype=net.dtype.name,
        loss=float(loss),
        output_gradient=output_gradient,
    )

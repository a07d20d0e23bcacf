"""The reference network: a stack of layers, a loss and an optimizer, in plain Python.

Forward: each layer maps its input batch to its output batch, and the input of every layer
is kept. Backward: ∂L/∂outputs from the loss is carried back through the layers in reverse
order; each layer turns ∂L/∂(its output) into ∂L/∂(its input) by the chain rule and, if it
is dense, also into ∂L/∂W and ∂L/∂b (see ``dense.py`` and ``activations.py``).
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

from .activations import scalar_functions
from .arrays import as_labels, as_matrix, as_rows, as_targets, as_vector
from .dense import dense_backward, dense_forward
from .losses import loss_value_and_grad
from .optimizers import Optimizer, make_optimizer
from .specs import layer_spec, loss_spec

# Activations after which a dense layer is initialized with He's bound √(6/in).
_HE_ACTIVATIONS = {"relu", "leaky_relu", "elu", "gelu"}


class Network:
    """A sequential network whose arithmetic is Python floats (float64).

    ``layers`` are spec dicts or objects with ``.to_spec()``; ``loss`` a name, spec dict or
    object; ``optimizer`` a spec dict, object, or None for SGD with lr=0.01. Parameters are
    named like ``torch.nn.Sequential``'s state dict: ``"<index>.weight"`` (out × in) and
    ``"<index>.bias"``, index being the layer's position in ``layers``.
    """

    def __init__(
        self,
        layers: list[Any],
        loss: Any = "mse",
        optimizer: Any = None,
        seed: int = 0,
    ) -> None:
        """Build the layers, initialize the parameters from ``seed``, create the optimizer."""
        self.layers: list[dict[str, Any]] = [layer_spec(item) for item in layers]
        self.loss_spec: dict[str, Any] = loss_spec(loss)
        self.optimizer: Optimizer = make_optimizer(optimizer)
        self.seed = seed
        self._check_widths()
        self._params: dict[str, Any] = {}
        self._init_parameters(random.Random(seed))
        # Activations' scalar (f, f') pairs, built once per layer.
        self._functions = {
            k: scalar_functions(spec)
            for k, spec in enumerate(self.layers)
            if spec["type"] != "dense"
        }

    # ----------------------------------------------------------------- construction

    def _check_widths(self) -> None:
        """Each dense layer must take the width the layers before it produce."""
        width = None
        for k, spec in enumerate(self.layers):
            if spec["type"] != "dense":
                continue
            if width is not None and spec["in_features"] != width:
                raise ValueError(
                    f"layer {k}: in_features={spec['in_features']} but the previous "
                    f"layers produce {width} features"
                )
            width = spec["out_features"]
        if width is None:
            raise ValueError("the network needs at least one dense layer")

    def _init_parameters(self, rng: random.Random) -> None:
        """Weights ~ U(-b, b): He b = √(6/in) before a ReLU-like layer, else Glorot
        b = √(6/(in+out)); biases zero."""
        for k, spec in enumerate(self.layers):
            if spec["type"] != "dense":
                continue
            fan_in, fan_out = spec["in_features"], spec["out_features"]
            following = self.layers[k + 1]["type"] if k + 1 < len(self.layers) else None
            if following in _HE_ACTIVATIONS:
                bound = math.sqrt(6.0 / fan_in)
            else:
                bound = math.sqrt(6.0 / (fan_in + fan_out))
            self._params[f"{k}.weight"] = [
                [rng.uniform(-bound, bound) for _ in range(fan_in)] for _ in range(fan_out)
            ]
            if spec["bias"]:
                self._params[f"{k}.bias"] = [0.0] * fan_out

    @property
    def in_features(self) -> int:
        """The width of an input row (that of the first dense layer)."""
        return next(s["in_features"] for s in self.layers if s["type"] == "dense")

    @property
    def out_features(self) -> int:
        """The width of an output row (that of the last dense layer)."""
        return [s["out_features"] for s in self.layers if s["type"] == "dense"][-1]

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in parameter order."""
        shapes: dict[str, tuple[int, ...]] = {}
        for name, value in self._params.items():
            shapes[name] = (len(value), len(value[0])) if name.endswith("weight") else (len(value),)
        return shapes

    # ------------------------------------------------------------------ parameters

    def parameters(self) -> dict[str, list]:
        """Name -> value (weights as lists of rows, biases as lists), deep copies."""
        return copy.deepcopy(self._params)

    def _checked(self, values: Any, what: str) -> dict[str, Any]:
        """``values`` as plain lists, after checking names and shapes against ours."""
        values = dict(values)
        for name in values:
            if name not in self._params:
                raise ValueError(f"{what}: unexpected parameter {name!r}")
        checked = {}
        for name, shape in self.parameter_shapes().items():
            if name not in values:
                raise ValueError(f"{what}: missing parameter {name!r}")
            if len(shape) == 2:
                checked[name] = as_matrix(values[name], f"{what} {name!r}", *shape)
            else:
                checked[name] = as_vector(values[name], f"{what} {name!r}", shape[0])
        return checked

    def set_parameters(self, values: dict[str, Any]) -> None:
        """Replace every parameter; names and shapes must match ``parameters()``."""
        self._params = self._checked(values, "set_parameters")

    # --------------------------------------------------------------------- forward

    def _forward(self, X: Any) -> tuple[list[list[float]], list[list[list[float]]]]:
        """The outputs, and the input batch of every layer (kept for the backward pass)."""
        h = as_rows(X, "X", self.in_features)
        inputs = []
        for k, spec in enumerate(self.layers):
            inputs.append(h)
            if spec["type"] == "dense":
                h = dense_forward(h, self._params[f"{k}.weight"], self._params.get(f"{k}.bias"))
            else:
                f, _ = self._functions[k]
                h = [[f(v) for v in row] for row in h]
        return h, inputs

    def forward(self, X: Any) -> list[list[float]]:
        """The network's outputs for a batch ``X`` (n rows of ``in_features``)."""
        return self._forward(X)[0]

    def _targets(self, y: Any, n: int) -> Any:
        if self.loss_spec["type"] == "cross_entropy":
            return as_labels(y, "y", n)
        return as_targets(y, "y", n, self.out_features)

    def loss(self, X: Any, y: Any, training: bool = False) -> float:
        """The mean loss over the batch (``training`` changes nothing here: no dropout)."""
        outputs = self.forward(X)
        return loss_value_and_grad(self.loss_spec, outputs, self._targets(y, len(outputs)))[0]

    # -------------------------------------------------------------------- backward

    def _loss_and_gradients(self, X: Any, y: Any) -> tuple[float, dict[str, Any]]:
        outputs, inputs = self._forward(X)
        value, grad = loss_value_and_grad(self.loss_spec, outputs, self._targets(y, len(outputs)))
        # ``grad`` is ∂L/∂(output of layer k), walking k from the last layer to the first.
        grads: dict[str, Any] = {}
        first_dense = next(k for k, s in enumerate(self.layers) if s["type"] == "dense")
        for k in range(len(self.layers) - 1, first_dense - 1, -1):
            spec, x = self.layers[k], inputs[k]
            if spec["type"] == "dense":
                # ∂L/∂W = gradᵀ x, ∂L/∂b = Σ_batch grad, ∂L/∂x = grad W (dense.py);
                # the first dense layer's input is data, so its ∂L/∂x is not needed.
                grad_w, grad_b, grad = dense_backward(
                    x, self._params[f"{k}.weight"], grad, input_grad=k > first_dense
                )
                grads[f"{k}.weight"] = grad_w
                if spec["bias"]:
                    grads[f"{k}.bias"] = grad_b
            else:
                # h = f(z) element-wise: ∂L/∂z = ∂L/∂h · f'(z).
                _, df = self._functions[k]
                grad = [[g * df(v) for v, g in zip(x_row, g_row)] for x_row, g_row in zip(x, grad)]
        # Parameter order: layer order, weight before bias (as ``parameters()``).
        return value, {name: grads[name] for name in self._params}

    def gradients(self, X: Any, y: Any) -> dict[str, list]:
        """Name -> ∂L/∂parameter for the batch (same shapes as ``parameters()``); no update."""
        return self._loss_and_gradients(X, y)[1]

    # -------------------------------------------------------------------- training

    def apply_gradients(self, grads: dict[str, Any]) -> None:
        """One optimizer step with the given gradients (names and shapes as parameters)."""
        grads = self._checked(grads, "apply_gradients")
        # The optimizer works on flat lists: flatten, step, and fold back into rows.
        flat_params, flat_grads = [], []
        for name, value in self._params.items():
            if name.endswith("weight"):
                flat_params.append([v for row in value for v in row])
                flat_grads.append([v for row in grads[name] for v in row])
            else:
                flat_params.append(list(value))
                flat_grads.append(grads[name])
        self.optimizer.step(flat_params, flat_grads)
        for (name, value), flat in zip(self._params.items(), flat_params):
            if name.endswith("weight"):
                width = len(value[0])
                self._params[name] = [flat[r * width : (r + 1) * width] for r in range(len(value))]
            else:
                self._params[name] = flat

    def train_step(self, X: Any, y: Any) -> float:
        """Forward, backward and one optimizer step; returns the loss before the update."""
        value, grads = self._loss_and_gradients(X, y)
        self.apply_gradients(grads)
        return value

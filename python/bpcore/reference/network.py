"""The reference network: a stack of layers, a loss and an optimizer, in plain Python.

Forward: each layer maps its input batch to its output batch, and the input of every layer
is kept. Backward: ∂L/∂outputs from the loss is carried back through the layers in reverse
order; each layer turns ∂L/∂(its output) into ∂L/∂(its input) by the chain rule and, if it
has parameters, also into their gradients (see ``dense.py``, ``activations.py``,
``dropout.py`` and ``normalization.py``).

Modes, as torch's ``train()``/``eval()``: ``gradients``, ``train_step`` and
``loss(..., training=True)`` run in training mode — dropout applies its mask, batch norm
normalizes by the batch's statistics and moves its running statistics — and ``forward`` and
``loss`` by default in inference mode, where dropout is the identity and batch norm uses the
running statistics. Every training-mode forward counts one step; the dropout masks are those of
bpcore for (seed, that count, layer index, row, column) (``dropout.py``).
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

from .activations import scalar_functions
from .arrays import as_array, as_labels, as_rows, as_targets, as_vector, flat_values, nested
from .convolution import conv2d_backward, conv2d_forward, pool2d_backward, pool2d_forward
from .dense import dense_backward, dense_forward
from .dropout import dropout_backward, dropout_forward, dropout_mask
from .embedding import check_indices, embeddings_backward, embeddings_forward
from .losses import loss_value_and_grad
from .normalization import (
    batch_norm_backward,
    batch_norm_forward_infer,
    batch_norm_forward_train,
    layer_norm_backward,
    layer_norm_forward,
    update_running,
)
from .optimizers import Optimizer, make_optimizer
from .prelu import prelu_backward, prelu_forward
from .shapes import CONVOLUTIONS, EMBEDDINGS, POOLS, RESHAPES, as_2d, geometry, layer_shapes
from .specs import layer_spec, loss_spec

# Activations after which a dense layer is initialized with He's bound √(6/in).
_HE_ACTIVATIONS = {"relu", "leaky_relu", "elu", "gelu", "silu", "mish", "prelu"}
# Layers with parameters, and those that are not element-wise activations.
_PARAM_LAYERS = {"dense", "batch_norm1d", "layer_norm", "prelu"} | CONVOLUTIONS | EMBEDDINGS
_NOT_ACTIVATIONS = _PARAM_LAYERS | {"dropout"} | POOLS | RESHAPES
# The key of each normalization layer type that gives its feature count.
_FEATURES = {"batch_norm1d": "num_features", "layer_norm": "normalized_shape"}


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
        self._init_buffers()
        # Training-mode forwards so far: the step of the next dropout masks.
        self.training_forwards = 0
        # Activations' scalar (f, f') pairs, built once per layer.
        self._functions = {
            k: scalar_functions(spec)
            for k, spec in enumerate(self.layers)
            if spec["type"] not in _NOT_ACTIVATIONS
        }

    # ----------------------------------------------------------------- construction

    def _check_widths(self) -> None:
        """Each layer must read the shape the layers before it produce (``shapes.py``); the
        shapes are kept for the convolution and pooling layers."""
        self._shapes = layer_shapes(self.layers)

    def _init_parameters(self, rng: random.Random) -> None:
        """Weights ~ U(-b, b): He b = √(6/in) before a ReLU-like layer, else Glorot
        b = √(6/(in+out)); biases zero."""
        for k, spec in enumerate(self.layers):
            if spec["type"] in _FEATURES:
                # Normalization layers: γ = 1, β = 0, as torch (no random draw).
                features = spec[_FEATURES[spec["type"]]]
                self._params[f"{k}.weight"] = [1.0] * features
                self._params[f"{k}.bias"] = [0.0] * features
            if spec["type"] == "prelu":
                # Every slope starts at `init`, as torch.
                self._params[f"{k}.weight"] = [spec["init"]] * spec["num_parameters"]
            if spec["type"] in EMBEDDINGS:
                # Tables ~ N(0, 1), as torch.
                for name, (rows, dim) in self._tables(k).items():
                    self._params[name] = [
                        [rng.gauss(0.0, 1.0) for _ in range(dim)] for _ in range(rows)
                    ]
                continue
            if spec["type"] not in {"dense"} | CONVOLUTIONS:
                continue
            if spec["type"] == "dense":
                fan_in, fan_out = spec["in_features"], spec["out_features"]
                shape: tuple[int, ...] = (fan_out, fan_in)
            else:
                # A convolution's fans are torch's: in·kh·kw and out·kh·kw.
                kernel = geometry(spec)["kernel"]
                taps = kernel[0] * kernel[1]
                fan_in, fan_out = spec["in_channels"] * taps, spec["out_channels"] * taps
                shape = (
                    spec["out_channels"],
                    spec["in_channels"],
                    *kernel[1 if spec["type"] == "conv1d" else 0 :],
                )
            following = self.layers[k + 1]["type"] if k + 1 < len(self.layers) else None
            if following in _HE_ACTIVATIONS:
                bound = math.sqrt(6.0 / fan_in)
            else:
                bound = math.sqrt(6.0 / (fan_in + fan_out))
            values = [rng.uniform(-bound, bound) for _ in range(math.prod(shape))]
            self._params[f"{k}.weight"] = nested(values, shape)
            if spec["bias"]:
                self._params[f"{k}.bias"] = [0.0] * shape[0]

    def _init_buffers(self) -> None:
        """Batch norm's running statistics start at mean 0, variance 1, no batch counted."""
        self._buffers: dict[str, Any] = {}
        for k, spec in enumerate(self.layers):
            if spec["type"] == "batch_norm1d":
                f = spec["num_features"]
                self._buffers[f"{k}.running_mean"] = [0.0] * f
                self._buffers[f"{k}.running_var"] = [1.0] * f
                self._buffers[f"{k}.num_batches_tracked"] = 0

    @property
    def in_features(self) -> int:
        """The width of an input row (that of the first layer that states one)."""
        return math.prod(self._shapes[0])

    @property
    def out_features(self) -> int:
        """The width of an output row."""
        return math.prod(self._shapes[-1])

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in parameter order."""
        shapes: dict[str, tuple[int, ...]] = {}
        for name, value in self._params.items():
            shape = []
            while isinstance(value, list):
                shape.append(len(value))
                value = value[0]
            shapes[name] = tuple(shape)
        return shapes

    # ------------------------------------------------------------------ parameters

    def parameters(self) -> dict[str, list[Any]]:
        """Name -> value (weights as lists of rows, biases as lists), deep copies."""
        return copy.deepcopy(self._params)

    def _checked(self, values: Any, what: str) -> dict[str, Any]:
        """``values`` as plain lists, after checking names and shapes against ours."""
        values = dict(values)
        for name in values:
            if name not in self._params:
                raise ValueError(f"{what}: unexpected parameter {name!r}")
        checked: dict[str, Any] = {}
        for name, shape in self.parameter_shapes().items():
            if name not in values:
                raise ValueError(f"{what}: missing parameter {name!r}")
            checked[name] = as_array(values[name], f"{what} {name!r}", shape)
        return checked

    def set_parameters(self, values: dict[str, Any]) -> None:
        """Replace every parameter; names and shapes must match ``parameters()``."""
        self._params = self._checked(values, "set_parameters")

    def buffers(self) -> dict[str, Any]:
        """Batch norm's buffers, as torch's state_dict names them: "k.running_mean",
        "k.running_var" (lists) and "k.num_batches_tracked" (int); deep copies."""
        return copy.deepcopy(self._buffers)

    def set_buffers(self, values: dict[str, Any]) -> None:
        """Replace every buffer; names must match ``buffers()``."""
        values = dict(values)
        if sorted(values) != sorted(self._buffers):
            raise ValueError(f"set_buffers: expected the names {list(self._buffers)}")
        for name, old in self._buffers.items():
            if name.endswith("num_batches_tracked"):
                self._buffers[name] = int(values[name])
            else:
                self._buffers[name] = as_vector(values[name], f"set_buffers {name!r}", len(old))

    def _tables(self, k: int) -> dict[str, tuple[int, int]]:
        """Layer k's embedding tables: name -> (num_embeddings, embedding_dim)."""
        spec = self.layers[k]
        if spec["type"] == "embedding":
            return {f"{k}.weight": (spec["num_embeddings"], spec["embedding_dim"])}
        return {f"{k}.tables.{c}.weight": (num, dim) for c, num, dim in spec["columns"]}

    def _table_columns(self, k: int) -> list[str | None]:
        """The table each input column of embedding layer k is looked up in (None: a number)."""
        spec = self.layers[k]
        width = math.prod(self._shapes[k])
        if spec["type"] == "embedding":
            return [f"{k}.weight"] * width
        embedded = {c: f"{k}.tables.{c}.weight" for c, _, _ in spec["columns"]}
        return [embedded.get(c) for c in range(width)]

    def _per_slope(self, k: int) -> int:
        """Consecutive values of a row that share one slope of PReLU layer k."""
        width = math.prod(self._shapes[k])
        return width // int(self.layers[k]["num_parameters"])

    def _weight_2d(self, k: int) -> Any:
        """Layer k's convolution weight as (out, in, kh, kw): a 1-d one's kernel as 1 × k."""
        weight = self._params[f"{k}.weight"]
        if self.layers[k]["type"] == "conv1d":
            return [[[c] for c in o] for o in weight]
        return weight

    # --------------------------------------------------------------------- forward

    def _forward(
        self, h: list[list[float]], training: bool
    ) -> tuple[list[list[float]], list[list[list[float]]], dict[int, Any]]:
        """The outputs, the input batch of every layer, and the dropout masks by layer (all
        kept for the backward pass). In training mode this is one training step: batch norm's
        running statistics move and the forward is counted."""
        inputs = []
        masks: dict[int, Any] = {}
        n = len(h)
        if training and n < 2 and any(s["type"] == "batch_norm1d" for s in self.layers):
            raise ValueError("BatchNorm1d in training mode needs more than 1 sample per batch")
        for k, spec in enumerate(self.layers):
            inputs.append(h)
            kind = spec["type"]
            if kind == "dense":
                h = dense_forward(h, self._params[f"{k}.weight"], self._params.get(f"{k}.bias"))
            elif kind == "dropout":
                if training:
                    mask = dropout_mask(
                        spec["p"], self.seed, self.training_forwards, k, n, len(h[0])
                    )
                    masks[k] = mask
                    h = dropout_forward(h, mask, spec["p"])
            elif kind == "batch_norm1d":
                gamma, beta = self._params[f"{k}.weight"], self._params[f"{k}.bias"]
                if training:
                    x = h
                    h = batch_norm_forward_train(x, gamma, beta, spec["eps"])
                    update_running(
                        x,
                        self._buffers[f"{k}.running_mean"],
                        self._buffers[f"{k}.running_var"],
                        spec["momentum"],
                    )
                    self._buffers[f"{k}.num_batches_tracked"] += 1
                else:
                    h = batch_norm_forward_infer(
                        h,
                        gamma,
                        beta,
                        self._buffers[f"{k}.running_mean"],
                        self._buffers[f"{k}.running_var"],
                        spec["eps"],
                    )
            elif kind == "layer_norm":
                gamma, beta = self._params[f"{k}.weight"], self._params[f"{k}.bias"]
                h = layer_norm_forward(h, gamma, beta, spec["eps"])
            elif kind in CONVOLUTIONS:
                g = geometry(spec)
                h = conv2d_forward(
                    h,
                    self._weight_2d(k),
                    self._params.get(f"{k}.bias"),
                    as_2d(self._shapes[k]),
                    g["stride"],
                    g["padding"],
                    g["dilation"],
                )
            elif kind in POOLS:
                g = geometry(spec)
                how = "max" if kind.startswith("max") else "avg"
                shape = as_2d(self._shapes[k])
                h = pool2d_forward(h, how, shape, g["kernel"], g["stride"], g["padding"])
            elif kind in RESHAPES:
                pass  # the same values, read in another shape
            elif kind == "prelu":
                h = prelu_forward(h, self._params[f"{k}.weight"], self._per_slope(k))
            elif kind in EMBEDDINGS:
                tables = {name: self._params[name] for name in self._tables(k)}
                check_indices(h, self._table_columns(k), tables)
                h = embeddings_forward(h, self._table_columns(k), tables)
            else:
                f, _ = self._functions[k]
                h = [[f(v) for v in row] for row in h]
        if training:
            self.training_forwards += 1
        return h, inputs, masks

    def forward(self, X: Any) -> list[list[float]]:
        """The network's outputs for a batch ``X`` (n rows of ``in_features``), inference
        mode."""
        return self._forward(as_rows(X, "X", self.in_features), training=False)[0]

    def _targets(self, y: Any, n: int) -> Any:
        if self.loss_spec["type"] == "cross_entropy":
            return as_labels(y, "y", n)
        return as_targets(y, "y", n, self.out_features)

    def loss(self, X: Any, y: Any, training: bool = False) -> float:
        """The mean loss over the batch, in inference mode or (``training=True``, a training
        step of the modes' state as in torch) in training mode."""
        rows = as_rows(X, "X", self.in_features)
        targets = self._targets(y, len(rows))
        outputs = self._forward(rows, training)[0]
        return loss_value_and_grad(self.loss_spec, outputs, targets)[0]

    # -------------------------------------------------------------------- backward

    def _loss_and_gradients(
        self, X: Any, y: Any, sample_weight: Any = None
    ) -> tuple[float, dict[str, Any]]:
        rows = as_rows(X, "X", self.in_features)
        targets = self._targets(y, len(rows))
        weights = None if sample_weight is None else [float(w) for w in sample_weight]
        outputs, inputs, masks = self._forward(rows, training=True)
        # With weights, L = (1/n) Σ_i w_i l_i: ∂L/∂outputs row i carries the factor w_i.
        value, grad = loss_value_and_grad(self.loss_spec, outputs, targets, weights)
        # ``grad`` is ∂L/∂(output of layer k), walking k from the last layer to the first.
        grads: dict[str, Any] = {}
        first = next(k for k, s in enumerate(self.layers) if s["type"] in _PARAM_LAYERS)
        for k in range(len(self.layers) - 1, first - 1, -1):
            spec, x = self.layers[k], inputs[k]
            if spec["type"] == "dense":
                # ∂L/∂W = gradᵀ x, ∂L/∂b = Σ_batch grad, ∂L/∂x = grad W (dense.py);
                # the first layer with parameters needs no ∂L/∂x: nothing below it learns.
                grad_w, grad_b, grad_x = dense_backward(
                    x, self._params[f"{k}.weight"], grad, input_grad=k > first
                )
                if grad_x is not None:  # None only for the first layer: the walk ends there
                    grad = grad_x
                grads[f"{k}.weight"] = grad_w
                if spec["bias"]:
                    grads[f"{k}.bias"] = grad_b
            elif spec["type"] in CONVOLUTIONS:
                # ∂L/∂W, ∂L/∂b and ∂L/∂x through every window (convolution.py).
                g = geometry(spec)
                grad_w, grad_b, grad_x = conv2d_backward(
                    x,
                    self._weight_2d(k),
                    grad,
                    as_2d(self._shapes[k]),
                    g["stride"],
                    g["padding"],
                    g["dilation"],
                    input_grad=k > first,
                )
                if grad_x is not None:
                    grad = grad_x
                one_d = spec["type"] == "conv1d"
                weight_grad: list[Any] = grad_w
                grads[f"{k}.weight"] = [[c[0] for c in o] for o in weight_grad] if one_d else grad_w
                if spec["bias"]:
                    grads[f"{k}.bias"] = grad_b
            elif spec["type"] in POOLS:
                # To the window's largest value (max) or evenly over it (avg): convolution.py.
                g = geometry(spec)
                how = "max" if spec["type"].startswith("max") else "avg"
                shape = as_2d(self._shapes[k])
                grad = pool2d_backward(x, grad, how, shape, g["kernel"], g["stride"], g["padding"])
            elif spec["type"] in RESHAPES:
                pass  # the same values in another shape: the gradient passes unchanged
            elif spec["type"] in EMBEDDINGS:
                # Sums of the output gradients onto the rows looked up (embedding.py).
                tables = {name: self._params[name] for name in self._tables(k)}
                grads.update(embeddings_backward(x, grad, self._table_columns(k), tables))
            elif spec["type"] == "prelu":
                # ∂L/∂a = Σ g x where x <= 0, ∂L/∂x = g or a g (prelu.py).
                grad_slopes, grad_x = prelu_backward(
                    x, self._params[f"{k}.weight"], grad, self._per_slope(k)
                )
                grads[f"{k}.weight"] = grad_slopes
                grad = grad_x
            elif spec["type"] == "dropout":
                # y = x · m / (1 - p): ∂L/∂x = ∂L/∂y · m / (1 - p) (dropout.py).
                grad = dropout_backward(grad, masks[k], spec["p"])
            elif spec["type"] in _FEATURES:
                # Through γ, β and the statistics of the batch (batch norm, training mode)
                # or of each row (layer norm) — normalization.py.
                backward = (
                    batch_norm_backward if spec["type"] == "batch_norm1d" else layer_norm_backward
                )
                grad_gamma, grad_beta, grad = backward(
                    x, self._params[f"{k}.weight"], grad, spec["eps"]
                )
                grads[f"{k}.weight"] = grad_gamma
                grads[f"{k}.bias"] = grad_beta
            else:
                # h = f(z) element-wise: ∂L/∂z = ∂L/∂h · f'(z).
                _, df = self._functions[k]
                grad = [[g * df(v) for v, g in zip(x_row, g_row)] for x_row, g_row in zip(x, grad)]
        # Parameter order: layer order, weight before bias (as ``parameters()``).
        return value, {name: grads[name] for name in self._params}

    def gradients(self, X: Any, y: Any, sample_weight: Any = None) -> dict[str, list[Any]]:
        """Name -> ∂L/∂parameter for the batch (same shapes as ``parameters()``); no update.
        ``sample_weight``: per-sample weights of the loss (see ``losses.py``)."""
        return self._loss_and_gradients(X, y, sample_weight)[1]

    # -------------------------------------------------------------------- training

    def apply_gradients(self, grads: dict[str, Any]) -> None:
        """One optimizer step with the given gradients (names and shapes as parameters)."""
        grads = self._checked(grads, "apply_gradients")
        # The optimizer works on flat lists: flatten, step, and fold back into the shapes.
        shapes = self.parameter_shapes()
        flat_params = [flat_values(value) for value in self._params.values()]
        flat_grads = [flat_values(grads[name]) for name in self._params]
        self.optimizer.step(flat_params, flat_grads, list(self._params))
        for name, flat in zip(list(self._params), flat_params):
            self._params[name] = nested(flat, shapes[name])

    def train_step(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Forward, backward and one optimizer step; returns the loss before the update.
        ``sample_weight``: per-sample weights of the loss (see ``losses.py``)."""
        value, grads = self._loss_and_gradients(X, y, sample_weight)
        self.apply_gradients(grads)
        return value

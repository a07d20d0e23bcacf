"""`bpcore.Network`: a sequential network whose kernels and training loop run in Rust."""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bpcore._arrays import as_dtype, as_inputs, as_labels, as_values
from bpcore._checks import boolean, positive_int
from bpcore.bpcore import NativeNetwork
from bpcore.history import History
from bpcore.layers import Layer
from bpcore.losses import Loss, LossLike, get_loss
from bpcore.optimizers import Optimizer, get_optimizer


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: must be in [0, 2**64), got {seed}")
    return int(seed)


class Network:
    """A sequential neural network trained by backpropagation.

    Example:
        >>> import numpy as np, bpcore as bp
        >>> net = bp.Network([bp.Dense(2, 8), bp.Tanh(), bp.Dense(8, 1)], loss="mse",
        ...                  optimizer=bp.SGD(lr=0.1), seed=0)
        >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
        >>> y = np.array([0, 1, 1, 0], dtype=np.float32)
        >>> before = net.loss(X, y)
        >>> history = net.fit(X, y, epochs=200, batch_size=4)
        >>> net.loss(X, y) < before
        True

    Args:
        layers: the layers in order, e.g. ``[bp.Dense(784, 256), bp.ReLU(), bp.Dense(256, 10)]``.
        loss: a loss name ("mse", "l1", "huber", "cross_entropy", "bce_with_logits") or object.
        optimizer: an optimizer (default ``bp.Adam()``) or its name.
        dtype: "float32" or "float64".
        seed: seeds the initial weights and the shuffling: same seed and data, same result.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        loss: LossLike = "mse",
        optimizer: Optimizer | str | None = None,
        dtype: Any = "float32",
        seed: int = 0,
    ) -> None:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(
                f"layers: expected a list of bpcore layers, got {type(layers).__name__}"
            )
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}]: expected a bpcore layer, got {type(layer).__name__}")
        self._layers = list(layers)
        self._loss = get_loss(loss)
        self._optimizer = get_optimizer(optimizer)
        self._dtype = as_dtype(dtype)
        self._seed = _check_seed(seed)
        spec = {
            "layers": [layer.to_spec() for layer in self._layers],
            "loss": self._loss.to_spec(),
            "optimizer": self._optimizer.to_spec(),
            "seed": self._seed,
        }
        self._native = NativeNetwork(json.dumps(spec), self._dtype.name)
        self._epochs_done = 0

    # ----- description -------------------------------------------------------------------

    @property
    def layers(self) -> list[Layer]:
        """The layers, in order."""
        return list(self._layers)

    @property
    def loss_function(self) -> Loss:
        """The loss the network trains on."""
        return self._loss

    @property
    def optimizer(self) -> Optimizer:
        """The optimizer's configuration."""
        return self._optimizer

    @property
    def dtype(self) -> np.dtype:
        """float32 or float64."""
        return self._dtype

    @property
    def seed(self) -> int:
        """The seed of the initial weights and the shuffling."""
        return self._seed

    @property
    def n_features(self) -> int:
        """Features each input sample has."""
        return int(self._native.input_width)

    @property
    def n_outputs(self) -> int:
        """Values the network outputs per sample."""
        return int(self._native.output_width)

    @property
    def lr(self) -> float:
        """The learning rate the next optimizer step uses."""
        return float(self._native.lr)

    @lr.setter
    def lr(self, value: float) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"lr: must be a finite number > 0, got {value!r}")
        self._native.lr = float(value)

    def __repr__(self) -> str:
        layers = ", ".join(repr(layer) for layer in self._layers)
        return (
            f"Network([{layers}], loss={self._loss!r}, optimizer={self._optimizer!r}, "
            f"dtype={self._dtype.name!r}, seed={self._seed})"
        )

    # ----- conversions ---------------------------------------------------------------------

    def _x(self, X: Any) -> np.ndarray:
        return as_inputs(X, self._dtype, self.n_features)

    def _y(self, y: Any, n: int) -> np.ndarray:
        if self._loss.takes_labels:
            return as_labels(y, n)
        return as_values(y, self._dtype, n, self.n_outputs)

    def _split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {
            name: flat[offset : offset + math.prod(shape)].reshape(shape).copy()
            for name, shape, offset in self._native.param_info()
        }

    def _flatten(self, values: Mapping[str, Any], arg: str) -> np.ndarray:
        if not isinstance(values, Mapping):
            raise TypeError(f"{arg}: expected a dict of name -> array, got {type(values).__name__}")
        info = self._native.param_info()
        names = [name for name, _, _ in info]
        missing = [name for name in names if name not in values]
        unknown = [name for name in values if name not in names]
        if missing or unknown:
            raise ValueError(
                f"{arg}: names do not match the network's parameters "
                f"(missing {missing}, unknown {unknown}); expected {names}"
            )
        parts = []
        for name, shape, _ in info:
            a = np.asarray(
                values[name].detach().cpu().numpy()
                if hasattr(values[name], "detach")
                else values[name]
            )
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{arg}[{name!r}]: expected numbers, got dtype {a.dtype}")
            if a.shape != tuple(shape):
                raise ValueError(f"{arg}[{name!r}]: expected shape {tuple(shape)}, got {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{arg}[{name!r}]: contains NaN or infinity")
            parts.append(a.astype(self._dtype, copy=False).ravel())
        return np.ascontiguousarray(np.concatenate(parts), dtype=self._dtype)

    # ----- computation ---------------------------------------------------------------------

    def forward(self, X: Any) -> np.ndarray:
        """The network's outputs (n, n_outputs) in inference mode; changes nothing."""
        return self._native.forward(self._x(X))

    def loss(self, X: Any, y: Any, training: bool = False) -> float:
        """The mean loss over the batch.

        `training=True` evaluates the training objective (the mode of `gradients`); the layers
        there are now behave the same in both modes.
        """
        boolean(training, "training")
        x = self._x(X)
        return float(self._native.loss(x, self._y(y, x.shape[0])))

    def gradients(self, X: Any, y: Any) -> dict[str, np.ndarray]:
        """∂loss/∂parameter for every parameter (training mode), without an update."""
        x = self._x(X)
        _, flat = self._native.gradients(x, self._y(y, x.shape[0]))
        return self._split(flat)

    def train_step(self, X: Any, y: Any) -> float:
        """One forward pass, backward pass and optimizer step; returns the loss before it."""
        x = self._x(X)
        return float(self._native.train_step(x, self._y(y, x.shape[0])))

    def apply_gradients(self, gradients: Mapping[str, Any]) -> None:
        """One optimizer step with the given gradients (names and shapes as `parameters()`)."""
        self._native.apply_gradients(self._flatten(gradients, "gradients"))

    def fit(
        self, X: Any, y: Any, epochs: int = 1, batch_size: int = 32, shuffle: bool = True
    ) -> History:
        """Trains by mini-batch backpropagation; returns the History of per-epoch losses.

        Each epoch runs in Rust with the GIL released; the samples are shuffled by the network's
        seeded generator when `shuffle`. Calling fit again continues from where it stopped, with
        the optimizer's state. Ctrl-C stops within a batch and leaves the network usable.
        """
        epochs = positive_int(epochs, "epochs")
        batch_size = positive_int(batch_size, "batch_size")
        shuffle = boolean(shuffle, "shuffle")
        x = self._x(X)
        t = self._y(y, x.shape[0])
        history = History()
        for _ in range(epochs):
            start = time.perf_counter()
            epoch = self._native.fit_epoch(x, t, batch_size, shuffle)
            self._epochs_done += 1
            history.record(
                self._epochs_done, loss=epoch["loss"], lr=self.lr, time=time.perf_counter() - start
            )
        return history

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities: softmax of the outputs for cross_entropy, sigmoid for
        bce_with_logits."""
        if not self._loss.is_classification:
            raise ValueError(
                f"predict_proba: needs a classification loss, "
                f"the network's is {self._loss.type_name}"
            )
        z = self.forward(X)
        if self._loss.takes_labels:
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted classes (n,) for cross_entropy, 0/1 decisions for bce_with_logits, and the
        outputs themselves (as `forward`) for regression losses."""
        z = self.forward(X)
        if self._loss.takes_labels:
            return z.argmax(axis=1)
        if self._loss.is_classification:
            return (z > 0).astype(np.int64)
        return z

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """{"loss": mean loss, "accuracy": fraction right (classification losses only)}."""
        x = self._x(X)
        t = self._y(y, x.shape[0])
        result = {"loss": float(self._native.loss(x, t))}
        if self._loss.is_classification:
            pred = self.predict(x)
            truth = t if self._loss.takes_labels else (t > 0.5).astype(np.int64)
            result["accuracy"] = float(np.mean(pred == truth))
        return result

    # ----- parameters ----------------------------------------------------------------------

    def parameters(self) -> dict[str, np.ndarray]:
        """Copies of all parameters by torch.nn.Sequential's names: "0.weight", "0.bias", ..."""
        return self._split(self._native.params())

    def set_parameters(self, parameters: Mapping[str, Any]) -> None:
        """Replaces all parameters; names and shapes must match `parameters()`'s."""
        self._native.set_params(self._flatten(parameters, "parameters"))

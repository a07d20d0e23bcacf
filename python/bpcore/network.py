"""`bpcore.Network`: a sequential network whose kernels and training loop run in Rust."""

from __future__ import annotations

import copy
import inspect
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from bpcore import serialization, training
from bpcore._arrays import (
    as_dtype,
    as_inputs,
    as_labels,
    as_network_dtype,
    as_values,
    as_weights,
)
from bpcore._checks import MAX_SIZE, boolean, integer
from bpcore.bpcore import NativeNetwork, describe_tensors
from bpcore.callbacks import Callback
from bpcore.history import History
from bpcore.layers import Layer
from bpcore.losses import Loss, LossLike, get_loss
from bpcore.metrics import values as metric_values
from bpcore.optimizers import Optimizer, get_optimizer, learning_rate
from bpcore.schedules import Schedule
from bpcore.threads import refuses_when_busy
from bpcore.training_state import FitProgress

# The native network's dtype names, as its constructor's Literal type spells them.
_DTYPE_NAMES: dict[str, Literal["float32", "float64"]] = {
    "float32": "float32",
    "float64": "float64",
}


def _as_numpy(value: Any) -> np.ndarray:
    """An array from a NumPy array, a nested list, or a torch tensor (any device)."""
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)


def _named_arrays(
    values: Any, expected: Sequence[tuple[str, tuple[int, ...]]], arg: str, what: str
) -> list[np.ndarray]:
    """The arrays of the dict `values` in `expected`'s order, after checking that the names are
    exactly the expected ones and that each array holds numbers of the expected shape."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{arg}: expected a dict of name -> array, got {type(values).__name__}")
    names = [name for name, _ in expected]
    missing = [name for name in names if name not in values]
    unknown = [name for name in values if name not in names]
    if missing or unknown:
        raise ValueError(
            f"{arg}: names do not match the network's {what} "
            f"(missing {missing}, unknown {unknown}); expected {names}"
        )
    arrays = []
    for name, shape in expected:
        a = _as_numpy(values[name])
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{arg}[{name!r}]: expected numbers, got dtype {a.dtype}")
        if a.shape != shape:
            raise ValueError(f"{arg}[{name!r}]: expected shape {shape}, got {a.shape}")
        arrays.append(a)
    return arrays


@refuses_when_busy
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
        self._seed = integer(seed, "seed", low=0, high=2**64 - 1)
        spec = {
            "layers": [layer.to_spec() for layer in self._layers],
            "loss": self._loss.to_spec(),
            "optimizer": self._optimizer.to_spec(),
            "seed": self._seed,
        }
        self._native = NativeNetwork(json.dumps(spec), _DTYPE_NAMES[self._dtype.name])
        # The core's widths, read once: a network's layers never change, and every call that
        # checks its inputs asks for them (a lookup in the core costs a tenth of predicting
        # one sample).
        self._n_features = int(self._native.input_width)
        self._n_outputs = int(self._native.output_width)
        #: Where `fit` stands across calls (epochs done, the schedule's position): the fit
        #: driver's part of the training state (bpcore.training_state).
        self.fit_progress = FitProgress()
        #: Set to True by a callback to stop `fit` after the current epoch.
        self.stop_training = False

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
        """The optimizer's configuration, with the learning rate the next step uses (a
        schedule's or a callback's, or one set with `lr`): what `save` writes."""
        live = copy.copy(self._optimizer)
        live.lr = self.lr
        return live

    @property
    def dtype(self) -> np.dtype:
        """float32 or float64."""
        return self._dtype

    @property
    def seed(self) -> int:
        """The seed of the initial weights and the shuffling."""
        return self._seed

    @property
    def epochs_done(self) -> int:
        """Epochs `fit` has completed on this network, across calls; saved with the optimizer
        state, so that a network loaded from a checkpoint says where training stopped."""
        return self.fit_progress.epochs_done

    @property
    def n_features(self) -> int:
        """Features each input sample has."""
        return self._n_features

    @property
    def n_outputs(self) -> int:
        """Values the network outputs per sample."""
        return self._n_outputs

    @property
    def lr(self) -> float:
        """The learning rate the next optimizer step uses."""
        return float(self._native.lr)

    @lr.setter
    def lr(self, value: float) -> None:
        self._native.lr = learning_rate(value, "lr")

    # ----- conversions ---------------------------------------------------------------------

    @property
    def native(self) -> NativeNetwork:
        """The Rust network (``bpcore.bpcore.NativeNetwork``) this object drives: parameters,
        buffers, optimizer state and generator live there. bpcore's training, serialization,
        explanations and estimators work through it; it is internal, not a stable API."""
        return self._native

    def as_inputs(self, X: Any) -> np.ndarray:
        """`X` as the core takes it: checked, a C-contiguous (n, n_features) array of the
        network's dtype (a view when it already is one). Inputs whose outputs the core could
        not hold (more than 2^40 values) are refused before anything is copied."""
        shape = getattr(X, "shape", None)  # arrays and views; a list is read (copied) anyway
        rows = int(shape[0]) if isinstance(shape, tuple) and shape else 0
        n_features, n_outputs = self._n_features, self._n_outputs
        # An input over the limit itself is named as such by `as_inputs`, before its copy too.
        if rows * n_features <= MAX_SIZE < rows * n_outputs:
            raise ValueError(
                f"X: {rows} samples would have {rows * n_outputs} output values, more "
                "than the limit of 2**40"
            )
        return as_inputs(X, self._dtype, n_features)

    def as_targets(self, y: Any, n: int) -> np.ndarray:
        """`y` for `n` samples as the core takes it for this loss: checked int64 labels for a
        loss that takes labels, else an (n, n_outputs) array of the network's dtype."""
        if self._loss.takes_labels:
            return as_labels(y, n)
        return as_values(y, self._dtype, n, self.n_outputs)

    def _split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {
            name: flat[offset : offset + math.prod(shape)].reshape(shape).copy()
            for name, shape, offset in self._native.param_info()
        }

    def _flatten(self, values: Mapping[str, Any], arg: str) -> np.ndarray:
        info = self._native.param_info()
        expected = [(name, tuple(shape)) for name, shape, _ in info]
        arrays = _named_arrays(values, expected, arg, "parameters")
        # Finite means finite in the network's dtype: checked after the cast.
        parts = [
            as_network_dtype(a, self._dtype, f"{arg}[{name!r}]").ravel()
            for (name, _), a in zip(expected, arrays)
        ]
        return np.ascontiguousarray(np.concatenate(parts), dtype=self._dtype)

    # ----- computation ---------------------------------------------------------------------

    def forward(self, X: Any) -> np.ndarray:
        """The network's outputs (n, n_outputs) in inference mode; changes nothing.

        Example:
            >>> import numpy as np, bpcore as bp
            >>> net = bp.Network([bp.Dense(3, 2)], loss="mse", seed=0)
            >>> net.set_parameters({"0.weight": np.eye(2, 3), "0.bias": np.array([0.5, 0.0])})
            >>> net.forward(np.array([[1.0, 2.0, 3.0]]))
            array([[1.5, 2. ]], dtype=float32)
        """
        if type(X) is np.ndarray:
            # An array already in the core's form goes straight in: for one sample the checks
            # and the conversion were a tenth of the call.
            out = self._native.forward_as_is(X)
            if out is not None:
                return out
        return self._native.forward(self.as_inputs(X))

    def loss(self, X: Any, y: Any, training: bool = False) -> float:
        """The mean loss over the batch.

        By default in inference mode (dropout off, batch norm by its running statistics), with no
        side effect. `training=True` evaluates the training objective, the mode of `gradients`:
        like any training-mode forward in torch it draws new dropout masks and moves batch norm's
        running statistics (and counts the batch).
        """
        boolean(training, "training")
        x = self.as_inputs(X)
        t = self.as_targets(y, x.shape[0])
        if training:
            return float(self._native.training_loss(x, t))
        return float(self._native.loss(x, t))

    def gradients(self, X: Any, y: Any, sample_weight: Any = None) -> dict[str, np.ndarray]:
        """∂loss/∂parameter for every parameter (training mode), without an update.

        With `sample_weight` (n,) the loss differentiated is the weighted one of `fit`:
        Σ_i w_i·l_i / n (weights finite and >= 0, else ValueError).

        Example:
            >>> import numpy as np, bpcore as bp
            >>> net = bp.Network([bp.Dense(1, 1)], loss="mse", dtype="float64", seed=0)
            >>> net.set_parameters({"0.weight": np.array([[2.0]]), "0.bias": np.array([0.0])})
            >>> g = net.gradients(np.array([[1.0]]), np.array([[0.0]]))  # L = (2x - 0)²
            >>> g["0.weight"], g["0.bias"]  # ∂L/∂w = 2·(wx - y)·x, ∂L/∂b = 2·(wx - y)
            (array([[4.]]), array([4.]))
        """
        x = self.as_inputs(X)
        n = x.shape[0]
        w = as_weights(sample_weight, self.dtype, n)
        _, flat = self._native.gradients(x, self.as_targets(y, n), w)
        return self._split(flat)

    def train_step(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """One forward pass, backward pass and optimizer step; returns the loss before it.

        With `sample_weight` (n,) the step descends the weighted loss Σ_i w_i·l_i / n of `fit`
        and returns that loss.

        Example:
            >>> import numpy as np, bpcore as bp
            >>> net = bp.Network([bp.Dense(1, 1)], loss="mse", optimizer=bp.SGD(lr=0.1),
            ...                  dtype="float64", seed=0)
            >>> net.set_parameters({"0.weight": np.array([[2.0]]), "0.bias": np.array([0.0])})
            >>> X, y = np.array([[1.0]]), np.array([[0.0]])
            >>> net.train_step(X, y), net.parameters()["0.weight"]  # w -= 0.1 · 4
            (4.0, array([[1.6]]))
        """
        x = self.as_inputs(X)
        n = x.shape[0]
        w = as_weights(sample_weight, self.dtype, n)
        return float(self._native.train_step(x, self.as_targets(y, n), w))

    def apply_gradients(self, gradients: Mapping[str, Any]) -> None:
        """One optimizer step with the given gradients (names and shapes as `parameters()`)."""
        self._native.apply_gradients(self._flatten(gradients, "gradients"))

    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        validation_split: float = 0.0,
        validation_data: tuple[Any, Any] | None = None,
        metrics: Sequence[str] | None = None,
        callbacks: Sequence[Callback] | None = None,
        schedule: Schedule | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        gradient_accumulation_steps: int = 1,
        progress: bool | None = None,
        sample_weight: Any = None,
        comm: Any = None,
        verbose: int | str = "auto",
        warnings: bool = True,
        class_weight: Any = None,
        sample_weight_reduction: str = "sum_over_batch_size",
        weight_decay_per_batch_weight: bool = False,
    ) -> History:
        """Trains by mini-batch backpropagation for `epochs` epochs; returns a History.

        Each epoch's batches run in Rust with the GIL released; the samples are shuffled by the
        network's seeded generator when `shuffle` (same seed and data, same result). Calling fit
        again continues where it stopped: epoch numbers count on and the optimizer's state
        carries over. Ctrl-C stops within a batch and leaves the network usable.

        Args:
            X, y: training inputs (n, n_features) and targets (labels for cross_entropy).
            epochs, batch_size, shuffle: as Keras; the last batch is smaller when batch_size
                does not divide the number of samples.
            validation_split: a fraction in [0, 1): the *last* samples, taken before shuffling
                (as Keras), are held out for validation.
            validation_data: (X_val, y_val) to validate on instead (not with validation_split).
            metrics: names or functions (see `bpcore.metrics`): "accuracy" (classification
                losses; the default there; exact match for multi-label outputs),
                "binary_accuracy", "precision", "recall", "f1" and their "_macro"/"_micro",
                "roc_auc", "top_5_accuracy" (any k), "mae", "r2" (regression losses; none by
                default), or any ``fn(y_true, y_pred) -> float``. Training values of
                "accuracy", "binary_accuracy", "mae" and "r2", like the "loss", are Keras's
                running values over the epoch: each step's own outputs before its update,
                summed natively at no extra pass over the data (unweighted; the loss is the
                weighted one with `sample_weight`); the other metrics' training values are
                those of the network after the epoch, from one inference pass over the
                training samples. Validation metrics use the network after the epoch.
            callbacks: `bpcore.callbacks.Callback` objects (EarlyStopping, ReduceLROnPlateau,
                LearningRateScheduler, or your own; see that module for the protocol).
            schedule: a learning-rate schedule (bpcore.schedules), with torch's formulas. A
                per-epoch one (StepLR, ExponentialLR, CosineAnnealingLR by default) is stepped
                after every epoch as torch's scheduler.step(), before the callbacks'
                on_epoch_end (so a checkpoint holds the next epoch's learning rate and the
                schedule's position: a network loaded from it continues an equal schedule where
                it stopped). A per-step one (LinearLR warm-up, OneCycleLR, SequentialLR by
                default, or any with interval="step") is stepped after every batch inside the
                native loop.
            clip_grad_norm: clip the gradients' global L2 norm to this at every step during
                this fit (torch's clip_grad_norm_); None keeps the network's setting.
            clip_grad_value: clip every gradient element to ±this at every step during this
                fit, after `clip_grad_norm` (torch's clip_grad_value_, Keras's clipvalue).
            gradient_accumulation_steps: batches whose gradients make one optimizer step (as
                Keras's optimizer argument): the step takes their mean gradient over all their
                samples, as one batch of `batch_size × steps` would (batch norm and dropout
                still see each batch on its own); a per-step schedule counts these steps.
            progress: the older spelling of `verbose`: None is "auto", True 1, False 0.
            sample_weight: per-sample weights (n,), finite and >= 0, as Keras's: they weight
                the training loss only. A batch's loss is Σ_i w_i·l_i / n_batch, where l_i is
                sample i's loss (the mean over its outputs for mse, l1, huber and
                bce_with_logits; its smoothed cross-entropy for cross_entropy) and n_batch
                counts every sample of the batch, zero-weighted ones included ("sum over batch
                size"); all ones is the unweighted mean. The gradient is that of the weighted
                loss, the weights move with their samples when shuffling, and the reported
                "loss" is the weighted training loss. With validation_split the weights of the
                held-out samples are dropped: validation ("val_loss", "val_" metrics),
                training metrics and `evaluate` stay unweighted. Negative, NaN or infinite
                weights, or not one per sample, raise ValueError naming sample_weight.
            sample_weight_reduction: how a batch's weighted losses are divided, by Keras's
                names for its loss reductions: "sum_over_batch_size" (the default, above:
                Σ_i w_i·l_i / n_batch, torch's ``(w * l).mean()``) or "mean_with_sample_weight"
                (Σ_i w_i·l_i / Σ_i w_i, torch's ``(w * l).sum() / w.sum()``, scikit-learn's
                MLPs): a weight of 2 then counts as the sample twice in its batch, and a batch
                of zero weights has loss and gradient 0. With ``CrossEntropyLoss(weight=c)``
                the divisor is Σ_i w_i·c[y_i]. Without sample_weight the two are the same.
            weight_decay_per_batch_weight: divide each step's weight decay by the batch's
                divisor (its Σ w_i under "mean_with_sample_weight", else its sample count):
                scikit-learn's alpha, whose L2 term ½·alpha·‖W‖² joins a batch's summed loss
                before the division; the History then has that term's "penalty" (averaged
                over the samples as "loss" is, from the weights before each step). False (the
                default) decays by the optimizer's weight_decay at every step, as torch.
            class_weight: Keras's class weights, a dict {class label: weight} (1.0 for a
                class left out) or "balanced" (scikit-learn's n_samples / (n_classes ·
                count) over the training samples): each training sample's weight is its
                class's, times its `sample_weight` when given, with sample_weight's rule
                above (see `bpcore.class_weights`). For torch's weighted mean use
                ``bp.CrossEntropyLoss(weight=...)``.
            comm: an mpi4py communicator (``MPI.COMM_WORLD``) to train data-parallel on all
                its ranks, each calling fit with its own shard of the data (see
                `bpcore.distributed.shard`); `batch_size` is per rank. Every rank runs the same
                native epoch loop, and each step's gradients are summed with one Allreduce
                called from it. Shuffled, the steps are those of a plain fit on all the shards
                (in rank order) with batches of `batch_size` × ranks: the network's generator
                permutes every sample and each rank computes the part of a batch in its shard.
                In order, global batch s is every rank's batch s in rank order. Rank 0's state
                (weights, optimizer, generator, epochs) is broadcast first; losses and metrics
                are over all ranks; callbacks decide the same on every rank; only rank 0 shows
                progress and writes checkpoints. `validation_split` holds out the last fraction
                of each shard. Batch norm uses each rank's share of a step and rank 0's running
                statistics (as torch's DistributedDataParallel). If any rank fails, every rank
                raises `bpcore.distributed.DistributedTrainingError`.
            verbose: what fit shows on stderr, as Keras: 0 nothing, 1 a progress bar per epoch
                (elapsed time, ETA, loss) and each finished epoch's values, 2 only one line per
                epoch; "auto" is 1 where someone watches (a terminal, a Jupyter notebook) and
                0 elsewhere. Into a file or a pipe, 1 writes the finished lines only (no
                ``\r`` redraws). See `bpcore.progress`.
            warnings: False silences the gradient-health warnings (`GradientWarning`) of this
                fit.

        Returns:
            History: per-epoch "loss", metrics, "val_loss" and "val_" metrics (with validation),
            "lr" (the learning rate used in the epoch), "time" (seconds, with metrics and
            validation), and per-parameter `grad_norms` and `update_ratios`.

        Warns:
            GradientWarning (at most once per fit and cause, at the caller's line) for
            unscaled regression targets, an exploding loss or vanishing gradients, judged by
            ‖g‖/‖w‖ and the loss's trend (see `bpcore.gradient_health`; `warnings=False`
            silences it).

        Raises:
            TrainingDivergedError: a step's loss or gradient was NaN or infinite; its
                attributes `epoch` (1-based), `batch` (0-based), `reason` ("loss" or
                "gradient"), `loss` and `norm` (the global gradient norm) say where and what,
                as its message does (a RuntimeWarning at the caller's line says so first), and
                the network keeps the weights of the last finite step.

        Example:
            >>> import numpy as np, bpcore as bp
            >>> rng = np.random.default_rng(0)
            >>> X = rng.normal(size=(200, 2)).astype(np.float32)
            >>> y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)  # XOR of the signs
            >>> net = bp.Network([bp.Dense(2, 16), bp.ReLU(), bp.Dense(16, 2)],
            ...                  loss="cross_entropy", optimizer=bp.Adam(lr=0.02), seed=0)
            >>> history = net.fit(X, y, epochs=30, batch_size=20, validation_split=0.2,
            ...                   progress=False)
            >>> sorted(history.history)
            ['accuracy', 'loss', 'lr', 'time', 'val_accuracy', 'val_loss']
            >>> history.epoch[-1], history.history["loss"][-1] < history.history["loss"][0]
            (30, True)
            >>> net.evaluate(X, y)["accuracy"] > 0.9
            True
        """
        return training.fit(
            self,
            X,
            y,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=shuffle,
            validation_split=validation_split,
            validation_data=validation_data,
            metrics=metrics,
            callbacks=callbacks,
            schedule=schedule,
            clip_grad_norm=clip_grad_norm,
            clip_grad_value=clip_grad_value,
            gradient_accumulation_steps=gradient_accumulation_steps,
            progress=progress,
            sample_weight=sample_weight,
            comm=comm,
            verbose=verbose,
            warnings=warnings,
            class_weight=class_weight,
            sample_weight_reduction=sample_weight_reduction,
            weight_decay_per_batch_weight=weight_decay_per_batch_weight,
        )

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
            p: np.ndarray = e / e.sum(axis=1, keepdims=True)
            return p
        p = 1.0 / (1.0 + np.exp(-z))
        return p

    def predict(self, X: Any) -> np.ndarray:
        """Predicted classes (n,) for cross_entropy, 0/1 decisions for bce_with_logits, and the
        outputs themselves (as `forward`) for regression losses."""
        z = self.forward(X)
        if self._loss.takes_labels:
            labels: np.ndarray = z.argmax(axis=1)
            return labels
        if self._loss.is_classification:
            return (z > 0).astype(np.int64)
        return z

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """{"loss": mean loss, "accuracy": fraction of samples right (classification losses
        only; with several bce_with_logits outputs, samples with every output right)}."""
        x = self.as_inputs(X)
        t = self.as_targets(y, x.shape[0])
        result = {"loss": float(self._native.loss(x, t))}
        if self._loss.is_classification:
            result.update(metric_values(["accuracy"], self, x, t))
        return result

    # ----- parameters ----------------------------------------------------------------------

    def parameters(self) -> dict[str, np.ndarray]:
        """Copies of all parameters by torch.nn.Sequential's names: "0.weight", "0.bias", ..."""
        return self._split(self._native.params())

    def set_parameters(self, parameters: Mapping[str, Any]) -> None:
        """Replaces all parameters; names and shapes must match `parameters()`'s."""
        self._native.set_params(self._flatten(parameters, "parameters"))

    def buffers(self) -> dict[str, np.ndarray]:
        """Copies of the batch-norm layers' buffers, by torch's state_dict names: per layer i,
        "i.running_mean" and "i.running_var" (num_features,) and "i.num_batches_tracked" (an int64
        0-d array). Empty for a network without BatchNorm1d. Not parameters: the optimizer never
        changes them."""
        running, tracked = self._native.buffers()
        info = self._native.buffer_info()
        out: dict[str, np.ndarray] = {}
        for k, counter in enumerate(self._native.tracked_names()):
            for name, shape, offset in info[2 * k : 2 * k + 2]:
                out[name] = running[offset : offset + math.prod(shape)].reshape(shape).copy()
            out[counter] = np.array(tracked[k], dtype=np.int64)
        return out

    def set_buffers(self, buffers: Mapping[str, Any]) -> None:
        """Replaces the batch-norm buffers; names and shapes must match `buffers()`'s. Running
        statistics must be finite (variances >= 0), counts integers >= 0. On error nothing
        changes."""
        info = self._native.buffer_info()
        counters = list(self._native.tracked_names())
        expected = [(name, tuple(shape)) for name, shape, _ in info]
        expected += [(name, ()) for name in counters]
        arrays = _named_arrays(buffers, expected, "buffers", "buffers")
        parts = [a.astype(self.dtype, copy=False).ravel() for a in arrays[: len(info)]]
        counts = []
        for name, a in zip(counters, arrays[len(info) :]):
            if a.dtype.kind not in "iu":
                raise TypeError(f"buffers[{name!r}]: expected an integer, got dtype {a.dtype}")
            counts.append(int(a))
        running = np.ascontiguousarray(
            np.concatenate(parts) if parts else np.zeros(0), dtype=self.dtype
        )
        for c in counts:
            if not 0 <= c < 2**63:
                raise ValueError(f"buffers: num_batches_tracked must be >= 0, got {c}")
        self._native.set_buffers(running, np.array(counts, dtype=np.int64))

    # ----- saving, pickling and torch's state_dict (bpcore/serialization.py) ---------------

    def save(self, path: Any, include_optimizer: bool = False) -> None:
        """Saves the network to `path` in the safetensors format, atomically.

        The file holds the parameters and batch-norm buffers under their names and, in its
        metadata, the architecture, loss, optimizer configuration, seed and dtype. With
        `include_optimizer=True` it also holds the optimizer's state, step count and learning
        rate, the shuffling generator and the dropout-mask counter: a loaded network then
        trains on bit for bit as this one would. The file is written to a temporary file in
        the same folder, fsynced and renamed over `path`: a failed or interrupted save leaves
        any previous file intact. Load it with `bp.Network.load(path)`.

        Example:
            >>> import os, tempfile, numpy as np, bpcore as bp
            >>> net = bp.Network([bp.Dense(3, 4), bp.Tanh(), bp.Dense(4, 1)], loss="mse", seed=1)
            >>> X = np.ones((2, 3), dtype=np.float32)
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     path = os.path.join(folder, "model.safetensors")
            ...     net.save(path, include_optimizer=True)
            ...     loaded = bp.Network.load(path)
            >>> np.array_equal(loaded.forward(X), net.forward(X)), loaded.layers == net.layers
            (True, True)
        """
        serialization.save(self, path, include_optimizer)

    @classmethod
    def load(cls, path: Any) -> Network:
        """The network saved at `path` by `save`. Loading never executes code; a truncated,
        corrupted, foreign or inconsistent file raises ValueError and builds nothing."""
        net: Network = serialization.load(path, cls)
        return net

    def to_bytes(self, include_optimizer: bool = False) -> bytes:
        """The bytes `save` writes (safetensors), for storing without a file."""
        return serialization.to_bytes(self, include_optimizer)

    @classmethod
    def from_bytes(cls, data: bytes) -> Network:
        """The network of `to_bytes`' bytes; checked as `load` checks a file."""
        net: Network = serialization.from_bytes(data, cls)
        return net

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        """Pickles (and copies) through the safetensors bytes with the optimizer state: an
        unpickled network trains on exactly as this one would, and unpickling runs no code
        but bpcore's checked loader."""
        return (_network_from_pickle, (self.to_bytes(include_optimizer=True),))

    def export_onnx(
        self,
        path: Any = None,
        *,
        probabilities: bool = False,
        opset: int | None = None,
        input_name: str = "input",
        output_name: str = "output",
        probabilities_name: str = "probabilities",
    ) -> Any:
        """The network as a standard ONNX model (an `onnx.ModelProto`), also saved to `path` if
        given: `bp.to_onnx(net, path, ...)`, which documents the arguments (pip install
        'bpcore[onnx]')."""
        from bpcore.onnx_export import to_onnx  # here, not at the top: onnx_export imports Network

        return to_onnx(
            self,
            path,
            probabilities=probabilities,
            opset=opset,
            input_name=input_name,
            output_name=output_name,
            probabilities_name=probabilities_name,
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by torch's names and in torch's order, as NumPy arrays
        (copies): what `torch.nn.Sequential.state_dict()` of the equal module holds
        (num_batches_tracked as int64 0-d arrays)."""
        entries = {**self.parameters(), **self.buffers()}
        kinds = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

        def order(name: str) -> tuple[int, int]:
            index, kind = name.split(".", 1)
            return int(index), kinds.index(kind.rsplit(".", 1)[-1])  # "tables.3.weight"

        return {name: entries[name] for name in sorted(entries, key=order)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Loads parameters and buffers from a `state_dict()`-like dict of NumPy arrays or torch
        tensors (any device and float dtype), e.g. a torch module's `state_dict()`. Names must
        match exactly (torch's strict loading) and shapes too; on error nothing changes."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict: expected a dict of name -> array, got {type(state_dict).__name__}"
            )
        param_names = {name for name, _, _ in self._native.param_info()}
        buffer_names = set(self.buffers())
        unknown = [k for k in state_dict if k not in param_names and k not in buffer_names]
        missing = [k for k in (*param_names, *buffer_names) if k not in state_dict]
        if unknown or missing:
            raise ValueError(
                f"state_dict: names do not match the network's (missing {sorted(missing)}, "
                f"unknown {unknown})"
            )
        flat = self._flatten({k: state_dict[k] for k in param_names}, "state_dict")
        before = self._native.params()
        self._native.set_params(flat)
        try:
            self.set_buffers({k: state_dict[k] for k in buffer_names})
        except BaseException:
            self._native.set_params(before)
            raise

    # ----- Keras's and torch's habits: summary, count_params, net(x), a short repr ------------

    def _layer_rows(self) -> list[tuple[str, list[int], int, int]]:
        """Per layer: its name ("0 Dense"), output shape per sample, trainable and
        non-trainable values (batch norm's running statistics), as the core lists them."""
        trainable: dict[int, int] = {}
        for name, shape, _ in self._native.param_info():
            index = int(name.split(".", 1)[0])
            trainable[index] = trainable.get(index, 0) + math.prod(shape)
        fixed: dict[int, int] = {}
        for name, shape, _ in self._native.buffer_info():
            index = int(name.split(".", 1)[0])
            fixed[index] = fixed.get(index, 0) + math.prod(shape)
        shapes = describe_tensors(self._native.spec_json)["output_shapes"]
        return [
            (f"{i} {type(layer).__name__}", shape, trainable.get(i, 0), fixed.get(i, 0))
            for i, (layer, shape) in enumerate(zip(self._layers, shapes))
        ]

    def count_params(self, trainable_only: bool = False) -> int:
        """The number of values the network holds, as Keras's `count_params`: its parameters
        (what `parameters()` returns and the optimizer trains) plus batch norm's running
        statistics, or the parameters only with `trainable_only`.

        Example:
            >>> import bpcore as bp
            >>> net = bp.Network([bp.Dense(10, 100), bp.ReLU(), bp.Dense(100, 1)])
            >>> net.count_params()  # 10·100 + 100 + 100·1 + 1
            1201
        """
        boolean(trainable_only, "trainable_only")
        rows = self._layer_rows()
        return sum(t for _, _, t, _ in rows) + (0 if trainable_only else sum(f for *_, f in rows))

    def summary(self, print_fn: Any = None) -> None:
        """Prints a table of the layers as Keras's `summary`: each layer's name, output shape
        and parameter count, then the total, trainable and non-trainable counts (batch norm's
        running statistics) with their size in memory. `print_fn` receives the text instead
        of `print`.

        Example:
            >>> import bpcore as bp
            >>> bp.Network([bp.Dense(10, 100), bp.ReLU(), bp.Dense(100, 1)]).summary()
            Network: loss MSELoss, optimizer Adam, float32
            ================================================================
            Layer                       Output shape                 Param #
            ================================================================
            0 Dense                     (None, 100)                    1,100
            1 ReLU                      (None, 100)                        0
            2 Dense                     (None, 1)                        101
            ================================================================
            Total params: 1,201 (4.69 KB)
            Trainable params: 1,201 (4.69 KB)
            Non-trainable params: 0 (0 B)
            ================================================================
        """
        rows = self._layer_rows()
        trainable = sum(t for _, _, t, _ in rows)
        fixed = sum(f for *_, f in rows)
        rule = "=" * 64

        def line(name: str, shape: str, count: str) -> str:
            return f"{name:<28}{shape:<20}{count:>16}"

        def size(count: int) -> str:
            amount = float(count * self._dtype.itemsize)
            for unit in ("B", "KB", "MB", "GB"):
                if amount < 1024 or unit == "GB":
                    return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.2f} {unit}"
                amount /= 1024
            return ""  # pragma: no cover - the loop returns at GB

        text = [
            f"Network: loss {type(self._loss).__name__}, optimizer "
            f"{type(self._optimizer).__name__}, {self._dtype.name}",
            rule,
            line("Layer", "Output shape", "Param #"),
            rule,
            *(line(name, str((None, *shape)), f"{t + f:,}") for name, shape, t, f in rows),
            rule,
            f"Total params: {trainable + fixed:,} ({size(trainable + fixed)})",
            f"Trainable params: {trainable:,} ({size(trainable)})",
            f"Non-trainable params: {fixed:,} ({size(fixed)})",
            rule,
        ]
        (print if print_fn is None else print_fn)("\n".join(text))

    def __call__(self, X: Any) -> np.ndarray:
        """`net(X)` is `net.forward(X)`, as a torch module's call (inference mode; NumPy out)."""
        return self.forward(X)

    def __repr__(self) -> str:
        """A short description, a line per layer as torch's module repr; hyperparameters at
        their defaults are left out."""
        layers = "".join(f"  ({i}): {_short(layer)}\n" for i, layer in enumerate(self._layers))
        return (
            f"Network(\n{layers}  loss={_short(self._loss)}, optimizer={_short(self.optimizer)},"
            f"\n  dtype={self._dtype.name!r}, seed={self._seed}\n)"
        )


def _short(described: Layer | Loss | Optimizer) -> str:
    """`described`'s repr without the hyperparameters that equal its class's defaults (an
    optimizer's learning rate always shown)."""
    hyper = described._hyper()
    try:
        made: Any = type(described)  # a registered class: every argument has a default, or
        defaults = made()._hyper()
    except (TypeError, ValueError):  # ... some are required (Dense): the signature's defaults
        signature = inspect.signature(type(described))
        defaults = {
            name: p.default
            for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty
        }
    shown = {k: v for k, v in hyper.items() if k == "lr" or k not in defaults or defaults[k] != v}
    args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    return f"{type(described).__name__}({args})"


def _network_from_pickle(data: bytes) -> Network:
    """Unpickling hook of `Network.__reduce__`: the network of its safetensors bytes."""
    return serialization.from_bytes(data, Network, source="pickled network")

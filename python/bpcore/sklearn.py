"""scikit-learn estimators trained by bpcore: `MLPClassifier` and `MLPRegressor`.

They take scikit-learn's `MLPClassifier`/`MLPRegressor` parameter names and follow their fitting
logic (mini-batches of `batch_size`, one epoch per iteration, stopping after `n_iter_no_change`
epochs without a `tol` improvement of the training loss or, with `early_stopping`, of the
validation score), with bpcore's Rust kernels doing the work. They pass scikit-learn's
`check_estimator`, work in pipelines and searches, clone, and pickle through bpcore's safe
safetensors bytes.

Differences from scikit-learn's, on purpose:

- `alpha` (L2 penalty) becomes the optimizer's torch-style `weight_decay`: scikit-learn adds
  ``alpha * W / batch_size`` to the gradient of the weights, so for "sgd", "adam", "rmsprop"
  and "adagrad" ``weight_decay = alpha / batch_size`` (the effective batch size); unlike
  scikit-learn, biases are decayed too. For "adamw" ``weight_decay = alpha`` (decoupled).
  `loss_curve_` holds the data loss without the penalty term.
- The weights start as torch's (Kaiming-uniform), not Glorot's, so numbers differ from
  scikit-learn's for the same `random_state`; a given `random_state` is still reproducible.
- Classification always uses a softmax output with cross-entropy (two units for two classes;
  `predict_proba` has one column per class either way). Multilabel targets are not supported.
- Only the stochastic solvers: "adam", "sgd" (with `momentum`, `nesterovs_momentum`), and
  bpcore's "adamw", "rmsprop", "adagrad"; no "lbfgs" and a constant learning rate.
- bpcore's own parameters: `dropout` (a Dropout layer after every hidden activation, training
  only) and `dtype` ("float64" by default, as scikit-learn computes; "float32" is faster).

scikit-learn is needed (``pip install bpcore[sklearn]``); this module imports it.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import _check_partial_fit_first_call, check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from bpcore.layers import Dense, Dropout, Identity, Layer, ReLU, Sigmoid, Tanh
from bpcore.network import Network
from bpcore.optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

_ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "tanh": Tanh,
    "logistic": Sigmoid,
    "identity": Identity,
}
_SOLVERS = ("adam", "sgd", "adamw", "rmsprop", "adagrad")


def _number(
    value: Any, name: str, low: float, high: float, low_open: bool, high_open: bool
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if v < low or (low_open and v == low) or v > high or (high_open and v == high):
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name}: must be in {lo}{low}, {high}{hi}, got {value!r}")
    return float(value)


def _integer(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, the network, the epoch loop."""

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        dropout: float = 0.0,
        dtype: str = "float64",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.dtype = dtype

    # ----- what subclasses define ------------------------------------------------------------

    _loss = "mse"

    def _targets(self, y: np.ndarray, first: bool) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _validation_score(self, X: np.ndarray, t: np.ndarray) -> float:  # pragma: no cover
        raise NotImplementedError

    def _stratify(self, t: np.ndarray) -> np.ndarray | None:
        return None

    # ----- checking and building -------------------------------------------------------------

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise ValueError(
                f"hidden_layer_sizes: expected an int or a sequence of ints, got {sizes!r}"
            ) from None
        return [_integer(s, "hidden_layer_sizes") for s in sizes]

    def _check_params(self) -> None:
        self._hidden_sizes()
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(_ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver: expected one of {list(_SOLVERS)}, got {self.solver!r}")
        _number(self.alpha, "alpha", 0.0, np.inf, False, True)
        if self.batch_size != "auto":
            _integer(self.batch_size, "batch_size")
        _number(self.learning_rate_init, "learning_rate_init", 0.0, np.inf, True, True)
        _integer(self.max_iter, "max_iter")
        _number(self.tol, "tol", 0.0, np.inf, False, True)
        _number(self.momentum, "momentum", 0.0, 1.0, False, False)
        _number(self.validation_fraction, "validation_fraction", 0.0, 1.0, True, True)
        _number(self.beta_1, "beta_1", 0.0, 1.0, False, True)
        _number(self.beta_2, "beta_2", 0.0, 1.0, False, True)
        _number(self.epsilon, "epsilon", 0.0, np.inf, True, True)
        _integer(self.n_iter_no_change, "n_iter_no_change")
        _number(self.dropout, "dropout", 0.0, 1.0, False, True)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {self.dtype!r}")
        for name in ("shuffle", "verbose", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        size = int(self.batch_size)  # checked to be an integer by _check_params
        if not 1 <= size <= n:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be "
                "clipped",
                stacklevel=3,
            )
        return int(np.clip(size, 1, n))

    def _optimizer(self, batch_size: int) -> Optimizer:
        lr = self.learning_rate_init
        decay = self.alpha / batch_size
        if self.solver == "sgd":
            nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
            return SGD(lr, momentum=self.momentum, nesterov=nesterov, weight_decay=decay)
        betas = (self.beta_1, self.beta_2)
        if self.solver == "adam":
            return Adam(lr, betas=betas, eps=self.epsilon, weight_decay=decay)
        if self.solver == "adamw":
            return AdamW(lr, betas=betas, eps=self.epsilon, weight_decay=self.alpha)
        if self.solver == "rmsprop":
            return RMSprop(lr, eps=self.epsilon, weight_decay=decay)
        return Adagrad(lr, eps=self.epsilon, weight_decay=decay)

    def _build(self, n_features: int, n_outputs: int, batch_size: int) -> Network:
        layers: list[Layer] = []
        width = n_features
        for size in self._hidden_sizes():
            layers += [Dense(width, size), _ACTIVATIONS[self.activation]()]
            if self.dropout > 0:
                layers.append(Dropout(self.dropout))
            width = size
        layers.append(Dense(width, n_outputs))
        seed = int(self._random.randint(0, 2**31 - 1))
        return Network(
            layers,
            loss=self._loss,
            optimizer=self._optimizer(batch_size),
            dtype=self.dtype,
            seed=seed,
        )

    # ----- fitting -----------------------------------------------------------------------------

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> _BaseMLP:
        self._check_params()
        first = not hasattr(self, "net_") or not (incremental or self.warm_start)
        X, y = self._validate(X, y, reset=first)
        t = self._targets(y, first)
        n = X.shape[0]
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.ndim != 1 or w.shape[0] != n:
                raise ValueError(
                    f"sample_weight: expected shape ({n},), one weight per sample, got {w.shape}"
                )
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError("sample_weight: weights must be finite and >= 0")
            if not w.any():
                raise ValueError("sample_weight: all weights are zero; nothing to fit")
        if first:
            self._random = check_random_state(self.random_state)
            self.n_outputs_ = 1 if t.ndim == 1 else t.shape[1]
            out = len(self.classes_) if hasattr(self, "classes_") else self.n_outputs_
            self.net_ = self._build(X.shape[1], out, self._batch_size(n))
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_: list[float] = []
            self._no_improvement_count = 0
            self.best_loss_: float | None = np.inf
            self.validation_scores_: list[float] | None = None
            self.best_validation_score_: float | None = None
        early_stopping = bool(self.early_stopping) and not incremental
        X_val = t_val = None
        if early_stopping:
            parts = train_test_split(
                X,
                t,
                *([] if w is None else [w]),
                random_state=self._random,
                test_size=self.validation_fraction,
                stratify=self._stratify(t),
            )
            X, X_val, t, t_val = parts[:4]
            w = None if w is None else parts[4]
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
            self._no_improvement_count = 0
        elif not incremental:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        batch_size = self._batch_size(X.shape[0])
        best_params = None
        for _ in range(1 if incremental else self.max_iter):
            history = self.net_.fit(
                X,
                t,
                epochs=1,
                batch_size=batch_size,
                shuffle=bool(self.shuffle),
                metrics=[],
                progress=False,
                sample_weight=w,
            )
            loss = float(history.history["loss"][-1]) * self._loss_scale
            self.n_iter_ += 1
            self.t_ += X.shape[0]
            self.loss_curve_.append(loss)
            self.loss_ = loss
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            if early_stopping:
                assert X_val is not None and t_val is not None
                assert self.validation_scores_ is not None
                assert self.best_validation_score_ is not None
                score = self._validation_score(X_val, t_val)
                self.validation_scores_.append(score)
                if self.verbose:
                    print(f"Validation score: {score:f}")
                if score < self.best_validation_score_ + self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best_params = self.net_.parameters()
            else:
                assert self.best_loss_ is not None  # set without early stopping
                if loss > self.best_loss_ - self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if loss < self.best_loss_:
                    self.best_loss_ = loss
            if self._no_improvement_count > self.n_iter_no_change:
                metric = "Validation score" if early_stopping else "Training loss"
                if self.verbose:
                    print(
                        f"{metric} did not improve more than tol={self.tol} for "
                        f"{self.n_iter_no_change} consecutive epochs. Stopping."
                    )
                break
        else:
            if not incremental:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                    "the optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        if early_stopping and best_params is not None:
            self.net_.set_parameters(best_params)
        return self

    _loss_scale = 1.0

    def _validate(
        self, X: Any, y: Any, reset: bool
    ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _inputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "net_")
        return validate_data(self, X, reset=False, dtype=(np.float64, np.float32))

    def _outputs(self, X: Any) -> np.ndarray:
        x = self._inputs(X)
        return self.net_.forward(x)

    # ----- attributes and pickling -----------------------------------------------------------

    def _fitted_net(self) -> Network:
        if "net_" not in self.__dict__:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet.")
        return self.net_

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices as scikit-learn's: layer i's (fan_in, fan_out) = Dense weight ᵀ."""
        p = self._fitted_net().parameters()
        return [p[k].T.copy() for k in p if k.endswith(".weight")]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, one per Dense layer."""
        p = self._fitted_net().parameters()
        return [p[k] for k in p if k.endswith(".bias")]

    @property
    def n_layers_(self) -> int:
        """Layers as scikit-learn counts them: input, hidden ones, output."""
        self._fitted_net()
        return len(self._hidden_sizes()) + 2

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the network as its safetensors bytes (optimizer state included)."""
        state = super().__getstate__()
        state = dict(state)
        net = state.pop("net_", None)
        if net is not None:
            state["_net_bytes"] = net.to_bytes(include_optimizer=True)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuilds the network from its checked safetensors bytes."""
        state = dict(state)
        data = state.pop("_net_bytes", None)
        if data is not None:
            state["net_"] = Network.from_bytes(data)
        super().__setstate__(state)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier with scikit-learn's `MLPClassifier` interface,
    trained by bpcore (softmax cross-entropy). See the module docstring for the parameters and
    how they map; `dropout` and `dtype` are bpcore's own.

    Attributes:
        classes_: the class labels (any sortable type, strings included).
        loss_, loss_curve_, best_loss_: the training loss (last, per epoch, best).
        validation_scores_, best_validation_score_: accuracy on the held-out set
            (with early_stopping; else None).
        n_iter_, t_: epochs run and samples seen.
        n_features_in_, feature_names_in_ (for DataFrames), n_outputs_, coefs_, intercepts_,
        n_layers_, out_activation_ ("softmax").
        net_: the trained `bpcore.Network`.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from bpcore.sklearn import MLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> X = (X - X.mean(axis=0)) / X.std(axis=0)
        >>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=300,
        ...                     tol=1e-3, random_state=0)
        >>> clf.fit(X, y).score(X, y) > 0.9
        True
        >>> clf.predict_proba(X[:2]).shape
        (2, 3)
    """

    _loss = "cross_entropy"
    out_activation_ = "softmax"

    def _validate(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        return X, y

    def _targets(self, y: np.ndarray, first: bool) -> np.ndarray:
        if first and not getattr(self, "_classes_given", False):
            self.classes_ = np.unique(y)
        self._classes_given = False
        index = np.searchsorted(self.classes_, y)
        index = np.clip(index, 0, len(self.classes_) - 1)
        unseen = self.classes_[index] != y
        if np.any(unseen):
            raise ValueError(
                f"y: labels {list(np.unique(np.asarray(y)[unseen]))} are not in classes_ "
                f"{list(self.classes_)}"
            )
        return index.astype(np.int64)

    def _stratify(self, t: np.ndarray) -> np.ndarray | None:
        return t

    def _validation_score(self, X: np.ndarray, t: np.ndarray) -> float:
        return float(np.mean(self.net_.forward(X).argmax(axis=1) == t))

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Trains on X (n_samples, n_features) and labels y (n_samples,) of any type; returns
        self. `sample_weight` (n_samples,) weights each sample's loss."""
        self._classes_given = False
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> MLPClassifier:
        """One epoch over X, y, continuing from the current state. The first call must give
        `classes` (all labels y may ever hold)."""
        first = _check_partial_fit_first_call(self, classes)
        self._classes_given = first
        if first:
            for name in ("net_",):
                self.__dict__.pop(name, None)
        return self._fit(X, y, sample_weight, incremental=True)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in `classes_` order."""
        z = self._outputs(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of `predict_proba`, computed stably."""
        z = self._outputs(X)
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample, as labels from `classes_`."""
        index = self._outputs(X).argmax(axis=1)
        return self.classes_[index]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor with scikit-learn's `MLPRegressor` interface, trained
    by bpcore (mean squared error; `loss_curve_` reports half of it, scikit-learn's
    squared-error loss). See the module docstring for the parameters and how they map.

    Attributes:
        loss_, loss_curve_, best_loss_, validation_scores_ (R² with early_stopping),
        best_validation_score_, n_iter_, t_, n_features_in_, feature_names_in_, n_outputs_,
        coefs_, intercepts_, n_layers_, out_activation_ ("identity"), net_.
    """

    _loss = "mse"
    _loss_scale = 0.5
    out_activation_ = "identity"

    def _validate(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        return validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=(np.float64, np.float32),
            multi_output=True,
            y_numeric=True,
        )

    def _targets(self, y: np.ndarray, first: bool) -> np.ndarray:
        t = np.asarray(y, dtype=np.float64)
        t = t.reshape(-1, 1) if t.ndim == 1 else t
        if not first and t.shape[1] != self.n_outputs_:
            raise ValueError(f"y: expected {self.n_outputs_} outputs, got {t.shape[1]}")
        return t

    def _validation_score(self, X: np.ndarray, t: np.ndarray) -> float:
        from sklearn.metrics import r2_score

        return float(r2_score(t, self.net_.forward(X)))

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Trains on X (n_samples, n_features) and targets y (n_samples,) or
        (n_samples, n_outputs); returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over X, y, continuing from the current state (starting on the first call)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions (n_samples,) for one output, else (n_samples, n_outputs)."""
        out = self._outputs(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags: a regressor with multi-output support."""
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


__all__ = ["MLPClassifier", "MLPRegressor"]

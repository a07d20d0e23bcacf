"""What MLPClassifier and MLPRegressor share: scikit-learn's parameters, its fitting logic
(first pass, warm start, partial fit, early stopping, the stopping rules, `n_iter_`) and its
fitted attributes, with the work done by a `bpcore.Network`."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from bpcore._user_warnings import warn
from bpcore.bpcore import TrainingDivergedError
from bpcore.network import Network
from bpcore.optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from bpcore.sklearn import _lbfgs, _network, _params, _stochastic
from bpcore.training import GradientWarning

#: scikit-learn's message for a fit whose weights are no longer finite.
NON_FINITE_MESSAGE = (
    "Solver produced non-finite parameter weights. The input data may contain large values "
    "and need to be preprocessed."
)


#: What scikit-learn's validate_data sets on the estimator while it checks X.
_INPUT_ATTRIBUTES = ("n_features_in_", "feature_names_in_")


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    """One finite weight >= 0 per sample (a number is every sample's), not all zero, as float64."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(
            f"sample_weight: expected shape ({n},), one weight per sample, got {w.shape}"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight: weights must be finite and >= 0")
    if not w.any():
        raise ValueError("sample_weight: all weights are zero; nothing to fit")
    return w


class BaseMLP(BaseEstimator):
    """The shared part of the estimators; see `bpcore.sklearn` for the parameters."""

    net_: Network
    n_outputs_: int

    # ----- what the subclasses define ----------------------------------------------------------

    #: Whether y must be numbers (regression) or may be any labels (classification).
    _y_numeric = True

    def _validate_targets(self, y: Any, incremental: bool, reset: bool) -> tuple[np.ndarray, Any]:
        """(Y as a 2-d array, the state to keep for it) from checked targets."""
        raise NotImplementedError

    def _keep_targets_state(self, state: Any) -> None:
        """Stores what `_validate_targets` returned once the fit is certain to go ahead."""

    def _layout(self, Y: np.ndarray) -> tuple[str, str]:
        """(the core's loss, scikit-learn's out_activation_) for targets Y."""
        raise NotImplementedError

    def _core_targets(self, Y: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Y as the core's loss takes it: int64 labels or C-contiguous values of `dtype`."""
        return np.ascontiguousarray(Y, dtype=dtype)

    def _scales(self, Y: np.ndarray, w: np.ndarray | None) -> _lbfgs.Scales:
        """How the core's loss on Y relates to scikit-learn's (see `_lbfgs.Scales`)."""
        raise NotImplementedError

    def _validation_targets(self, Y: np.ndarray) -> np.ndarray:
        """Held-out targets as `score` takes them."""
        raise NotImplementedError

    def _stratify(self, Y: np.ndarray) -> np.ndarray | None:
        return None

    def _score(self, X: Any, y: Any, sample_weight: np.ndarray | None) -> float:
        raise NotImplementedError

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        raise NotImplementedError

    # ----- fitting -----------------------------------------------------------------------------

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> BaseMLP:
        _params.check(self.get_params())
        hidden = _params.hidden_sizes(self.hidden_layer_sizes)
        first_pass = "net_" not in self.__dict__ or (not self.warm_start and not incremental)
        # validate_data sets n_features_in_ (and feature_names_in_) as it checks X: a fit refused
        # by any later check puts them back, so that a refused fit leaves the model as it was.
        seen = {k: self.__dict__[k] for k in _INPUT_ATTRIBUTES if k in self.__dict__}
        try:
            X, y = validate_data(
                self,
                X,
                y,
                accept_sparse=["csr", "csc"],
                multi_output=True,
                y_numeric=self._y_numeric,
                dtype=(np.float64, np.float32),
                reset=first_pass,
            )
            if sp.issparse(X):
                X = X.tocsr()
            Y, targets_state = self._validate_targets(y, incremental, reset=first_pass)
            if not first_pass and Y.shape[1] != self.n_outputs_:
                raise ValueError(f"y: expected {self.n_outputs_} outputs, got {Y.shape[1]}")
            w = check_sample_weight(sample_weight, X.shape[0])
            random_state = check_random_state(self.random_state)
            stochastic = self.solver in _params.STOCHASTIC_SOLVERS
            if first_pass:
                dtype = np.dtype(self.dtype) if self.dtype is not None else X.dtype
                widths = [X.shape[1], *hidden, Y.shape[1]]
                start = _network.glorot_parameters(widths, self.activation, random_state, dtype)
            else:
                dtype = self.net_.dtype
                start = _network.coefs(self.net_)
            split = None
            if stochastic and self.early_stopping and not incremental:
                split = self._split(X, Y, w, random_state)
        except BaseException:
            for k in _INPUT_ATTRIBUTES:
                self.__dict__.pop(k, None)
            self.__dict__.update(seen)
            raise
        self._keep_targets_state(targets_state)
        self._random_state = random_state
        loss, out_activation = self._layout(Y)
        if first_pass:
            self.n_outputs_ = Y.shape[1]
            self.n_layers_ = len(hidden) + 2
            self.out_activation_ = out_activation
            self.t_ = 0
            self._best_parameters: np.ndarray | None = None
        if stochastic and (first_pass or not self._stopping_state_fits()):
            self._start_stopping_state()
        n_train = X.shape[0] if split is None else split[0].shape[0]
        batch_size = self._batch_size(n_train) if stochastic else n_train
        if first_pass or not incremental:
            # A new optimizer state for every fit, as scikit-learn makes a new optimizer.
            net = _network.build(
                X.shape[1],
                hidden,
                Y.shape[1],
                self.activation,
                float(self.dropout),
                loss,
                self._optimizer_for(self._scales(Y, w)),
                dtype,
                self._dropout_seed(random_state),
            )
            _network.set_coefs(net, start)
            self.net_ = net
        if self._best_parameters is None:
            self._best_parameters = _network.flat_parameters(self.net_)
        if stochastic:
            self._fit_stochastic(X, Y, w, split, batch_size, incremental)
        else:
            self._fit_lbfgs(X, Y, w)
        if not np.isfinite(_network.flat_parameters(self.net_)).all():
            raise ValueError(NON_FINITE_MESSAGE)
        return self

    def _stopping_state_fits(self) -> bool:
        """Whether the stopping rules' state of an earlier fit suits this one (it does not after
        an lbfgs fit, or when early_stopping was switched)."""
        if not hasattr(self, "_no_improvement_count"):
            return False
        if self.early_stopping:
            return getattr(self, "validation_scores_", None) is not None
        return getattr(self, "best_loss_", None) is not None

    def _start_stopping_state(self) -> None:
        """The stopping rules' state of a first stochastic fit."""
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_: list[float] | None = []
            self.best_validation_score_: float | None = -np.inf
            self.best_loss_: float | None = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _dropout_seed(self, random_state: np.random.RandomState) -> int:
        """The core's seed: drawn from `random_state` when dropout draws masks, else 0 (nothing
        in the core is random then, and `random_state` keeps scikit-learn's sequence of draws)."""
        if self.dropout > 0:
            return int(random_state.randint(0, 2**31 - 1))
        return 0

    def _split(
        self, X: Any, Y: np.ndarray, w: np.ndarray | None, random_state: np.random.RandomState
    ) -> tuple[Any, ...]:
        """(X_train, X_val, Y_train, Y_val, w_train, w_val): scikit-learn's early-stopping split."""
        arrays = [X, Y] + ([] if w is None else [w])
        parts = train_test_split(
            *arrays,
            random_state=random_state,
            test_size=self.validation_fraction,
            stratify=self._stratify(Y),
        )
        if parts[1].shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size "
                "of your dataset."
            )
        if w is None:
            parts += [None, None]
        return tuple(parts)

    def _batch_size(self, n: int) -> int:
        if isinstance(self.batch_size, str):
            return min(200, n)
        if self.batch_size > n:
            warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be "
                "clipped",
                UserWarning,
            )
        return int(np.clip(self.batch_size, 1, n))

    def _optimizer_for(self, scales: _lbfgs.Scales) -> Optimizer:
        """The core's optimizer taking scikit-learn's steps on the core's loss: the core's
        gradient is scikit-learn's / `scales.gradient`, so the L2 term (alpha · W / Σ w of the
        batch in scikit-learn's gradient, on the weights only; the fit divides the decay by each
        batch's Σ w) and the scale-setting epsilons are divided by it too, and sgd's learning
        rate multiplied."""
        s = scales.gradient
        decay = self.alpha / s
        lr = self.learning_rate_init
        betas = (self.beta_1, self.beta_2)
        eps = self.epsilon / s
        weights_only = list(_network.NO_DECAY)
        if self.solver == "sgd":
            nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
            return SGD(
                lr * s,
                momentum=self.momentum,
                nesterov=nesterov,
                weight_decay=decay,
                no_decay=weights_only,
            )
        if self.solver == "adamw":
            # Decoupled: alpha shrinks the weights by lr·alpha per step, whatever the batch.
            return AdamW(lr, betas=betas, eps=eps, weight_decay=self.alpha, no_decay=weights_only)
        if self.solver == "rmsprop":
            return RMSprop(lr, eps=eps, weight_decay=decay, no_decay=weights_only)
        if self.solver == "adagrad":
            return Adagrad(lr, eps=eps, weight_decay=decay, no_decay=weights_only)
        # adam, and lbfgs (whose network's optimizer is never stepped)
        return Adam(lr, betas=betas, eps=eps, weight_decay=decay, no_decay=weights_only)

    def _fit_lbfgs(self, X: Any, Y: np.ndarray, w: np.ndarray | None) -> None:
        net = self.net_
        objective = _lbfgs.Objective(
            net, X, self._core_targets(Y, net.dtype), w, self.alpha, self._scales(Y, w)
        )
        result = _lbfgs.minimize(
            objective, self.max_iter, self.max_fun, self.tol, bool(self.verbose)
        )
        self.n_iter_ = result.n_iter
        self.loss_ = result.loss
        self.loss_curve_ = result.loss_curve

    def _fit_stochastic(
        self,
        X: Any,
        Y: np.ndarray,
        w: np.ndarray | None,
        split: tuple[Any, ...] | None,
        batch_size: int,
        incremental: bool,
    ) -> None:
        net = self.net_
        if not incremental or not hasattr(self, "_optimizer"):
            schedule = self.learning_rate if self.solver == "sgd" else "constant"
            self._optimizer = _stochastic.LearningRate(
                self.learning_rate_init, schedule, self.power_t
            )
        scales = self._scales(Y, w)
        early_stopping = split is not None
        X_val = y_val = w_val = None
        if split is not None:
            X, X_val, Y, Y_val, w, w_val = split
            y_val = self._validation_targets(Y_val)
        n = X.shape[0]
        targets = self._core_targets(Y, net.dtype)
        core_weights = None if w is None else np.ascontiguousarray(w, dtype=net.dtype)
        # scikit-learn's L2 term per unit of a batch's weight: alpha / Σ w of each batch,
        # except AdamW's decoupled decay.
        decay_per_weight = self.solver != "adamw"
        lr_scale = scales.gradient if self.solver == "sgd" else 1.0
        net.lr = self._optimizer.learning_rate * lr_scale
        self.n_iter_ = 0
        order = None
        for _ in range(self.max_iter):
            order = _stochastic.epoch_order(order, n, bool(self.shuffle), self._random_state)
            diverged = None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", GradientWarning)
                    core_loss, core_penalty = _stochastic.epoch(
                        net, X, targets, core_weights, batch_size, order, decay_per_weight
                    )
                # The core's L2 term is in its own units (its decay is alpha / scale); AdamW's
                # decoupled decay is no term of the loss.
                penalty = scales.gradient * core_penalty
                loss = scales.report * core_loss + scales.offset + penalty
            except TrainingDivergedError as e:
                diverged, loss = e, math.nan
            self.n_iter_ += 1
            self.loss_ = loss
            self.t_ += n
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            if diverged is not None and not early_stopping:
                raise ValueError(f"{NON_FINITE_MESSAGE} ({diverged})") from diverged
            self._update_no_improvement_count(early_stopping, X_val, y_val, w_val, diverged)
            self._optimizer.iteration_ends(self.t_)
            if self._no_improvement_count > self.n_iter_no_change:
                if early_stopping:
                    message = (
                        f"Validation score did not improve more than tol={self.tol:f} for "
                        f"{self.n_iter_no_change} consecutive epochs."
                    )
                else:
                    message = (
                        f"Training loss did not improve more than tol={self.tol:f} for "
                        f"{self.n_iter_no_change} consecutive epochs."
                    )
                if self._optimizer.trigger_stopping(message, bool(self.verbose)):
                    break
                self._no_improvement_count = 0
            net.lr = self._optimizer.learning_rate * lr_scale
            if diverged is not None or incremental:
                break
            if self.n_iter_ == self.max_iter:
                warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                    "the optimization hasn't converged yet.",
                    ConvergenceWarning,
                )
        if early_stopping and self._best_parameters is not None:
            _network.set_flat_parameters(net, self._best_parameters)

    def _update_no_improvement_count(
        self,
        early_stopping: bool,
        X_val: Any,
        y_val: Any,
        w_val: np.ndarray | None,
        diverged: Exception | None,
    ) -> None:
        if early_stopping:
            score = math.nan if diverged is not None else self._score(X_val, y_val, w_val)
            assert self.validation_scores_ is not None  # a list with early stopping
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            best = self.best_validation_score_
            assert best is not None  # a number with early stopping
            if score < best + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > best:
                self.best_validation_score_ = score
                self._best_parameters = _network.flat_parameters(self.net_)
        else:
            assert self.best_loss_ is not None  # a number without early stopping
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _check_solver(self) -> bool:
        if self.solver not in _params.STOCHASTIC_SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is "
                "not stochastic."
            )
        return True

    def _check_partial_fit(self) -> None:
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")

    # ----- prediction ----------------------------------------------------------------------

    def _outputs(self, X: Any, check_input: bool = True) -> np.ndarray:
        """The network's outputs (the output layer before its activation) for X, checked
        unless it is the fit's own validated data (`check_input=False`)."""
        check_is_fitted(self, "net_")
        if check_input:
            X = validate_data(
                self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False
            )
        if sp.issparse(X):
            X = X.tocsr()
        return _network.forward(self.net_, X)

    # ----- fitted attributes and pickling ----------------------------------------------------

    def _fitted_net(self) -> Network:
        if "net_" not in self.__dict__:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet.")
        net: Network = self.net_
        return net

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices as scikit-learn's: layer i's (fan_in, fan_out), the network's dtype."""
        return [coef for coef, _ in _network.coefs(self._fitted_net())]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, one per layer after the input."""
        return [intercept for _, intercept in _network.coefs(self._fitted_net())]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the network as its safetensors bytes (optimizer state included)."""
        state = dict(super().__getstate__())
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

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags: sparse input accepted."""
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

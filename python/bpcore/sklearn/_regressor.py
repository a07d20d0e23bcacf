"""`MLPRegressor`: scikit-learn's MLP regressor, trained by bpcore.

`loss="squared_error"` trains the core's mean squared error on an identity output;
`loss="poisson"` the core's Poisson negative log-likelihood on log-rates (torch's
`PoissonNLLLoss(log_input=True)`), so that the output activation is the exponential, as
scikit-learn's `out_activation_ = "exp"`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import xlogy
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils import column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from bpcore.sklearn import _lbfgs
from bpcore.sklearn._base import BaseMLP


class MLPRegressor(RegressorMixin, BaseMLP):
    """A multi-layer perceptron regressor with scikit-learn's `MLPRegressor` parameters and
    behaviour, trained by bpcore's Rust core. See `bpcore.sklearn` for what differs.

    Attributes:
        loss_, loss_curve_, best_loss_ (half the squared error, or half the Poisson deviance,
        plus the L2 penalty, as scikit-learn reports them), validation_scores_ (R² with
        early_stopping), best_validation_score_, n_iter_, t_, n_features_in_,
        feature_names_in_, n_outputs_, coefs_, intercepts_, n_layers_, out_activation_
        ("identity" or "exp"), net_.
    """

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool | int = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int | float = 10,
        max_fun: int = 15000,
        dropout: float = 0.0,
        dtype: str | None = None,
    ) -> None:
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
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
        self.max_fun = max_fun
        self.dropout = dropout
        self.dtype = dtype

    # ----- targets -------------------------------------------------------------------------

    def _validate_targets(self, y: Any, incremental: bool, reset: bool) -> tuple[np.ndarray, Any]:
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = np.asarray(y, dtype=np.float64)
        if self.loss == "poisson" and (Y < 0).any():
            raise ValueError("y: the poisson loss needs targets >= 0")
        return (Y.reshape(-1, 1) if Y.ndim == 1 else Y), None

    def _layout(self, Y: np.ndarray) -> tuple[str, str]:
        if self.loss == "poisson":
            return "poisson", "exp"
        return "mse", "identity"

    def _scales(self, Y: np.ndarray, w: np.ndarray | None) -> _lbfgs.Scales:
        k = float(Y.shape[1])
        if self.loss == "poisson":
            # scikit-learn's half Poisson deviance, y log(y / λ) - y + λ summed over outputs, is
            # the core's e^x - y·x plus y log y - y, which the network does not change.
            constant = np.average(xlogy(Y, Y) - Y, weights=w, axis=0).sum()
            return _lbfgs.Scales(gradient=k, report=k, offset=float(constant))
        # scikit-learn reports half the squared error averaged over outputs, and its gradient
        # is that of half the squared error summed over them.
        return _lbfgs.Scales(gradient=k / 2, report=0.5)

    def _validation_targets(self, Y: np.ndarray) -> np.ndarray:
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _score(self, X: Any, y: Any, sample_weight: np.ndarray | None) -> float:
        predicted = self._predict(X, check_input=False)
        if not np.isfinite(predicted).all():
            return float("nan")
        return float(r2_score(y, predicted, sample_weight=sample_weight))

    # ----- fitting -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Trains on X (n_samples, n_features; dense or scipy sparse) and targets y (n_samples,)
        or (n_samples, n_outputs); returns self. `sample_weight` (n_samples,) weights each
        sample's loss: Σ w_i·l_i / Σ w_i."""
        self._fit(X, y, sample_weight, incremental=False)
        return self

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over X, y, continuing from the current state (starting on the first call)."""
        self._check_partial_fit()
        self._fit(X, y, sample_weight, incremental=True)
        return self

    # ----- prediction ----------------------------------------------------------------------

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        out = self._outputs(X, check_input)
        if self.out_activation_ == "exp":
            out = np.exp(out)
        return out.ravel() if out.shape[1] == 1 else out

    def predict(self, X: Any) -> np.ndarray:
        """Predictions (n_samples,) for one output, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict(X)

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags: a regressor with multi-output support and sparse input."""
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

"""`MLPClassifier`: scikit-learn's MLP classifier, trained by bpcore.

Targets are binarized as scikit-learn's are (its `LabelBinarizer`): several classes train one
softmax output per class (the core's cross-entropy on class indices); two classes one logistic
output (`coefs_[-1]` of shape (h, 1)), and a multi-label indicator matrix one logistic output per
label (the core's binary cross-entropy on logits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted

from bpcore.sklearn import _lbfgs
from bpcore.sklearn._base import BaseMLP


class MLPClassifier(ClassifierMixin, BaseMLP):
    """A multi-layer perceptron classifier with scikit-learn's `MLPClassifier` parameters and
    behaviour, trained by bpcore's Rust core. See `bpcore.sklearn` for what differs; `dropout`
    and `dtype` are bpcore's own.

    Attributes:
        classes_: the class labels (any sortable type), or the label indices for multi-label y.
        loss_, loss_curve_, best_loss_: the training loss (last, per iteration, best; with the
            L2 penalty, as scikit-learn reports it).
        validation_scores_, best_validation_score_: accuracy on the held-out set
            (with early_stopping; else None).
        n_iter_: iterations of the last fit (epochs, or L-BFGS iterations); t_: samples seen.
        n_features_in_, feature_names_in_ (for DataFrames), n_outputs_ (output units),
        coefs_, intercepts_, n_layers_, out_activation_ ("softmax" or "logistic").
        net_: the trained `bpcore.Network` (its output layer linear: the activation is in the
            loss).

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from bpcore.sklearn import MLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=300,
        ...                     random_state=0)
        >>> clf.fit(X, y).score(X, y) > 0.95
        True
        >>> clf.predict_proba(X[:2]).shape
        (2, 3)
    """

    def __init__(
        self,
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

    _y_numeric = False

    def _validate_targets(self, y: Any, incremental: bool, reset: bool) -> tuple[np.ndarray, Any]:
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        given = getattr(self, "_given_binarizer", None)
        if given is None and (
            not hasattr(self, "classes_") or not (self.warm_start or incremental)
        ):
            binarizer = LabelBinarizer().fit(y)
        else:
            binarizer = given if given is not None else self._label_binarizer
            known, classes = binarizer.classes_, unique_labels(y)
            if self.warm_start:
                if set(classes) != set(known):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {known}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, known, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {known}. "
                    f"'y' has {classes}."
                )
        # bool keeps float32 data from being upcast (as scikit-learn does).
        Y = binarizer.transform(y).astype(bool)
        return Y, binarizer

    def _keep_targets_state(self, state: Any) -> None:
        self._label_binarizer = state
        self.classes_ = state.classes_
        self._given_binarizer = None

    def _multiclass(self) -> bool:
        return bool(self._label_binarizer.y_type_ == "multiclass")

    def _layout(self, Y: np.ndarray) -> tuple[str, str]:
        if self._multiclass():
            return "cross_entropy", "softmax"
        return "bce_with_logits", "logistic"

    def _core_targets(self, Y: np.ndarray, dtype: np.dtype) -> np.ndarray:
        if self._multiclass():
            return np.ascontiguousarray(Y.argmax(axis=1), dtype=np.int64)
        return np.ascontiguousarray(Y, dtype=dtype)

    def _scales(self, Y: np.ndarray, w: np.ndarray | None) -> _lbfgs.Scales:
        # Cross-entropy is the same in both; scikit-learn's binary log-loss sums over the
        # outputs where the core's averages.
        k = 1.0 if self._multiclass() else float(Y.shape[1])
        return _lbfgs.Scales(gradient=k, report=k)

    def _validation_targets(self, Y: np.ndarray) -> np.ndarray:
        y: np.ndarray = self._label_binarizer.inverse_transform(Y)
        return y

    def _stratify(self, Y: np.ndarray) -> np.ndarray | None:
        # As scikit-learn: stratified for one output (binary), not for several.
        return Y if Y.shape[1] == 1 else None

    def _score(self, X: Any, y: Any, sample_weight: np.ndarray | None) -> float:
        predicted = self._predict(X, check_input=False)
        return float(accuracy_score(y, predicted, sample_weight=sample_weight))

    # ----- fitting -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Trains on X (n_samples, n_features; dense or scipy sparse) and labels y (n_samples,)
        of any type, or a multi-label indicator matrix (n_samples, n_labels); returns self.
        `sample_weight` (n_samples,) weights each sample's loss: Σ w_i·l_i / Σ w_i."""
        self._given_binarizer = None
        self._fit(X, y, sample_weight, incremental=False)
        return self

    @available_if(lambda est: est._check_solver())
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> MLPClassifier:
        """One epoch over X, y, continuing from the current state. The first call must give
        `classes` (all labels y may ever hold), unless y is a multi-label indicator matrix."""
        self._check_partial_fit()
        if _check_partial_fit_first_call(self, classes):
            binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                binarizer.fit(y)
            else:
                binarizer.fit(classes)
            self._given_binarizer = binarizer
            self.__dict__.pop("net_", None)
            del self.classes_
        try:
            self._fit(X, y, sample_weight, incremental=True)
        finally:
            self._given_binarizer = None
        return self

    # ----- prediction ----------------------------------------------------------------------

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities (n_samples, n_classes), columns in `classes_` order: softmax for several
        classes, (1 - p, p) for two, each label's own sigmoid for multi-label y."""
        check_is_fitted(self)
        return self._proba(self._outputs(X))

    def _proba(self, z: np.ndarray) -> np.ndarray:
        """Probabilities from the network's outputs."""
        if self.out_activation_ == "softmax":
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            p: np.ndarray = e / e.sum(axis=1, keepdims=True)
            return p
        p = expit(z)
        if p.shape[1] == 1:
            return np.hstack([1 - p, p])
        return p

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The log of `predict_proba`."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        proba = self._proba(self._outputs(X, check_input))
        if self.n_outputs_ == 1:
            proba = proba[:, 1]
        labels: np.ndarray = self._label_binarizer.inverse_transform(proba)
        return labels

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample, as labels from `classes_`; for multi-label y,
        the indicator matrix of the labels whose probability exceeds 0.5."""
        check_is_fitted(self)
        return self._predict(X)

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags: a classifier taking multi-label targets and sparse input."""
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

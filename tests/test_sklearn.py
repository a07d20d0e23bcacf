"""bpcore.sklearn's MLPClassifier and MLPRegressor: scikit-learn's own estimator checks (with
no expected failure, at default parameters and at those scikit-learn's test harness gives its
MLPs), and use in pipelines, searches, pickling and cloning."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_sample_weight_equivalence_on_dense_data,
    check_sample_weight_equivalence_on_sparse_data,
    parametrize_with_checks,
)

import bpcore as bp
from bpcore.sklearn import MLPClassifier, MLPRegressor


@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# scikit-learn's test harness checks its MLPs with max_iter=100, and their sample weights with
# these parameters (sklearn/utils/_test_common/instance_generator.py).
@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_sklearn_estimator_checks_with_the_harness_parameters(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "estimator",
    [MLPClassifier(solver="lbfgs"), MLPRegressor(solver="sgd", tol=1e-2, random_state=42)],
    ids=["MLPClassifier-lbfgs", "MLPRegressor-sgd"],
)
@pytest.mark.parametrize(
    "check",
    [check_sample_weight_equivalence_on_dense_data, check_sample_weight_equivalence_on_sparse_data],
    ids=["dense", "sparse"],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sample_weight_equivalence_with_the_harness_parameters(estimator, check):
    check(type(estimator).__name__, estimator)


def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


def test_classifier_learns_digits_with_string_labels():
    X, y = digits()
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )[y]
    clf = MLPClassifier(
        hidden_layer_sizes=(32,), max_iter=60, learning_rate_init=0.01, random_state=0
    ).fit(X, names)
    assert list(clf.classes_) == sorted(set(names))
    assert clf.score(X, names) > 0.95
    assert clf.predict(X[:3]).dtype == names.dtype
    proba = clf.predict_proba(X)
    assert proba.shape == (600, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-10)
    assert clf.n_features_in_ == 64 and clf.n_outputs_ == 10 and clf.n_iter_ <= 60
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.best_loss_ == min(clf.loss_curve_)
    assert [c.shape for c in clf.coefs_] == [(64, 32), (32, 10)]
    assert [b.shape for b in clf.intercepts_] == [(32,), (10,)]
    assert isinstance(clf.net_, bp.Network) and clf.n_layers_ == 3


def test_same_random_state_same_model_and_solvers():
    X, y = digits()
    for solver in ["adam", "sgd", "adamw", "rmsprop", "adagrad"]:
        a = MLPClassifier((16,), solver=solver, max_iter=5, random_state=3).fit(X, y)
        b = MLPClassifier((16,), solver=solver, max_iter=5, random_state=3).fit(X, y)
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_early_stopping_and_dropout():
    X, y = digits()
    clf = MLPClassifier(
        (32,),
        early_stopping=True,
        n_iter_no_change=3,
        dropout=0.1,
        max_iter=200,
        random_state=0,
        activation="tanh",
    ).fit(X, y)
    assert clf.best_loss_ is None and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.8
    assert clf.n_iter_ < 200


def test_partial_fit_needs_classes_first_and_continues():
    X, y = digits()
    clf = MLPClassifier((16,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:300], y[:300], classes=np.arange(10))
    clf.partial_fit(X[300:], y[300:])
    # As scikit-learn's: n_iter_ counts the last call's epochs, t_ every sample seen.
    assert clf.n_iter_ == 1 and clf.t_ == 600
    with pytest.raises(ValueError, match=re.escape("has classes not in `self.classes_`")):
        clf.partial_fit(X[:5], np.full(5, 11))


def test_regressor_single_and_multi_output():
    X, y = make_regression(n_samples=200, n_features=5, n_targets=2, noise=0.1, random_state=0)
    y = y / y.std(axis=0)
    reg = MLPRegressor(
        hidden_layer_sizes=(32,), max_iter=300, learning_rate_init=0.01, random_state=0
    ).fit(X, y)
    assert reg.n_outputs_ == 2 and reg.predict(X).shape == (200, 2)
    assert reg.score(X, y) > 0.9
    one = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0).fit(X, y[:, 0])
    assert one.predict(X).shape == (200,)
    one.partial_fit(X, y[:, 0])
    assert one.n_iter_ == 1 and one.t_ == 21 * 200


def test_pipeline_and_grid_search():
    X, y = digits()
    pipe = make_pipeline(
        StandardScaler(), MLPClassifier(max_iter=20, learning_rate_init=0.01, random_state=0)
    )
    search = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (24,)]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["mlpclassifier__hidden_layer_sizes"] in [(8,), (24,)]
    assert search.score(X, y) > 0.8


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pickle_goes_through_safetensors_and_is_exact(dtype):
    X, y = digits()
    clf = MLPClassifier((16,), max_iter=5, random_state=0, dtype=dtype).fit(X, y)
    state = clf.__getstate__()
    assert "net_" not in state and isinstance(state["_net_bytes"], bytes)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    # Training on continues identically (the optimizer state came along).
    back.partial_fit(X, y)
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_clone_and_parameter_names():
    clf = MLPClassifier((5, 3), activation="logistic", solver="sgd", alpha=0.1, dropout=0.2)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    for name in [
        "hidden_layer_sizes",
        "activation",
        "solver",
        "learning_rate",
        "power_t",
        "max_fun",
        "alpha",
        "batch_size",
        "learning_rate_init",
        "max_iter",
        "shuffle",
        "random_state",
        "tol",
        "early_stopping",
        "validation_fraction",
        "n_iter_no_change",
        "momentum",
        "nesterovs_momentum",
        "beta_1",
        "beta_2",
        "epsilon",
        "verbose",
        "dropout",
        "dtype",
    ]:
        assert name in clf.get_params()
    defaults = MLPRegressor().get_params()
    assert defaults["max_iter"] == 200 and defaults["batch_size"] == "auto"
    assert defaults["alpha"] == 0.0001 and defaults["hidden_layer_sizes"] == (100,)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"activation": "softmax"}, "activation"),
        ({"solver": "newton"}, "solver"),
        ({"learning_rate": "cyclic"}, "learning_rate"),
        ({"power_t": -1.0}, "power_t"),
        ({"max_fun": 0}, "max_fun"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"verbose": -1}, "verbose"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"solver": "lbfgs", "dropout": 0.5}, "dropout"),
        ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
        ({"alpha": -1.0}, "alpha"),
        ({"batch_size": 0}, "batch_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dtype": "float16"}, "dtype"),
        ({"beta_1": 1.0}, "beta_1"),
    ],
)
def test_invalid_parameters_are_refused_at_fit(params, match):
    X, y = digits()
    clf = MLPClassifier(**params)  # no error at construction, as scikit-learn requires
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "net_")


def test_regressor_loss_is_checked():
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="huber").fit(*make_regression(n_samples=20, random_state=0))


def test_verbose_prints_sklearn_style(capsys):
    X, y = digits()
    MLPClassifier((8,), max_iter=2, verbose=True, random_state=0).fit(X, y)
    assert "Iteration 1, loss = " in capsys.readouterr().out


def test_feature_names_in_with_a_dataframe():
    pd = pytest.importorskip("pandas", reason="pandas is not installed (feature names need it)")
    X, y = digits()
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    clf = MLPClassifier((8,), max_iter=2, random_state=0).fit(frame, y)
    assert list(clf.feature_names_in_) == list(frame.columns)

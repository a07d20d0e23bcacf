"""bpcore.sklearn computes what scikit-learn's MLPs compute: the same initial weights and batches
for a `random_state`, the same full-batch objective for lbfgs, sample weights as repeated rows,
scikit-learn's output layouts, sparse and float32 input, and its `n_iter_`, partial_fit and
error semantics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.neural_network as sk
from scipy.special import xlogy
from sklearn.datasets import load_digits, load_iris, make_multilabel_classification

from bpcore.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def digits(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def test_same_random_state_same_start_and_result_as_sklearn():
    # Unscaled iris, where the initial weights decide how fast a fit gets anywhere.
    X, y = load_iris(return_X_y=True)
    ours = MLPClassifier((16,), max_iter=50, random_state=0).fit(X, y)
    theirs = sk.MLPClassifier((16,), max_iter=50, random_state=0).fit(X, y)
    assert ours.score(X, y) == theirs.score(X, y)
    # Adam's epsilon differs slightly (see bpcore.sklearn).
    assert abs(ours.loss_ - theirs.loss_) < 1e-3
    started = MLPClassifier((16,), max_iter=1, random_state=0, learning_rate_init=1e-12)
    sk_started = sk.MLPClassifier((16,), max_iter=1, random_state=0, learning_rate_init=1e-12)
    for a, b in zip(started.fit(X, y).coefs_, sk_started.fit(X, y).coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_lbfgs_follows_sklearns_iterations(activation):
    X, y = digits(150)
    kw = dict(solver="lbfgs", hidden_layer_sizes=(20,), max_iter=15, random_state=1)
    ours = MLPClassifier(activation=activation, **kw).fit(X, y)
    theirs = sk.MLPClassifier(activation=activation, **kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 15
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-8)
    assert len(ours.loss_curve_) == ours.n_iter_ and ours.loss_curve_[-1] == ours.loss_


@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_sample_weights_takes_sklearns_steps(estimator, shuffle, nesterov):
    # Mini-batches of unequal weight, the L2 term on the weights only over each batch's Σ w,
    # momentum, and each epoch's shuffle of the last: scikit-learn's every step, to rounding.
    X, y = digits(230)
    target = y if estimator == "classifier" else y / 9.0
    ours_cls, theirs_cls = (
        (MLPClassifier, sk.MLPClassifier)
        if estimator == "classifier"
        else (MLPRegressor, sk.MLPRegressor)
    )
    w = np.random.default_rng(0).uniform(0.0, 3.0, len(y))
    kw = dict(
        hidden_layer_sizes=(12,),
        solver="sgd",
        alpha=0.3,
        batch_size=25,
        shuffle=shuffle,
        momentum=0.9,
        nesterovs_momentum=nesterov,
        learning_rate_init=0.05,
        max_iter=6,
        random_state=0,
        tol=0.0,
        n_iter_no_change=100,
    )
    ours = ours_cls(**kw).fit(X, target, sample_weight=w)
    theirs = theirs_cls(**kw).fit(X, target, sample_weight=w)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # The reported loss too: each batch's weighted mean and its L2 term before its step.
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    assert ours.n_iter_ == theirs.n_iter_ == 6


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_weight_of_two_is_a_repeated_row_in_its_mini_batch(solver):
    # shuffle=False, and each weight-2 row's copy in its own batch: the same batches in both
    # fits (shuffled, the two sets are permuted differently, in scikit-learn too).
    X, y = digits(200)
    w = np.ones(len(y))
    rows = []
    for start in range(0, 200, 20):
        w[start : start + 3] = 2.0
        w[start + 3] = 0.0
        rows += [*range(start, start + 3), *range(start + 4, start + 20), *range(start, start + 3)]
    kw = dict(solver=solver, max_iter=5, random_state=0, shuffle=False, alpha=0.05)
    weighted = MLPClassifier((16,), batch_size=20, **kw).fit(X, y, sample_weight=w)
    repeated = MLPClassifier((16,), batch_size=22, **kw).fit(X[rows], y[rows])
    for a, b in zip(weighted.coefs_ + weighted.intercepts_, repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    # scikit-learn's own MLP makes the same equivalence.
    theirs_weighted = sk.MLPClassifier((16,), batch_size=20, **kw).fit(X, y, sample_weight=w)
    theirs_repeated = sk.MLPClassifier((16,), batch_size=22, **kw).fit(X[rows], y[rows])
    np.testing.assert_allclose(theirs_weighted.coefs_[0], theirs_repeated.coefs_[0], atol=1e-12)


@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
def test_a_weight_of_two_is_a_repeated_row(solver):
    X, y = digits()
    w = np.ones(len(y))
    w[:10] = 2.0
    w[10:20] = 0.0
    X_rep = np.vstack([X[20:], X[:10], X[:10]])
    y_rep = np.concatenate([y[20:], y[:10], y[:10]])
    # Full batches (batch_size is clipped to the rows), so that both fits see the same batches.
    kw = dict(solver=solver, max_iter=20, random_state=0, batch_size=len(y_rep), alpha=0.01)
    weighted = MLPClassifier((16,), **kw).fit(X, y, sample_weight=w)
    repeated = MLPClassifier((16,), **kw).fit(X_rep, y_rep)
    np.testing.assert_allclose(
        weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-9, atol=1e-12
    )
    assert weighted.loss_ == pytest.approx(repeated.loss_, rel=1e-9)


def test_binary_problems_have_one_logistic_output():
    X, y = digits()
    binary = y % 2
    clf = MLPClassifier((8,), solver="lbfgs", max_iter=50, random_state=0).fit(X, binary)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert [c.shape for c in clf.coefs_] == [(64, 8), (8, 1)]
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), (proba[:, 1] > 0.5).astype(int))


def test_multilabel_targets_get_one_sigmoid_per_label():
    X, Y = make_multilabel_classification(n_samples=80, n_classes=4, random_state=0)
    clf = MLPClassifier((32,), solver="lbfgs", max_iter=200, random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 4
    proba = clf.predict_proba(X)
    assert proba.shape == (80, 4) and not np.allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), (proba > 0.5).astype(int))
    assert clf.score(X, Y) > 0.9
    # scikit-learn's loss sums the labels' log-losses.
    theirs = sk.MLPClassifier((32,), solver="lbfgs", max_iter=5, random_state=0).fit(X, Y)
    ours = MLPClassifier((32,), solver="lbfgs", max_iter=5, random_state=0).fit(X, Y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_sparse_input_is_made_dense_a_block_at_a_time(solver):
    rng = np.random.default_rng(0)
    # Wide enough that a block holds 32 rows: the 100 rows take four.
    X = sp.random(100, 2**15, density=2e-4, format="csr", random_state=1, dtype=np.float64)
    first_column = (rng.uniform(size=100), (np.arange(100), np.zeros(100, int)))
    X = (X + sp.csr_matrix(first_column, shape=X.shape)).tocsr()
    y = rng.integers(0, 2, size=100)
    kw = dict(solver=solver, max_iter=5, random_state=0, batch_size=10)
    sparse = MLPClassifier((4,), **kw).fit(X, y)
    dense = MLPClassifier((4,), **kw).fit(X.toarray(), y)
    np.testing.assert_allclose(
        sparse.predict_proba(X), dense.predict_proba(X.toarray()), rtol=1e-10
    )
    np.testing.assert_array_equal(sparse.predict(X.tocsc()), sparse.predict(X))


def test_the_compute_dtype_follows_the_inputs_unless_dtype_says():
    X, y = digits()
    X32 = X.astype(np.float32)
    clf = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X32, y)
    assert clf.net_.dtype == np.float32 and clf.predict(X32).dtype == np.float32
    assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)
    wide = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0, dtype="float64")
    assert wide.fit(X32, y).net_.dtype == np.float64


def test_poisson_loss_is_sklearns_half_deviance():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(200, 3))
    y = rng.poisson(np.exp(X @ [1.0, -0.5, 0.3]))
    reg = MLPRegressor(
        loss="poisson", hidden_layer_sizes=(4,), solver="lbfgs", alpha=0.0, random_state=0
    ).fit(X, y)
    assert reg.out_activation_ == "exp"
    mu = reg.predict(X)
    assert (mu > 0).all()
    assert reg.loss_ == pytest.approx(np.mean(xlogy(y, y / mu) - y + mu), rel=1e-9)
    with pytest.raises(ValueError, match="y"):
        MLPRegressor(loss="poisson").fit(X, -y - 1.0)


def test_n_iter_counts_the_last_fit():
    X, y = digits()
    clf = MLPClassifier((8,), solver="sgd", max_iter=3, warm_start=True, random_state=0)
    clf.fit(X, y)
    assert clf.n_iter_ == 3 and clf.t_ == 3 * len(y)
    clf.fit(X, y)
    assert clf.n_iter_ == 3 and clf.t_ == 6 * len(y) and len(clf.loss_curve_) == 6


def test_partial_fit_after_early_stopping_is_sklearns_value_error():
    X, y = digits()
    clf = MLPClassifier((8,), early_stopping=True, max_iter=5, random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        clf.partial_fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_a_validation_split_too_small_to_score_is_refused_before_anything_changes():
    X, y = digits(20)
    reg = MLPRegressor(early_stopping=True, validation_fraction=0.05)
    with pytest.raises(ValueError, match="The validation set is too small"):
        reg.fit(X, y.astype(float))
    assert not hasattr(reg, "net_") and not hasattr(reg, "n_iter_")


def test_partial_fit_takes_sklearns_argument_order():
    X, y = digits()
    w = np.ones(len(y))
    clf = MLPClassifier((8,), random_state=0)
    clf.partial_fit(X, y, w, np.arange(10))
    assert list(clf.classes_) == list(range(10))
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


def test_a_diverging_fit_raises_sklearns_value_error():
    rng = np.random.default_rng(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            MLPRegressor().fit(X, rng.normal(size=10))


def test_sgd_learning_rate_schedules():
    X, y = digits()
    inv = MLPClassifier((8,), solver="sgd", learning_rate="invscaling", power_t=0.25, max_iter=2)
    inv.fit(X, y)
    assert inv._optimizer.learning_rate == 0.001 / (2 * len(y) + 1) ** 0.25
    adaptive = MLPClassifier(
        (8,), solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=1, max_iter=50
    ).fit(X, y)
    # Each time the loss stops improving the rate is divided by 5, down to below 1e-6.
    assert adaptive._optimizer.learning_rate < 1e-6 and adaptive.n_iter_ < 50


@pytest.mark.parametrize("weights", [-np.ones(40), np.zeros(40)])
def test_a_fit_refused_for_its_weights_leaves_the_fitted_model_as_it_was(weights):

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), (rng.normal(size=40) > 0).astype(int)
    clf = MLPClassifier((4,), max_iter=5, random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    X_other, y_other = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    with pytest.raises(ValueError, match="sample_weight"):
        clf.fit(X_other, y_other, sample_weight=weights)
    assert clf.n_features_in_ == 3 and list(clf.classes_) == [0, 1]
    np.testing.assert_array_equal(clf.predict_proba(X), before)

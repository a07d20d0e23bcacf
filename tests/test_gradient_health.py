"""The gradient-health warnings: true when said (judged by ‖g‖/‖w‖ and the loss's trend), once
per fit and cause, at the caller's line, naming the likely cause, and easy to silence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from optional import require

import bpcore as bp
from bpcore.gradient_health import TargetScale


def diabetes():
    datasets = require("sklearn.datasets", "scikit-learn")
    preprocessing = require("sklearn.preprocessing", "scikit-learn")
    X, y = datasets.load_diabetes(return_X_y=True)
    return preprocessing.StandardScaler().fit_transform(X), y


def regressor():
    return bp.Network([bp.Dense(10, 100), bp.ReLU(), bp.Dense(100, 1)], seed=0)


def health_warnings(fit):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit()
    return [w for w in record if issubclass(w.category, bp.GradientWarning)]


def test_raw_diabetes_targets_warn_once_naming_their_scale_at_the_callers_line():
    X, y = diabetes()
    found = health_warnings(lambda: regressor().fit(X, y, epochs=50, batch_size=32))
    assert len(found) == 1  # not one an epoch
    w = found[0]
    assert w.message.cause == "targets"
    assert "targets have a scale of 1e2" in str(w.message) and "standardize y" in str(w.message)
    assert f"mean {y.mean():.4g}, std {y.std():.4g}" in str(w.message)
    assert w.filename == __file__  # the user's line, not bpcore's


def test_standardized_targets_train_without_a_warning():
    X, y = diabetes()
    found = health_warnings(
        lambda: regressor().fit(X, (y - y.mean()) / y.std(), epochs=50, batch_size=32)
    )
    assert found == []


def test_each_fit_may_warn_once_again():
    X, y = diabetes()
    net = regressor()
    assert len(health_warnings(lambda: net.fit(X, y, epochs=3))) == 1
    assert len(health_warnings(lambda: net.fit(X, y, epochs=3))) == 1  # still unscaled


def test_warnings_false_and_the_category_filter_silence_them():
    X, y = diabetes()
    assert health_warnings(lambda: regressor().fit(X, y, epochs=2, warnings=False)) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=bp.GradientWarning)
        regressor().fit(X, y, epochs=2)
    with pytest.raises(TypeError, match="warnings"):
        regressor().fit(X, y, warnings="no")


def test_a_solved_problem_is_not_told_its_gradients_vanish():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    net = bp.Network(
        [bp.Dense(3, 4), bp.Dense(4, 1)], optimizer=bp.SGD(lr=0.1), dtype="float64", seed=0
    )
    found = health_warnings(lambda: net.fit(X, y, epochs=400, batch_size=64))
    loss = net.loss(X, y)
    assert loss < 1e-12 and found == []


def test_classification_labels_are_not_judged_as_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int) * 150  # large labels, 151 classes: a classifier's business
    net = bp.Network([bp.Dense(4, 151)], loss="cross_entropy", seed=0)
    assert [w.message.cause for w in health_warnings(lambda: net.fit(X, y, epochs=2))] == []


def test_poisson_counts_are_not_told_to_standardize():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    counts = rng.poisson(np.exp(5 + 0.1 * X[:, 0]))  # around 150
    net = bp.Network([bp.Dense(3, 1)], loss="poisson", optimizer=bp.SGD(lr=1e-4), seed=0)
    causes = [w.message.cause for w in health_warnings(lambda: net.fit(X, counts, epochs=2))]
    assert "targets" not in causes


def test_vanishing_names_the_faded_tensor_against_the_largest_relative_gradient():
    net = bp.Network(
        [bp.Dense(4, 4), bp.Sigmoid(), bp.Dense(4, 4), bp.Sigmoid(), bp.Dense(4, 4)],
        optimizer=bp.SGD(lr=0.01),
        dtype="float64",
        seed=0,
    )
    rng = np.random.default_rng(0)
    params = net.parameters()
    params["0.weight"] = 1e-3 * rng.normal(size=(4, 4))
    params["2.weight"] = 1e-9 * rng.normal(size=(4, 4))  # blocks what flows back to layer 0
    net.set_parameters(params)
    X, Y = rng.normal(size=(16, 4)), rng.normal(size=(16, 4))
    found = health_warnings(lambda: net.fit(X, Y, epochs=2, batch_size=16))
    assert [w.message.cause for w in found] == ["vanishing"]
    assert "gradients of 0.weight are vanishing" in str(found[0].message)
    assert "of 2.weight's" in str(found[0].message)  # the largest ‖g‖/‖w‖: tiny weights


def test_target_scale_is_the_root_mean_square():
    scale = TargetScale.of(np.array([[99.0], [101.0]]))
    assert scale.mean == 100.0 and scale.std == 1.0
    assert scale.rms == pytest.approx(np.sqrt(100.0**2 + 1.0)) and scale.decade() == "1e2"


def test_an_epoch_reports_the_norm_of_each_tensor_it_ended_with():
    # The monitor's ‖w‖ comes from the core, which measures the weights after the epoch.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 10))
    t = np.sin(X[:, :1])
    net = bp.Network([bp.Dense(10, 8), bp.ReLU(), bp.Dense(8, 1)], seed=0, dtype="float64")
    result = net.native.fit_epoch(X, t, 32, True)
    params = net.parameters()
    names = [name for name, _, _ in net.native.param_info()]
    assert len(result["weight_norms"]) == len(names) == 4
    for name, norm in zip(names, result["weight_norms"]):
        assert norm == pytest.approx(np.linalg.norm(params[name]), rel=1e-12)
    assert result["weight_norms"][1] > 0  # a bias, moved from zero by the epoch

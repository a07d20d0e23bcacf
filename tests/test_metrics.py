"""fit's metrics against scikit-learn's on the same predictions: precision, recall, F1, ROC AUC,
top-k accuracy, element-wise and exact-match accuracy, functions as metrics; and every metric
and its val_ twin monitored by the callbacks."""

from __future__ import annotations

import numpy as np
import pytest
from optional import require

import bpcore as bp
from bpcore.metrics import Metric

sklearn_metrics = require("sklearn.metrics")
datasets = require("sklearn.datasets")


def _standardized(X: np.ndarray) -> np.ndarray:
    return ((X - X.mean(axis=0)) / (X.std(axis=0) + 1e-12)).astype(np.float32)


def _binary():
    X, y = datasets.load_breast_cancer(return_X_y=True)
    return _standardized(X), y


def _multiclass():
    X, y = datasets.load_iris(return_X_y=True)
    return _standardized(X), y


def _multilabel():
    """Digits with three labels each: 5 or more, even, drawn with a loop (0, 6, 8, 9)."""
    X, digit = datasets.load_digits(return_X_y=True)
    Y = np.stack([digit >= 5, digit % 2 == 0, np.isin(digit, [0, 6, 8, 9])], axis=1)
    return _standardized(X)[:600], Y[:600].astype(np.float32)


def _trained(X, y, width: int, loss: str, metrics: list, epochs: int = 2, **kwargs):
    """A small network fitted for a few epochs (far from perfect, so that every metric has
    something to count), validated on its own training data."""
    net = bp.Network([bp.Dense(X.shape[1], 8), bp.Tanh(), bp.Dense(8, width)], loss=loss, seed=1)
    history = net.fit(
        X,
        y,
        epochs=epochs,
        batch_size=64,
        metrics=metrics,
        validation_data=(X, y),
        progress=False,
        **kwargs,
    )
    return net, history.history


AVERAGES = {"": "binary", "_macro": "macro", "_micro": "micro"}


def _sklearn_prf(name: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    kind, _, average = name.partition("_")
    function = {
        "precision": sklearn_metrics.precision_score,
        "recall": sklearn_metrics.recall_score,
        "f1": sklearn_metrics.f1_score,
    }[kind]
    return float(
        function(
            truth, predicted, average=AVERAGES["_" + average if average else ""], zero_division=0
        )
    )


PRF_BINARY = ["precision", "recall", "f1", "precision_macro", "recall_micro", "f1_macro"]
PRF_ANY = [
    "precision_macro",
    "precision_micro",
    "recall_macro",
    "recall_micro",
    "f1_macro",
    "f1_micro",
]


@pytest.mark.parametrize("loss", ["cross_entropy", "bce_with_logits"])
def test_binary_metrics_are_scikit_learns(loss: str) -> None:
    X, y = _binary()
    width = 2 if loss == "cross_entropy" else 1
    target = y if loss == "cross_entropy" else y.astype(np.float32)
    names = ["accuracy", *PRF_BINARY, "roc_auc"]
    net, h = _trained(X, target, width, loss, names, epochs=1)
    predicted = net.predict(X).ravel()
    proba = net.predict_proba(X)
    positive = proba[:, 1] if loss == "cross_entropy" else proba[:, 0]
    assert 0.6 < h["val_accuracy"][-1] < 1.0  # far from perfect: the metrics differ
    assert h["val_accuracy"][-1] == pytest.approx(sklearn_metrics.accuracy_score(y, predicted))
    for name in PRF_BINARY:
        expected = _sklearn_prf(name, y, predicted)
        assert h[f"val_{name}"][-1] == pytest.approx(expected, rel=1e-12), name
        # Computed after the epoch on the training samples: the same value here.
        assert h[name][-1] == pytest.approx(expected, rel=1e-12), name
    expected_auc = sklearn_metrics.roc_auc_score(y, positive)
    assert h["val_roc_auc"][-1] == pytest.approx(expected_auc, rel=1e-12)
    assert h["roc_auc"][-1] == pytest.approx(expected_auc, rel=1e-12)


def test_multiclass_metrics_are_scikit_learns() -> None:
    X, y = _multiclass()
    names = ["accuracy", *PRF_ANY, "roc_auc", "top_2_accuracy"]
    net, h = _trained(X, y, 3, "cross_entropy", names, epochs=40)
    predicted = net.predict(X)
    proba = net.predict_proba(X)
    assert 0.4 < h["val_accuracy"][-1] < 1.0
    for name in PRF_ANY:
        assert h[f"val_{name}"][-1] == pytest.approx(_sklearn_prf(name, y, predicted)), name
    ovr = sklearn_metrics.roc_auc_score(y, proba, multi_class="ovr")
    assert h["val_roc_auc"][-1] == pytest.approx(ovr, rel=1e-12)
    top2 = sklearn_metrics.top_k_accuracy_score(y, proba, k=2)
    assert h["val_top_2_accuracy"][-1] == pytest.approx(top2, rel=1e-12)
    assert h["top_2_accuracy"][-1] == h["val_top_2_accuracy"][-1]


def test_macro_averages_over_the_labels_present_as_scikit_learn() -> None:
    # Class 3 of 4 is never a target nor predicted: scikit-learn leaves it out of the mean.
    outputs = np.array([[2.0, 0, 0, -9], [0, 2.0, 0, -9], [0, 0, 2.0, -9], [2.0, 0, 0, -9]])
    y = np.array([0, 1, 1, 2])
    got = bp.metrics.compute(PRF_ANY, outputs, y, bp.CrossEntropyLoss())
    for name in PRF_ANY:
        assert got[name] == pytest.approx(_sklearn_prf(name, y, outputs.argmax(axis=1))), name


def test_multilabel_accuracy_is_exact_match_and_binary_accuracy_elementwise() -> None:
    X, Y = _multilabel()
    names = ["accuracy", "binary_accuracy", *PRF_ANY, "roc_auc"]
    net, h = _trained(X, Y, 3, "bce_with_logits", names, epochs=1)
    predicted = net.predict(X)
    exact = sklearn_metrics.accuracy_score(Y, predicted)
    elementwise = float(np.mean(predicted == Y))
    assert exact < elementwise - 0.05  # multi-label: the two differ, as in the report
    assert h["val_accuracy"][-1] == pytest.approx(exact, rel=1e-12)
    assert h["val_binary_accuracy"][-1] == pytest.approx(elementwise, rel=1e-12)
    assert net.evaluate(X, Y)["accuracy"] == pytest.approx(exact, rel=1e-12)
    for name in PRF_ANY:
        assert h[f"val_{name}"][-1] == pytest.approx(_sklearn_prf(name, Y, predicted)), name
    auc = sklearn_metrics.roc_auc_score(Y, net.predict_proba(X))
    assert h["val_roc_auc"][-1] == pytest.approx(auc, rel=1e-12)


def test_multilabel_training_accuracy_counts_exact_rows_of_the_steps() -> None:
    X, Y = _multilabel()
    X, Y = X[:100], Y[:100]

    def make() -> bp.Network:
        return bp.Network([bp.Dense(64, 3)], loss="bce_with_logits", dtype="float64", seed=2)

    net, twin = make(), make()
    h = net.fit(
        X,
        Y,
        epochs=1,
        batch_size=32,
        shuffle=False,
        progress=False,
        metrics=["accuracy", "binary_accuracy"],
    )
    outputs = []
    for a in range(0, 100, 32):
        outputs.append(twin.forward(X[a : a + 32]))
        twin.train_step(X[a : a + 32], Y[a : a + 32])
    right = (np.concatenate(outputs) > 0) == (Y > 0.5)
    assert h["accuracy"] == [pytest.approx(np.mean(right.all(axis=1)), rel=1e-15)]
    assert h["binary_accuracy"] == [pytest.approx(np.mean(right), rel=1e-15)]


def test_functions_are_metrics() -> None:
    X, y = _binary()
    balanced = sklearn_metrics.balanced_accuracy_score
    log_loss = Metric(sklearn_metrics.log_loss, proba=True, greater_is_better=False)
    mean_positive = Metric(lambda t, p: float(np.mean(p)), name="mean_positive", proba=True)
    net, h = _trained(X, y, 2, "cross_entropy", [balanced, log_loss, mean_positive], epochs=1)
    predicted, proba = net.predict(X), net.predict_proba(X)
    assert h["val_balanced_accuracy_score"][-1] == pytest.approx(balanced(y, predicted))
    assert h["val_log_loss"][-1] == pytest.approx(sklearn_metrics.log_loss(y, proba[:, 1]))
    assert h["val_mean_positive"][-1] == pytest.approx(np.mean(proba[:, 1]))
    # The core's own cross-entropy is scikit-learn's log loss of the same probabilities.
    assert h["val_log_loss"][-1] == pytest.approx(h["val_loss"][-1], rel=1e-5)


@pytest.mark.parametrize(
    ("loss", "width", "metrics", "words"),
    [
        ("cross_entropy", 3, ["f1"], "choose 'f1_macro' or 'f1_micro'"),
        ("bce_with_logits", 3, ["recall"], "choose 'recall_macro'"),
        ("cross_entropy", 3, ["auc"], "did you mean 'roc_auc'"),
        ("cross_entropy", 3, ["top_k_accuracy"], "'top_2_accuracy'"),
        ("cross_entropy", 3, ["top_3_accuracy"], "needs more than 3 classes"),
        ("bce_with_logits", 2, ["top_1_accuracy"], "ranks the classes of cross_entropy"),
        ("cross_entropy", 3, ["binary_accuracy"], "use 'accuracy'"),
        ("mse", 1, ["f1_macro"], "does not apply to the regression loss"),
        ("mse", 1, [lambda t, p: 0.0], "no name to report it under"),
        ("cross_entropy", 3, [Metric(np.mean, name="accuracy"), "accuracy"], "two different"),
    ],
)
def test_bad_metrics_are_refused_before_training(loss, width, metrics, words) -> None:
    X, y = _multiclass()
    target = y if loss == "cross_entropy" else np.zeros((len(y), width), dtype=np.float32)
    net = bp.Network([bp.Dense(4, width)], loss=loss, seed=0)
    before = net.parameters()["0.weight"]
    with pytest.raises(ValueError, match=words):
        net.fit(X, target, metrics=metrics, progress=False)
    np.testing.assert_array_equal(net.parameters()["0.weight"], before)


def test_data_parallel_fit_refuses_metrics_of_the_whole_set() -> None:
    MPI = require("mpi4py.MPI")
    X, y = _binary()
    net = bp.Network([bp.Dense(30, 2)], loss="cross_entropy", seed=0)
    with pytest.raises(bp.distributed.DistributedTrainingError) as e:
        net.fit(X, y, metrics=["accuracy", "roc_auc"], comm=MPI.COMM_SELF, progress=False)
    assert isinstance(e.value.__cause__, ValueError)
    assert "'roc_auc' is computed from predictions of the whole set" in str(e.value.__cause__)
    # The summed ones are summed over the ranks; exact match too.
    X, Y = _multilabel()
    alone = bp.Network([bp.Dense(64, 3)], loss="bce_with_logits", seed=0)
    ranked = bp.Network([bp.Dense(64, 3)], loss="bce_with_logits", seed=0)
    kwargs = {
        "metrics": ["accuracy", "binary_accuracy"],
        "progress": False,
        "validation_split": 0.2,
    }
    a = alone.fit(X, Y, **kwargs).history
    b = ranked.fit(X, Y, comm=MPI.COMM_SELF, **kwargs).history
    for key in ("accuracy", "binary_accuracy", "val_accuracy", "val_binary_accuracy"):
        assert a[key] == pytest.approx(b[key], rel=1e-12), key


@pytest.mark.parametrize(
    "monitor",
    [
        "val_f1",
        "f1_macro",
        "val_roc_auc",
        "precision",
        "val_recall_micro",
        "val_binary_accuracy_score",
    ],
)
def test_every_metric_and_its_val_twin_can_be_monitored(monitor: str, tmp_path) -> None:
    X, y = _binary()
    names = [
        "f1",
        "f1_macro",
        "roc_auc",
        "precision",
        "recall_micro",
        sklearn_metrics.balanced_accuracy_score,
    ]
    if monitor == "val_binary_accuracy_score":
        monitor = "val_balanced_accuracy_score"
    stop = bp.EarlyStopping(monitor=monitor, patience=1, restore_best_weights=True)
    plateau = bp.ReduceLROnPlateau(monitor=monitor, patience=1, factor=0.5)
    path = tmp_path / "best.safetensors"
    checkpoint = bp.ModelCheckpoint(path, monitor=monitor, save_best_only=True)
    for callback in (stop, plateau, checkpoint):
        assert callback.mode == "max", callback  # a score: higher is better
    net, h = _trained(
        X, y, 2, "cross_entropy", names, epochs=6, callbacks=[stop, plateau, checkpoint]
    )
    values = h[monitor]
    assert stop.best == max(values) and checkpoint.best == max(values)
    assert stop.best_epoch is not None
    assert values[stop.best_epoch] == stop.best
    best = bp.Network.load(path)
    # The restored weights and the checkpoint are the best epoch's.
    np.testing.assert_array_equal(best.parameters()["0.weight"], net.parameters()["0.weight"])


def test_a_monitor_that_is_no_metric_names_the_keys() -> None:
    X, y = _binary()
    with pytest.raises(ValueError, match="monitor='val_f1' is not in the training logs"):
        _trained(X, y, 2, "cross_entropy", ["f1_macro"], callbacks=[bp.EarlyStopping("val_f1")])


def test_the_summed_metrics_have_one_definition_the_cores():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    net = bp.Network([bp.Dense(3, 2)], loss="cross_entropy", dtype="float64", seed=0)
    predicted = net.predict(X)
    sums = net.native.metric_sums(X, y)
    assert sums["rows"] == 60 and sums["correct"] == float(np.sum(predicted == y))
    assert net.evaluate(X, y)["accuracy"] == pytest.approx(
        sklearn_metrics.accuracy_score(y, predicted)
    )
    assert bp.metrics.values(["accuracy"], net, X, y) == {"accuracy": sums["correct"] / 60}
    with pytest.raises(ValueError, match="'accuracy' is summed by the core"):
        bp.metrics.compute(["accuracy"], net.forward(X), y, net.loss_function)

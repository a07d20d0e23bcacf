"""Class weights as torch and Keras have them: the losses' `weight` and `pos_weight` against the
reference and torch, and `fit(class_weight=...)` as Keras's per-sample weights."""

from __future__ import annotations

import numpy as np
import pytest
from optional import require
from parity_helpers import (
    DTYPES,
    assert_close,
    assert_dicts_close,
    check_forward_loss_gradients,
    in_dtype,
    make_pair,
    random_parameters,
)

import bpcore as bp

N, IN, OUT = 12, 5, 4
CLASS_WEIGHT = [0.5, 3.0, 1.0, 0.0]


def _pair(loss: bp.Loss, dtype: str, seed: int = 3, n: int = N, width: int = OUT):
    rng = np.random.default_rng(seed)
    layers = [bp.Dense(IN, width)]
    template = bp.Network(layers, loss=loss, dtype=dtype)
    net, oracle = make_pair(layers, loss, dtype=dtype, parameters=random_parameters(template, rng))
    X = in_dtype(rng.normal(size=(n, IN)), dtype)
    return net, oracle, X, rng


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_weight_matches_the_reference(dtype: str, smoothing: float) -> None:
    loss = bp.CrossEntropyLoss(label_smoothing=smoothing, weight=CLASS_WEIGHT)
    net, oracle, X, rng = _pair(loss, dtype)
    y = rng.integers(0, OUT, size=N)
    y[:3] = 3  # a class of weight 0 among the targets
    check_forward_loss_gradients(net, oracle, X, y, dtype)
    s = in_dtype(rng.uniform(0.0, 2.0, size=N), dtype)
    assert_dicts_close(
        net.gradients(X, y, sample_weight=s),
        oracle.gradients(X, y, sample_weight=s),
        dtype,
        "sample-weighted gradient",
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pos_weight", [[3.0, 0.5, 1.0, 2.0], [4.0]])
def test_bce_pos_weight_matches_the_reference(dtype: str, pos_weight: list[float]) -> None:
    net, oracle, X, rng = _pair(bp.BCEWithLogitsLoss(pos_weight=pos_weight), dtype)
    y = in_dtype(rng.uniform(size=(N, OUT)), dtype)
    y[:2] = np.round(y[:2])
    check_forward_loss_gradients(net, oracle, X, y, dtype)


def _torch_linear(torch, net: bp.Network):
    params = net.parameters()
    linear = torch.nn.Linear(*params["0.weight"].shape[::-1]).double()
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(params["0.weight"], dtype=torch.float64))
        linear.bias.copy_(torch.tensor(params["0.bias"], dtype=torch.float64))
    return linear


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_weight_matches_torch(smoothing: float) -> None:
    torch = require("torch")
    loss = bp.CrossEntropyLoss(label_smoothing=smoothing, weight=CLASS_WEIGHT)
    net, _, X, rng = _pair(loss, "float64")
    y = rng.integers(0, OUT, size=N)
    linear = _torch_linear(torch, net)
    criterion = torch.nn.CrossEntropyLoss(
        weight=torch.tensor(CLASS_WEIGHT, dtype=torch.float64), label_smoothing=smoothing
    )
    value = criterion(linear(torch.tensor(X)), torch.tensor(y))
    value.backward()
    assert_close(net.loss(X, y), value.item(), "float64", "loss")
    grads = net.gradients(X, y)
    assert_close(grads["0.weight"], linear.weight.grad.numpy(), "float64", "0.weight")
    assert_close(grads["0.bias"], linear.bias.grad.numpy(), "float64", "0.bias")


@pytest.mark.parametrize("pos_weight", [[3.0, 0.5, 1.0, 2.0], [4.0]])
def test_bce_pos_weight_matches_torch(pos_weight: list[float]) -> None:
    torch = require("torch")
    net, _, X, rng = _pair(bp.BCEWithLogitsLoss(pos_weight=pos_weight), "float64")
    y = rng.uniform(size=(N, OUT))
    linear = _torch_linear(torch, net)
    criterion = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, dtype=torch.float64))
    value = criterion(linear(torch.tensor(X)), torch.tensor(y))
    value.backward()
    assert_close(net.loss(X, y), value.item(), "float64", "loss")
    grads = net.gradients(X, y)
    assert_close(grads["0.weight"], linear.weight.grad.numpy(), "float64", "0.weight")
    assert_close(grads["0.bias"], linear.bias.grad.numpy(), "float64", "0.bias")


def test_a_large_batch_split_over_threads_keeps_torchs_weighted_mean() -> None:
    """A batch big enough for the core to split over threads: each share's part of the mean
    is its part of the targets' class weights, not of the rows."""
    loss = bp.CrossEntropyLoss(weight=CLASS_WEIGHT)
    rng = np.random.default_rng(0)
    layers = [bp.Dense(IN, 256), bp.Tanh(), bp.Dense(256, OUT)]
    template = bp.Network(layers, loss=loss, dtype="float64")
    net, oracle = make_pair(layers, loss, parameters=random_parameters(template, rng, 0.3))
    n = 1024
    X = rng.normal(size=(n, IN))
    # The first half mostly class 1 (weight 3), the second mostly class 0 (weight 0.5).
    y = np.where(np.arange(n) < n // 2, 1, 0)
    y[::7] = 2
    threads = bp.get_num_threads()
    bp.set_num_threads(2)  # 1024 rows of this network: two shares of 512 rows
    try:
        check_forward_loss_gradients(net, oracle, X, y, "float64")
    finally:
        bp.set_num_threads(threads)


def test_weights_are_checked() -> None:
    with pytest.raises(ValueError, match=r"weight: weights must be finite and >= 0, got -1\.0"):
        bp.CrossEntropyLoss(weight=[1.0, -1.0])
    with pytest.raises(TypeError, match="pos_weight: expected a 1-d list"):
        bp.BCEWithLogitsLoss(pos_weight=2.0)
    with pytest.raises(ValueError, match="weight: expected one value per class"):
        bp.Network([bp.Dense(2, 3)], loss=bp.CrossEntropyLoss(weight=[1.0, 2.0]))
    with pytest.raises(ValueError, match="pos_weight: expected one value per output"):
        bp.Network([bp.Dense(2, 3)], loss=bp.BCEWithLogitsLoss(pos_weight=[1.0, 2.0]))


def test_weighted_losses_save_load_and_compare() -> None:
    loss = bp.CrossEntropyLoss(label_smoothing=0.1, weight=np.array([1.0, 2.0, 0.5]))
    assert loss == bp.CrossEntropyLoss(label_smoothing=0.1, weight=[1, 2, 0.5])
    assert loss != bp.CrossEntropyLoss(label_smoothing=0.1)
    assert repr(loss) == "CrossEntropyLoss(label_smoothing=0.1, weight=[1.0, 2.0, 0.5])"
    net = bp.Network([bp.Dense(2, 3)], loss=loss, seed=1)
    loaded = bp.Network.from_bytes(net.to_bytes())
    assert loaded.loss_function == loss
    X, y = np.ones((3, 2), dtype=np.float32), np.array([0, 1, 2])
    assert loaded.loss(X, y) == net.loss(X, y)
    # A network without weights describes its loss as before: files stay as they were.
    assert bp.CrossEntropyLoss().to_spec() == {"type": "cross_entropy", "label_smoothing": 0.0}
    assert bp.BCEWithLogitsLoss().to_spec() == {"type": "bce_with_logits"}


# ----- fit(class_weight=...) -------------------------------------------------------------------


def _data(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, IN)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0.8).astype(np.int64) + (X[:, 2] > 1.2)
    return X, y


def _fit(**kwargs) -> tuple[bp.Network, list[float]]:
    X, y = _data()
    net = bp.Network([bp.Dense(IN, 3)], loss="cross_entropy", seed=4)
    history = net.fit(X, y, epochs=3, batch_size=16, progress=False, **kwargs)
    return net, history.history["loss"]


def test_class_weight_is_keras_per_sample_weight_times_sample_weight() -> None:
    _, y = _data()
    weights = {0: 0.25, 2: 4.0}  # class 1 left out: 1.0, as Keras
    per_class = np.array([0.25, 1.0, 4.0])
    s = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y)).astype(np.float32)
    a, loss_a = _fit(class_weight=weights, sample_weight=s)
    b, loss_b = _fit(sample_weight=(s * per_class[y].astype(np.float32)))
    assert loss_a == loss_b
    for name, value in a.parameters().items():
        np.testing.assert_array_equal(value, b.parameters()[name])


def test_balanced_is_scikit_learns() -> None:
    compute = require("sklearn.utils.class_weight").compute_class_weight
    _, y = _data()
    n_train = 72  # validation_split=0.2 holds out the last 18: weights come from the rest
    balanced = compute("balanced", classes=np.unique(y[:n_train]), y=y[:n_train])
    assert len(set(np.round(balanced, 6))) == 3  # imbalanced: three different weights
    a, loss_a = _fit(class_weight="balanced", validation_split=0.2)
    b, loss_b = _fit(sample_weight=balanced[y].astype(np.float32), validation_split=0.2)
    assert loss_a == loss_b
    np.testing.assert_array_equal(a.parameters()["0.weight"], b.parameters()["0.weight"])


def test_class_weight_with_one_logit_weights_the_rounded_target() -> None:
    X, y = _data()
    t = (y > 0).astype(np.float32)
    runs = []
    for kwargs in ({"class_weight": {1: 3.0}}, {"sample_weight": np.where(t > 0.5, 3.0, 1.0)}):
        net = bp.Network([bp.Dense(IN, 1)], loss="bce_with_logits", seed=2)
        runs.append(net.fit(X, t, epochs=2, progress=False, **kwargs).history["loss"])
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    ("network", "class_weight", "error", "words"),
    [
        ("ce", {3: 1.0}, ValueError, "class 3 is not one of the network's classes, 0 to 2"),
        ("ce", {"a": 1.0}, TypeError, "keys are class labels"),
        ("ce", {0: -1.0}, ValueError, r"class_weight\[0\]: must be finite and >= 0"),
        ("ce", "balance", ValueError, "expected 'balanced' or a dict"),
        ("ce", [1.0, 2.0], TypeError, "expected 'balanced' or a dict"),
        ("mse", {0: 1.0}, ValueError, "needs a classification loss"),
        ("bce3", {0: 1.0}, ValueError, "pos_weight"),
    ],
)
def test_bad_class_weight_changes_nothing(network, class_weight, error, words) -> None:
    X, y = _data()
    width = {"ce": 3, "mse": 1, "bce3": 3}[network]
    loss = {"ce": "cross_entropy", "mse": "mse", "bce3": "bce_with_logits"}[network]
    target = y if network == "ce" else np.zeros((len(y), width), dtype=np.float32)
    net = bp.Network([bp.Dense(IN, width)], loss=loss, seed=0)
    before = net.parameters()
    with pytest.raises(error, match=words):
        net.fit(X, target, class_weight=class_weight, progress=False)
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(value, before[name])


def test_balanced_weights_raise_minority_recall_on_breast_cancer() -> None:
    """Real imbalanced data: scikit-learn's breast-cancer set with most malignant samples
    dropped (24 of 381 left) and three weak features (texture, smoothness, fractal
    dimension), so that the classes overlap: "balanced" class weights find more of the rare
    class, at the cost of the common one."""
    datasets = require("sklearn.datasets")
    X, y = datasets.load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    keep = (y == 1) | (rng.uniform(size=len(y)) < 0.125)  # class 0 (malignant) made rare
    X, y = X[keep][:, [1, 4, 9]], y[keep]
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    recalls = []
    for class_weight in (None, "balanced"):
        net = bp.Network([bp.Dense(3, 1)], loss="bce_with_logits", seed=0)
        net.fit(X, y.astype(np.float32), epochs=20, class_weight=class_weight, progress=False)
        predicted = net.predict(X).ravel()
        recalls.append((np.mean(predicted[y == 0] == 0), np.mean(predicted[y == 1] == 1)))
    (rare_plain, common_plain), (rare_balanced, common_balanced) = recalls
    assert rare_balanced > rare_plain and common_balanced < common_plain, recalls


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "cross_entropy", "label_smoothing": 0.3, "weight": [0.5, 3.0, 1.0]},
        {"type": "bce_with_logits", "pos_weight": [2.5, 0.5, 1.0]},
    ],
)
def test_the_references_weighted_gradients_are_central_differences(spec: dict) -> None:
    from bpcore import reference as ref

    rng = np.random.default_rng(2)
    z = rng.normal(size=(4, 3)).tolist()
    y = [0, 2, 1, 1] if spec["type"] == "cross_entropy" else rng.uniform(size=(4, 3)).tolist()
    s = [1.0, 0.0, 2.0, 0.5]
    _, grad = ref.loss_value_and_grad(spec, z, y, s)
    h = 1e-6
    for i in range(4):
        for c in range(3):
            up = [row[:] for row in z]
            down = [row[:] for row in z]
            up[i][c] += h
            down[i][c] -= h
            numeric = (
                ref.loss_value_and_grad(spec, up, y, s)[0]
                - ref.loss_value_and_grad(spec, down, y, s)[0]
            ) / (2 * h)
            assert abs(grad[i][c] - numeric) < 1e-8, (i, c, grad[i][c], numeric)


def test_a_data_parallel_group_of_one_trains_class_weights_as_a_process_alone() -> None:
    # Several ranks against one process: tests/mpi/equivalence.py (run by test_distributed).
    MPI = require("mpi4py.MPI")
    X, y = _data()
    cases = [
        (bp.CrossEntropyLoss(weight=[1.0, 2.0, 3.0]), None),
        ("cross_entropy", "balanced"),
        ("cross_entropy", {0: 0.5, 2: 3.0}),
    ]
    for loss, class_weight in cases:
        runs = []
        for comm in (None, MPI.COMM_SELF):
            net = bp.Network([bp.Dense(IN, 3)], loss=loss, seed=0)
            net.fit(X, y, class_weight=class_weight, comm=comm, epochs=2, progress=False)
            runs.append(net.parameters()["0.weight"])
        np.testing.assert_array_equal(runs[0], runs[1])
        assert not np.array_equal(
            runs[0], bp.Network([bp.Dense(IN, 3)], seed=0).parameters()["0.weight"]
        )


# ----- targets that are not class labels ----------------------------------------------------


@pytest.mark.parametrize(
    ("y", "error", "words"),
    [
        (np.array(["cat", "dog", "cat"]), TypeError, "got strings such as 'cat'; encode them"),
        (np.array(["cat", "dog", 1], dtype=object), TypeError, "np.unique"),
        (np.eye(3)[[0, 2, 1]], ValueError, r"one-hot rows of shape \(3, 3\); pass the class"),
        (
            np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]),
            ValueError,
            r"rows of class probabilities .* y.argmax\(axis=1\)",
        ),
        (np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0]]), ValueError, "loss='bce_with_logits'"),
    ],
)
def test_cross_entropy_says_what_to_pass_instead(y, error, words) -> None:
    net = bp.Network([bp.Dense(2, 3)], loss="cross_entropy", seed=0)
    X = np.zeros((3, 2), dtype=np.float32)
    for call in (
        lambda: net.fit(X, y, progress=False),
        lambda: net.loss(X, y),
        lambda: net.fit(X, [0, 1, 2], validation_data=(X, y), progress=False),
    ):
        with pytest.raises(error, match=words):
            call()


def test_keras_loss_names_are_answered_with_what_to_use() -> None:
    cases = {
        "categorical_crossentropy": r"loss='cross_entropy' .* y.argmax\(axis=1\) .* no softmax",
        "sparse_categorical_crossentropy": "loss='cross_entropy' .* same integer labels",
        "binary_crossentropy": "loss='bce_with_logits' .* no Sigmoid",
        "BinaryCrossentropy": "loss='bce_with_logits'",
        "MSELoss": r"did you mean 'mse' \(bp.MSELoss\(\)\)",
        "CrossEntropyLoss": "did you mean 'cross_entropy'",
        "mean_absolute_error": "loss='l1'",
        "bce_with_logit": "did you mean 'bce_with_logits'",
    }
    for name, words in cases.items():
        with pytest.raises(ValueError, match=words):
            bp.Network([bp.Dense(2, 2)], loss=name)
    with pytest.raises(ValueError, match="expected one of"):
        bp.Network([bp.Dense(2, 2)], loss="hinge")

"""`fit(sample_weight_reduction="mean_with_sample_weight")`: a batch's loss is Σ w_i·l_i / Σ w_i
(scikit-learn's MLPs; Keras's reduction of that name), so that a weight of 2 is the sample twice
in its batch; and `weight_decay_per_batch_weight`, each step's decay over the batch's weight.

A weight of 2 equals a duplicated row exactly only where both fits see the same batches: with
shuffle=False, and the duplicate placed in its row's batch. Shuffled, the two data sets are
permuted differently and no equality holds, in bpcore or in scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp

N, IN, OUT, BATCH = 40, 3, 3, 10
MEAN = "mean_with_sample_weight"


def _data(loss: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N, IN))
    if loss == "mse":
        return X, rng.normal(size=(N, OUT))
    if loss == "bce_with_logits":
        return X, (rng.uniform(size=(N, OUT)) > 0.5).astype(np.float64)
    return X, rng.integers(0, OUT, size=N)


def _weights() -> np.ndarray:
    """In every batch of 10: its first two rows weigh 2, its third 0, the others 1."""
    w = np.ones(N)
    for start in range(0, N, BATCH):
        w[start : start + 2] = 2.0
        w[start + 2] = 0.0
    return w


def _duplicated(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each batch with its weight-2 rows twice and its weight-0 row left out: batches of 11."""
    rows = []
    for start in range(0, N, BATCH):
        batch = [start, start + 1, *range(start + 3, start + BATCH), start, start + 1]
        rows += batch
    return X[rows], y[rows]


LOSSES = {
    "mse": "mse",
    "cross_entropy": "cross_entropy",
    "class_weighted": bp.CrossEntropyLoss(weight=[0.5, 2.0, 1.0], label_smoothing=0.1),
    "bce_with_logits": "bce_with_logits",
}


def _net(loss, optimizer=None) -> bp.Network:
    layers = [bp.Dense(IN, 5), bp.Tanh(), bp.Dense(5, OUT)]
    optimizer = optimizer or bp.SGD(lr=0.2, momentum=0.9)
    return bp.Network(layers, loss=loss, optimizer=optimizer, dtype="float64", seed=4)


def _params(net: bp.Network) -> np.ndarray:
    return np.asarray(net.native.params())


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_weight_of_two_is_the_sample_twice_in_its_batch(name: str, optimizer: str) -> None:
    kind = name if name in ("mse", "bce_with_logits") else "cross_entropy"
    X, y = _data(kind)
    Xd, yd = _duplicated(X, y)

    def opt() -> bp.Optimizer:
        return bp.SGD(lr=0.2, momentum=0.9) if optimizer == "sgd" else bp.Adam(lr=0.05)

    runs = {}
    for reduction in (MEAN, "sum_over_batch_size"):
        net = _net(LOSSES[name], opt())
        history = net.fit(
            X,
            y,
            epochs=3,
            batch_size=BATCH,
            shuffle=False,
            sample_weight=_weights(),
            sample_weight_reduction=reduction,
            progress=False,
        )
        runs[reduction] = (_params(net), history.history["loss"])
    duplicated = _net(LOSSES[name], opt())
    history = duplicated.fit(Xd, yd, epochs=3, batch_size=11, shuffle=False, progress=False)
    expected = _params(duplicated)
    np.testing.assert_allclose(runs[MEAN][0], expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(runs[MEAN][1], history.history["loss"], rtol=1e-12)
    # Keras's default divides each batch by its 10 rows, not by its weight of 11: a gradient
    # 1.1 times larger (which Adam, scaling by its own moments, all but undoes).
    differs = np.abs(runs["sum_over_batch_size"][0] - expected).max()
    assert differs > (1e-4 if optimizer == "sgd" else 1e-10), differs


def test_accumulated_batches_divide_by_their_weights_together() -> None:
    X, y = _data("cross_entropy")
    w = np.random.default_rng(8).uniform(0.0, 3.0, size=N)
    loss = LOSSES["class_weighted"]
    one, two = _net(loss), _net(loss)
    kw = dict(epochs=2, shuffle=False, sample_weight=w, sample_weight_reduction=MEAN)
    one.fit(X, y, batch_size=20, progress=False, **kw)
    two.fit(X, y, batch_size=5, gradient_accumulation_steps=4, progress=False, **kw)
    np.testing.assert_allclose(_params(two), _params(one), rtol=1e-13, atol=1e-15)


def test_a_batch_of_zero_weight_takes_no_step() -> None:
    X, y = _data("mse")
    w = np.ones(N)
    w[:BATCH] = 0.0
    skipped, alone = _net("mse", bp.SGD(lr=0.1)), _net("mse", bp.SGD(lr=0.1))
    skipped.fit(
        X[: 2 * BATCH],
        y[: 2 * BATCH],
        batch_size=BATCH,
        shuffle=False,
        sample_weight=w[: 2 * BATCH],
        sample_weight_reduction=MEAN,
        progress=False,
    )
    alone.fit(X[BATCH : 2 * BATCH], y[BATCH : 2 * BATCH], batch_size=BATCH, progress=False)
    np.testing.assert_allclose(_params(skipped), _params(alone), rtol=1e-15, atol=1e-18)
    # The zero-weight batch alone: loss 0 and no change at all (where torch's 0/0 is NaN).
    idle = _net("mse", bp.SGD(lr=0.1))
    start = _params(idle)
    history = idle.fit(
        X[:BATCH],
        y[:BATCH],
        batch_size=BATCH,
        sample_weight=w[:BATCH],
        sample_weight_reduction=MEAN,
        progress=False,
    )
    assert history.history["loss"] == [0.0]
    np.testing.assert_array_equal(_params(idle), start)


def test_the_loss_of_a_batch_is_its_weighted_mean() -> None:
    X, y = _data("mse")
    w = _weights()
    net = _net("mse", bp.SGD(lr=0.0))
    history = net.fit(
        X, y, batch_size=N, sample_weight=w, sample_weight_reduction=MEAN, progress=False
    )
    per_sample = ((net.predict(X) - y) ** 2).mean(axis=1)
    assert history.history["loss"][0] == pytest.approx((w * per_sample).sum() / w.sum(), rel=1e-13)


def test_weight_decay_per_batch_weight_is_the_decay_over_the_batch_weight() -> None:
    X, y = _data("mse")
    w = _weights()
    decay, lr = 0.7, 0.1
    for reduction, divisor in [(MEAN, w[:BATCH].sum()), ("sum_over_batch_size", BATCH)]:
        opt = bp.SGD(lr=lr, weight_decay=decay, no_decay=["bias"])
        net = _net("mse", opt)
        before = _params(net)
        # The gradient of the batch's loss alone, from the same starting point.
        scale = BATCH / w[:BATCH].sum() if reduction == MEAN else 1.0
        _, grad = net.native.gradients(X[:BATCH], y[:BATCH], w[:BATCH] * scale)
        history = net.fit(
            X[:BATCH],
            y[:BATCH],
            batch_size=BATCH,
            sample_weight=w[:BATCH],
            sample_weight_reduction=reduction,
            weight_decay_per_batch_weight=True,
            progress=False,
        )
        mask = np.zeros_like(before, dtype=bool)
        for name, shape, offset in net.native.param_info():
            if name.endswith("weight"):
                mask[offset : offset + int(np.prod(shape))] = True
        expected = before - lr * (grad + mask * (decay / divisor) * before)
        np.testing.assert_allclose(_params(net), expected, rtol=1e-14, atol=1e-16)
        # Its L2 term, of the weights before the step, is in the History.
        penalty = 0.5 * decay / divisor * float(before[mask] @ before[mask])
        assert history.history["penalty"] == [pytest.approx(penalty, rel=1e-14)]
        # The network's optimizer keeps its own decay for the next fits.
        assert net.optimizer.weight_decay == decay


def test_without_the_options_a_fit_is_what_it_was() -> None:
    X, y = _data("cross_entropy")
    runs = []
    for extra in ({}, {"sample_weight_reduction": MEAN}):
        net = _net(LOSSES["class_weighted"])
        net.fit(X, y, batch_size=BATCH, epochs=2, progress=False, **extra)
        runs.append(_params(net))
    # Without sample weights the weighted mean is the plain one, step for step, bit for bit.
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"sample_weight_reduction": "mean"}, ValueError, "sample_weight_reduction: expected"),
        ({"sample_weight_reduction": None}, TypeError, "sample_weight_reduction: expected"),
        ({"weight_decay_per_batch_weight": "yes"}, TypeError, "weight_decay_per_batch_weight"),
    ],
)
def test_bad_arguments_are_refused_naming_them_and_change_nothing(arguments, error, words) -> None:
    X, y = _data("mse")
    net = _net("mse")
    before = _params(net)
    with pytest.raises(error, match=words):
        net.fit(X, y, sample_weight=_weights(), progress=False, **arguments)
    np.testing.assert_array_equal(_params(net), before)
    assert net.epochs_done == 0

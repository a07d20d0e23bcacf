"""Network.fit: validation, metrics, History contents, resumption, clipping, warnings and
divergence — values checked against NumPy and against train_step."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bpcore as bp


def classification_data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X @ rng.normal(size=(4, 3))).argmax(axis=1)


def classifier(dtype="float64", lr=1e-2):
    return bp.Network(
        [bp.Dense(4, 6), bp.Tanh(), bp.Dense(6, 3)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=lr),
        dtype=dtype,
        seed=0,
    )


def test_validation_split_holds_out_the_last_fraction_and_metrics_match_numpy():
    X, y = classification_data(50)
    net, twin = classifier(), classifier()
    h = net.fit(X, y, epochs=1, batch_size=8, shuffle=False, validation_split=0.2, progress=False)
    # The training loss is the mean over the epoch's batches of the first 40 samples.
    # Training metrics are Keras's running values: each step's own outputs, before its update.
    outputs, losses = [], []
    for a in range(0, 40, 8):
        outputs.append(twin.forward(X[a : a + 8]))
        losses.append(twin.train_step(X[a : a + 8], y[a : a + 8]))
    assert h.history["loss"] == [pytest.approx(np.mean(losses), rel=1e-12)]
    for name, value in twin.parameters().items():
        np.testing.assert_array_equal(net.parameters()[name], value)
    z_steps, z_val = np.concatenate(outputs), net.forward(X[40:])
    assert h.history["accuracy"] == [np.mean(z_steps.argmax(1) == y[:40])]
    assert h.history["val_accuracy"] == [np.mean(z_val.argmax(1) == y[40:])]
    assert h.history["val_loss"] == [pytest.approx(net.loss(X[40:], y[40:]), rel=1e-12)]
    assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"]
    assert h.history["lr"] == [1e-2]
    assert h.history["time"][0] > 0


def test_validation_data_gives_the_same_as_the_equivalent_split():
    X, y = classification_data(50)
    a, b = classifier(), classifier()
    ha = a.fit(X, y, epochs=3, batch_size=8, validation_split=0.2, progress=False)
    hb = b.fit(
        X[:40], y[:40], epochs=3, batch_size=8, validation_data=(X[40:], y[40:]), progress=False
    )
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert ha.history[key] == hb.history[key]


def test_regression_metrics_match_numpy_and_sklearn():
    r2_score = pytest.importorskip("sklearn.metrics").r2_score
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    Y = X @ rng.normal(size=(3, 2)) + 0.1 * rng.normal(size=(60, 2))
    net = bp.Network([bp.Dense(3, 8), bp.ReLU(), bp.Dense(8, 2)], dtype="float64", seed=1)
    twin = bp.Network([bp.Dense(3, 8), bp.ReLU(), bp.Dense(8, 2)], dtype="float64", seed=1)
    h = net.fit(
        X, Y, epochs=1, metrics=["mae", "r2"], validation_split=0.25, shuffle=False, progress=False
    )
    assert list(h.history) == ["loss", "mae", "r2", "val_loss", "val_mae", "val_r2", "lr", "time"]
    # Training metrics come from each step's own outputs (Keras's running values).
    steps = []
    for a in range(0, 45, 32):
        steps.append(twin.forward(X[a : min(a + 32, 45)]))
        twin.train_step(X[a : min(a + 32, 45)], Y[a : min(a + 32, 45)])
    P, Pv = np.concatenate(steps), net.forward(X[45:])
    assert h.history["mae"][-1] == pytest.approx(np.abs(P - Y[:45]).mean(), rel=1e-12)
    assert h.history["val_mae"][-1] == pytest.approx(np.abs(Pv - Y[45:]).mean(), rel=1e-12)
    assert h.history["r2"][-1] == pytest.approx(r2_score(Y[:45], P), rel=1e-12)
    assert h.history["val_r2"][-1] == pytest.approx(r2_score(Y[45:], Pv), rel=1e-12)


def test_default_metrics_are_accuracy_for_classification_and_none_for_regression():
    X, y = classification_data(20)
    assert "accuracy" in classifier().fit(X, y, progress=False).history
    reg = bp.Network([bp.Dense(4, 1)])
    assert list(reg.fit(X, X[:, 0], progress=False).history) == ["loss", "lr", "time"]


def test_binary_accuracy_is_the_elementwise_decision_rate():
    X, _ = classification_data(30)
    t = (X[:, :2] > 0).astype(float)
    net = bp.Network([bp.Dense(4, 2)], loss="bce_with_logits", dtype="float64")
    h = net.fit(X, t, epochs=1, progress=False, metrics=["binary_accuracy"], validation_data=(X, t))
    assert h.history["val_binary_accuracy"] == [np.mean((net.forward(X) > 0) == (t > 0.5))]


def test_grad_norms_and_update_ratios_are_those_of_the_epochs_steps():
    # One full batch, plain SGD: the epoch's one gradient is net.gradients before it, and the
    # update is lr times it.
    X, y = classification_data(20)
    net = bp.Network(
        [bp.Dense(4, 5), bp.Sigmoid(), bp.Dense(5, 3)],
        loss="cross_entropy",
        optimizer=bp.SGD(lr=0.3),
        dtype="float64",
    )
    g = net.gradients(X, y)
    p = net.parameters()
    h = net.fit(X, y, epochs=1, batch_size=20, shuffle=False, progress=False)
    assert list(h.grad_norms) == list(p) == list(h.update_ratios)
    for name in p:
        assert h.grad_norms[name] == [pytest.approx(np.linalg.norm(g[name]), rel=1e-12)]
        if np.linalg.norm(p[name]) > 0:  # biases start at zero
            ratio = 0.3 * np.linalg.norm(g[name]) / np.linalg.norm(p[name])
            assert h.update_ratios[name] == [pytest.approx(ratio, rel=1e-10)]


def test_repeated_fit_continues_like_one_longer_fit():
    X, y = classification_data(40)
    a, b = classifier(), classifier()
    h1 = a.fit(X, y, epochs=2, batch_size=8, progress=False)
    h2 = a.fit(X, y, epochs=3, batch_size=8, progress=False)
    hb = b.fit(X, y, epochs=5, batch_size=8, progress=False)
    assert h1.epoch == [1, 2] and h2.epoch == [3, 4, 5]
    assert h1.history["loss"] + h2.history["loss"] == hb.history["loss"]
    for name, value in b.parameters().items():
        np.testing.assert_array_equal(a.parameters()[name], value)


def test_clip_grad_norm_limits_the_step_and_is_restored():
    X, y = classification_data(20)
    net = bp.Network(
        [bp.Dense(4, 3)], loss="cross_entropy", optimizer=bp.SGD(lr=1.0), dtype="float64"
    )
    net.set_parameters({"0.weight": np.full((3, 4), 0.5), "0.bias": np.full(3, 0.1)})
    before = net.parameters()
    total = np.sqrt(sum(np.sum(v**2) for v in net.gradients(X, y).values()))
    assert total > 0.01
    net.fit(X, y, epochs=1, batch_size=20, clip_grad_norm=0.01, progress=False)
    step = np.sqrt(sum(np.sum((net.parameters()[k] - v) ** 2) for k, v in before.items()))
    # torch's rule: g * max_norm / (‖g‖ + 1e-6) when ‖g‖ > max_norm; lr = 1
    assert step == pytest.approx(0.01 * total / (total + 1e-6), rel=1e-9)
    assert net.native.clip_grad_norm is None


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"validation_split": 1.0}, ValueError, "validation_split"),
        ({"validation_split": -0.1}, ValueError, "validation_split"),
        ({"validation_split": 0.95}, ValueError, "validation_split"),  # 10 samples: none to train
        ({"validation_split": 0.2, "validation_data": ([[0.0] * 4], [0])}, ValueError, "not both"),
        ({"validation_data": ([[0.0] * 4],)}, TypeError, "validation_data"),
        ({"validation_data": ([[0.0] * 3], [0])}, ValueError, r"validation_data\[0\]"),
        ({"validation_data": ([[0.0] * 4], [7])}, ValueError, "label"),
        ({"metrics": ["mae"]}, ValueError, "classification"),
        ({"metrics": ["f2"]}, ValueError, "unknown metric"),
        ({"metrics": "accuracy"}, TypeError, "metrics"),
        ({"callbacks": [object()]}, TypeError, "callbacks"),
        ({"clip_grad_norm": 0}, ValueError, "clip_grad_norm"),
        ({"progress": "yes"}, TypeError, "progress"),
    ],
)
def test_bad_fit_arguments_are_refused_and_change_nothing(kwargs, exc, word):
    X, y = classification_data(10)
    net = classifier()
    before = net.parameters()
    with pytest.raises(exc, match=word):
        net.fit(X, y, epochs=2, **kwargs)
    for name, value in before.items():
        np.testing.assert_array_equal(net.parameters()[name], value)
    assert net.fit(X, y, progress=False).epoch == [1]  # nothing counted


def deep_sigmoid(depth=8, scale=1e-3):
    layers = [bp.Dense(4, 4)]
    for _ in range(depth - 1):
        layers += [bp.Sigmoid(), bp.Dense(4, 4)]
    net = bp.Network(layers, optimizer=bp.SGD(lr=0.01), dtype="float64")
    rng = np.random.default_rng(0)
    net.set_parameters({k: scale * rng.normal(size=v.shape) for k, v in net.parameters().items()})
    return net


def test_vanishing_gradients_warn_once_per_tensor_per_fit():
    net = deep_sigmoid()
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(16, 4)), rng.normal(size=(16, 4))
    with pytest.warns(bp.GradientWarning) as record:
        h = net.fit(X, Y, epochs=3, batch_size=8, progress=False)
    messages = [str(w.message) for w in record if issubclass(w.category, bp.GradientWarning)]
    assert h.grad_norms["0.weight"][0] < 1e-7
    assert any("of 0.weight are vanishing" in m for m in messages)
    assert len(messages) == len(set(m.split(": ", 1)[1].split(" (")[0] for m in messages))
    assert all("exploding" not in m for m in messages)
    assert len([m for m in messages if "of 0.weight " in m]) == 1  # once, though 3 epochs vanish


def test_exploding_gradients_warn():
    # Full-batch SGD on a linear least-squares problem with a step beyond 2/λ_max: each step
    # overshoots and the loss grows every epoch.
    net = bp.Network([bp.Dense(4, 1)], optimizer=bp.SGD(lr=1.5), dtype="float64")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(16, 4))
    with pytest.warns(bp.GradientWarning, match=r"0\.weight are exploding") as record:
        h = net.fit(X, X @ np.ones(4), epochs=6, batch_size=16, progress=False)
    loss = h.history["loss"]
    assert all(b > a for a, b in zip(loss[1:], loss[2:])), loss
    assert len(record) == 1 and "lower the learning rate (now 1.5)" in str(record[0].message)


def test_healthy_training_does_not_warn():
    X, y = classification_data(40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classifier().fit(X, y, epochs=3, progress=False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_names_epoch_and_batch_and_keeps_finite_weights(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4))
    Y = rng.normal(size=(64, 1)) * 10
    net = bp.Network(
        [bp.Dense(4, 16), bp.ReLU(), bp.Dense(16, 1)], optimizer=bp.SGD(lr=1e-3), dtype=dtype
    )
    net.fit(X, Y, epochs=1, batch_size=8, progress=False)  # epoch 1 is fine
    net.lr = 1e4  # now every step overshoots until the numbers overflow
    diverged = pytest.raises(bp.TrainingDivergedError, match=r"epoch 2 at batch \d+")
    with pytest.warns(RuntimeWarning, match="diverged") as warned, diverged as e:
        net.fit(X, Y, epochs=5, batch_size=8, progress=False)
    assert all(np.isfinite(v).all() for v in net.parameters().values())
    assert issubclass(bp.TrainingDivergedError, ArithmeticError)
    # The core's fields, as attributes: where it happened and what was not finite.
    err = e.value
    assert err.epoch == 2 and 0 <= err.batch < 8
    assert str(err).startswith(f"training diverged in epoch 2 at batch {err.batch}: ")
    assert err.reason in ("loss", "gradient")
    assert (err.reason == "loss") == (not np.isfinite(err.loss))
    if err.reason == "gradient":
        assert not np.isfinite(err.norm) and "a gradient is not finite (global norm" in str(err)
    # The warning points at this file, the user's line, not at bpcore's.
    assert warned[0].filename == __file__


def test_a_divergence_outside_fit_has_no_epoch() -> None:
    net = bp.Network([bp.Dense(2, 1)], optimizer=bp.SGD(lr=1.0), dtype="float64")
    net.set_parameters({"0.weight": np.array([[1e200, 1e200]]), "0.bias": np.array([0.0])})
    with pytest.raises(bp.TrainingDivergedError) as e:
        net.train_step(np.array([[1e200, 1e200]]), np.array([[0.0]]))
    assert (e.value.epoch, e.value.batch, e.value.reason) == (None, None, "loss")
    assert e.value.loss == float("inf")


def test_binary_accuracy_counts_every_output_element_of_the_steps():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 3))
    Y = (X[:, :2] + 0.3 * rng.normal(size=(40, 2)) > 0).astype(float)

    def make():
        return bp.Network(
            [bp.Dense(3, 5), bp.Tanh(), bp.Dense(5, 2)],
            loss="bce_with_logits",
            dtype="float64",
            seed=2,
        )

    net, twin = make(), make()
    h = net.fit(
        X, Y, epochs=1, batch_size=16, shuffle=False, progress=False, metrics=["binary_accuracy"]
    )
    outputs = []
    for a in range(0, 40, 16):
        outputs.append(twin.forward(X[a : a + 16]))
        twin.train_step(X[a : a + 16], Y[a : a + 16])
    expected = np.mean((np.concatenate(outputs) > 0) == (Y > 0.5))
    assert h.history["binary_accuracy"] == [pytest.approx(expected, rel=1e-15)]

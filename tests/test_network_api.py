"""The Network surface: shapes, names, modes, and the relations between its methods."""

import numpy as np
import pytest

import bpcore as bp


def classifier(dtype="float64", seed=0):
    return bp.Network(
        [bp.Dense(4, 6), bp.ReLU(), bp.Dense(6, 3)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=1e-2),
        dtype=dtype,
        seed=seed,
    )


def data(n=10, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    # Labels a network can learn: the largest of three fixed projections.
    return X, (X @ rng.normal(size=(4, 3))).argmax(axis=1)


def test_parameter_names_and_shapes_follow_torch_sequential():
    net = bp.Network([bp.Dense(4, 6), bp.Tanh(), bp.Dense(6, 2, bias=False)])
    shapes = {k: v.shape for k, v in net.parameters().items()}
    assert shapes == {"0.weight": (6, 4), "0.bias": (6,), "2.weight": (2, 6)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_have_the_network_dtype_and_shape(dtype):
    net = classifier(dtype)
    X, y = data()
    assert net.forward(X).shape == (10, 3)
    assert net.forward(X).dtype == np.dtype(dtype)
    assert all(v.dtype == np.dtype(dtype) for v in net.parameters().values())
    assert all(v.dtype == np.dtype(dtype) for v in net.gradients(X, y).values())


def test_forward_is_x_w_transposed_plus_b():
    net = bp.Network([bp.Dense(3, 2)], dtype="float64")
    W = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    b = np.array([0.25, -2.0])
    net.set_parameters({"0.weight": W, "0.bias": b})
    X = np.array([[1.0, 0.0, 2.0], [3.0, -1.0, 1.0]])
    np.testing.assert_array_equal(net.forward(X), X @ W.T + b)


def test_parameters_are_copies_and_set_parameters_round_trips():
    net = classifier()
    p = net.parameters()
    p["0.weight"][:] = 7.0
    assert not np.any(net.parameters()["0.weight"] == 7.0)
    net.set_parameters(p)
    np.testing.assert_array_equal(net.parameters()["0.weight"], 7.0)


def test_forward_and_loss_change_nothing():
    net = classifier()
    X, y = data()
    before = net.parameters()
    net.forward(X)
    net.loss(X, y)
    net.evaluate(X, y)
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(v, before[k])


def test_gradients_do_not_update_and_train_step_does():
    net = classifier()
    X, y = data()
    before = net.parameters()
    g = net.gradients(X, y)
    assert set(g) == set(before)
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    net.train_step(X, y)
    assert any(not np.array_equal(v, before[k]) for k, v in net.parameters().items())


def test_train_step_returns_the_loss_before_the_update():
    net = classifier()
    X, y = data()
    expected = net.loss(X, y)
    assert net.train_step(X, y) == pytest.approx(expected, rel=1e-12)
    assert net.loss(X, y) < expected


def test_apply_gradients_equals_train_step():
    a, b = classifier(), classifier()
    X, y = data()
    for _ in range(3):
        b.apply_gradients(b.gradients(X, y))
        a.train_step(X, y)
    for k, v in a.parameters().items():
        np.testing.assert_array_equal(v, b.parameters()[k])


def test_fit_learns_and_returns_history_per_epoch():
    net = classifier()
    X, y = data(60)
    start = net.loss(X, y)
    history = net.fit(X, y, epochs=30, batch_size=8)
    assert len(history.history["loss"]) == 30
    assert history.epoch == list(range(1, 31))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert net.loss(X, y) < 0.5 * start
    more = net.fit(X, y, epochs=2)
    assert more.epoch == [31, 32]


def test_predict_proba_is_softmax_and_predict_is_argmax():
    net = classifier()
    X, _ = data()
    z = net.forward(X)
    p = net.predict_proba(X)
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(net.predict(X), z.argmax(axis=1))


def test_binary_classifier_predicts_with_sigmoid():
    net = bp.Network([bp.Dense(4, 1)], loss="bce_with_logits", dtype="float64")
    X, _ = data()
    z = net.forward(X)
    np.testing.assert_allclose(net.predict_proba(X), 1 / (1 + np.exp(-z)), rtol=1e-12)
    np.testing.assert_array_equal(net.predict(X), (z > 0).astype(int))
    y = (X[:, 0] > 0).astype(float)
    assert set(net.evaluate(X, y)) == {"loss", "accuracy"}


def test_evaluate_reports_loss_and_accuracy():
    net = classifier()
    X, y = data()
    result = net.evaluate(X, y)
    assert result["loss"] == pytest.approx(net.loss(X, y))
    assert result["accuracy"] == pytest.approx(np.mean(net.predict(X) == y))


def test_regression_accepts_flat_targets_for_one_output():
    net = bp.Network([bp.Dense(4, 1)], loss="mse", dtype="float64")
    X, _ = data()
    y = X.sum(axis=1)
    assert net.loss(X, y) == pytest.approx(np.mean((net.forward(X)[:, 0] - y) ** 2), rel=1e-12)
    with pytest.raises(ValueError, match="predict_proba"):
        net.predict_proba(X)


def test_inputs_of_other_types_are_converted():
    net = classifier("float32")
    X, y = data()
    np.testing.assert_array_equal(net.forward(X.tolist()), net.forward(X.astype(np.float32)))
    fortran = np.asfortranarray(X)
    np.testing.assert_array_equal(net.forward(fortran), net.forward(X))
    strided = np.repeat(X, 2, axis=0)[::2]
    np.testing.assert_array_equal(net.forward(strided), net.forward(X))
    assert net.loss(X, y.astype(np.int32)) == net.loss(X, y)
    assert net.loss(X, y.astype(np.float64)) == net.loss(X, y)


def test_inputs_already_in_the_core_form_are_checked_as_any_other():
    net = classifier("float32")
    X = data()[0].astype(np.float32)
    for bad, message in [
        (X[:0], "at least one sample"),
        (np.zeros((2, 5), np.float32), "expected 4 features"),
        (np.full((2, 4), np.nan, np.float32), "NaN"),
    ]:
        with pytest.raises(ValueError, match=message):
            net.forward(bad)
    # A subclass goes through the conversion: the outputs of its values, as a plain array's.
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, dtype=bool))
    np.testing.assert_array_equal(net.forward(masked), net.forward(X))


def test_large_batches_predict_in_chunks_like_small_ones():
    net = classifier()
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2500, 4))
    whole = net.forward(X)
    parts = np.concatenate([net.forward(X[i : i + 7]) for i in range(0, 2500, 7)])
    np.testing.assert_allclose(whole, parts, rtol=1e-12, atol=1e-14)


def test_lr_can_be_read_and_set():
    net = classifier()
    assert net.lr == pytest.approx(1e-2)
    net.lr = 0.5
    assert net.lr == 0.5
    with pytest.raises(ValueError, match="lr"):
        net.lr = -1.0


def test_threads_setting():
    n = bp.get_num_threads()
    assert n >= 1
    bp.set_num_threads(1)
    assert bp.get_num_threads() == 1
    bp.set_num_threads(n)
    with pytest.raises(ValueError, match="n"):
        bp.set_num_threads(0)


def test_one_learning_rate_rule_and_the_optimizer_follows_the_live_rate(tmp_path) -> None:
    # What a schedule may reach (0), a user may set: in the optimizer, on the network, and in a
    # callback; below 0 every one of them refuses, naming its argument.
    assert bp.SGD(lr=0.0).lr == 0.0
    net = bp.Network([bp.Dense(2, 1)], optimizer=bp.SGD(lr=0.1), dtype="float64")
    net.lr = 0.0
    assert net.lr == 0.0
    for make in (lambda: bp.SGD(lr=-1e-3), lambda: setattr(net, "lr", -1.0)):
        with pytest.raises(ValueError, match=r"lr: must be >= 0\.0"):
            make()
    bad = bp.LearningRateScheduler(lambda epoch, lr: -1.0)
    X, y = np.ones((4, 2)), np.zeros((4, 1))
    with pytest.raises(ValueError, match=r"LearningRateScheduler: must be >= 0\.0"):
        net.fit(X, y, epochs=1, callbacks=[bad], progress=False)
    # The optimizer's repr and the saved configuration say the rate the next step uses.
    net.lr = 0.5
    assert net.optimizer.lr == 0.5 and "lr=0.5" in repr(net.optimizer) and "lr=0.5" in repr(net)
    path = tmp_path / "net.safetensors"
    net.save(path)  # without the optimizer's state
    assert bp.Network.load(path).lr == 0.5

"""Bad input raises ValueError or TypeError naming the argument, and changes nothing."""

import numpy as np
import pytest

import bpcore as bp

rng = np.random.default_rng(0)
X = rng.normal(size=(12, 4))
Y = rng.integers(0, 3, size=12)
V = rng.uniform(size=(12, 3))


def make(loss="cross_entropy", outputs=3):
    net = bp.Network(
        [bp.Dense(4, 5), bp.Tanh(), bp.Dense(5, outputs)],
        loss=loss,
        optimizer=bp.Adam(lr=0.01),
        dtype="float64",
        seed=3,
    )
    targets = Y if loss == "cross_entropy" else V[:, :outputs]
    net.fit(X, targets, epochs=1, batch_size=5)  # optimizer state and generator have moved
    return net, targets


def with_nan(a):
    a = np.array(a, dtype=float)
    a.flat[3] = np.nan
    return a


BAD_CALLS = [
    # (description, loss, call, exception, words the message must contain)
    ("X 1-d", "cross_entropy", lambda n: n.forward(X[0]), ValueError, "X"),
    ("X wrong width", "cross_entropy", lambda n: n.forward(X[:, :3]), ValueError, "X"),
    ("X empty", "cross_entropy", lambda n: n.forward(X[:0]), ValueError, "X"),
    ("X NaN", "cross_entropy", lambda n: n.predict(with_nan(X)), ValueError, "X"),
    ("X inf", "cross_entropy", lambda n: n.train_step(X * np.inf, Y), ValueError, "X"),
    ("X strings", "cross_entropy", lambda n: n.forward([["a"] * 4]), TypeError, "X"),
    ("X objects", "cross_entropy", lambda n: n.forward(np.array([[None] * 4])), TypeError, "X"),
    ("X complex", "cross_entropy", lambda n: n.forward(X + 1j), TypeError, "X"),
    ("X ragged", "cross_entropy", lambda n: n.forward([[1, 2, 3, 4], [1]]), ValueError, "X"),
    ("y too short", "cross_entropy", lambda n: n.train_step(X, Y[:5]), ValueError, "y"),
    ("label too big", "cross_entropy", lambda n: n.train_step(X, np.full(12, 3)), ValueError, "y"),
    ("label negative", "cross_entropy", lambda n: n.gradients(X, -Y - 1), ValueError, "y"),
    ("label fractional", "cross_entropy", lambda n: n.loss(X, Y + 0.5), ValueError, "y"),
    ("labels 2-d", "cross_entropy", lambda n: n.loss(X, np.ones((12, 3))), ValueError, "y"),
    ("labels strings", "cross_entropy", lambda n: n.loss(X, ["a"] * 12), TypeError, "y"),
    (
        "last label bad in fit",
        "cross_entropy",
        lambda n: n.fit(X, np.r_[Y[:-1], 9], epochs=2),
        ValueError,
        "y",
    ),
    ("epochs 0", "cross_entropy", lambda n: n.fit(X, Y, epochs=0), ValueError, "epochs"),
    (
        "batch_size 0",
        "cross_entropy",
        lambda n: n.fit(X, Y, batch_size=0),
        ValueError,
        "batch_size",
    ),
    (
        "batch_size float",
        "cross_entropy",
        lambda n: n.fit(X, Y, batch_size=2.5),
        TypeError,
        "batch_size",
    ),
    (
        "shuffle not bool",
        "cross_entropy",
        lambda n: n.fit(X, Y, shuffle="yes"),
        TypeError,
        "shuffle",
    ),
    ("targets wrong width", "mse", lambda n: n.train_step(X, np.ones((12, 2))), ValueError, "y"),
    ("targets NaN", "mse", lambda n: n.fit(X, with_nan(np.ones((12, 3)))), ValueError, "y"),
    (
        "bce target above 1",
        "bce_with_logits",
        lambda n: n.train_step(X, np.full((12, 3), 1.5)),
        ValueError,
        "y",
    ),
    (
        "parameters missing",
        "cross_entropy",
        lambda n: n.set_parameters({"0.weight": np.zeros((5, 4))}),
        ValueError,
        "parameters",
    ),
    (
        "parameters wrong shape",
        "cross_entropy",
        lambda n: n.set_parameters({**n.parameters(), "0.bias": np.zeros(4)}),
        ValueError,
        "0.bias",
    ),
    (
        "parameters NaN",
        "cross_entropy",
        lambda n: n.set_parameters({**n.parameters(), "2.weight": with_nan(np.zeros((3, 5)))}),
        ValueError,
        "2.weight",
    ),
    (
        "gradients unknown name",
        "cross_entropy",
        lambda n: n.apply_gradients({**n.gradients(X, Y), "9.weight": np.zeros(1)}),
        ValueError,
        "gradients",
    ),
    (
        "gradients not a dict",
        "cross_entropy",
        lambda n: n.apply_gradients([1, 2]),
        TypeError,
        "gradients",
    ),
    ("lr negative", "cross_entropy", lambda n: setattr(n, "lr", -0.1), ValueError, "lr"),
    (
        "training not bool",
        "cross_entropy",
        lambda n: n.loss(X, Y, training=1),
        TypeError,
        "training",
    ),
]


def twin_state(net, targets):
    """What one more shuffled epoch does: depends on weights, optimizer state and generator."""
    net.fit(X, targets, epochs=1, batch_size=5)
    return net.parameters()


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_call_raises_naming_the_argument_and_changes_nothing(case):
    _, loss, call, exception, words = case
    net, targets = make(loss)
    twin, _ = make(loss)
    with pytest.raises(exception, match=words):
        call(net)
    after, expected = twin_state(net, targets), twin_state(twin, targets)
    for name, value in expected.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


BAD_CONSTRUCTIONS = [
    (lambda: bp.Dense(0, 3), ValueError, "in_features"),
    (lambda: bp.Dense(2.5, 3), TypeError, "in_features"),
    (lambda: bp.Dense(2, 3, bias="no"), TypeError, "bias"),
    (lambda: bp.Network([bp.Dense(4, 6), bp.Dense(5, 3)]), ValueError, r"layers\[1\]"),
    (lambda: bp.Network([bp.ReLU()]), ValueError, "Dense"),
    (lambda: bp.Network([bp.Dense(4, 3), "relu"]), TypeError, r"layers\[1\]"),
    (lambda: bp.Network(bp.Dense(4, 3)), TypeError, "layers"),
    (lambda: bp.Network([bp.Dense(4, 3)], loss="hinge"), ValueError, "loss"),
    (lambda: bp.Network([bp.Dense(4, 3)], loss=3), TypeError, "loss"),
    (lambda: bp.Network([bp.Dense(4, 3)], optimizer="lbfgs"), ValueError, "optimizer"),
    (lambda: bp.Network([bp.Dense(4, 3)], dtype="int8"), ValueError, "dtype"),
    (lambda: bp.Network([bp.Dense(4, 3)], dtype="banana"), TypeError, "dtype"),
    (lambda: bp.Network([bp.Dense(4, 3)], seed=-1), ValueError, "seed"),
    (lambda: bp.Network([bp.Dense(4, 3)], seed="0"), TypeError, "seed"),
    (lambda: bp.SGD(lr=-0.5), ValueError, "lr"),
    (lambda: bp.SGD(lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: bp.Adam(lr=float("nan")), ValueError, "lr"),
    (lambda: bp.Adam(betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (lambda: bp.Adam(betas=0.9), TypeError, "betas"),
    (lambda: bp.RMSprop(alpha=1.5), ValueError, "alpha"),
    (lambda: bp.Adagrad(eps=-1), ValueError, "eps"),
    (lambda: bp.HuberLoss(delta=0), ValueError, "delta"),
    (lambda: bp.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: bp.Softplus(beta=0), ValueError, "beta"),
]


@pytest.mark.parametrize("make_bad,exception,words", BAD_CONSTRUCTIONS)
def test_bad_construction_raises_naming_the_argument(make_bad, exception, words):
    with pytest.raises(exception, match=words):
        make_bad()

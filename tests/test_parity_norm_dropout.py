"""Dropout, BatchNorm1d and LayerNorm in bpcore against the pure-Python reference, and their
train/inference behaviour.

Each layer sits in a small network; bpcore and the reference start from the same parameters
and buffers and are compared on the inference forward, the training-mode loss, every gradient,
and 20 train_steps (parameters, losses and batch-norm running statistics): float64 to 1e-10
relative, float32 to 1e-4. The reference draws the same dropout masks (the same hash of seed,
training-forward count, layer, row and column), so the training mode is compared exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from parity_helpers import (
    DTYPES,
    assert_close,
    assert_dicts_close,
    in_dtype,
    make_pair,
    random_parameters,
)

import bpcore as bp
from bpcore import reference as ref
from bpcore.reference.dropout import row_hash, uniform

NETWORKS = {
    "dropout": lambda: [bp.Dense(5, 8), bp.ReLU(), bp.Dropout(0.3), bp.Dense(8, 3)],
    "dropout_first_and_last": lambda: [bp.Dropout(0.5), bp.Dense(5, 6), bp.Dropout(0.2)],
    "batch_norm": lambda: [bp.Dense(5, 8), bp.BatchNorm1d(8), bp.Tanh(), bp.Dense(8, 3)],
    "batch_norm_options": lambda: [
        bp.Dense(5, 6),
        bp.ReLU(),
        bp.BatchNorm1d(6, eps=1e-3, momentum=0.3),
        bp.Dense(6, 3),
    ],
    "batch_norm_last": lambda: [bp.Dense(5, 4), bp.BatchNorm1d(4)],
    "layer_norm": lambda: [bp.Dense(5, 8), bp.LayerNorm(8), bp.GELU(), bp.Dense(8, 3)],
    "layer_norm_first": lambda: [bp.LayerNorm(5, eps=1e-3), bp.Dense(5, 3)],
    "all_three": lambda: [
        bp.Dense(5, 8),
        bp.BatchNorm1d(8),
        bp.ReLU(),
        bp.Dropout(0.25),
        bp.Dense(8, 6),
        bp.LayerNorm(6),
        bp.Tanh(),
        bp.Dense(6, 3),
    ],
}


def random_buffers(net: bp.Network, rng: np.random.Generator) -> dict:
    """Running statistics away from the initial (0, 1), so inference is a real test."""
    out = {}
    for name, value in net.buffers().items():
        if name.endswith("running_mean"):
            out[name] = rng.normal(scale=0.5, size=value.shape)
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, size=value.shape)
        else:
            out[name] = np.array(3, dtype=np.int64)
    return out


def setup(name: str, dtype: str, seed: int = 0):
    layers = NETWORKS[name]()
    rng = np.random.default_rng(99)
    template = bp.Network(layers, dtype=dtype)
    params = random_parameters(template, rng)
    net, oracle = make_pair(
        layers,
        "mse",
        optimizer=bp.SGD(lr=0.05, momentum=0.9),
        dtype=dtype,
        seed=seed,
        parameters=params,
    )
    buffers = random_buffers(net, rng)
    net.set_buffers(buffers)
    oracle.set_buffers({k: v.astype(np.float64) for k, v in net.buffers().items()})
    X = in_dtype(rng.normal(scale=1.5, size=(12, net.n_features)), dtype)
    y = in_dtype(rng.normal(size=(12, net.n_outputs)), dtype)
    return net, oracle, X, y


def buffers_as_arrays(buffers: dict) -> dict:
    return {k: np.asarray(v, dtype=np.float64) for k, v in buffers.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(NETWORKS))
def test_forward_loss_and_gradients(name: str, dtype: str) -> None:
    net, oracle, X, y = setup(name, dtype)
    # Inference: dropout off, batch norm by the running statistics; nothing moves.
    before = net.buffers()
    assert_close(net.forward(X), oracle.forward(X), dtype, "forward")
    assert_close(net.loss(X, y), oracle.loss(X, y), dtype, "loss")
    assert_dicts_close(net.buffers(), before, "float64", "buffers after inference")
    # Training mode, twice each: new masks and moved running statistics every time.
    for _ in range(2):
        assert_close(
            net.loss(X, y, training=True), oracle.loss(X, y, training=True), dtype, "loss(tr)"
        )
        assert_dicts_close(net.gradients(X, y), oracle.gradients(X, y), dtype, "gradient")
        assert_dicts_close(net.buffers(), buffers_as_arrays(oracle.buffers()), dtype, "buffers")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(NETWORKS))
def test_twenty_train_steps(name: str, dtype: str) -> None:
    net, oracle, X, y = setup(name, dtype, seed=5)
    rng = np.random.default_rng(3)
    for step in range(20):
        rows = rng.choice(len(X), size=8, replace=False)
        assert_close(
            net.train_step(X[rows], y[rows]),
            oracle.train_step(X[rows], y[rows]),
            dtype,
            f"loss of step {step}",
        )
    assert_dicts_close(net.parameters(), oracle.parameters(), dtype, "parameters after 20 steps")
    assert_dicts_close(
        net.buffers(), buffers_as_arrays(oracle.buffers()), dtype, "buffers after 20"
    )
    assert_close(net.forward(X), oracle.forward(X), dtype, "forward after 20 steps")


# ----------------------------------------------------------------------------- dropout


def test_the_mask_hash_matches_the_rust_core() -> None:
    # The same values are pinned in rust/core/src/dropout.rs.
    assert row_hash(7, 5, 1, 2) == 0xA6AC6A00E3F501CC
    assert uniform(row_hash(7, 5, 1, 2), 3) == 0.9911374027192567
    assert row_hash(0, 0, 0, 0) == 0x238275BC38FCBE91
    assert uniform(row_hash(0, 0, 0, 0), 0) == 0.1296456182997474


def identity_dropout_net(p: float, width: int = 50, seed: int = 0) -> bp.Network:
    """Dense(width, width) with W = I, b = 0, then Dropout: the training output is the mask
    times 1/(1-p) for an input of ones."""
    net = bp.Network(
        [bp.Dense(width, width), bp.Dropout(p)], loss="mse", dtype="float64", seed=seed
    )
    net.set_parameters({"0.weight": np.eye(width), "0.bias": np.zeros(width)})
    return net


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_rate_and_scale_in_training(p: float) -> None:
    n, w = 200, 50
    net = identity_dropout_net(p, w)
    X, target = np.ones((n, w)), np.zeros((n, w))
    # MSE against 0 of y = m/(1-p): ∂L/∂b_j = Σ_rows 2 y m/(1-p) / N, each row's term either 0
    # or 2/(N (1-p)²). With one row per call the gradient shows the mask itself.
    kept = []
    for _ in range(n):
        g = net.gradients(X[:1], target[:1])["0.bias"]
        unit = 2.0 / (w * (1.0 - p) ** 2)
        assert np.all(np.isclose(g, 0.0) | np.isclose(g, unit)), g
        kept.append(np.isclose(g, unit))
    rate = np.mean(kept)
    # 10 000 Bernoulli(1-p) draws: standard deviation at most 0.005.
    assert abs(rate - (1.0 - p)) < 0.025, rate
    # The training loss is mean(m)/(1-p)²: E = 1/(1-p), the scale of inverted dropout.
    losses = [net.loss(X, target, training=True) for _ in range(5)]
    assert abs(np.mean(losses) * (1.0 - p) - 1.0) < 0.05
    assert len(set(losses)) == 5, "each training forward draws a new mask"


def test_dropout_is_off_in_inference() -> None:
    net = identity_dropout_net(0.5)
    X, target = np.ones((20, 50)), np.zeros((20, 50))
    np.testing.assert_array_equal(net.forward(X), X)
    np.testing.assert_array_equal(net.predict(X), X)
    assert net.loss(X, target) == 1.0
    assert net.evaluate(X, target)["loss"] == 1.0
    assert net.loss(X, target, training=True) != 1.0


def test_dropout_masks_are_deterministic_under_the_seed() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 6)), rng.normal(size=(16, 2))

    def run(seed: int) -> list:
        net = bp.Network(
            [bp.Dense(6, 10), bp.ReLU(), bp.Dropout(0.5), bp.Dense(10, 2)],
            dtype="float64",
            seed=seed,
        )
        return [net.train_step(X, y) for _ in range(5)] + [net.parameters()["0.weight"]]

    a, b, c = run(1), run(1), run(2)
    assert a[:5] == b[:5]
    np.testing.assert_array_equal(a[5], b[5])
    assert a[:5] != c[:5]


@pytest.fixture
def restore_threads():
    n = bp.get_num_threads()
    yield
    bp.set_num_threads(n)


def test_dropout_masks_do_not_depend_on_the_thread_split(restore_threads) -> None:
    # Batch and network large enough that a step is split in two on two threads (parts()),
    # so each half draws its rows' masks on its own thread.
    layers = [bp.Dense(64, 64), bp.ReLU(), bp.Dropout(0.4), bp.Dense(64, 8)]
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(160, 64)), rng.normal(size=(160, 8))
    results = {}
    for threads in (1, 2):
        bp.set_num_threads(threads)
        net = bp.Network(layers, dtype="float64", seed=4)
        results[threads] = (net.gradients(X, y), net.train_step(X, y), net.parameters())
    g1, l1, p1 = results[1]
    g2, l2, p2 = results[2]
    assert abs(l1 - l2) < 1e-12 * abs(l1)
    for name in g1:
        np.testing.assert_allclose(g2[name], g1[name], rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(p2[name], p1[name], rtol=1e-11, atol=1e-14)
    # And the split result is the reference's (masks keyed by the row in the whole batch).
    oracle = ref.Network(layers, seed=4)
    oracle.set_parameters(bp.Network(layers, dtype="float64", seed=4).parameters())
    assert_dicts_close(g2, oracle.gradients(X, y), "float64", "gradient on 2 threads")


# -------------------------------------------------------------------------- batch norm


def test_batch_norm_parameters_and_buffers_are_named_as_torch() -> None:
    net = bp.Network(
        [bp.Dense(3, 4), bp.BatchNorm1d(4), bp.ReLU(), bp.Dense(4, 2), bp.LayerNorm(2)],
        dtype="float64",
    )
    params = net.parameters()
    assert list(params) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "3.weight",
        "3.bias",
        "4.weight",
        "4.bias",
    ]
    for i in (1, 4):
        np.testing.assert_array_equal(params[f"{i}.weight"], 1.0)
        np.testing.assert_array_equal(params[f"{i}.bias"], 0.0)
    buffers = net.buffers()
    assert list(buffers) == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    np.testing.assert_array_equal(buffers["1.running_mean"], np.zeros(4))
    np.testing.assert_array_equal(buffers["1.running_var"], np.ones(4))
    assert buffers["1.num_batches_tracked"].shape == ()
    assert buffers["1.num_batches_tracked"].dtype == np.int64
    assert bp.Network([bp.Dense(3, 2)]).buffers() == {}


@pytest.mark.parametrize("dtype", DTYPES)
def test_running_statistics_follow_torch(dtype: str) -> None:
    net = bp.Network([bp.Dense(2, 2), bp.BatchNorm1d(2, momentum=0.2)], dtype=dtype)
    net.set_parameters(
        {
            "0.weight": np.eye(2),
            "0.bias": np.zeros(2),
            "1.weight": np.ones(2),
            "1.bias": np.zeros(2),
        }
    )
    X = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [6.0, 60.0]], dtype=dtype)
    y = np.zeros((4, 2), dtype=dtype)
    net.gradients(X, y)  # a training forward: the running statistics move
    b = net.buffers()
    mean, var = X.mean(axis=0), X.var(axis=0, ddof=1)  # unbiased, as torch's running_var
    np.testing.assert_allclose(b["1.running_mean"], 0.2 * mean, rtol=1e-6)
    np.testing.assert_allclose(b["1.running_var"], 0.8 + 0.2 * var, rtol=1e-6)
    assert int(b["1.num_batches_tracked"]) == 1
    net.loss(X, y, training=True)  # so does the training-mode loss, as torch's forward
    assert int(net.buffers()["1.num_batches_tracked"]) == 2
    for call in (net.forward, net.predict):  # inference: nothing moves
        call(X)
    net.loss(X, y)
    net.evaluate(X, y)
    assert int(net.buffers()["1.num_batches_tracked"]) == 2
    # Inference normalizes by the running statistics.
    b = net.buffers()
    expect = (X - b["1.running_mean"]) / np.sqrt(b["1.running_var"] + 1e-5)
    np.testing.assert_allclose(net.forward(X), expect, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_batch_norm_training_needs_two_samples() -> None:
    net = bp.Network([bp.Dense(3, 4), bp.BatchNorm1d(4)], dtype="float64")
    X, y = np.ones((1, 3)), np.zeros((1, 4))
    before = net.parameters()
    for call in (net.gradients, net.train_step, lambda a, b: net.loss(a, b, training=True)):
        with pytest.raises(ValueError, match="more than 1 sample"):
            call(X, y)
    assert_dicts_close(net.parameters(), before, "float64", "unchanged")
    assert int(net.buffers()["1.num_batches_tracked"]) == 0
    net.forward(X)  # inference is fine with one sample


def test_fit_refuses_a_last_batch_of_one_before_training() -> None:
    net = bp.Network([bp.Dense(3, 4), bp.BatchNorm1d(4)], dtype="float64")
    X, y = np.random.default_rng(0).normal(size=(9, 3)), np.zeros((9, 4))
    before = net.parameters()
    with pytest.raises(ValueError, match="batch_size"):
        net.fit(X, y, batch_size=4)
    assert_dicts_close(net.parameters(), before, "float64", "unchanged")
    assert int(net.buffers()["1.num_batches_tracked"]) == 0
    net.fit(X, y, batch_size=3)
    assert int(net.buffers()["1.num_batches_tracked"]) == 3


def test_set_buffers_round_trips_and_checks() -> None:
    net = bp.Network([bp.Dense(3, 4), bp.BatchNorm1d(4)], dtype="float32")
    new = {
        "1.running_mean": np.arange(4.0),
        "1.running_var": np.full(4, 2.0),
        "1.num_batches_tracked": np.array(7),
    }
    net.set_buffers(new)
    got = net.buffers()
    assert got["1.running_mean"].dtype == np.float32
    np.testing.assert_array_equal(got["1.running_mean"], np.arange(4.0))
    assert int(got["1.num_batches_tracked"]) == 7
    bad = [
        ({**new, "1.extra": np.zeros(4)}, ValueError, "unknown"),
        ({k: v for k, v in new.items() if k != "1.running_var"}, ValueError, "missing"),
        ({**new, "1.running_mean": np.zeros(3)}, ValueError, "shape"),
        ({**new, "1.running_var": -np.ones(4)}, ValueError, "variance"),
        ({**new, "1.running_mean": np.full(4, np.nan)}, ValueError, "NaN"),
        ({**new, "1.num_batches_tracked": np.array(1.5)}, TypeError, "integer"),
        ({**new, "1.num_batches_tracked": np.array(-1)}, ValueError, ">= 0"),
        ([1, 2], TypeError, "dict"),
    ]
    for value, error, message in bad:
        with pytest.raises(error, match=message):
            net.set_buffers(value)
        assert int(net.buffers()["1.num_batches_tracked"]) == 7  # nothing changed


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: bp.Dropout(1.0), "p"),
        (lambda: bp.Dropout(-0.1), "p"),
        (lambda: bp.BatchNorm1d(0), "num_features"),
        (lambda: bp.BatchNorm1d(4, eps=0.0), "eps"),
        (lambda: bp.BatchNorm1d(4, momentum=1.5), "momentum"),
        (lambda: bp.BatchNorm1d(4, momentum=None), "momentum"),
        (lambda: bp.BatchNorm1d(4, affine=False), "affine"),
        (lambda: bp.BatchNorm1d(4, track_running_stats=False), "track_running_stats"),
        (lambda: bp.LayerNorm((4, 5)), "normalized_shape"),
        (lambda: bp.LayerNorm(4, elementwise_affine=False), "elementwise_affine"),
    ],
)
def test_bad_layer_arguments(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("layer", [bp.BatchNorm1d(5), bp.LayerNorm(5)])
def test_feature_count_must_match_the_width(layer) -> None:
    with pytest.raises(ValueError, match=r"layers\[1\].*5.*4 features"):
        bp.Network([bp.Dense(3, 4), layer, bp.Dense(4, 2)])


def test_layers_repr_spec_and_tuple_shape() -> None:
    assert bp.LayerNorm((6,)).to_spec() == {
        "type": "layer_norm",
        "normalized_shape": 6,
        "eps": 1e-5,
    }
    assert bp.Dropout().to_spec() == {"type": "dropout", "p": 0.5}
    assert bp.BatchNorm1d(3).to_spec() == {
        "type": "batch_norm1d",
        "num_features": 3,
        "eps": 1e-5,
        "momentum": 0.1,
    }
    assert repr(bp.Dropout(0.2)) == "Dropout(p=0.2)"


# ---------------------------------------------- the reference against finite differences


@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm", "dropout"])
def test_reference_backward_matches_central_differences(kind: str) -> None:
    # L = Σ g ⊙ y for a fixed g: the reference's backward against (L(x+h) - L(x-h)) / 2h.
    rng = np.random.default_rng(8)
    n, f, eps = 5, 4, 1e-5
    x = rng.normal(size=(n, f)).tolist()
    gamma, beta = rng.normal(size=f).tolist(), rng.normal(size=f).tolist()
    g = rng.normal(size=(n, f)).tolist()
    mask = ref.dropout_mask(0.5, 3, 0, 1, n, f)

    def forward(x, gamma, beta):
        if kind == "batch_norm":
            return ref.batch_norm_forward_train(x, gamma, beta, eps)
        if kind == "layer_norm":
            return ref.layer_norm_forward(x, gamma, beta, eps)
        return ref.dropout_forward(x, mask, 0.5)

    def objective(x, gamma, beta):
        return float(np.sum(np.array(forward(x, gamma, beta)) * np.array(g)))

    if kind == "dropout":
        grad_gamma = grad_beta = None
        grad_x = ref.dropout_backward(g, mask, 0.5)
    else:
        backward = ref.batch_norm_backward if kind == "batch_norm" else ref.layer_norm_backward
        grad_gamma, grad_beta, grad_x = backward(x, gamma, g, eps)
    h = 1e-6
    for i in range(n):
        for j in range(f):
            xp = [row[:] for row in x]
            xm = [row[:] for row in x]
            xp[i][j] += h
            xm[i][j] -= h
            fd = (objective(xp, gamma, beta) - objective(xm, gamma, beta)) / (2 * h)
            assert abs(fd - grad_x[i][j]) < 1e-7, (i, j, fd, grad_x[i][j])
    if grad_gamma is None:
        return
    for j in range(f):
        for values, grads in ((gamma, grad_gamma), (beta, grad_beta)):
            plus, minus = values[:], values[:]
            plus[j] += h
            minus[j] -= h
            args_p = (x, plus, beta) if values is gamma else (x, gamma, plus)
            args_m = (x, minus, beta) if values is gamma else (x, gamma, minus)
            fd = (objective(*args_p) - objective(*args_m)) / (2 * h)
            assert abs(fd - grads[j]) < 1e-7

"""Convolution, pooling, Reshape and Flatten in bpcore against the pure-Python reference and
against torch, in float32 and float64: forward values, the loss, every gradient and a few
training steps; the torch exchange and saved files keep them; bad shapes are refused with
the layer named."""

from __future__ import annotations

import numpy as np
import pytest
from optional import require
from parity_helpers import (
    DTYPES,
    TOLERANCES,
    assert_dicts_close,
    check_forward_loss_gradients,
    in_dtype,
    make_pair,
    random_parameters,
)

import bpcore as bp
from bpcore.bench import cnn

#: Small networks covering every option of the new layers: stride, padding, dilation, no
#: bias, rectangular kernels, padded pooling, 1-d and 2-d.
NETWORKS = {
    "conv2d_pool": [
        bp.Reshape((2, 6, 7)),
        bp.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        bp.ReLU(),
        bp.MaxPool2d(2, padding=1),
        bp.Conv2d(3, 4, 3, padding=1, bias=False),
        bp.Tanh(),
        bp.AvgPool2d((2, 1)),
        bp.Flatten(),
        bp.Dense(12, 3),
    ],
    "conv1d_pool": [
        bp.Reshape((3, 10)),
        bp.Conv1d(3, 4, 3, padding=2, dilation=2),
        bp.Tanh(),
        bp.MaxPool1d(3, stride=2, padding=1),
        bp.Conv1d(4, 2, 2, stride=2, bias=False),
        bp.AvgPool1d(2, padding=1),
        bp.Flatten(),
        bp.Dense(4, 3),
    ],
    "digits_cnn_small": [
        bp.Reshape((1, 8, 8)),
        bp.Conv2d(1, 4, 3, padding=1),
        bp.ReLU(),
        bp.MaxPool2d(2),
        bp.Conv2d(4, 6, 3, padding=1),
        bp.ReLU(),
        bp.MaxPool2d(2),
        bp.Flatten(),
        bp.Dense(24, 3),
    ],
}


def _data(net: bp.Network, n: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = in_dtype(rng.normal(size=(n, net.n_features)), dtype)
    return X, rng.integers(0, net.n_outputs, size=n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_forward_loss_and_gradients_match_the_reference(name: str, dtype: str) -> None:
    layers = NETWORKS[name]
    probe = bp.Network(layers, loss="cross_entropy", dtype=dtype)
    params = random_parameters(probe, np.random.default_rng(1))
    net, oracle = make_pair(layers, loss="cross_entropy", dtype=dtype, parameters=params)
    X, y = _data(net, 5, dtype)
    check_forward_loss_gradients(net, oracle, X, y, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_steps_match_the_reference(dtype: str) -> None:
    layers = NETWORKS["conv2d_pool"]
    net, oracle = make_pair(layers, loss="cross_entropy", optimizer=bp.Adam(lr=0.01), dtype=dtype)
    X, y = _data(net, 6, dtype)
    for _ in range(3):
        assert np.isclose(net.train_step(X, y), oracle.train_step(X, y), **TOLERANCES[dtype])
    assert_dicts_close(net.parameters(), oracle.parameters(), dtype, "after 3 Adam steps")


def _torch_pass(torch: object, net: bp.Network, X: np.ndarray, y: np.ndarray) -> tuple:
    """torch's outputs, loss and gradients of `net`'s equal module, by name."""
    module = bp.to_torch(net).eval()
    x = torch.from_numpy(X.astype(net.dtype))  # type: ignore[attr-defined]
    out = module(x)
    loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))  # type: ignore[attr-defined]
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return out.detach().numpy(), float(loss.detach()), grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_forward_loss_and_gradients_match_torch(name: str, dtype: str) -> None:
    torch = require("torch")
    net = bp.Network(NETWORKS[name], loss="cross_entropy", dtype=dtype, seed=3)
    net.set_parameters(random_parameters(net, np.random.default_rng(2)))
    X, y = _data(net, 40, dtype, seed=4)
    out, loss, grads = _torch_pass(torch, net, X, y)
    tol = TOLERANCES[dtype]
    np.testing.assert_allclose(net.forward(X), out, **tol)
    assert np.isclose(net.loss(X, y), loss, **tol)
    assert_dicts_close(net.gradients(X, y), grads, dtype, "gradient vs torch")


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_from_torch_reads_back_the_same_network(name: str) -> None:
    torch = require("torch")
    net = bp.Network(NETWORKS[name], loss="cross_entropy", seed=5)
    back = bp.from_torch(bp.to_torch(net), loss="cross_entropy")
    assert back.layers == net.layers
    X, _ = _data(net, 7, "float32")
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    nn = torch.nn
    layers = [nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 1)]
    conv = nn.Sequential(*layers)
    assert bp.from_torch(conv).parameters()["1.weight"].shape == (2, 1, 3, 3)


def test_from_torch_names_the_options_bpcore_lacks() -> None:
    torch = require("torch")
    nn = torch.nn
    grouped = nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.Conv2d(2, 2, 3, groups=2))
    with pytest.raises(ValueError, match=r"module\[1\] \(Conv2d\): groups: only groups=1"):
        bp.from_torch(grouped)
    ceil = nn.Sequential(nn.Unflatten(1, (1, 5, 5)), nn.MaxPool2d(2, ceil_mode=True))
    with pytest.raises(ValueError, match=r"module\[1\] \(MaxPool2d\): ceil_mode"):
        bp.from_torch(ceil)


def test_a_split_step_equals_the_one_thread_step() -> None:
    """Large enough a batch is split over the threads by rows: the gradients of the shares,
    weighted by their rows, are the whole batch's."""
    layers = NETWORKS["digits_cnn_small"]
    X, y = _data(bp.Network(layers, loss="cross_entropy"), 512, "float64")
    before = bp.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            bp.set_num_threads(threads)
            net = bp.Network(layers, loss="cross_entropy", dtype="float64", seed=0)
            results.append(net.gradients(X, y))
    finally:
        bp.set_num_threads(before)
    assert_dicts_close(results[1], results[0], "float64", "two threads vs one")


@pytest.mark.parametrize("batch", [32, 128])
def test_two_threads_train_as_one_and_each_count_the_same_bits_every_run(batch: int) -> None:
    """The convolutions and poolings run in parts of samples on both threads: the gradients
    and a few epochs of training on two threads equal one thread's within float32 rounding,
    and two runs on the same thread count are equal bit for bit."""
    X, y = _data(bp.Network(cnn.layers(), loss="cross_entropy"), 3 * batch + 5, "float32")
    before = bp.get_num_threads()
    runs: dict[int, list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]] = {1: [], 2: []}
    try:
        for threads in (1, 2, 1, 2):
            bp.set_num_threads(threads)
            net = bp.Network(cnn.layers(), loss="cross_entropy", dtype="float32", seed=3)
            grads = net.gradients(X[:batch], y[:batch])
            net.fit(X, y, epochs=2, batch_size=batch, progress=False)
            runs[threads].append((grads, net.parameters()))
    finally:
        bp.set_num_threads(before)
    for threads, ((grads, params), (grads_again, params_again)) in runs.items():
        for name in grads:
            assert np.array_equal(grads[name], grads_again[name]), (threads, name)
            assert np.array_equal(params[name], params_again[name]), (threads, name)
    (grads_1, params_1), (grads_2, params_2) = runs[1][0], runs[2][0]
    assert_dicts_close(grads_2, grads_1, "float32", "gradients, two threads vs one")
    assert_dicts_close(params_2, params_1, "float32", "trained parameters, two threads vs one")


def test_saved_files_and_pickles_keep_the_layers(tmp_path: object) -> None:
    import pickle

    net = bp.Network(NETWORKS["conv1d_pool"], loss="cross_entropy", seed=2)
    X, y = _data(net, 8, "float32")
    net.fit(X, y, epochs=2, batch_size=4, progress=False)
    loaded = bp.Network.from_bytes(net.to_bytes(include_optimizer=True))
    assert loaded.layers == net.layers
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    again = pickle.loads(pickle.dumps(net))
    assert again.train_step(X, y) == net.train_step(X, y)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([bp.Conv2d(1, 2, 3), bp.Flatten(), bp.Dense(2, 1)], r"Conv2d .*start the network with"),
        (
            [bp.Reshape((1, 4, 4)), bp.Conv2d(1, 2, 3), bp.Dense(8, 1)],
            r"layers\[2\]: Dense needs flat features .* \[2, 2, 2\]: put a Flatten",
        ),
        (
            [bp.Reshape((1, 4, 4)), bp.Conv2d(3, 2, 3), bp.Flatten(), bp.Dense(8, 1)],
            r"layers\[1\]: Conv2d in_channels is 3 but the layer before gives 1",
        ),
        (
            [bp.Reshape((1, 4, 4)), bp.Conv2d(1, 2, 5), bp.Flatten(), bp.Dense(8, 1)],
            r"layers\[1\]: Conv2d's window does not fit",
        ),
        (
            [bp.Reshape((1, 16)), bp.MaxPool2d(2), bp.Flatten(), bp.Dense(8, 1)],
            r"layers\[1\]: MaxPool2d reads each row as \(C, H, W\)",
        ),
        ([bp.Dense(4, 6), bp.Reshape((4, 2)), bp.Flatten()], r"layers\[1\]: Reshape to \[4, 2\]"),
        (
            [bp.Reshape((1, 2**20, 2**20)), bp.Conv2d(1, 1, 3), bp.Flatten(), bp.Dense(4, 1)],
            r"layers\[1\]: Conv2d's windows would need 9895566901284 values .* more memory",
        ),
    ],
)
def test_shapes_that_do_not_chain_are_refused_with_the_layer_named(
    layers: list[bp.Layer], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        bp.Network(layers)


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="groups: only groups=1"):
        bp.Conv2d(2, 2, 3, groups=2)
    with pytest.raises(ValueError, match="padding: only sizes"):
        bp.Conv2d(1, 1, 3, padding="same")
    with pytest.raises(TypeError, match=r"kernel_size\[1\]: expected an integer"):
        bp.Conv2d(1, 1, (3, 1.5))
    with pytest.raises(ValueError, match="stride: must be in"):
        bp.Conv1d(1, 1, 3, stride=0)
    with pytest.raises(ValueError, match="padding: must be at most half of kernel_size"):
        bp.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="count_include_pad"):
        bp.AvgPool1d(2, count_include_pad=False)
    with pytest.raises(TypeError, match="shape: expected a non-empty tuple"):
        bp.Reshape(())
    with pytest.raises(ValueError, match="start_dim, end_dim"):
        bp.Flatten(start_dim=2)

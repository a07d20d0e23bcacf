"""Each layer's forward and backward pass in bpcore against the pure-Python reference.

For every activation (with default and other hyperparameters) and for Dense with and
without bias, a small network is built in bpcore, its parameters are copied into a
reference network, and the forward values, the loss and every gradient are compared:
float64 to 1e-10 relative, float32 to 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
from parity_helpers import (
    DTYPES,
    check_forward_loss_gradients,
    in_dtype,
    make_pair,
    random_parameters,
)

import bpcore as bp

ACTIVATIONS = {
    "relu": bp.ReLU(),
    "leaky_relu": bp.LeakyReLU(),
    "leaky_relu_0.2": bp.LeakyReLU(negative_slope=0.2),
    "leaky_relu_1.5": bp.LeakyReLU(negative_slope=1.5),
    "sigmoid": bp.Sigmoid(),
    "tanh": bp.Tanh(),
    "gelu": bp.GELU(),
    "elu": bp.ELU(),
    "elu_0.5": bp.ELU(alpha=0.5),
    "elu_2.5": bp.ELU(alpha=2.5),
    "softplus": bp.Softplus(),
    "softplus_beta2_threshold1.5": bp.Softplus(beta=2.0, threshold=1.5),
    "softplus_beta0.5_threshold0.5": bp.Softplus(beta=0.5, threshold=0.5),
    "softplus_beta8": bp.Softplus(beta=8.0),
    "silu": bp.SiLU(),
    "mish": bp.Mish(),
    "identity": bp.Identity(),
}


def kinks(layer: bp.Layer) -> list[float]:
    """Points where the activation's value or derivative jumps (torch's branch points)."""
    spec = layer.to_spec()
    if spec["type"] in ("relu", "leaky_relu", "elu"):
        return [0.0]
    if spec["type"] == "softplus":
        return [spec["threshold"] / spec["beta"]]
    return []


def data(
    rng: np.random.Generator, n: int, width: int, dtype: str, scale: float = 1.5
) -> np.ndarray:
    # Scaled so the pre-activations (std ~1.7 with the weights below) reach both sides of 0
    # and the Softplus thresholds; rounded to dtype so both sides see the same numbers.
    return in_dtype(rng.normal(scale=scale, size=(n, width)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("last", [False, True], ids=["hidden", "output"])
def test_activation(name: str, dtype: str, last: bool) -> None:
    act = ACTIVATIONS[name]
    layers = [bp.Dense(5, 4), act] if last else [bp.Dense(5, 7), act, bp.Dense(7, 3)]
    rng = np.random.default_rng(1234)
    template = bp.Network(layers, dtype=dtype)
    net, oracle = make_pair(layers, "mse", dtype=dtype, parameters=random_parameters(template, rng))
    X = data(rng, 8, 5, dtype)
    y = in_dtype(rng.normal(size=(8, net.n_outputs)), dtype)

    # The activation's inputs are on both sides of its branch points, and far enough from
    # them that float32 rounding cannot move a value across (the test would then be moot).
    params = oracle.parameters()
    z = X @ np.array(params["0.weight"]).T + np.array(params["0.bias"])
    assert (z < 0).any() and (z > 0).any()
    for point in kinks(act):
        assert np.abs(z - point).min() > 1e-4, f"{name}: an input too close to {point}"
        if name != "softplus":  # the default threshold 20 has a test of its own below
            assert (z < point).any() and (z > point).any(), f"{name}: a side of {point} unused"

    check_forward_loss_gradients(net, oracle, X, y, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softplus_default_threshold(dtype: str) -> None:
    # Inputs large enough that beta·x passes torch's default threshold 20 (the identity branch).
    layers = [bp.Dense(5, 7), bp.Softplus(), bp.Dense(7, 3)]
    rng = np.random.default_rng(21)
    template = bp.Network(layers, dtype=dtype)
    net, oracle = make_pair(layers, "mse", dtype=dtype, parameters=random_parameters(template, rng))
    X = data(rng, 8, 5, dtype, scale=15.0)
    y = in_dtype(rng.normal(size=(8, 3)), dtype)
    params = oracle.parameters()
    z = X @ np.array(params["0.weight"]).T + np.array(params["0.bias"])
    assert (z > 20).any() and (z < 20).any() and (z < 0).any()
    assert np.abs(z - 20).min() > 1e-4
    check_forward_loss_gradients(net, oracle, X, y, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_single_dense(bias: bool, dtype: str) -> None:
    layers = [bp.Dense(5, 3, bias=bias)]
    rng = np.random.default_rng(7)
    template = bp.Network(layers, dtype=dtype)
    net, oracle = make_pair(layers, "mse", dtype=dtype, parameters=random_parameters(template, rng))
    expected_names = ["0.weight", "0.bias"] if bias else ["0.weight"]
    assert list(net.parameters()) == expected_names
    assert net.parameters()["0.weight"].shape == (3, 5)
    X = data(rng, 6, 5, dtype)
    y = in_dtype(rng.normal(size=(6, 3)), dtype)
    check_forward_loss_gradients(net, oracle, X, y, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("bias0", "bias2"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_stacked_dense_bias_options(bias0: bool, bias2: bool, dtype: str) -> None:
    # The second layer's ∂L/∂x (through its weight) reaches the first layer's gradients.
    layers = [bp.Dense(5, 7, bias=bias0), bp.Tanh(), bp.Dense(7, 3, bias=bias2)]
    rng = np.random.default_rng(11)
    template = bp.Network(layers, dtype=dtype)
    net, oracle = make_pair(layers, "mse", dtype=dtype, parameters=random_parameters(template, rng))
    names = ["0.weight"] + ["0.bias"] * bias0 + ["2.weight"] + ["2.bias"] * bias2
    assert list(net.parameters()) == names
    X = data(rng, 6, 5, dtype)
    y = in_dtype(rng.normal(size=(6, 3)), dtype)
    check_forward_loss_gradients(net, oracle, X, y, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_initial_parameters_copied(dtype: str) -> None:
    # bpcore's own initialization (zero biases), copied as is into the reference.
    layers = [bp.Dense(5, 7), bp.GELU(), bp.Dense(7, 3)]
    net, oracle = make_pair(layers, "mse", dtype=dtype, seed=3)
    rng = np.random.default_rng(5)
    X = data(rng, 8, 5, dtype)
    y = in_dtype(rng.normal(size=(8, 3)), dtype)
    check_forward_loss_gradients(net, oracle, X, y, dtype)

"""Whole mixed networks in bpcore against the pure-Python reference, and fit against train_step.

Several layer stacks with different losses and optimizers are compared with the reference on
forward, loss, gradients and 20 train_step calls, in both dtypes. Then fit(shuffle=False) for
one epoch must be exactly the train_step calls on consecutive batches, the last one smaller.
"""

from __future__ import annotations

import numpy as np
import pytest
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

NETWORKS = {
    "tanh_gelu_relu_cross_entropy_adam": (
        [
            bp.Dense(6, 10),
            bp.Tanh(),
            bp.Dense(10, 8),
            bp.GELU(),
            bp.Dense(8, 8),
            bp.ReLU(),
            bp.Dense(8, 4),
        ],
        "cross_entropy",
        bp.Adam(lr=0.01),
    ),
    "sigmoid_elu_nobias_huber_rmsprop": (
        [
            bp.Dense(6, 9),
            bp.Sigmoid(),
            bp.Dense(9, 7),
            bp.ELU(alpha=0.7),
            bp.Dense(7, 3, bias=False),
        ],
        bp.HuberLoss(delta=0.8),
        bp.RMSprop(lr=0.01, momentum=0.5),
    ),
    "activation_first_mse_sgd": (
        [bp.Tanh(), bp.Dense(6, 8), bp.LeakyReLU(0.1), bp.Dense(8, 2), bp.Softplus(beta=2.0)],
        "mse",
        bp.SGD(lr=0.1, momentum=0.9, nesterov=True),
    ),
    "two_activations_bce_adamw": (
        [bp.Dense(6, 8), bp.GELU(), bp.Sigmoid(), bp.Dense(8, 3)],
        "bce_with_logits",
        bp.AdamW(lr=0.02, weight_decay=0.1),
    ),
    "identity_first_smoothing_adagrad": (
        [bp.Identity(), bp.Dense(6, 5, bias=False), bp.ELU(), bp.Dense(5, 4)],
        bp.CrossEntropyLoss(label_smoothing=0.2),
        bp.Adagrad(lr=0.1, lr_decay=0.01),
    ),
    "l1_tanh_sgd": (
        [bp.Dense(6, 7), bp.Tanh(), bp.Dense(7, 2)],
        "l1",
        bp.SGD(lr=0.05, weight_decay=0.01),
    ),
}


def make_data(loss: object, out: int, n: int, rng: np.random.Generator, dtype: str):
    X = in_dtype(rng.normal(scale=1.5, size=(n, 6)), dtype)
    kind = loss if isinstance(loss, str) else loss.type_name
    if kind == "cross_entropy":
        y = rng.integers(0, out, size=n)
    elif kind == "bce_with_logits":
        y = in_dtype(rng.uniform(size=(n, out)), dtype)
    else:
        y = in_dtype(rng.normal(size=(n, out)), dtype)
    return X, y


def build(name: str, dtype: str, seed: int = 0):
    layers, loss, optimizer = NETWORKS[name]
    rng = np.random.default_rng(seed)
    template = bp.Network(layers, loss=loss, dtype=dtype)
    params = random_parameters(template, rng, scale=0.6)
    net, oracle = make_pair(layers, loss, optimizer, dtype=dtype, parameters=params)
    return net, oracle, loss, rng


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(NETWORKS))
def test_forward_loss_gradients(name: str, dtype: str) -> None:
    net, oracle, loss, rng = build(name, dtype)
    X, y = make_data(loss, net.n_outputs, 12, rng, dtype)
    check_forward_loss_gradients(net, oracle, X, y, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(NETWORKS))
def test_train_steps(name: str, dtype: str) -> None:
    net, oracle, loss, rng = build(name, dtype, seed=1)
    data = [make_data(loss, net.n_outputs, n, rng, dtype) for n in (10, 10, 7)]
    for step in range(1, 21):
        X, y = data[(step - 1) % len(data)]
        assert_close(net.train_step(X, y), oracle.train_step(X, y), dtype, f"step {step} loss")
        if step % 5 == 0:
            assert_dicts_close(net.parameters(), oracle.parameters(), dtype, f"step {step}")
    X, y = data[0]
    check_forward_loss_gradients(net, oracle, X, y, dtype)


@pytest.mark.parametrize("batch_size", [4, 5, 23, 50])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_fit_unshuffled_is_consecutive_train_steps(name: str, batch_size: int) -> None:
    # 23 samples: batches of 4 leave 3 at the end, of 5 leave 3, 23 is one full batch and 50 is
    # more than the data (one batch of all 23).
    net, _, loss, rng = build(name, "float64", seed=2)
    start = net.parameters()
    X, y = make_data(loss, net.n_outputs, 23, rng, "float64")
    history = net.fit(X, y, epochs=1, batch_size=batch_size, shuffle=False)

    by_steps, oracle = make_pair(*NETWORKS[name], dtype="float64", parameters=start)
    losses, sizes = [], []
    for i in range(0, 23, batch_size):
        xb, yb = X[i : i + batch_size], y[i : i + batch_size]
        losses.append(by_steps.train_step(xb, yb))
        sizes.append(len(xb))
        assert_close(losses[-1], oracle.train_step(xb, yb), "float64", f"batch at {i} loss")
    assert sum(sizes) == 23

    tight = {"rtol": 1e-12, "atol": 1e-14}
    for k, v in by_steps.parameters().items():
        np.testing.assert_allclose(net.parameters()[k], v, err_msg=k, **tight)
    assert_dicts_close(net.parameters(), oracle.parameters(), "float64", "fit vs reference")
    # The epoch's loss is the mean over samples: each batch's mean loss weighted by its size.
    expected = float(np.dot(losses, sizes) / sum(sizes))
    np.testing.assert_allclose(history.history["loss"], [expected], **tight)
    # And training continues from there with the same optimizer state.
    assert_close(net.train_step(X, y), by_steps.train_step(X, y), "float64", "next step")
    for k, v in by_steps.parameters().items():
        np.testing.assert_allclose(net.parameters()[k], v, err_msg=k, **tight)

"""Each optimizer, option by option, in bpcore against the pure-Python reference.

From equal parameters, bpcore and the reference take 20 train_step calls on a fixed cycle of
batches; the loss of every step and the parameters every 5 steps are compared (float64 to
1e-10 relative, float32 to 1e-4). apply_gradients with given gradients is compared too, so
the optimizer's update is checked apart from the backward pass.
"""

from __future__ import annotations

import numpy as np
import pytest
from parity_helpers import DTYPES, assert_close, assert_dicts_close, in_dtype, make_pair

import bpcore as bp

OPTIMIZERS = {
    "sgd": bp.SGD(lr=0.1),
    "sgd_momentum": bp.SGD(lr=0.1, momentum=0.9),
    "sgd_dampening": bp.SGD(lr=0.1, momentum=0.9, dampening=0.3),
    "sgd_nesterov": bp.SGD(lr=0.1, momentum=0.9, nesterov=True),
    "sgd_weight_decay": bp.SGD(lr=0.1, weight_decay=0.05),
    "sgd_all": bp.SGD(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.01),
    "sgd_nesterov_weight_decay": bp.SGD(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.1),
    "adam": bp.Adam(lr=0.01),
    "adam_betas_eps": bp.Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    "adam_amsgrad": bp.Adam(lr=0.01, amsgrad=True),
    "adam_weight_decay": bp.Adam(lr=0.01, weight_decay=0.1),
    "adam_amsgrad_weight_decay": bp.Adam(lr=0.02, weight_decay=0.05, amsgrad=True),
    "adamw": bp.AdamW(lr=0.01),
    "adamw_weight_decay_amsgrad": bp.AdamW(lr=0.01, weight_decay=0.2, amsgrad=True),
    "rmsprop": bp.RMSprop(lr=0.01),
    "rmsprop_centered": bp.RMSprop(lr=0.01, centered=True),
    "rmsprop_momentum": bp.RMSprop(lr=0.01, momentum=0.9),
    "rmsprop_weight_decay": bp.RMSprop(lr=0.01, weight_decay=0.1),
    "rmsprop_all": bp.RMSprop(
        lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.05, momentum=0.5, centered=True
    ),
    "adagrad": bp.Adagrad(lr=0.1),
    "adagrad_lr_decay": bp.Adagrad(lr=0.1, lr_decay=0.1),
    "adagrad_weight_decay": bp.Adagrad(lr=0.1, weight_decay=0.1),
    "adagrad_initial_accumulator": bp.Adagrad(lr=0.1, initial_accumulator_value=0.5),
    "adagrad_all": bp.Adagrad(
        lr=0.1, lr_decay=0.05, weight_decay=0.02, eps=1e-6, initial_accumulator_value=0.1
    ),
}

LAYERS = [bp.Dense(4, 6), bp.Tanh(), bp.Dense(6, 2)]
STEPS = 20
CHECK_EVERY = 5


def batches(dtype: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """A fixed cycle of four batches (the last one smaller)."""
    rng = np.random.default_rng(2024)
    out = []
    for n in (8, 8, 8, 5):
        X = in_dtype(rng.normal(size=(n, 4)), dtype)
        y = in_dtype(rng.normal(size=(n, 2)), dtype)
        out.append((X, y))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_train_steps(name: str, dtype: str) -> None:
    net, oracle = make_pair(LAYERS, "mse", OPTIMIZERS[name], dtype=dtype, seed=1)
    start = net.parameters()
    data = batches(dtype)
    for step in range(1, STEPS + 1):
        X, y = data[(step - 1) % len(data)]
        loss = net.train_step(X, y)
        assert_close(loss, oracle.train_step(X, y), dtype, f"{name} step {step} loss")
        if step % CHECK_EVERY == 0:
            assert_dicts_close(
                net.parameters(), oracle.parameters(), dtype, f"{name} after step {step}"
            )
    # The parameters did move: the comparison above was not between two idle networks.
    moved = max(np.abs(net.parameters()[k] - start[k]).max() for k in start)
    assert moved > 1e-2, moved


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_apply_gradients(name: str, dtype: str) -> None:
    net, oracle = make_pair(LAYERS, "mse", OPTIMIZERS[name], dtype=dtype, seed=2)
    rng = np.random.default_rng(77)
    shapes = {k: v.shape for k, v in net.parameters().items()}
    for step in range(1, 6):
        grads = {k: in_dtype(rng.normal(scale=0.5, size=s), dtype) for k, s in shapes.items()}
        net.apply_gradients(grads)
        oracle.apply_gradients(grads)
        assert_dicts_close(net.parameters(), oracle.parameters(), dtype, f"{name} step {step}")

"""Each loss in bpcore against the pure-Python reference: its value and all gradients.

The network is Dense(6, 4) followed by Identity, so the loss's gradient with respect to the
outputs reaches the parameters through one dense layer only. Cross-entropy and BCE with
logits are also checked with logits around ±1000, where a naive softmax or log(sigmoid)
overflows: bpcore must stay finite and agree with the reference's stable formulas.
"""

from __future__ import annotations

import numpy as np
import pytest
from optional import require
from parity_helpers import (
    DTYPES,
    assert_close,
    check_forward_loss_gradients,
    in_dtype,
    make_pair,
    random_parameters,
)

import bpcore as bp

N, IN, OUT = 10, 6, 4

LOSSES = {
    "mse": "mse",
    "l1": "l1",
    "huber": "huber",
    "huber_delta1": bp.HuberLoss(delta=1.0),
    "huber_delta0.5": bp.HuberLoss(delta=0.5),
    "cross_entropy": "cross_entropy",
    "cross_entropy_smoothing0.1": bp.CrossEntropyLoss(label_smoothing=0.1),
    "bce_with_logits": "bce_with_logits",
    "poisson": "poisson",
}

LAYERS = [bp.Dense(IN, OUT), bp.Identity()]


def targets(loss: object, rng: np.random.Generator, dtype: str) -> np.ndarray:
    name = loss if isinstance(loss, str) else loss.type_name
    if name == "cross_entropy":
        return rng.integers(0, OUT, size=N)
    if name == "bce_with_logits":
        t = rng.uniform(0.0, 1.0, size=(N, OUT))
        t[0, :2] = 0.0  # the ends of [0, 1] too
        t[1, :2] = 1.0
        return in_dtype(t, dtype)
    if name == "poisson":
        return in_dtype(rng.poisson(2.0, size=(N, OUT)), dtype)
    return in_dtype(rng.normal(size=(N, OUT)), dtype)


def setup(loss: object, dtype: str, weight_scale: float, seed: int):
    rng = np.random.default_rng(seed)
    template = bp.Network(LAYERS, loss=loss, dtype=dtype)
    params = random_parameters(template, rng, scale=weight_scale)
    net, oracle = make_pair(LAYERS, loss, dtype=dtype, parameters=params)
    X = in_dtype(rng.normal(scale=1.5, size=(N, IN)), dtype)
    return net, oracle, X, targets(loss, rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_value_and_gradients(name: str, dtype: str) -> None:
    loss = LOSSES[name]
    net, oracle, X, y = setup(loss, dtype, weight_scale=0.5, seed=99)

    if name.startswith(("huber", "l1")):
        # Residuals on both sides of every branch point of the loss, none right at one.
        delta = loss.delta if isinstance(loss, bp.HuberLoss) else 1.0
        d = np.asarray(oracle.forward(X)) - y
        for point in (0.0, delta, -delta) if name != "l1" else (0.0,):
            assert (d < point).any() and (d > point).any()
            assert np.abs(d - point).min() > 1e-4

    check_forward_loss_gradients(net, oracle, X, y, dtype)
    # train_step returns the loss before its update, the same value.
    assert_close(net.train_step(X, y), oracle.train_step(X, y), dtype, "train_step loss")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "loss",
    [
        bp.CrossEntropyLoss(),
        bp.CrossEntropyLoss(label_smoothing=0.1),
        bp.BCEWithLogitsLoss(),
    ],
    ids=["cross_entropy", "cross_entropy_smoothing0.1", "bce_with_logits"],
)
def test_huge_logits(loss: bp.Loss, dtype: str) -> None:
    net, oracle, X, y = setup(loss, dtype, weight_scale=400.0, seed=5)
    logits = net.forward(X)
    assert np.abs(logits).max() > 800 and (logits > 300).any() and (logits < -300).any()

    value = net.loss(X, y)
    grads = net.gradients(X, y)
    assert np.isfinite(value) and value > 10, value  # confidently wrong somewhere: a big loss
    for name, g in grads.items():
        assert np.isfinite(g).all(), f"{name}: {g}"
    check_forward_loss_gradients(net, oracle, X, y, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_poisson_matches_torch(dtype: str) -> None:
    """The core's Poisson loss is torch's PoissonNLLLoss(log_input=True, full=False): its value
    and, through a linear layer, the parameters' gradients."""
    torch = require("torch")
    rng = np.random.default_rng(5)
    net = bp.Network([bp.Dense(IN, OUT)], loss="poisson", dtype=dtype)
    params = random_parameters(net, rng, scale=0.5)
    net.set_parameters(params)
    X = in_dtype(rng.normal(size=(N, IN)), dtype)
    y = in_dtype(rng.poisson(2.0, size=(N, OUT)), dtype)
    linear = torch.nn.Linear(IN, OUT).double()
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(params["0.weight"], dtype=torch.float64))
        linear.bias.copy_(torch.tensor(params["0.bias"], dtype=torch.float64))
    loss = torch.nn.PoissonNLLLoss(log_input=True, full=False)(
        linear(torch.tensor(X, dtype=torch.float64)), torch.tensor(y, dtype=torch.float64)
    )
    loss.backward()
    assert_close(net.loss(X, y), loss.item(), dtype, "loss")
    grads = net.gradients(X, y)
    assert_close(grads["0.weight"], linear.weight.grad.numpy(), dtype, "0.weight")
    assert_close(grads["0.bias"], linear.bias.grad.numpy(), dtype, "0.bias")

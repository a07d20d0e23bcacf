"""SiLU, Mish and PReLU against the pure-Python reference and torch: forward, loss and every
gradient (PReLU's slopes too) in float64 and float32, training steps of every optimizer, saving,
the torch exchange, the initialization's gain, and the checks of their arguments.

SiLU and Mish are also in the parametrized lists of every activation (test_parity_layers,
test_reference_gradcheck, test_onnx_export); PReLU has parameters, so its cases are here.
"""

from __future__ import annotations

import random

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
from test_reference_gradcheck import check_network_gradients, random_rows

import bpcore as bp
from bpcore import reference as ref

#: PReLU with one slope, one per feature, one per channel of (C, L) rows, first and last.
PRELU_CASES = {
    "one_slope": lambda: [bp.Dense(5, 7), bp.PReLU(), bp.Dense(7, 3)],
    "per_feature": lambda: [bp.Dense(5, 7), bp.PReLU(7, init=-0.3), bp.Dense(7, 3)],
    "per_channel": lambda: [
        bp.Reshape((1, 5)),
        bp.Conv1d(1, 3, 2),
        bp.PReLU(3),
        bp.Flatten(),
        bp.Dense(12, 3),
    ],
    "first": lambda: [bp.PReLU(5), bp.Dense(5, 3)],
    "last": lambda: [bp.Dense(5, 3), bp.PReLU(3)],
    "with_silu_mish": lambda: [bp.Dense(5, 6), bp.SiLU(), bp.Dense(6, 6), bp.Mish(), bp.PReLU(6)],
}


def batch(rng: np.random.Generator, dtype: str, n: int = 9, outputs: int = 3) -> tuple:
    X = in_dtype(rng.normal(scale=1.5, size=(n, 5)), dtype)
    y = in_dtype(rng.normal(size=(n, outputs)), dtype)
    return X, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(PRELU_CASES))
def test_prelu_forward_loss_and_gradients_match_the_reference(case: str, dtype: str) -> None:
    layers = PRELU_CASES[case]()
    rng = np.random.default_rng(5)
    template = bp.Network(layers, dtype=dtype)
    net, oracle = make_pair(layers, "mse", dtype=dtype, parameters=random_parameters(template, rng))
    X, y = batch(rng, dtype, outputs=net.n_outputs)
    check_forward_loss_gradients(net, oracle, X, y, dtype)
    slopes = [name for name in net.parameters() if name.split(".")[0] in _prelu_indices(net)]
    gradients = net.gradients(X, y)
    assert slopes and all(np.abs(gradients[name]).max() > 1e-3 for name in slopes)


def _prelu_indices(net: bp.Network) -> set[str]:
    return {str(i) for i, layer in enumerate(net.layers) if isinstance(layer, bp.PReLU)}


@pytest.mark.parametrize("rows", ["flat", "channels"])
def test_the_reference_prelu_gradients_match_finite_differences(rows: str) -> None:
    if rows == "flat":
        layers = [
            {"type": "dense", "in_features": 3, "out_features": 4},
            {"type": "prelu", "num_parameters": 4, "init": 0.2},
            {"type": "dense", "in_features": 4, "out_features": 2},
        ]
    else:
        layers = [
            {"type": "reshape", "shape": [2, 3]},
            {"type": "prelu", "num_parameters": 2, "init": -0.4},
            {"type": "flatten"},
            {"type": "dense", "in_features": 6, "out_features": 2},
        ]
    net = ref.Network(layers, loss="mse", seed=3)
    rng = random.Random(4)
    X = random_rows(rng, 5, 3 if rows == "flat" else 6, 2.0)
    Y = random_rows(rng, 5, 2)
    check_network_gradients(net, X, Y)


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: bp.SGD(lr=0.1, momentum=0.9, weight_decay=0.01),
        lambda: bp.Adam(lr=0.05),
        lambda: bp.AdamW(lr=0.05, weight_decay=0.1),
        lambda: bp.RMSprop(lr=0.01),
        lambda: bp.Adagrad(lr=0.1),
    ],
    ids=["sgd", "adam", "adamw", "rmsprop", "adagrad"],
)
def test_every_optimizer_trains_the_slopes_as_the_reference(optimizer) -> None:
    layers = [bp.Dense(5, 6), bp.PReLU(6), bp.Dense(6, 3), bp.PReLU()]
    net, oracle = make_pair(layers, "mse", optimizer(), dtype="float64", seed=2)
    rng = np.random.default_rng(8)
    X, y = batch(rng, "float64")
    X[:, 0] -= 2.0  # many negative pre-activations, so the slopes have gradients
    for _ in range(4):
        np.testing.assert_allclose(net.train_step(X, y), oracle.train_step(X, y), rtol=1e-10)
    assert_dicts_close(net.parameters(), oracle.parameters(), "float64", "after 4 steps")
    assert not np.allclose(net.parameters()["1.weight"], 0.25)  # the slopes moved


@pytest.fixture(scope="module")
def torch():
    return require("torch", install="bpcore[torch]")


def _torch_gradients(torch, net: bp.Network, X: np.ndarray, y: np.ndarray) -> dict:
    """∂(mean squared error)/∂parameter by torch's autograd on `to_torch(net)`."""
    module = bp.to_torch(net)
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    out = module(torch.from_numpy(X).to(dtype))
    loss = torch.nn.functional.mse_loss(out, torch.from_numpy(y).to(dtype))
    loss.backward()
    named = dict(module.named_parameters())
    return {name: named[name].grad.numpy() for name in net.parameters()}, out.detach().numpy()


@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_and_gradients_agree_with_torch(torch, dtype: str) -> None:
    layers = [
        bp.Reshape((2, 5)),
        bp.Conv1d(2, 3, 2),
        bp.PReLU(3, init=0.1),
        bp.Flatten(),
        bp.Dense(12, 6),
        bp.SiLU(),
        bp.Dense(6, 6),
        bp.Mish(),
        bp.PReLU(),
        bp.Dense(6, 4),
        bp.PReLU(4),
    ]
    rng = np.random.default_rng(0)
    net = bp.Network(layers, dtype=dtype, seed=1)
    net.set_parameters(random_parameters(net, rng, scale=0.7))
    X = (rng.normal(size=(16, 10)) * 2).astype(dtype)
    y = rng.normal(size=(16, 4)).astype(dtype)
    expected, out = _torch_gradients(torch, net, X, y)
    np.testing.assert_allclose(net.forward(X), out, **TOLERANCES[dtype])
    assert_dicts_close(net.gradients(X, y), expected, dtype, "torch")
    assert np.abs(expected["8.weight"]).max() > 1e-3 and np.abs(expected["2.weight"]).min() > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_mish_and_silu_far_from_zero_equal_torch(torch, dtype: str) -> None:
    x = np.array([-1000.0, -90.0, -30.0, -20.5, -3.0, 0.0, 0.7, 19.9, 20.5, 35.0, 90.0, 1000.0])
    for layer, function in (
        (bp.Mish(), torch.nn.functional.mish),
        (bp.SiLU(), torch.nn.functional.silu),
    ):
        net = bp.Network([bp.Dense(1, 1, bias=False), layer], dtype=dtype)
        net.set_parameters({"0.weight": np.ones((1, 1))})
        X = x.reshape(-1, 1).astype(dtype)
        t = torch.tensor(X, requires_grad=True)
        function(t).sum().backward()
        np.testing.assert_allclose(
            net.forward(X), function(t).detach().numpy(), **TOLERANCES[dtype]
        )
        # ∂(Σ outputs)/∂w = Σ_i f'(x_i) x_i: torch's derivative at every point
        grad = net.gradients(X, np.zeros_like(X) - 1.0)["0.weight"]
        assert np.isfinite(grad).all()
        expected = (t.grad.numpy() * X * 2.0 * (net.forward(X) + 1.0)).mean()
        np.testing.assert_allclose(grad[0, 0], expected, rtol=TOLERANCES[dtype]["rtol"] * 10)


def test_from_torch_reads_prelu_silu_and_mish(torch) -> None:
    nn = torch.nn
    module = nn.Sequential(
        nn.Linear(3, 4), nn.PReLU(4, init=0.1), nn.SiLU(), nn.Linear(4, 2), nn.Mish(), nn.PReLU()
    ).double()
    with torch.no_grad():
        module[1].weight.copy_(torch.tensor([0.1, -0.2, 0.3, 0.4], dtype=torch.float64))
    net = bp.from_torch(module)
    assert net.layers == [
        bp.Dense(3, 4),
        bp.PReLU(4, init=0.1),
        bp.SiLU(),
        bp.Dense(4, 2),
        bp.Mish(),
        bp.PReLU(),
    ]
    np.testing.assert_array_equal(net.parameters()["1.weight"], [0.1, -0.2, 0.3, 0.4])
    X = np.random.default_rng(1).normal(size=(5, 3)) * 3
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(X), module(torch.from_numpy(X)).numpy(), rtol=1e-12)
    back = bp.to_torch(net)
    assert (type(back[1]).__name__, back[1].num_parameters, back[1].init) == ("PReLU", 4, 0.1)


def test_saving_keeps_the_slopes(tmp_path) -> None:
    net = bp.Network(
        [bp.Dense(4, 5), bp.PReLU(5, init=-0.1), bp.SiLU(), bp.Dense(5, 2), bp.Mish(), bp.PReLU()],
        optimizer=bp.Adam(lr=0.01),
        seed=3,
    )
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(32, 4)), rng.normal(size=(32, 2))
    net.fit(X, y, epochs=2, batch_size=8, progress=False)
    path = tmp_path / "net.bpcore"
    net.save(path, include_optimizer=True)
    back = bp.Network.load(path)
    assert back.layers == net.layers and repr(back) == repr(net)
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(back.parameters()[name], value)
    assert not np.allclose(back.parameters()["1.weight"], -0.1)  # trained, then kept
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    again = bp.Network.from_bytes(net.to_bytes())
    np.testing.assert_array_equal(again.parameters()["5.weight"], net.parameters()["5.weight"])


def test_summary_and_count_params_count_the_slopes() -> None:
    net = bp.Network([bp.Dense(3, 4), bp.PReLU(4), bp.Dense(4, 2), bp.PReLU(), bp.SiLU()])
    assert net.count_params() == 3 * 4 + 4 + 4 + 4 * 2 + 2 + 1
    printed: list[str] = []
    net.summary(print_fn=printed.append)
    rows = [line.split() for line in "\n".join(printed).splitlines() if line[:1].isdigit()]
    counts = {f"{row[0]} {row[1]}": int(row[-1]) for row in rows}
    assert counts == {"0 Dense": 16, "1 PReLU": 4, "2 Dense": 10, "3 PReLU": 1, "4 SiLU": 0}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (bp.SiLU(), bp.ReLU()),
        (bp.Mish(), bp.GELU()),
        (bp.PReLU(), bp.LeakyReLU(0.25)),
        (bp.PReLU(8, init=0.6), bp.LeakyReLU(0.6)),
    ],
    ids=["silu", "mish", "prelu", "prelu_0.6"],
)
def test_the_layer_before_is_initialized_with_the_gain_of_its_rectifier(before, after) -> None:
    # SiLU and Mish take ReLU's (and GELU's) He gain √2; PReLU that of LeakyReLU at its init.
    def weights(layer: bp.Layer) -> np.ndarray:
        return bp.Network([bp.Dense(6, 8), layer, bp.Dense(8, 1)], seed=4).parameters()["0.weight"]

    np.testing.assert_array_equal(weights(before), weights(after))
    glorot = np.sqrt(6.0 / (6 + 8))
    assert np.abs(weights(before)).max() > glorot  # He's bound √(6 / fan_in) / ... is wider


@pytest.mark.parametrize(
    ("make", "error", "argument"),
    [
        (lambda: bp.PReLU(0), ValueError, "num_parameters"),
        (lambda: bp.PReLU(2.5), TypeError, "num_parameters"),
        (lambda: bp.PReLU(init="a"), TypeError, "init"),
        (lambda: bp.PReLU(init=float("nan")), ValueError, "init"),
        (lambda: bp.PReLU(init=1e6), ValueError, "init"),
        (
            lambda: bp.Network([bp.Dense(3, 4), bp.PReLU(3), bp.Dense(4, 1)]),
            ValueError,
            "num_parameters",
        ),
        (
            lambda: bp.Network(
                [bp.Reshape((2, 4)), bp.Conv1d(2, 3, 2), bp.PReLU(2), bp.Flatten(), bp.Dense(9, 1)]
            ),
            ValueError,
            "3 channels",
        ),
    ],
)
def test_bad_arguments_are_named(make, error, argument: str) -> None:
    with pytest.raises(error, match=argument):
        make()


def test_explain_shows_silu_and_mish_and_refuses_prelu_by_name() -> None:
    net = bp.Network(
        [bp.Dense(3, 4), bp.SiLU(), bp.Dense(4, 4), bp.Mish(), bp.Dense(4, 1)], dtype="float64"
    )
    explained = bp.explain(net, np.array([0.3, -1.2, 0.8]), np.array([0.5]))
    assert explained.matches
    assert {"SiLU", "Mish"} <= {layer.name for layer in explained.layers}
    with_prelu = bp.Network([bp.Dense(3, 4), bp.PReLU(), bp.Dense(4, 1)])
    with pytest.raises(ValueError, match=r"cannot show layers\[1\] \(PReLU\)"):
        bp.explain(with_prelu, np.array([0.3, -1.2, 0.8]), np.array([0.5]))

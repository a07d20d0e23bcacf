"""bp.explain: the chain-rule factors of one weight's gradient multiply to net.gradients'."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp


def network(loss, dtype, last=None):
    outputs = 3
    layers = [bp.Dense(5, 4), bp.Tanh(), bp.Dense(4, 6), bp.GELU(), bp.Dense(6, outputs)]
    if last is not None:
        layers.append(last)
    net = bp.Network(layers, loss=loss, dtype=dtype, seed=3)
    rng = np.random.default_rng(7)
    net.set_parameters(
        {k: rng.normal(scale=0.8, size=v.shape) for k, v in net.parameters().items()}
    )
    return net


def sample(loss):
    rng = np.random.default_rng(11)
    x = rng.normal(size=5)
    y = 2 if loss == "cross_entropy" else rng.normal(size=3)
    return x, y


WEIGHTS = [(0, (1, 2)), (0, (3, 4)), (2, (5, 0)), (2, (0, 3)), (4, (2, 5)), (4, (0, 1))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize(("layer", "index"), WEIGHTS)
def test_product_of_the_terms_is_the_gradient(dtype, loss, layer, index):
    net = network(loss, dtype)
    x, y = sample(loss)
    e = bp.explain(net, x, y, layer, index)
    i, j = index
    grad = net.gradients(x[None, :], np.atleast_1d(y) if loss == "cross_entropy" else y[None, :])
    assert e.gradient == float(grad[f"{layer}.weight"][i, j])
    assert e.matches
    rtol = 1e-12 if dtype == "float64" else 1e-5
    scale = np.abs(grad[f"{layer}.weight"]).max()
    assert abs(e.product - e.gradient) <= rtol * max(abs(e.gradient), scale)
    assert e.product == pytest.approx(np.prod([v for _, v in e.terms]), rel=1e-15)


def test_terms_are_the_chain_rule_factors_computed_independently():
    net = network("mse", "float64")
    x, y = sample("mse")
    p = net.parameters()
    z0 = p["0.weight"] @ x + p["0.bias"]
    h0 = np.tanh(z0)
    z1 = p["2.weight"] @ h0 + p["2.bias"]
    e = bp.explain(net, x, y, 0, (1, 2))
    names = [name for name, _ in e.terms]
    assert names == ["∂L/∂h_1", "∂h_1/∂z_1", "∂z_1/∂w_1,2 = a_2"]
    values = dict(e.terms)
    assert values["∂z_1/∂w_1,2 = a_2"] == x[2]  # the input a_j
    assert values["∂h_1/∂z_1"] == pytest.approx(1 - np.tanh(z0[1]) ** 2, rel=1e-14)  # tanh'
    # ∂L/∂h for layer 2's units by NumPy: L = mean((W4 gelu(z1) + b4 - y)^2)
    from math import erf, exp, pi, sqrt

    h1 = np.array([v * 0.5 * (1 + erf(v / sqrt(2))) for v in z1])
    out = p["4.weight"] @ h1 + p["4.bias"]
    dl_dout = 2 * (out - y) / 3
    gelu_prime = np.array(
        [0.5 * (1 + erf(v / sqrt(2))) + v * exp(-v * v / 2) / sqrt(2 * pi) for v in z1]
    )
    dl_dh0 = p["2.weight"].T @ ((p["4.weight"].T @ dl_dout) * gelu_prime)
    assert values["∂L/∂h_1"] == pytest.approx(dl_dh0[1], rel=1e-12)
    np.testing.assert_allclose(e.output_gradient, dl_dout, rtol=1e-12)
    last = bp.explain(net, x, y, 4, (2, 5))
    assert dict(last.terms)["∂h_2/∂z_2"] == 1.0 and last.activation is None
    assert dict(last.terms)["∂L/∂h_2"] == pytest.approx(dl_dout[2], rel=1e-12)


def test_an_activation_on_the_output_is_included():
    net = network("mse", "float64", last=bp.Sigmoid())
    x, y = sample("mse")
    e = bp.explain(net, x, y, 4, (1, 1))
    assert e.activation == "Sigmoid" and e.matches
    assert 0 < dict(e.terms)["∂h_1/∂z_1"] <= 0.25


def test_prints_readably(capsys):
    net = network("cross_entropy", "float32")
    x, y = sample("cross_entropy")
    e = bp.explain(net, x.reshape(1, -1), y, 2, (0, 3))
    e.print()
    out = capsys.readouterr().out
    assert out == str(e) + "\n"
    for text in (
        "2.weight[0, 3]",
        "∂L/∂o",
        "∂L/∂h_0",
        "∂h_0/∂z_0",
        "a_3",
        "product",
        "gradient",
        "are equal",
        "float32",
        "GELU",
    ):
        assert text in out
    assert "matches=True" in repr(e)


@pytest.mark.parametrize(
    ("args", "exc", "word"),
    [
        ((1, (0, 0)), ValueError, "not Dense"),
        ((5, (0, 0)), ValueError, "layer"),
        ((0, (4, 0)), ValueError, "outside"),
        ((0, (0,)), TypeError, "index"),
        ((0, 1), TypeError, "index"),
        (("0", (0, 0)), TypeError, "layer"),
    ],
)
def test_bad_arguments(args, exc, word):
    net = network("mse", "float64")
    x, y = sample("mse")
    with pytest.raises(exc, match=word):
        bp.explain(net, x, y, *args)


def test_one_sample_only():
    net = network("mse", "float64")
    with pytest.raises(ValueError, match="one sample"):
        bp.explain(net, np.zeros((2, 5)), np.zeros((2, 3)), 0, (0, 0))


def test_a_network_with_dropout_is_explained_not_refused():
    net = bp.Network([bp.Dense(3, 4), bp.Dropout(0.5), bp.Dense(4, 1)], dtype="float64")
    e = bp.explain(net, np.ones(3), np.zeros(1), 0, (0, 0))
    assert e.matches

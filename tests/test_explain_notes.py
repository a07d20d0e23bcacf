"""bp.explain's plain-language notes appear where the numbers explain the gradient, and only
there; the one-weight chain shows the sum that forms ∂L/∂h_i."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp


def small(activation, bias_of_unit_1=0.0, seed=0):
    net = bp.Network(
        [bp.Dense(3, 4), activation(), bp.Dense(4, 2)], loss="mse", dtype="float64", seed=seed
    )
    p = net.parameters()
    # Small weights and biases of 1: every unit but unit 1 active and far from saturation.
    p["0.weight"] = np.linspace(-0.5, 0.5, 12).reshape(4, 3)
    p["0.bias"] = np.array([1.0, bias_of_unit_1, 1.0, 1.0])
    net.set_parameters(p)
    return net


X = np.array([0.5, -0.3, 0.8])
Y = np.array([1.0, -1.0])


def test_an_inactive_relu_is_named_and_its_weights_learn_nothing():
    net = small(bp.ReLU, bias_of_unit_1=-100.0)
    p = bp.explain(net, X, Y)
    assert any("1 of 4 units are inactive" in n for n in p.layers[1].notes)
    e = bp.explain(net, X, Y, 0, (1, 0))
    assert e.gradient == 0.0 and e.matches
    assert any("inactive" in n and "learns nothing" in n for n in e.notes)
    healthy = bp.explain(small(bp.ReLU, bias_of_unit_1=5.0), X, Y)
    assert not any("inactive" in n for n in healthy.layers[1].notes)


@pytest.mark.parametrize("activation", [bp.Sigmoid, bp.Tanh])
def test_a_saturated_unit_is_named(activation):
    net = small(activation, bias_of_unit_1=8.0)
    p = bp.explain(net, X, Y)
    assert any("1 of 4 units are saturated" in n for n in p.layers[1].notes)
    e = bp.explain(net, X, Y, 0, (1, 2))
    assert any("saturated" in n for n in e.notes)
    peak = 0.25 if activation is bp.Sigmoid else 1.0
    assert dict(e.terms)["∂h_1/∂z_1"] < 0.01 * peak and e.matches
    healthy = bp.explain(small(activation), X, Y)
    assert not any("saturated" in n for n in healthy.layers[1].notes)


def test_an_exploding_factor_is_named():
    net = small(bp.Tanh)
    p = net.parameters()
    p["2.weight"] = p["2.weight"] * 50.0
    net.set_parameters(p)
    e = bp.explain(net, X, Y)
    notes = [n for n in e.layers[2].notes if n.startswith("an exploding factor")]
    assert len(notes) == 1
    ratio = np.linalg.norm(e.layers[2].grad_input) / np.linalg.norm(e.layers[2].grad_output)
    assert ratio >= 10 and f"{ratio:.3g}" in notes[0]
    weight = bp.explain(net, X, Y, 0, (0, 0))
    assert any("exploding" in n for n in weight.notes)
    assert not any(
        "exploding" in n for s in bp.explain(small(bp.Tanh), X, Y).layers for n in s.notes
    )


def deep(activation, depth=10):
    layers = [bp.Dense(8, 16), activation()]
    for _ in range(depth - 2):
        layers += [bp.Dense(16, 16), activation()]
    layers.append(bp.Dense(16, 3))
    return bp.Network(layers, loss="cross_entropy", dtype="float64", seed=0)


def test_a_deep_sigmoid_network_shows_a_vanished_gradient_and_relu_with_he_does_not():
    x = np.random.default_rng(1).normal(size=8)
    sigmoid = bp.explain(deep(bp.Sigmoid), x, 1)
    relu = bp.explain(deep(bp.ReLU), x, 1)
    assert sigmoid.matches and relu.matches
    assert any(n.startswith("vanishing gradient") for n in sigmoid.notes)
    assert not any("vanishing" in n for n in relu.notes)
    norms = [s.delta_norm for s in sigmoid.layers if s.kind == "dense"]
    assert norms[0] / norms[-1] <= 1e-3
    # Each sigmoid multiplies δ by σ' ≤ 1/4.
    assert all(np.all(s.local["f'"] <= 0.25) for s in sigmoid.layers if s.kind == "sigmoid")


def test_a_zero_input_gives_its_weights_no_gradient():
    net = small(bp.Tanh)
    x = np.array([0.5, 0.0, 0.8])
    p = bp.explain(net, x, Y)
    assert any("x[j] = 0 for 1 of 3 inputs" in n for n in p.layers[0].notes)
    e = bp.explain(net, x, Y, 0, (2, 1))
    assert e.gradient == 0.0 and any("input a_1 is 0" in n for n in e.notes)


def test_the_chain_sum_is_the_next_layers_deltas_times_its_weights():
    net = small(bp.Tanh)
    params = net.parameters()
    e = bp.explain(net, X, Y, 0, (3, 1))
    z0 = params["0.weight"] @ X + params["0.bias"]
    out = params["2.weight"] @ np.tanh(z0) + params["2.bias"]
    delta = 2 * (out - Y) / 2  # ∂L/∂z of the output layer, mse over 2 outputs
    assert e.chain is not None and e.chain.rest_count == 0
    assert sorted(t.k for t in e.chain.terms) == [0, 1]
    for t in e.chain.terms:
        assert t.delta == pytest.approx(delta[t.k], rel=1e-12)
        assert t.weight == params["2.weight"][t.k, 3]
    assert e.chain.value == pytest.approx(dict(e.terms)["∂L/∂h_3"], rel=1e-12)
    text = str(e)
    assert "Σ_k ∂L/∂z_k · w_k,3" in text and "k =   0" in text and "k =   1" in text


def test_a_wide_layer_above_shows_its_largest_terms_and_the_rest():
    net = bp.Network(
        [bp.Dense(3, 4), bp.ReLU(), bp.Dense(4, 30), bp.Tanh(), bp.Dense(30, 2)],
        loss="mse",
        dtype="float64",
        seed=3,
    )
    e = bp.explain(net, np.array([1.0, 2.0, -1.0]), Y, 0, (0, 0))
    assert e.chain is not None and len(e.chain.terms) == 6 and e.chain.rest_count == 24
    products = [abs(t.value) for t in e.chain.terms]
    assert products == sorted(products, reverse=True)
    assert sum(t.value for t in e.chain.terms) + e.chain.rest == pytest.approx(e.chain.value)
    assert "the other 24 terms" in str(e)


def test_below_a_dropout_the_chain_carries_the_mask():
    net = bp.Network(
        [bp.Dense(3, 6), bp.Tanh(), bp.Dropout(0.5), bp.Dense(6, 2)],
        loss="mse",
        dtype="float64",
        seed=1,
    )
    p = bp.explain(net, X, Y)
    mask = p.layers[2].local["mask"]
    for i in range(6):
        e = bp.explain(net, X, Y, 0, (i, 0))
        assert e.matches and e.chain_factor == 2.0 * mask[i]
        assert dict(e.terms)[f"∂L/∂h_{i}"] == pytest.approx(e.chain_factor * e.chain.value)


def test_at_the_output_the_chain_is_dl_do():
    net = small(bp.Tanh)
    e = bp.explain(net, X, Y, 2, (1, 0))
    assert e.chain is None and "∂L/∂o_i" in e.chain_source
    assert dict(e.terms)["∂L/∂h_1"] == pytest.approx(e.output_gradient[1], rel=1e-15)

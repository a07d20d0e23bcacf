"""bp.explain(net, x, y): the whole backward pass of one sample, for every layer kind, equal to
net.gradients (Rust) and bpcore.reference, and leaving the network as it was."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp
from bpcore import reference as ref
from bpcore.layers import ACTIVATIONS

RNG = np.random.default_rng(5)
X = RNG.normal(size=(6, 4))
Y = RNG.normal(size=(6, 3))
LABELS = np.array([0, 2, 1, 1, 0, 2])


def randomized(net, scale=0.8, seed=7):
    rng = np.random.default_rng(seed)
    net.set_parameters(
        {k: rng.normal(scale=scale, size=v.shape) for k, v in net.parameters().items()}
    )
    return net


def rust(net, x, y, sample=None, n=1):
    """net.gradients for one sample: alone, or as row `sample` of a batch (weights n·e_k)."""
    if sample is None:
        return net.gradients(x[None, :], y[None, :] if y.ndim else np.atleast_1d(y))
    w = np.zeros(n)
    w[sample] = n
    return net.gradients(x, y, sample_weight=w)


def assert_equal_gradients(explained, other, rtol, magnitudes=None):
    """Equal within rtol of each tensor's scale; with `magnitudes` (a pass's sums of |terms|)
    that scale includes them, as where terms cancel to 0 (a bias before a batch norm)."""
    assert sorted(explained) == sorted(other)
    for name, g in explained.items():
        scale = max(np.abs(g).max(), np.abs(other[name]).max(), 1e-300)
        if magnitudes is not None:
            scale = max(scale, magnitudes[name].max())
        assert np.abs(g - other[name]).max() <= rtol * scale, name


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda c: c.__name__)
def test_every_activation_equals_rust_and_the_reference(activation):
    net = randomized(
        bp.Network(
            [bp.Dense(4, 5), activation(), bp.Dense(5, 3)], loss="mse", dtype="float64", seed=1
        )
    )
    p = bp.explain(net, X[0], Y[0])
    assert p.matches
    assert len(p.checks) == 2 * len(net.parameters())
    assert all(c.difference <= 1e-12 for c in p.checks)
    assert_equal_gradients(p.gradients, rust(net, X[0], Y[0]), 1e-12)
    # For one sample ∂L/∂b = δ: each error signal is checked by the Rust bias gradient.
    g = rust(net, X[0], Y[0])
    for k, delta in p.deltas.items():
        np.testing.assert_allclose(delta, g[f"{k}.bias"], rtol=1e-12, atol=1e-300)


def test_the_error_signals_are_the_chain_rule_written_in_numpy():
    net = randomized(
        bp.Network(
            [bp.Dense(4, 5), bp.Tanh(), bp.Dense(5, 6), bp.Sigmoid(), bp.Dense(6, 3)],
            loss="mse",
            dtype="float64",
        )
    )
    p = net.parameters()
    x, y = X[1], Y[1]
    z0 = p["0.weight"] @ x + p["0.bias"]
    h1 = np.tanh(z0)
    z2 = p["2.weight"] @ h1 + p["2.bias"]
    s = 1 / (1 + np.exp(-z2))
    o = p["4.weight"] @ s + p["4.bias"]
    d4 = 2 * (o - y) / 3
    d2 = (p["4.weight"].T @ d4) * s * (1 - s)
    d0 = (p["2.weight"].T @ d2) * (1 - h1**2)
    e = bp.explain(net, x, y)
    for k, d in ((4, d4), (2, d2), (0, d0)):
        np.testing.assert_allclose(e.deltas[k], d, rtol=1e-12)
    np.testing.assert_allclose(e.gradients["2.weight"], np.outer(d2, h1), rtol=1e-12)
    assert e.layers[2].delta_formula == "δ_2 = ∂L/∂z_2 = (W_4ᵀ δ_4) ⊙ Sigmoid'(z_2)"
    assert e.layers[4].delta_formula == "δ_4 = ∂L/∂z_4 = ∂L/∂o"
    np.testing.assert_allclose(e.output_gradient, d4, rtol=1e-12)
    # The largest entries of Wᵀ δ and the terms that formed them.
    top = e.layers[2].sums[0]
    full = p["2.weight"].T @ d2
    assert top.index == int(np.argmax(np.abs(full)))
    assert top.value == pytest.approx(full[top.index], rel=1e-12)
    assert sum(t.value for t in top.terms) + top.rest == pytest.approx(top.value, rel=1e-12)


def dropout_network(dtype="float64"):
    return randomized(
        bp.Network(
            [bp.Dense(4, 8), bp.ReLU(), bp.Dropout(0.5), bp.Dense(8, 3)],
            loss="cross_entropy",
            dtype=dtype,
            seed=4,
        )
    )


def test_dropout_in_training_mode_shows_this_samples_mask_and_leaves_the_network_as_it_was():
    net = dropout_network()
    twin = dropout_network()
    p = bp.explain(net, X[2], LABELS[2])
    assert p.matches
    mask = p.layers[2].local["mask"]
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert np.all(p.layers[2].grad_input[mask == 0] == 0.0)
    kept = p.layers[2].grad_input[mask == 1]
    np.testing.assert_allclose(kept, 2.0 * p.layers[2].grad_output[mask == 1], rtol=1e-15)
    assert any("drops" in note for note in p.layers[2].notes)
    # Explained gradients are the ones the next call gives: same mask, same step count.
    assert_equal_gradients(p.gradients, rust(net, X[2], LABELS[2]), 1e-12)
    assert_equal_gradients(rust(twin, X[2], LABELS[2]), p.gradients, 1e-12)
    assert_equal_gradients(rust(net, X[3], LABELS[3]), rust(twin, X[3], LABELS[3]), 0.0)


def test_dropout_in_inference_mode_is_the_identity():
    net = dropout_network()
    p = bp.explain(net, X[2], LABELS[2], training=False)
    assert p.matches
    assert np.all(p.layers[2].local["mask"] == 1.0)
    without = bp.Network(
        [bp.Dense(4, 8), bp.ReLU(), bp.Identity(), bp.Dense(8, 3)],
        loss="cross_entropy",
        dtype="float64",
    )
    without.set_parameters(net.parameters())
    assert_equal_gradients(p.gradients, rust(without, X[2], LABELS[2]), 1e-12)


def batch_norm_network(dtype="float64"):
    net = bp.Network(
        [bp.Dense(4, 5), bp.BatchNorm1d(5), bp.Tanh(), bp.Dense(5, 3)],
        loss="mse",
        dtype=dtype,
        seed=2,
    )
    net.fit(X, Y, epochs=3, batch_size=3, progress=False)  # running statistics moved
    return net


def test_batch_norm_in_training_mode_explains_one_sample_of_its_batch():
    net = batch_norm_network()
    buffers = net.buffers()
    p = bp.explain(net, X, Y, sample=2)
    assert p.matches and p.batch_size == 6 and p.sample == 2
    for name, value in net.buffers().items():  # explain left the running statistics alone
        np.testing.assert_array_equal(value, buffers[name])
    magnitudes = {k: m for step in p.raw.steps for k, m in step.magnitudes.items()}
    assert_equal_gradients(p.gradients, rust(net, X, Y, sample=2, n=6), 1e-12, magnitudes)
    assert np.abs(p.gradients["0.bias"]).max() < 1e-14  # a bias before a batch norm: no effect
    # The loss of sample 2 reaches the other samples' inputs through the batch's statistics.
    below = p.raw.steps[1].grad_input
    assert np.abs(np.delete(below, 2, axis=0)).max() > 0
    assert np.all(p.raw.steps[3].grad_output[[0, 1, 3, 4, 5]] == 0.0)
    assert any("other 5 samples" in note for note in p.layers[1].notes)
    # One weight below the batch norm: this sample's path plus the other samples'.
    e = bp.explain(net, X, Y, 0, (1, 2), sample=2)
    assert e.matches and e.other_samples != 0.0
    g = rust(net, X, Y, sample=2, n=6)["0.weight"][1, 2]
    assert e.product + e.other_samples == pytest.approx(g, rel=1e-12)


def test_batch_norm_in_training_mode_needs_the_batch():
    net = batch_norm_network()
    with pytest.raises(ValueError, match="sample=k"):
        bp.explain(net, X[0], Y[0])


def test_batch_norm_in_inference_mode_uses_the_running_statistics():
    net = batch_norm_network()
    p = bp.explain(net, X[4], Y[4], training=False)
    assert p.matches
    params, buffers = net.parameters(), net.buffers()
    scale = params["1.weight"] / np.sqrt(buffers["1.running_var"] + 1e-5)
    np.testing.assert_allclose(p.layers[1].grad_input, p.layers[1].grad_output * scale, rtol=1e-12)
    # ∂L/∂γ against central differences of the Rust kernels' inference-mode loss.
    for j in range(5):
        plus, minus = dict(params), dict(params)
        plus["1.weight"] = params["1.weight"].copy()
        minus["1.weight"] = params["1.weight"].copy()
        plus["1.weight"][j] += 1e-6
        minus["1.weight"][j] -= 1e-6
        net.set_parameters(plus)
        up = net.loss(X[4:5], Y[4:5])
        net.set_parameters(minus)
        down = net.loss(X[4:5], Y[4:5])
        net.set_parameters(params)
        assert p.gradients["1.weight"][j] == pytest.approx((up - down) / 2e-6, abs=1e-8)


@pytest.mark.parametrize("training", [True, False])
def test_layer_norm_is_the_same_in_both_modes(training):
    net = randomized(
        bp.Network(
            [bp.Dense(4, 6), bp.LayerNorm(6), bp.GELU(), bp.Dense(6, 3)],
            loss="mse",
            dtype="float64",
        )
    )
    p = bp.explain(net, X[5], Y[5], training=training)
    assert p.matches
    assert_equal_gradients(p.gradients, rust(net, X[5], Y[5]), 1e-12)
    reference = ref.Network(net.layers, loss="mse")
    reference.set_parameters({k: v.tolist() for k, v in net.parameters().items()})
    grads = reference.gradients(X[5:6].tolist(), Y[5:6].tolist())
    assert_equal_gradients(p.gradients, {k: np.asarray(v) for k, v in grads.items()}, 1e-12)
    # Layer norm's ∂L/∂x is orthogonal to the constant vector: a shift of x changes nothing.
    assert abs(p.layers[1].grad_input.sum()) < 1e-12


def test_float32_networks_are_explained_in_float64_and_match_within_float32():
    net = randomized(
        bp.Network(
            [bp.Dense(4, 8), bp.ReLU(), bp.Dropout(0.25), bp.LayerNorm(8), bp.Dense(8, 3)],
            loss="cross_entropy",
            dtype="float32",
        )
    )
    p = bp.explain(net, X[0], LABELS[0])
    assert p.matches and p.dtype == "float32"
    assert p.worst("net.gradients").tolerance == 1e-5
    assert p.worst("bpcore.reference").difference <= 1e-12


def test_prints_from_the_loss_down_with_names_norms_and_checks(capsys):
    net = dropout_network()
    p = bp.explain(net, X[0], LABELS[0])
    p.print()
    out = capsys.readouterr().out
    assert out == str(p) + "\n"
    order = [out.index(f"layer {k}  ") for k in (3, 2, 1, 0)]
    assert order == sorted(order)  # the top layer first
    for text in ("∂L/∂o", "δ_3 = ∂L/∂z_3 = ∂L/∂o", "W_3ᵀ δ_3", "‖∂L/∂W_0‖", "mask", "equal"):
        assert text in out
    assert "NOT EQUAL" not in out
    assert max(len(line) for line in out.splitlines()) < 250  # vectors summarized, not dumped
    assert "matches=True" in repr(p)


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"layer": 0}, TypeError, "index"),
        ({"index": (0, 0)}, TypeError, "layer"),
        ({"training": "yes"}, TypeError, "training"),
        ({"top": 0}, ValueError, "top"),
        ({"top": 2.5}, TypeError, "top"),
        ({"sample": 1}, ValueError, "sample"),
    ],
)
def test_bad_arguments_name_themselves_and_change_nothing(kwargs, exc, word):
    net = dropout_network()
    before = net.parameters()
    with pytest.raises(exc, match=word):
        bp.explain(net, X[0], LABELS[0], **kwargs)
    assert_equal_gradients(net.parameters(), before, 0.0)


def test_a_batch_needs_the_sample_to_explain():
    net = dropout_network()
    with pytest.raises(ValueError, match="sample=k"):
        bp.explain(net, X, LABELS)
    with pytest.raises(ValueError, match="sample"):
        bp.explain(net, X, LABELS, sample=6)
    assert bp.explain(net, X, LABELS, sample=5).matches


@pytest.mark.parametrize("loss", ["mse", "l1", "huber", "cross_entropy", "bce_with_logits"])
def test_every_loss_starts_the_pass_with_its_own_dl_do(loss):
    net = randomized(
        bp.Network([bp.Dense(4, 5), bp.ELU(), bp.Dense(5, 3)], loss=loss, dtype="float64")
    )
    y = LABELS[1] if loss == "cross_entropy" else (Y[1] > 0).astype(float)
    p = bp.explain(net, X[1], y)
    assert p.matches
    # The output layer's δ is ∂L/∂o (no activation after it), checked by its bias gradient.
    np.testing.assert_array_equal(p.deltas[2], p.output_gradient)


@pytest.mark.parametrize("training", [True, False])
def test_float32_batch_norm_matches_in_both_modes(training):
    net = batch_norm_network("float32")
    p = bp.explain(net, X, Y, sample=4) if training else bp.explain(net, X[4], Y[4], training=False)
    assert p.matches
    assert p.worst("bpcore.reference").difference <= 1e-12


def test_the_error_signal_is_written_through_every_layer_between_two_dense_layers():
    net = bp.Network(
        [bp.Dense(4, 6, bias=False), bp.Dropout(0.5), bp.Tanh(), bp.LayerNorm(6), bp.Dense(6, 3)],
        loss="mse",
        dtype="float64",
    )
    p = bp.explain(net, X[0], Y[0])
    assert p.matches and "0.bias" not in p.gradients and p.layers[0].bias_norm is None
    assert p.layers[0].delta_formula == (
        "δ_0 = ∂L/∂z_0 = (LayerNorm_3ᵀ[W_4ᵀ δ_4]) ⊙ Tanh'(d_1) ⊙ m_1/(1-p_1)"
    )
    inference = bp.explain(net, X[0], Y[0], training=False)
    assert inference.matches
    assert inference.layers[0].delta_formula == (
        "δ_0 = ∂L/∂z_0 = (LayerNorm_3ᵀ[W_4ᵀ δ_4]) ⊙ Tanh'(d_1)"
    )

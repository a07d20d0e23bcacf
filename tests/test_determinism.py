"""Same seed, same data: bit-identical weights and results. Initialization scales."""

import numpy as np
import pytest

import bpcore as bp

rng = np.random.default_rng(5)
X = rng.normal(size=(50, 8))
Y = rng.integers(0, 4, size=50)


def trained(seed, dtype):
    net = bp.Network(
        [bp.Dense(8, 16), bp.ReLU(), bp.Dense(16, 4)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=0.01),
        dtype=dtype,
        seed=seed,
    )
    initial = net.parameters()
    history = net.fit(X, Y, epochs=3, batch_size=7, shuffle=True)
    return initial, net.parameters(), history.history["loss"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_gives_bit_identical_weights_and_training(dtype):
    init_a, final_a, loss_a = trained(11, dtype)
    init_b, final_b, loss_b = trained(11, dtype)
    for name in init_a:
        assert init_a[name].tobytes() == init_b[name].tobytes()
        assert final_a[name].tobytes() == final_b[name].tobytes()
    assert loss_a == loss_b


def test_different_seeds_give_different_weights_and_shuffles():
    init_a, final_a, _ = trained(1, "float64")
    init_b, _, _ = trained(2, "float64")
    assert not np.array_equal(init_a["0.weight"], init_b["0.weight"])
    # Same initial weights, different shuffles: set seed-2 weights into a seed-1 network.
    net = bp.Network(
        [bp.Dense(8, 16), bp.ReLU(), bp.Dense(16, 4)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=0.01),
        dtype="float64",
        seed=3,
    )
    net.set_parameters(init_a)
    net.fit(X, Y, epochs=3, batch_size=7, shuffle=True)
    assert not np.array_equal(net.parameters()["0.weight"], final_a["0.weight"])


def test_float32_and_float64_start_from_the_same_weights():
    a = bp.Network([bp.Dense(8, 16)], dtype="float32", seed=4).parameters()
    b = bp.Network([bp.Dense(8, 16)], dtype="float64", seed=4).parameters()
    np.testing.assert_array_equal(a["0.weight"], b["0.weight"].astype(np.float32))


def test_he_initialization_before_relu_and_glorot_otherwise():
    fan_in, fan_out = 500, 300
    he = bp.Network([bp.Dense(fan_in, fan_out), bp.ReLU()], dtype="float64").parameters()
    glorot = bp.Network([bp.Dense(fan_in, fan_out), bp.Tanh()], dtype="float64").parameters()
    assert np.var(he["0.weight"]) == pytest.approx(2 / fan_in, rel=0.03)
    assert np.var(glorot["0.weight"]) == pytest.approx(2 / (fan_in + fan_out), rel=0.03)
    assert np.all(he["0.bias"] == 0)

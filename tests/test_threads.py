"""Results do not depend on how bpcore splits work over its threads (beyond rounding)."""

import numpy as np
import pytest

import bpcore as bp


@pytest.fixture
def restore_threads():
    n = bp.get_num_threads()
    yield
    bp.set_num_threads(n)


def medium_network(seed=0):
    return bp.Network(
        [bp.Dense(64, 128), bp.ReLU(), bp.Dense(128, 64), bp.Tanh(), bp.Dense(64, 10)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=1e-3),
        dtype="float64",
        seed=seed,
    )


def run(threads):
    bp.set_num_threads(threads)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 64))
    y = rng.integers(0, 10, size=3000)
    net = medium_network()
    grads = net.gradients(X[:256], y[:256])
    net.fit(X, y, epochs=2, batch_size=128)
    return grads, net.parameters(), net.forward(X)


def test_one_thread_and_several_agree(restore_threads):
    g1, p1, out1 = run(1)
    g3, p3, out3 = run(3)
    for name in g1:
        np.testing.assert_allclose(g3[name], g1[name], rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(p3[name], p1[name], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out3, out1, rtol=1e-9, atol=1e-12)


def test_same_thread_count_is_bit_identical(restore_threads):
    _, p_a, _ = run(2)
    _, p_b, _ = run(2)
    for name in p_a:
        assert p_a[name].tobytes() == p_b[name].tobytes()

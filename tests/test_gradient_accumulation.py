"""Gradient accumulation: `fit(gradient_accumulation_steps=k)` takes one optimizer step per k
batches, with their mean gradient over all their samples: the steps of a fit with batches k
times larger, a shorter last group included; a per-step schedule counts the optimizer steps."""

import numpy as np
import pytest

import bpcore as bp


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = X @ rng.normal(size=(5, 2)) + 0.1 * rng.normal(size=(n, 2))
    return X, y


def network(optimizer=None):
    return bp.Network(
        [bp.Dense(5, 16), bp.Tanh(), bp.Dense(16, 2)],
        loss="mse",
        optimizer=optimizer or bp.Adam(lr=0.01),
        dtype="float64",
        seed=1,
    )


def close(a, b, tol=1e-13):
    for key, value in a.parameters().items():
        np.testing.assert_allclose(value, b.parameters()[key], rtol=0, atol=tol)


@pytest.mark.parametrize("n", [24, 26])  # 26: a last group of one batch of 2
def test_k_batches_take_the_step_of_one_batch_k_times_larger(n):
    X, y = data(n)
    accumulated, large = network(), network()
    accumulated.fit(
        X, y, epochs=3, batch_size=4, gradient_accumulation_steps=3, shuffle=False, progress=False
    )
    large.fit(X, y, epochs=3, batch_size=12, shuffle=False, progress=False)
    close(accumulated, large)
    assert accumulated.native.steps == large.native.steps == 3 * -(-n // 12)


def test_a_per_step_schedule_steps_once_per_accumulated_group():
    X, y = data(24)
    accumulated, large = network(bp.SGD(0.05)), network(bp.SGD(0.05))
    for net, batch, k in ((accumulated, 4, 3), (large, 12, 1)):
        net.fit(
            X,
            y,
            epochs=2,
            batch_size=batch,
            gradient_accumulation_steps=k,
            shuffle=False,
            schedule=bp.LinearLR(0.2, total_iters=4),
            progress=False,
        )
    close(accumulated, large)
    assert accumulated.lr == large.lr == pytest.approx(0.05)


def test_one_step_per_batch_is_the_default_and_zero_is_refused():
    X, y = data(12)
    a, b = network(), network()
    a.fit(X, y, epochs=1, batch_size=4, shuffle=False, progress=False)
    b.fit(
        X, y, epochs=1, batch_size=4, gradient_accumulation_steps=1, shuffle=False, progress=False
    )
    for key, value in a.parameters().items():
        np.testing.assert_array_equal(value, b.parameters()[key])
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        a.fit(X, y, gradient_accumulation_steps=0, progress=False)

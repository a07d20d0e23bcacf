"""Shared helpers of the parity tests: bpcore against the pure-Python reference.

A bpcore network and a reference network are built from the same layer, loss and optimizer
objects; the reference is given bpcore's parameters, so both start equal. Values are then
compared with the tolerances of DESIGN.md (Testing): float64 to ~1e-10 relative, float32 to
~1e-4. The reference always computes in float64; in float32 it is fed the float32 values of
the inputs and parameters, so only bpcore's own rounding separates the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import bpcore as bp
from bpcore import reference as ref

DTYPES = ("float64", "float32")

TOLERANCES = {
    "float64": {"rtol": 1e-10, "atol": 1e-12},
    "float32": {"rtol": 1e-4, "atol": 1e-5},
}


def as_array(value: Any) -> np.ndarray:
    """A reference value (nested lists) or a bpcore array as a float64 array."""
    return np.asarray(value, dtype=np.float64)


def assert_close(actual: Any, expected: Any, dtype: str, what: str = "") -> None:
    """bpcore's ``actual`` against the reference's ``expected`` at ``dtype``'s tolerance."""
    a, e = as_array(actual), as_array(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != reference {e.shape}"
    assert np.isfinite(a).all(), f"{what}: bpcore gave non-finite values {a}"
    np.testing.assert_allclose(a, e, err_msg=what, **TOLERANCES[dtype])


def assert_dicts_close(actual: dict, expected: dict, dtype: str, what: str = "") -> None:
    """Two name -> array dicts: same names in the same order, every array close."""
    assert list(actual) == list(expected), f"{what}: names {list(actual)} != {list(expected)}"
    for name in expected:
        assert_close(actual[name], expected[name], dtype, f"{what} {name}")


def random_parameters(net: bp.Network, rng: np.random.Generator, scale: float = 0.5) -> dict:
    """Random values for every parameter of ``net`` (biases nonzero, unlike the init)."""
    return {
        name: rng.normal(scale=scale, size=value.shape) for name, value in net.parameters().items()
    }


def make_pair(
    layers: list,
    loss: Any = "mse",
    optimizer: Any = None,
    dtype: str = "float64",
    seed: int = 0,
    parameters: dict | None = None,
) -> tuple[bp.Network, ref.Network]:
    """A bpcore network and a reference network holding bpcore's parameters.

    ``parameters``, if given, are first set into the bpcore network (rounded to its dtype);
    the reference then receives what bpcore holds.
    """
    optimizer = optimizer if optimizer is not None else bp.SGD(lr=0.01)
    net = bp.Network(layers, loss=loss, optimizer=optimizer, dtype=dtype, seed=seed)
    if parameters is not None:
        net.set_parameters(parameters)
    oracle = ref.Network(layers, loss=loss, optimizer=optimizer, seed=seed)
    oracle.set_parameters({k: v.astype(np.float64) for k, v in net.parameters().items()})
    return net, oracle


def in_dtype(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype`` (and back to float64 storage for the reference)."""
    return np.asarray(a).astype(dtype).astype(np.float64)


def check_forward_loss_gradients(
    net: bp.Network, oracle: ref.Network, X: np.ndarray, y: Any, dtype: str
) -> None:
    """forward, loss and every gradient of ``net`` against the reference's."""
    assert_close(net.forward(X), oracle.forward(X), dtype, "forward")
    expected_loss = oracle.loss(X, y)
    assert_close(net.loss(X, y), expected_loss, dtype, "loss")
    assert_close(net.loss(X, y, training=True), expected_loss, dtype, "loss(training=True)")
    assert_dicts_close(net.gradients(X, y), oracle.gradients(X, y), dtype, "gradient")

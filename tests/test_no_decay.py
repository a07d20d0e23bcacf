"""An optimizer's `no_decay`: the parameter tensors whose name contains one of its fragments
take no weight decay (torch's parameter group of weight_decay=0), in bpcore's core as in the
pure-Python reference, saved and loaded with the optimizer."""

from __future__ import annotations

import numpy as np
import pytest
from parity_helpers import DTYPES, assert_close, assert_dicts_close, in_dtype, make_pair

import bpcore as bp

OPTIMIZERS = {
    "sgd": bp.SGD(lr=0.1, momentum=0.9, weight_decay=0.3, no_decay=["bias"]),
    "adam": bp.Adam(lr=0.01, weight_decay=0.5, no_decay=["bias"]),
    "adamw": bp.AdamW(lr=0.01, weight_decay=0.5, amsgrad=True, no_decay=["bias"]),
    "rmsprop": bp.RMSprop(lr=0.01, weight_decay=0.5, centered=True, no_decay=["bias"]),
    "adagrad": bp.Adagrad(lr=0.1, weight_decay=0.5, no_decay=["bias"]),
    "one_layer": bp.Adam(lr=0.01, weight_decay=0.5, no_decay=["2."]),
}

LAYERS = [bp.Dense(4, 6), bp.Tanh(), bp.Dense(6, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_undecayed_tensors_step_as_the_reference(name: str, dtype: str) -> None:
    net, oracle = make_pair(LAYERS, "mse", OPTIMIZERS[name], dtype=dtype, seed=1)
    rng = np.random.default_rng(5)
    for step in range(12):
        X = in_dtype(rng.normal(size=(8, 4)), dtype)
        y = in_dtype(rng.normal(size=(8, 2)), dtype)
        assert_close(net.train_step(X, y), oracle.train_step(X, y), dtype, f"{name} {step}")
    assert_dicts_close(net.parameters(), oracle.parameters(), dtype, name)


def test_with_zero_gradients_only_the_decayed_tensors_shrink() -> None:
    start = {
        "0.weight": np.full((3, 2), 2.0),
        "0.bias": np.full(3, 2.0),
    }
    zeros = {k: np.zeros_like(v) for k, v in start.items()}
    for no_decay, shrunk in [((), {"0.weight", "0.bias"}), (["bias"], {"0.weight"})]:
        opt = bp.SGD(lr=0.5, weight_decay=0.1, no_decay=no_decay)
        net = bp.Network([bp.Dense(2, 3)], optimizer=opt, dtype="float64", seed=0)
        net.set_parameters(start)
        net.apply_gradients(zeros)
        after = net.parameters()
        for key, value in after.items():
            expected = 2.0 * (1 - 0.5 * 0.1) if key in shrunk else 2.0
            np.testing.assert_array_equal(value, np.full_like(value, expected), err_msg=key)


def test_no_decay_is_saved_and_loaded_with_the_optimizer(tmp_path) -> None:
    opt = bp.Adam(lr=0.01, weight_decay=0.1, no_decay=["bias"])
    net = bp.Network(LAYERS, optimizer=opt, seed=0)
    X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    net.fit(X, X[:, :2], epochs=2, batch_size=4, progress=False)
    net.save(tmp_path / "net.safetensors", include_optimizer=True)
    loaded = bp.Network.load(tmp_path / "net.safetensors")
    assert loaded.optimizer == opt and loaded.optimizer.no_decay == ("bias",)
    for a in (net, loaded):
        a.fit(X, X[:, :2], epochs=1, batch_size=4, shuffle=False, progress=False)
    for key, value in net.parameters().items():
        np.testing.assert_array_equal(value, loaded.parameters()[key], err_msg=key)
    # A default optimizer's spec is what it was before no_decay existed.
    assert "no_decay" not in bp.Adam().to_spec()
    assert "no_decay" not in bp.Network(LAYERS, seed=0).native.spec_json


@pytest.mark.parametrize(
    ("no_decay", "error", "words"),
    [
        ("bias", TypeError, "no_decay: expected a list"),
        ([3], TypeError, "no_decay[0]: expected a non-empty string"),
        ([""], TypeError, "no_decay[0]"),
        (["bais"], ValueError, '"bais" is in the name of no parameter tensor'),
    ],
)
def test_bad_no_decay_is_refused_naming_it(no_decay, error, words) -> None:
    with pytest.raises(error) as e:
        bp.Network(LAYERS, optimizer=bp.SGD(weight_decay=0.1, no_decay=no_decay), seed=0)
    assert words in str(e.value)

"""Pickling a Network (multiprocessing, joblib, copy) goes through the safetensors bytes with the
optimizer state: exact, and a copy trains on exactly as the original."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import bpcore as bp


def make(dtype: str) -> bp.Network:
    return bp.Network(
        [bp.Dense(4, 8), bp.BatchNorm1d(8), bp.Tanh(), bp.Dropout(0.2), bp.Dense(8, 1)],
        loss="mse",
        optimizer=bp.RMSprop(lr=0.01, momentum=0.3),
        dtype=dtype,
        seed=4,
    )


def same(a: bp.Network, b: bp.Network) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(
        sa[k].dtype == sb[k].dtype and np.array_equal(sa[k], sb[k]) for k in sa
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "clone", [lambda n: pickle.loads(pickle.dumps(n)), copy.deepcopy, copy.copy]
)
def test_pickle_and_copy_are_exact_and_train_on_identically(dtype, clone):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 1))
    net = make(dtype)
    net.fit(X, y, epochs=2, batch_size=8, progress=False)
    twin = clone(net)
    assert twin is not net and repr(twin) == repr(net) and same(twin, net)
    net.fit(X, y, epochs=1, batch_size=8, progress=False)
    twin.fit(X, y, epochs=1, batch_size=8, progress=False)
    assert same(twin, net)


def test_pickle_uses_the_safe_bytes():
    net = make("float64")
    reducer, args = net.__reduce__()
    assert reducer.__module__ == "bpcore.network"
    assert isinstance(args[0], bytes) and args[0] == net.to_bytes(include_optimizer=True)
    assert b"cbuiltins" not in pickle.dumps(net, protocol=2)


def test_a_pickle_of_an_earlier_version_still_loads():
    # Earlier versions pickled through bpcore.serialization._from_pickle.
    from bpcore import serialization

    net = make("float64")

    class Earlier:
        def __reduce__(self):
            return (serialization._from_pickle, (net.to_bytes(include_optimizer=True),))

    twin = pickle.loads(pickle.dumps(Earlier()))
    assert isinstance(twin, bp.Network) and same(twin, net)

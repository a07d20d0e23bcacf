"""PyTorch exchange: to_torch / from_torch and state_dict agree with torch to 1e-10 in float64.

torch is bpcore's optional `torch` extra: without it these tests skip, saying so, except in CI
(BPCORE_REQUIRE_OPTIONAL=1), where they fail."""

from __future__ import annotations

import builtins
import sys
from typing import Any

import numpy as np
import pytest
from optional import require

import bpcore as bp

# Set for every test of the module by the fixture below (a skip or, in CI, a failure without it).
torch: Any = None
nn: Any = None


@pytest.fixture(autouse=True, scope="module")
def _torch() -> None:
    global torch, nn
    torch = require("torch", install="bpcore[torch]")
    nn = torch.nn


def mixed(dtype: str = "float64") -> bp.Network:
    return bp.Network(
        [
            bp.Dense(5, 12),
            bp.BatchNorm1d(12, eps=1e-4, momentum=0.2),
            bp.GELU(),
            bp.Dropout(0.3),
            bp.Dense(12, 10),
            bp.LayerNorm(10, eps=1e-6),
            bp.Softplus(beta=1.5, threshold=5.0),
            bp.Dense(10, 8),
            bp.LeakyReLU(0.1),
            bp.Dense(8, 8, bias=False),
            bp.ELU(alpha=0.7),
            bp.Dense(8, 6),
            bp.Sigmoid(),
            bp.Dense(6, 6),
            bp.Tanh(),
            bp.Identity(),
            bp.ReLU(),
            bp.Dense(6, 3),
        ],
        loss="cross_entropy",
        optimizer=bp.SGD(lr=0.1),
        dtype=dtype,
        seed=2,
    )


def batch():
    rng = np.random.default_rng(3)
    return rng.normal(size=(32, 5)), rng.integers(0, 3, size=32)


def trained(dtype: str = "float64") -> bp.Network:
    net = mixed(dtype)
    X, y = batch()
    net.fit(X, y, epochs=2, batch_size=8, progress=False)  # moves BatchNorm's buffers too
    return net


def test_to_torch_builds_the_equal_sequential():
    net = trained()
    module = to = bp.to_torch(net)
    assert isinstance(to, nn.Sequential)
    kinds = [type(m).__name__ for m in module]
    assert kinds[:7] == [
        "Linear",
        "BatchNorm1d",
        "GELU",
        "Dropout",
        "Linear",
        "LayerNorm",
        "Softplus",
    ]
    assert module[2].approximate == "none"
    assert (module[6].beta, module[6].threshold) == (1.5, 5.0)
    assert module[1].eps == 1e-4 and module[1].momentum == 0.2
    assert module[9].bias is None
    assert next(module.parameters()).dtype == torch.float64
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), net.state_dict()[name])


def test_outputs_and_gradients_agree_in_float64():
    net = trained()
    module = bp.to_torch(net).eval()
    X, y = batch()
    with torch.no_grad():
        out = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, net.forward(X), rtol=1e-10, atol=1e-12)

    # Gradients: training mode without dropout (p=0 keeps the masks out of the comparison).
    net2 = bp.Network(
        [layer if not isinstance(layer, bp.Dropout) else bp.Dropout(0.0) for layer in net.layers],
        loss="cross_entropy",
        dtype="float64",
    )
    net2.load_state_dict(net.state_dict())
    module = bp.to_torch(net2).train()
    loss = nn.functional.cross_entropy(module(torch.from_numpy(X)), torch.from_numpy(y))
    loss.backward()
    grads = net2.gradients(X, y)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name], rtol=1e-10, atol=1e-12)
    # The training forward moved BatchNorm's running statistics identically in both.
    for name, value in module.state_dict().items():
        np.testing.assert_allclose(value.numpy(), net2.state_dict()[name], rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_is_exact(dtype):
    net = trained(dtype)
    back = bp.from_torch(bp.to_torch(net), loss="cross_entropy")
    assert back.dtype == net.dtype
    assert [layer.to_spec() for layer in back.layers] == [layer.to_spec() for layer in net.layers]
    for name, value in net.state_dict().items():
        assert back.state_dict()[name].dtype == value.dtype
        np.testing.assert_array_equal(back.state_dict()[name], value)
    X, _ = batch()
    np.testing.assert_array_equal(back.forward(X), net.forward(X))


def test_load_state_dict_takes_torch_tensors():
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    module.double()
    module.train()
    module(torch.randn(8, 3, dtype=torch.float64))  # moves the buffers
    net = bp.Network(
        [bp.Dense(3, 4), bp.BatchNorm1d(4), bp.ReLU(), bp.Dense(4, 2)], dtype="float64"
    )
    net.load_state_dict(module.state_dict())
    assert int(net.state_dict()["1.num_batches_tracked"]) == 1
    module.eval()
    x = np.random.default_rng(0).normal(size=(5, 3))
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), net.forward(x), rtol=1e-12)


def test_from_torch_names_what_it_cannot_read():
    with pytest.raises(ValueError, match=r"module\[1\] \(Conv3d\) is not supported"):
        bp.from_torch(nn.Sequential(nn.Linear(3, 3), nn.Conv3d(1, 1, 1)))
    with pytest.raises(ValueError, match="approximate='none'"):
        bp.from_torch(nn.Sequential(nn.Linear(3, 3), nn.GELU(approximate="tanh")))
    with pytest.raises(ValueError, match="track_running_stats"):
        bp.from_torch(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, affine=False)))
    with pytest.raises(TypeError, match="Sequential"):
        bp.from_torch(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="float32 or all float64"):
        bp.from_torch(nn.Sequential(nn.Linear(3, 3)).half())
    with pytest.raises(TypeError, match=r"bpcore\.Network"):
        bp.to_torch(nn.Linear(3, 3))


def test_missing_torch_says_which_extra(monkeypatch):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ImportError, match=r"bpcore\[torch\]"):
        bp.to_torch(mixed())

"""Saving and loading networks (safetensors): exact round trips, exact resumption of training,
atomic writes, and torch-style state_dict."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import bpcore as bp
from bpcore import serialization

DTYPES = ["float64", "float32"]
OPTIMIZERS = [
    lambda: bp.Adam(lr=0.01, amsgrad=True),
    lambda: bp.AdamW(lr=0.01),
    lambda: bp.SGD(lr=0.05, momentum=0.9, nesterov=True),
    lambda: bp.SGD(lr=0.05),
    lambda: bp.RMSprop(lr=0.01, momentum=0.5, centered=True),
    lambda: bp.Adagrad(lr=0.05, lr_decay=0.01),
]


def data(n: int = 96, features: int = 6, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, features))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    return X, y % classes


def make(dtype: str = "float64", optimizer=None) -> bp.Network:
    return bp.Network(
        [
            bp.Dense(6, 16),
            bp.BatchNorm1d(16),
            bp.GELU(),
            bp.Dropout(0.25),
            bp.Dense(16, 8),
            bp.LayerNorm(8),
            bp.Softplus(beta=2.0, threshold=10.0),
            bp.Dense(8, 3),
        ],
        loss=bp.CrossEntropyLoss(label_smoothing=0.05),
        optimizer=optimizer() if optimizer else bp.Adam(lr=0.01),
        dtype=dtype,
        seed=11,
    )


def assert_same(a: bp.Network, b: bp.Network) -> None:
    assert repr(a) == repr(b)
    pa, pb = a.parameters(), b.parameters()
    assert list(pa) == list(pb)
    for k in pa:
        assert pa[k].dtype == pb[k].dtype
        np.testing.assert_array_equal(pa[k], pb[k])
    ba, bb = a.buffers(), b.buffers()
    assert list(ba) == list(bb)
    for k in ba:
        np.testing.assert_array_equal(ba[k], bb[k])


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_round_trip_is_exact(tmp_path, dtype):
    X, y = data()
    net = make(dtype)
    net.fit(X, y, epochs=2, batch_size=16, progress=False)
    path = tmp_path / "net.safetensors"
    net.save(path)
    back = bp.Network.load(path)
    assert_same(net, back)
    assert back.dtype == net.dtype
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    # Without the optimizer, the loaded network's optimizer starts fresh.
    assert back.native.steps == 0


def test_file_is_safetensors_with_bpcore_metadata(tmp_path):
    net = make()
    path = tmp_path / "net.safetensors"
    net.save(str(path), include_optimizer=True)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__")
    assert meta["format"] == "bpcore" and meta["format_version"] == "1"
    spec = json.loads(meta["network"])
    assert spec["dtype"] == "float64" and spec["seed"] == 11
    assert [layer["type"] for layer in spec["layers"]][:3] == ["dense", "batch_norm1d", "gelu"]
    assert spec["optimizer"]["type"] == "adam"
    assert header["0.weight"] == {"dtype": "F64", "shape": [16, 6], "data_offsets": [0, 768]}
    assert header["1.num_batches_tracked"]["dtype"] == "I64"
    assert header["1.num_batches_tracked"]["shape"] == []
    assert {"optimizer.exp_avg", "optimizer.exp_avg_sq"} <= set(header)
    state = json.loads(meta["training_state"])
    assert state["optimizer_state"] == ["exp_avg", "exp_avg_sq"]
    tensors, _ = serialization.decode(raw)
    np.testing.assert_array_equal(tensors["0.weight"], net.parameters()["0.weight"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_training_resumes_bit_exactly(tmp_path, dtype, optimizer):
    X, y = data()
    straight = make(dtype, optimizer)
    straight.fit(X, y, epochs=3, batch_size=16, progress=False)

    first = make(dtype, optimizer)
    first.fit(X, y, epochs=2, batch_size=16, progress=False)
    path = tmp_path / "ckpt.safetensors"
    first.save(path, include_optimizer=True)
    resumed = bp.Network.load(path)
    resumed.fit(X, y, epochs=1, batch_size=16, progress=False)

    assert_same(straight, resumed)
    assert resumed.native.steps == straight.native.steps
    assert resumed.fit_progress.epochs_done == 3


def test_resume_keeps_learning_rate_schedule_and_step_counts():
    X, y = data()
    a = make()
    a.fit(X, y, epochs=2, batch_size=32, progress=False)
    a.lr = 0.00123
    a.train_step(X[:8], y[:8])
    b = bp.Network.from_bytes(a.to_bytes(include_optimizer=True))
    assert b.lr == a.lr
    assert b.native.training_forwards == a.native.training_forwards
    assert b.native.rng_state() == a.native.rng_state()
    b.train_step(X[8:16], y[8:16])
    a.train_step(X[8:16], y[8:16])
    assert_same(a, b)


def test_to_bytes_is_deterministic_and_checks_its_argument():
    net = make()
    assert net.to_bytes() == net.to_bytes()
    with pytest.raises(TypeError, match="include_optimizer"):
        net.to_bytes(include_optimizer="yes")
    with pytest.raises(TypeError, match="bytes"):
        bp.Network.from_bytes("not bytes")


def test_every_layer_loss_and_optimizer_survives(tmp_path):
    layers = [
        bp.Dense(3, 4, bias=False),
        bp.LeakyReLU(0.2),
        bp.Dense(4, 4),
        bp.ELU(alpha=0.5),
        bp.Dense(4, 4),
        bp.Sigmoid(),
        bp.Dense(4, 4),
        bp.Tanh(),
        bp.Identity(),
        bp.ReLU(),
        bp.Dense(4, 2),
    ]
    for loss in ["mse", "l1", bp.HuberLoss(delta=0.5), "bce_with_logits"]:
        net = bp.Network(layers, loss=loss, optimizer=bp.RMSprop(), dtype="float32", seed=5)
        back = bp.Network.from_bytes(net.to_bytes())
        assert_same(net, back)


def test_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    old = make()
    old.save(path)
    before = path.read_bytes()

    def half_then_fail(f, data):
        f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "_write_all", half_then_fail)
    new = make()
    new.set_parameters({k: v + 1 for k, v in new.parameters().items()})
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.safetensors"]  # the temporary file is gone
    assert_same(bp.Network.load(path), old)


def test_failed_fsync_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    make().save(path)
    before = path.read_bytes()

    def fail(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="I/O error"):
        make(optimizer=OPTIMIZERS[2]).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.safetensors"]


def test_save_replaces_and_keeps_the_file_mode(tmp_path):
    path = tmp_path / "net.safetensors"
    make().save(path)
    os.chmod(path, 0o640)
    net = make("float32")
    net.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert bp.Network.load(path).dtype == np.float32


def test_state_dict_has_torch_names_order_and_types():
    net = make()
    sd = net.state_dict()
    assert list(sd) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "4.weight",
        "4.bias",
        "5.weight",
        "5.bias",
        "7.weight",
        "7.bias",
    ]
    assert sd["1.num_batches_tracked"].dtype == np.int64
    assert sd["1.num_batches_tracked"].shape == ()


@pytest.mark.parametrize("dtype", DTYPES)
def test_load_state_dict_round_trip_and_atomic_errors(dtype):
    X, y = data()
    a = make(dtype)
    a.fit(X, y, epochs=1, batch_size=32, progress=False)
    b = make(dtype)
    b.load_state_dict(a.state_dict())
    assert_same(a, b)

    c = make(dtype)
    before = c.state_dict()
    bad = a.state_dict()
    bad["1.running_var"] = -np.ones(16)
    with pytest.raises(ValueError):
        c.load_state_dict(bad)
    missing = a.state_dict()
    del missing["7.bias"]
    with pytest.raises(ValueError, match=r"missing \['7.bias'\]"):
        c.load_state_dict(missing)
    extra = {**a.state_dict(), "9.weight": np.zeros(1)}
    with pytest.raises(ValueError, match="unknown"):
        c.load_state_dict(extra)
    wrong = {**a.state_dict(), "0.weight": np.zeros((6, 16))}
    with pytest.raises(ValueError, match="shape"):
        c.load_state_dict(wrong)
    with pytest.raises(TypeError):
        c.load_state_dict([1, 2])
    for k, v in c.state_dict().items():
        np.testing.assert_array_equal(v, before[k])

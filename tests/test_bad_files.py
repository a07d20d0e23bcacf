"""Hostile, truncated, corrupted and inconsistent files are refused with a ValueError that says
what is wrong: never a crash, never a partly loaded network, never code run."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest

import bpcore as bp
from bpcore import serialization


def make() -> bp.Network:
    return bp.Network(
        [bp.Dense(3, 4), bp.BatchNorm1d(4), bp.ReLU(), bp.Dense(4, 2)],
        loss="mse",
        optimizer=bp.Adam(lr=0.01),
        dtype="float64",
        seed=1,
    )


def good(include_optimizer: bool = True) -> bytes:
    net = make()
    rng = np.random.default_rng(0)
    net.fit(
        rng.normal(size=(16, 3)), rng.normal(size=(16, 2)), epochs=1, batch_size=8, progress=False
    )
    return net.to_bytes(include_optimizer=include_optimizer)


def split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def edited(edit, include_optimizer: bool = True) -> bytes:
    header, body = split(good(include_optimizer))
    result = edit(header, body)
    return join(header, body) if result is None else join(*result)


def edit_meta(key: str, change):
    def edit(header, body):
        header["__metadata__"][key] = json.dumps(change(json.loads(header["__metadata__"][key])))

    return edit


def rejects(data: bytes, match: str, tmp_path=None) -> None:
    with pytest.raises(ValueError, match=match):
        bp.Network.from_bytes(data)
    if tmp_path is not None:
        path = tmp_path / "bad.safetensors"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=match):
            bp.Network.load(path)


def test_the_good_file_loads():
    assert isinstance(bp.Network.from_bytes(good()), bp.Network)
    assert isinstance(bp.Network.from_bytes(edited(lambda h, b: None)), bp.Network)


@pytest.mark.parametrize("cut", [0, 3, 7, 8, 20, -1, -9])
def test_truncated(cut, tmp_path):
    data = good()
    rejects(data[:cut], "truncated|not a JSON|corrupted|bytes after|needs", tmp_path)


def test_empty_file(tmp_path):
    rejects(b"", "truncated", tmp_path)


def test_huge_header_length():
    rejects(struct.pack("<Q", 2**63) + b"{}", "exceeds the limit")
    rejects(struct.pack("<Q", 2**64 - 1) + b"{}", "exceeds the limit")


def test_header_length_beyond_the_file():
    rejects(struct.pack("<Q", 1000) + b"{}", "truncated")


def test_corrupted_header():
    data = bytearray(good())
    data[9] = ord("#")
    rejects(bytes(data), "corrupted header")
    rejects(struct.pack("<Q", 4) + b"{\xff\xfe}", "corrupted header")


def test_wrong_magic_or_format():
    rejects(b"PK\x03\x04" + bytes(100), "exceeds the limit|truncated|not a JSON")
    rejects(pickle.dumps(make()), "not a valid bpcore file")
    rejects(struct.pack("<Q", 2) + b"[]", "not a JSON object")
    rejects(
        join({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
        "__metadata__",
    )
    rejects(edited(lambda h, b: h["__metadata__"].update(format="other")), "format 'other'")
    rejects(edited(lambda h, b: h["__metadata__"].update(format_version="99")), "version '99'")
    rejects(edited(lambda h, b: h["__metadata__"].update(format=1) or None), "__metadata__")


def test_shape_disagrees_with_data_length():
    rejects(edited(lambda h, b: h["0.weight"].update(shape=[4, 4])), "needs 128 bytes")


def test_shape_disagrees_with_architecture():
    def edit(h, b):
        h["0.weight"]["shape"] = [3, 4]  # same byte count as (4, 3)

    rejects(edited(edit), "shape \\(3, 4\\), the architecture's is \\(4, 3\\)")


def test_architecture_inconsistent_in_itself():
    def widths(spec):
        spec["layers"][3]["in_features"] = 5
        return spec

    rejects(edited(edit_meta("network", widths)), "tensors do not match|architecture")


def test_unknown_layer_loss_or_optimizer():
    def layer(spec):
        spec["layers"][2] = {"type": "__import__('os')"}
        return spec

    rejects(edited(edit_meta("network", layer)), "unknown type")

    def loss(spec):
        spec["loss"] = {"type": "pickle"}
        return spec

    rejects(edited(edit_meta("network", loss)), "loss: unknown type 'pickle'")

    def optimizer(spec):
        spec["optimizer"]["type"] = "lbfgs"
        return spec

    rejects(edited(edit_meta("network", optimizer)), "optimizer: unknown type 'lbfgs'")

    def hyper(spec):
        spec["layers"][0]["activation"] = "relu"
        return spec

    rejects(edited(edit_meta("network", hyper)), "layers\\[0\\] 'dense'")

    def bad_value(spec):
        spec["layers"][0]["in_features"] = -3
        return spec

    rejects(edited(edit_meta("network", bad_value)), "in_features")


def test_bad_network_metadata():
    rejects(edited(lambda h, b: h["__metadata__"].update(network="{not json")), "not valid JSON")
    rejects(edited(lambda h, b: h["__metadata__"].pop("network") and None), "no 'network'")
    rejects(edited(edit_meta("network", lambda s: {**s, "dtype": "float16"})), "float16")
    rejects(edited(edit_meta("network", lambda s: {**s, "seed": -1})), "seed")
    rejects(edited(edit_meta("network", lambda s: {**s, "layers": []})), "non-empty")
    rejects(edited(edit_meta("network", lambda s: {**s, "code": "x"})), "expected the keys")


def test_missing_tensor():
    def edit(h, b):
        begin, end = h.pop("3.bias")["data_offsets"]
        for info in h.values():
            if isinstance(info, dict) and "data_offsets" in info:
                o = info["data_offsets"]
                if o[0] >= end:
                    info["data_offsets"] = [o[0] - (end - begin), o[1] - (end - begin)]
        return h, b[:begin] + b[end:]

    rejects(edited(edit), r"missing \['3.bias'\]")


def test_extra_tensor():
    def edit(h, b):
        h["9.weight"] = {"dtype": "F64", "shape": [1], "data_offsets": [len(b), len(b) + 8]}
        return h, b + bytes(8)

    rejects(edited(edit), r"extra \['9.weight'\]")


def test_missing_optimizer_state_tensor():
    def edit(h, b):
        h["optimizer.exp_avg_sq"] = h.pop("optimizer.exp_avg_sq")
        h["optimizer.other"] = h.pop("optimizer.exp_avg_sq")

    rejects(edited(edit), "missing \\['optimizer.exp_avg_sq'\\]")


def test_wrong_dtypes():
    def f32(h, b):
        info = h["0.weight"]
        info["dtype"] = "F32"
        info["shape"] = [4, 6]

    rejects(edited(f32), "dtype float32, expected float64")
    rejects(edited(lambda h, b: h["0.weight"].update(dtype="BF16")), "not supported")

    def counter(h, b):
        h["1.num_batches_tracked"]["dtype"] = "F64"

    rejects(edited(counter), "dtype float64, expected int64")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(value):
    header, body = split(good())
    begin = header["3.weight"]["data_offsets"][0]
    body = body[:begin] + struct.pack("<d", value) + body[begin + 8 :]
    rejects(join(header, body), "NaN or infinity")


def test_negative_variance_counter_or_square_average():
    for name in ("1.running_var", "optimizer.exp_avg_sq"):
        header, body = split(good())
        begin = header[name]["data_offsets"][0]
        rejects(
            join(header, body[:begin] + struct.pack("<d", -1.0) + body[begin + 8 :]),
            "must not be negative",
        )
    header, body = split(good())
    begin = header["1.num_batches_tracked"]["data_offsets"][0]
    rejects(
        join(header, body[:begin] + struct.pack("<q", -5) + body[begin + 8 :]),
        "must not be negative",
    )


def test_offsets_out_of_range():
    rejects(
        edited(lambda h, b: h["3.bias"].update(data_offsets=[10**12, 10**12 + 16])), "out of range"
    )
    rejects(edited(lambda h, b: h["3.bias"].update(data_offsets=[16, 8])), "out of range")
    rejects(edited(lambda h, b: h["3.bias"].update(data_offsets=[-8, 8])), "out of range")
    rejects(edited(lambda h, b: h["3.bias"].update(data_offsets="0:8")), "out of range")


def test_overlapping_offsets():
    def edit(h, b):
        h["0.bias"]["data_offsets"] = list(h["0.weight"]["data_offsets"][:1])
        h["0.bias"]["data_offsets"].append(h["0.bias"]["data_offsets"][0] + 32)

    rejects(edited(edit), "overlaps|gap")


def test_gap_and_trailing_bytes():
    header, body = split(good())
    rejects(join(header, body + b"junk"), "bytes after the last tensor")

    def gap(h, b):
        for info in h.values():
            if isinstance(info, dict) and "data_offsets" in info:
                info["data_offsets"] = [o + 8 for o in info["data_offsets"]]
        return h, bytes(8) + b

    rejects(edited(gap), "gap")


def test_bad_tensor_entries():
    rejects(edited(lambda h, b: h["0.bias"].update(shape=[-4])), "shape")
    rejects(edited(lambda h, b: h["0.bias"].update(shape="4")), "shape")
    rejects(edited(lambda h, b: h["0.bias"].update(extra=1)), "expected dtype, shape")
    rejects(edited(lambda h, b: h.update({"0.bias": [1, 2]})), "expected dtype, shape")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("rng_state", [0, 0, 0, 0], "rng_state"),
        ("rng_state", [1, 2, 3], "rng_state"),
        ("rng_state", [1, 2, 3, 2**64], "rng_state"),
        ("lr", float("nan"), "lr"),
        ("lr", -1.0, "lr"),
        ("optimizer_steps", -1, "optimizer_steps"),
        ("optimizer_steps", True, "optimizer_steps"),
        ("training_forwards", 2**64, "training_forwards"),
        ("clip_grad_norm", 0, "clip_grad_norm"),
        ("optimizer_state", ["exp_avg"], "disagrees"),
        ("schedule", "StepLR", "'schedule'"),
        ("schedule", {"schedule": "StepLR()", "base_lr": -1.0, "last_epoch": 0}, "'schedule'"),
        ("schedule", {"schedule": "StepLR()", "base_lr": 0.1, "last_epoch": -2}, "'schedule'"),
        ("schedule", {"schedule": 3, "base_lr": 0.1, "last_epoch": 0}, "'schedule'"),
        ("schedule", {"schedule": "StepLR()", "base_lr": 0.1}, "'schedule'"),
    ],
)
def test_bad_training_state(key, value, match):
    rejects(edited(edit_meta("training_state", lambda s: {**s, key: value})), match)


def test_a_training_state_without_a_schedule_position_still_loads():
    # Files saved before schedule positions were kept have no "schedule" key.
    data = edited(
        edit_meta("training_state", lambda s: {k: v for k, v in s.items() if k != "schedule"})
    )
    net = bp.Network.from_bytes(data)
    assert net.fit_progress.schedule_to_resume is None


def test_training_state_keys_and_json():
    rejects(edited(edit_meta("training_state", lambda s: {**s, "x": 1})), "expected the keys")
    rejects(edited(lambda h, b: h["__metadata__"].update(training_state="[")), "not valid JSON")


def test_optimizer_tensors_without_training_state():
    def edit(h, b):
        h["__metadata__"].pop("training_state")

    rejects(edited(edit), r"extra \[")


def test_deeply_nested_json_is_refused_cleanly():
    deep = "[" * 100_000 + "]" * 100_000
    rejects(edited(lambda h, b: h["__metadata__"].update(network=deep)), "not valid JSON|keys")


def test_a_refused_file_builds_nothing(monkeypatch):
    built = []
    real_init = bp.Network.__init__

    def spy(self, *args, **kwargs):
        built.append(self)
        real_init(self, *args, **kwargs)

    bad = edited(lambda h, b: h["3.weight"].update(dtype="F32", shape=[4, 4]))
    monkeypatch.setattr(bp.Network, "__init__", spy)
    with pytest.raises(ValueError):
        bp.Network.from_bytes(bad)
    assert built == []


def test_serialization_encode_refuses_unknown_dtypes():
    with pytest.raises(TypeError, match="cannot store"):
        serialization.encode({"x": np.zeros(2, dtype=np.int8)}, {})

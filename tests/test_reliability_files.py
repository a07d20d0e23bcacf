"""Files refuse silent corruption and hostile headers cheaply: every tensor's bytes carry a
checksum, a header's cost is bounded before it is parsed, loading reads the data once into the
arrays the network takes, and a killed save's temporary is cleaned up by the next save. Files
stay plain safetensors, read by the `safetensors` package."""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from optional import require

import bpcore as bp
from bpcore import serialization


def trained(dtype: str = "float64") -> bp.Network:
    net = bp.Network(
        [bp.Dense(3, 5), bp.BatchNorm1d(5), bp.ReLU(), bp.Dense(5, 2)],
        loss="mse",
        optimizer=bp.Adam(lr=0.01, amsgrad=True),
        dtype=dtype,
        seed=3,
    )
    rng = np.random.default_rng(0)
    net.fit(rng.normal(size=(16, 3)), rng.normal(size=(16, 2)), epochs=2, batch_size=8)
    return net


def split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join_text(text: bytes, body: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text + body


def join(header: dict, body: bytes) -> bytes:
    return join_text(json.dumps(header).encode(), body)


def same(a: bp.Network, b: bp.Network) -> bool:
    pa, pb = a.state_dict(), b.state_dict()
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


# ----- checksums ------------------------------------------------------------------------------


def test_every_tensor_has_a_checksum_of_its_bytes():
    header, body = split(trained().to_bytes(include_optimizer=True))
    sums = json.loads(header["__metadata__"][serialization.CHECKSUMS_KEY])
    names = [k for k in header if k != "__metadata__"]
    assert sorted(sums) == sorted(names)
    for name in names:
        begin, end = header[name]["data_offsets"]
        assert sums[name] == serialization._checksum(body[begin:end])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_flipped_bit_in_any_tensor_is_refused_naming_the_tensor(dtype, tmp_path):
    data = trained(dtype).to_bytes(include_optimizer=True)
    header, body = split(data)
    start = len(data) - len(body)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin = info["data_offsets"][0]
        corrupted = bytearray(data)
        corrupted[start + begin] ^= 0x01  # the lowest mantissa bit: a value still finite
        with pytest.raises(ValueError, match=f"tensor '{name}': its bytes do not match"):
            bp.Network.from_bytes(bytes(corrupted))
        path = tmp_path / "corrupted.safetensors"
        path.write_bytes(bytes(corrupted))
        with pytest.raises(ValueError, match=f"tensor '{name}': its bytes do not match"):
            bp.Network.load(path)


def test_files_saved_without_checksums_still_load():
    net = trained()
    header, body = split(net.to_bytes(include_optimizer=True))
    del header["__metadata__"][serialization.CHECKSUMS_KEY]
    assert same(bp.Network.from_bytes(join(header, body)), net)


def test_checksums_that_do_not_cover_the_tensors_are_refused():
    header, body = split(trained().to_bytes())
    sums = json.loads(header["__metadata__"][serialization.CHECKSUMS_KEY])
    del sums["0.bias"]
    header["__metadata__"][serialization.CHECKSUMS_KEY] = json.dumps(sums)
    with pytest.raises(ValueError, match="'checksums': expected a checksum for each"):
        bp.Network.from_bytes(join(header, body))


# ----- a plain safetensors file ---------------------------------------------------------------


def test_the_safetensors_package_reads_the_file(tmp_path):
    st_numpy = require("safetensors.numpy", "safetensors")
    safetensors = require("safetensors")
    net = trained()
    path = tmp_path / "net.safetensors"
    net.save(path, include_optimizer=True)
    tensors = st_numpy.load_file(str(path))
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(tensors[name], value)
    with safetensors.safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
    assert metadata["format"] == "bpcore" and serialization.CHECKSUMS_KEY in metadata
    # And a file the package writes from the same tensors and metadata loads in bpcore.
    header, _ = split(path.read_bytes())
    rewritten = tmp_path / "rewritten.safetensors"
    st_numpy.save_file(tensors, str(rewritten), metadata=header["__metadata__"])
    assert same(bp.Network.load(rewritten), net)


def test_torch_reads_the_file(tmp_path):
    require("torch")
    st_torch = require("safetensors.torch", "safetensors")
    net = trained("float32")
    path = tmp_path / "net.safetensors"
    net.save(path)
    tensors = st_torch.load_file(str(path))
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(tensors[name].numpy(), value)


# ----- headers: what the file says, bounded before it costs anything -------------------------


def test_a_repeated_key_is_refused_as_the_safetensors_package_refuses_it():
    header, body = split(trained().to_bytes())
    text = json.dumps(header)
    metadata = json.dumps(header["__metadata__"])
    repeated = text.replace('"__metadata__": ', f'"__metadata__": {metadata}, "__metadata__": ', 1)
    with pytest.raises(ValueError, match="'__metadata__' appears more than once"):
        bp.Network.from_bytes(join_text(repeated.encode(), body))
    entry = json.dumps(header["3.bias"])
    repeated = text.replace('"3.bias": ', f'"3.bias": {entry}, "3.bias": ', 1)
    with pytest.raises(ValueError, match=r"'3\.bias' appears more than once"):
        bp.Network.from_bytes(join_text(repeated.encode(), body))


def test_deep_nesting_is_refused_before_parsing_whatever_the_recursion_limit():
    data = trained().to_bytes(include_optimizer=True)
    (n,) = struct.unpack("<Q", data[:8])
    assert serialization._nesting(data[8 : 8 + n]) <= 8  # what a real file needs
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # as a user may raise it: the parser would recurse 60,000 deep
    try:
        deep = b'{"x":' + b"[" * 60_000 + b"]" * 60_000 + b"}"
        with pytest.raises(ValueError, match="nested over 64 deep"):
            bp.Network.from_bytes(join_text(deep, b""))
    finally:
        sys.setrecursionlimit(limit)


def test_a_dtype_given_as_a_list_or_a_65_dimensional_shape_names_the_tensor():
    header, body = split(trained().to_bytes())
    header["0.bias"]["dtype"] = ["F64"]
    with pytest.raises(ValueError, match=r"tensor '0\.bias': dtype \['F64'\] not supported"):
        bp.Network.from_bytes(join(header, body))
    header, body = split(trained().to_bytes())
    header["0.bias"]["shape"] = [5] + [1] * 64
    with pytest.raises(ValueError, match=r"tensor '0\.bias': shape \(5, 1, 1"):
        bp.Network.from_bytes(join(header, body))


HUGE = 10**400


def edit_metadata(key: str, change) -> bytes:
    header, body = split(trained().to_bytes(include_optimizer=True))
    value = json.loads(header["__metadata__"][key])
    change(value)
    header["__metadata__"][key] = json.dumps(value)
    return join(header, body)


@pytest.mark.parametrize(
    ("key", "change", "words"),
    [
        ("training_state", lambda s: s.update(lr=HUGE), "'lr'"),
        ("training_state", lambda s: s.update(clip_grad_norm=HUGE), "'clip_grad_norm'"),
        ("network", lambda s: s["optimizer"].update(lr=HUGE), "optimizer 'adam': lr"),
        ("network", lambda s: s["layers"][1].update(eps=HUGE), r"layers\[1\].*eps"),
        ("network", lambda s: s["layers"][0].update(in_features=HUGE), "in_features"),
        ("network", lambda s: s.update(seed=HUGE), "seed"),
    ],
)
def test_integers_beyond_floats_range_in_the_metadata_are_a_value_error(key, change, words):
    with pytest.raises(ValueError, match=words):
        bp.Network.from_bytes(edit_metadata(key, change))


def test_a_schedule_base_lr_beyond_floats_range_is_a_value_error():
    def change(state):
        state["schedule"] = {"schedule": "StepLR()", "base_lr": HUGE, "last_epoch": 0}

    with pytest.raises(ValueError, match="'schedule'"):
        bp.Network.from_bytes(edit_metadata("training_state", change))


@pytest.mark.parametrize(
    ("layer", "words"),
    [
        ({"type": "leaky_relu", "negative_slope": 1e308}, "negative_slope"),
        ({"type": "softplus", "beta": 1e-300, "threshold": 20.0}, "beta"),
        ({"type": "elu", "alpha": 1e308}, "alpha"),
    ],
)
def test_a_file_with_scales_that_make_every_output_infinite_is_refused(layer, words):
    with pytest.raises(ValueError, match=words):
        bp.Network.from_bytes(edit_metadata("network", lambda s: s["layers"].__setitem__(2, layer)))


def test_more_layers_than_the_limit_are_refused_before_they_are_built():
    def change(spec):
        spec["layers"] += [{"type": "relu"}] * serialization.MAX_LAYERS

    with pytest.raises(ValueError, match=f"more than {serialization.MAX_LAYERS} layers"):
        bp.Network.from_bytes(edit_metadata("network", change))


def test_a_network_at_the_layer_limit_saves_and_loads_back():
    layers: list[bp.layers.Layer] = []
    for _ in range(serialization.MAX_LAYERS // 2):
        layers += [bp.Dense(2, 2), bp.BatchNorm1d(2)]
    net = bp.Network(layers, loss="mse", optimizer=bp.Adam(amsgrad=True), seed=0)
    net.train_step(np.eye(2), np.zeros((2, 2)))
    data = net.to_bytes(include_optimizer=True)
    (n,) = struct.unpack("<Q", data[:8])
    items = sum(data[8 : 8 + n].count(c) for c in (b",", b"[", b"{"))
    assert items < serialization.MAX_JSON_ITEMS / 2  # the limit leaves room over the largest
    assert same(bp.Network.from_bytes(data), net)


def test_the_core_holds_the_same_layer_limit():
    at_limit = [bp.Dense(2, 2)] + [bp.ReLU()] * (serialization.MAX_LAYERS - 1)
    assert len(bp.Network(at_limit, loss="mse").layers) == serialization.MAX_LAYERS
    with pytest.raises(ValueError, match="more than the limit of 10000"):
        bp.Network([*at_limit, bp.ReLU()], loss="mse")


def run_child(code: str) -> dict:
    """Runs `code` in a fresh interpreter with 2 GB of address space; it prints one JSON line."""
    limit = 2 * 1024**3
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
        import numpy as np, bpcore as bp
        def peak_mb():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        """
    ) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


pytestmark_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="peak memory is read from getrusage, in bytes only on Linux",
)


@pytestmark_linux
def test_headers_of_100_mb_of_lists_or_millions_of_layers_are_refused_before_parsing(tmp_path):
    lists = tmp_path / "lists.safetensors"
    lists.write_bytes(join_text(b'{"x":[' + b"[]," * 33_000_000 + b"[]]}", b""))
    # A file that is valid but for its size: 4.4 million ReLU layers after one Dense layer.
    header, body = split(bp.Network([bp.Dense(2, 2)], loss="mse").to_bytes())
    spec = json.loads(header["__metadata__"]["network"])
    spec["layers"] += [{"type": "relu"}] * 4_400_000
    header["__metadata__"]["network"] = json.dumps(spec)
    del header["__metadata__"][serialization.CHECKSUMS_KEY]
    layers = tmp_path / "layers.safetensors"
    layers.write_bytes(join(header, body))
    result = run_child(
        f"""
        before = peak_mb()
        errors = []
        for path in ({str(lists)!r}, {str(layers)!r}):
            try:
                bp.Network.load(path)
            except ValueError as e:
                errors.append(str(e))
        print(json.dumps({{"errors": errors, "grown_mb": peak_mb() - before}}))
        """
    )
    assert "JSON values (limit)" in result["errors"][0]
    assert "JSON values (limit)" in result["errors"][1]
    assert result["grown_mb"] < 350  # the largest header (100 MB) read and decoded once


@pytestmark_linux
def test_a_header_length_beyond_the_file_is_refused_before_anything_is_read(tmp_path):
    path = tmp_path / "sparse.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", 2**62))
        f.truncate(1_200_000_000)  # sparse: 1.2 GB on paper, nothing on disk
    header_of_zeros = tmp_path / "zeros.safetensors"
    with open(header_of_zeros, "wb") as f:
        f.write(struct.pack("<Q", 90_000_000))
        f.truncate(1_200_000_000)
    result = run_child(
        f"""
        before = peak_mb()
        errors = []
        for path in ({str(path)!r}, {str(header_of_zeros)!r}):
            try:
                bp.Network.load(path)
            except ValueError as e:
                errors.append(str(e))
        print(json.dumps({{"errors": errors, "grown_mb": peak_mb() - before}}))
        """
    )
    assert "exceeds the limit" in result["errors"][0]
    assert "not a JSON object" in result["errors"][1]
    assert result["grown_mb"] < 150  # at most the 90 MB header, never the 1.2 GB file


@pytestmark_linux
def test_loading_holds_the_network_and_at_most_one_copy_of_the_files_tensors(tmp_path):
    path = tmp_path / "big.safetensors"
    big = bp.Network([bp.Dense(2500, 4000), bp.ReLU(), bp.Dense(4000, 2)], loss="mse", seed=0)
    big.save(path, include_optimizer=True)  # 10 M float32 weights and Adam's two buffers
    size_mb = os.path.getsize(path) / 1e6
    del big
    result = run_child(
        f"""
        before = peak_mb()
        bp.Network(
            [bp.Dense(2500, 4000), bp.ReLU(), bp.Dense(4000, 2)], loss="mse", seed=0
        ).train_step(np.ones((2, 2500), np.float32), np.zeros((2, 2), np.float32))
        network_mb = peak_mb() - before  # a network of this size, with its state touched
        import gc; gc.collect()
        start = peak_mb()
        net = bp.Network.load({str(path)!r})
        print(json.dumps({{"network_mb": network_mb, "load_mb": peak_mb() - before}}))
        """
    )
    # Loading costs the network itself plus at most the file's tensors once (in the arrays
    # handed to the core); reading the file, then copying each tensor, then concatenating
    # them held three copies of the file on top of the network.
    extra = result["load_mb"] - result["network_mb"]
    assert extra < 1.25 * size_mb, (result, size_mb)


@pytestmark_linux
def test_saving_writes_the_tensors_without_joining_them_into_another_copy(tmp_path):
    path = tmp_path / "big.safetensors"
    result = run_child(
        f"""
        net = bp.Network([bp.Dense(2500, 4000), bp.ReLU(), bp.Dense(4000, 2)], loss="mse")
        net.train_step(np.ones((2, 2500), np.float32), np.zeros((2, 2), np.float32))
        before = peak_mb()
        net.save({str(path)!r}, include_optimizer=True)
        print(json.dumps({{"save_mb": peak_mb() - before}}))
        """
    )
    # The copies the network hands out (parameters, optimizer state) and nothing more: the
    # file's bytes are written piece by piece from views of them (joining them cost a copy).
    assert result["save_mb"] < 1.25 * os.path.getsize(path) / 1e6, result


# ----- atomic saves: a killed save's temporary is removed by the next one ---------------------


def kill_midway_through_a_save(path) -> None:
    """Saves in a child process that SIGKILLs itself with half the file written."""
    script = textwrap.dedent(
        f"""
        import os, signal
        import bpcore as bp
        from bpcore import serialization
        def half_then_die(f, data):
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        serialization._write_all = half_then_die
        bp.Network([bp.Dense(3, 2)], loss="mse", seed=9).save({str(path)!r})
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert done.returncode == -signal.SIGKILL


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="a killed save's temporary is found by flock, which Windows lacks",
)
def test_a_killed_saves_temporary_is_removed_by_the_next_save(tmp_path):
    path = tmp_path / "net.safetensors"
    old = bp.Network([bp.Dense(3, 2)], loss="mse", seed=1)
    old.save(path)
    kill_midway_through_a_save(path)
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and names[0].startswith(".net.safetensors.")  # the stale temporary
    assert same(bp.Network.load(path), old)  # the previous file is intact
    # Another target's temporary in the same folder is left alone.
    other = tmp_path / ".net.safetensors.other.abcdefgh.tmp"
    other.write_bytes(b"x")
    new = bp.Network([bp.Dense(3, 2)], loss="mse", seed=2)
    new.save(path)
    assert sorted(os.listdir(tmp_path)) == sorted([other.name, "net.safetensors"])
    assert same(bp.Network.load(path), new)


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="a killed save's temporary is found by flock, which Windows lacks",
)
def test_a_live_saves_temporary_is_not_removed(tmp_path):
    import fcntl

    path = tmp_path / "net.safetensors"
    live = tmp_path / ".net.safetensors.abcd1234.tmp"
    with open(live, "wb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # as a save still writing holds it
        script = (
            f"import bpcore as bp; bp.Network([bp.Dense(3, 2)], loss='mse').save({str(path)!r})"
        )
        subprocess.run([sys.executable, "-c", script], check=True)
        assert live.exists()
    bp.Network([bp.Dense(3, 2)], loss="mse").save(path)
    assert not live.exists()


def test_pickles_carry_the_checksums_too():
    net = trained()
    data = pickle.dumps(net)
    payload = net.to_bytes(include_optimizer=True)
    at = data.index(payload) + len(payload) - 3  # inside the last tensor
    corrupted = bytearray(data)
    corrupted[at] ^= 0x01
    with pytest.raises(ValueError, match=r"pickled network: .*its bytes do not match"):
        pickle.loads(bytes(corrupted))

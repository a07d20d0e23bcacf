"""Saving and loading networks in the safetensors format, safely.

A file is what the safetensors format defines: an 8-byte little-endian header length N, N bytes of
JSON header, then the raw little-endian tensor data. The header maps each tensor's name to its
dtype, shape and [begin, end) byte offsets in the data, plus a `__metadata__` map of strings:

- tensors: the parameters under their `parameters()` names ("0.weight", ...), the batch-norm
  buffers under their `buffers()` names, and, with ``include_optimizer=True``, the optimizer's
  state buffers flat as "optimizer.exp_avg", "optimizer.exp_avg_sq", ... (torch's state names);
- metadata: "format" = "bpcore", "format_version" = "1", "network" = JSON of the architecture,
  loss, optimizer configuration, seed and dtype, and with the optimizer, "training_state" = JSON of
  the optimizer's step count and current learning rate, the shuffling generator's state, the
  training-forward counter (the dropout masks' step), the epochs done and the gradient clipping,
  so that training resumes bit for bit where it stopped.

Files are written by hand (no dependency) and readable by the `safetensors` package. Loading
never executes code and checks everything before building anything: any problem with a file is
a ValueError naming it, never a crash and never a partly loaded network.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import tempfile
from collections.abc import Mapping
from typing import IO, Any, Union

import numpy as np

from bpcore.layers import (
    LAYERS,
    BatchNorm1d,
    Dense,
    Layer,
    LayerNorm,
)
from bpcore.losses import LOSSES, Loss
from bpcore.optimizers import OPTIMIZERS, Optimizer

PathLike = Union[str, "os.PathLike[str]"]

#: The value of the "format" metadata key of every bpcore file.
FORMAT = "bpcore"
#: The version of the file layout this module writes and reads.
FORMAT_VERSION = "1"
#: Largest header accepted (as the safetensors library's own limit): a hostile length is refused
#: before anything is allocated for it.
MAX_HEADER_BYTES = 100_000_000
#: Prefix of the optimizer's state tensors.
OPTIMIZER_PREFIX = "optimizer."

_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
}
_CODES = {"float32": "F32", "float64": "F64", "int64": "I64"}
#: Optimizer state that is a running sum or average of squares: never negative.
_NON_NEGATIVE_STATE = {"exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum"}


def _bad(source: str, message: str) -> ValueError:
    return ValueError(f"{source}: not a valid bpcore file: {message}")


# ----- writing ---------------------------------------------------------------------------------


def to_bytes(net: Any, include_optimizer: bool = False) -> bytes:
    """The safetensors bytes of `net` (see the module docstring); with `include_optimizer`,
    also everything needed to resume training exactly."""
    if not isinstance(include_optimizer, bool):
        raise TypeError(
            f"include_optimizer: expected True or False, got {type(include_optimizer).__name__}"
        )
    tensors: dict[str, np.ndarray] = {}
    tensors.update(net.parameters())
    tensors.update(net.buffers())
    network = {
        "layers": [layer.to_spec() for layer in net.layers],
        "loss": net.loss_function.to_spec(),
        "optimizer": net.optimizer.to_spec(),
        "seed": net.seed,
        "dtype": net.dtype.name,
    }
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "network": json.dumps(network),
    }
    if include_optimizer:
        native = net._native
        steps, buffers = native.optimizer_state()
        names = list(native.optimizer_state_names())
        for name, buffer in zip(names, buffers):
            tensors[OPTIMIZER_PREFIX + name] = buffer
        metadata["training_state"] = json.dumps(
            {
                "optimizer_steps": int(steps),
                "optimizer_state": names,
                "lr": float(native.lr),
                "rng_state": [int(w) for w in native.rng_state()],
                "training_forwards": int(native.training_forwards),
                "epochs_done": int(net._epochs_done),
                "clip_grad_norm": native.clip_grad_norm,
                "schedule": net._schedule_state,
            }
        )
    return encode(tensors, metadata)


def encode(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    """safetensors bytes of float32/float64/int64 `tensors` (in the given order) and string
    `metadata`; the header is padded with spaces to a multiple of 8 bytes, as the library does."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    chunks = []
    offset = 0
    for name, array in tensors.items():
        a = np.asarray(array)
        code = _CODES.get(a.dtype.name)
        if code is None:
            raise TypeError(f"{name}: cannot store dtype {a.dtype}")
        raw = np.ascontiguousarray(a, dtype=_DTYPES[code]).tobytes()
        header[name] = {
            "dtype": code,
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def _write_all(f: IO[bytes], data: bytes) -> None:
    """Writes `data` to `f` in full (a separate function so tests can make a write fail)."""
    view = memoryview(data)
    while view:
        written = f.write(view)
        if written is None:  # pragma: no cover - only for non-blocking raw files
            raise OSError("write made no progress")
        view = view[written:]


def _fsync_directory(directory: str) -> None:
    """Makes a rename in `directory` durable where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _file_mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically: into a temporary file in the same folder, flushed and
    fsynced, then renamed over `path`. If anything fails (or the process dies) before the rename,
    `path` keeps its previous content and the temporary file is removed."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    mode = _file_mode(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def save(net: Any, path: PathLike, include_optimizer: bool = False) -> None:
    """Saves `net` to `path` (safetensors, written atomically); see `Network.save`."""
    write_atomic(path, to_bytes(net, include_optimizer))


# ----- reading ---------------------------------------------------------------------------------


def load(path: PathLike) -> Any:
    """The network saved at `path`; see `Network.load`."""
    with open(os.fspath(path), "rb") as f:
        data = f.read()
    return from_bytes(data, source=os.fspath(path))


def from_bytes(data: bytes, source: str = "data") -> Any:
    """The network of safetensors bytes written by `to_bytes`. Everything is checked before the
    network is built; any problem is a ValueError that names `source` and the problem."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    tensors, metadata = decode(data, source)
    return _build(tensors, metadata, source)


def _json(text: str, key: str, source: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _bad(source, f"metadata {key!r} is not valid JSON ({e})") from None


def decode(data: bytes, source: str = "data") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors (copies, native byte order) and the string metadata of safetensors bytes,
    after checking the layout: header length, JSON, dtypes, shapes against byte counts, and
    offsets that tile the data exactly (in range, no overlap, no gap, nothing after)."""
    if len(data) < 8:
        raise _bad(source, f"truncated: {len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise _bad(source, f"header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    if 8 + n > len(data):
        raise _bad(
            source, f"truncated: the header needs {n} bytes, the file has {len(data) - 8} after 8"
        )
    raw = data[8 : 8 + n]
    if not raw.startswith(b"{"):
        raise _bad(source, "the header is not a JSON object (wrong format?)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(source, f"corrupted header ({e})") from None
    if not isinstance(header, dict):
        raise _bad(source, "the header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _bad(source, "no __metadata__ map of strings (not written by bpcore?)")
    if metadata.get("format") != FORMAT:
        raise _bad(source, f"format {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise _bad(
            source,
            f"format version {metadata.get('format_version')!r}; this bpcore reads version "
            f"{FORMAT_VERSION!r}",
        )
    body = memoryview(data)[8 + n :]
    spans = []
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _bad(source, f"tensor {name!r}: expected dtype, shape and data_offsets")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if code not in _DTYPES:
            raise _bad(source, f"tensor {name!r}: dtype {code!r} not supported (F32, F64 or I64)")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise _bad(source, f"tensor {name!r}: shape {shape!r} is not a list of sizes")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= len(body)
        ):
            raise _bad(
                source,
                f"tensor {name!r}: data_offsets {offsets!r} out of range of the "
                f"{len(body)} data bytes (truncated or corrupted)",
            )
        begin, end = offsets
        itemsize = _DTYPES[code].itemsize
        if math.prod(shape) * itemsize != end - begin:
            raise _bad(
                source,
                f"tensor {name!r}: shape {shape} of {code} needs "
                f"{math.prod(shape) * itemsize} bytes, its data has {end - begin}",
            )
        spans.append((begin, end, name))
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin < position:
            raise _bad(source, f"tensor {name!r}: its data overlaps another tensor's")
        if begin > position:
            raise _bad(source, f"tensor {name!r}: a gap of unused bytes before its data")
        position = end
    if position != len(body):
        raise _bad(
            source, f"{len(body) - position} bytes after the last tensor (truncated or corrupted)"
        )
    for begin, end, name in spans:
        info = header[name]
        a = np.frombuffer(body[begin:end], dtype=_DTYPES[info["dtype"]])
        tensors[name] = a.astype(_DTYPES[info["dtype"]].newbyteorder("="), copy=True).reshape(
            info["shape"]
        )
    return tensors, dict(metadata)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _spec_object(spec: Any, registry: Mapping[str, type], what: str, source: str) -> Any:
    """A layer, loss or optimizer built from its `to_spec()` dict; a ValueError for anything
    unknown or invalid."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise _bad(source, f"{what}: expected an object with a 'type', got {spec!r}")
    kind = spec["type"]
    cls = registry.get(kind)
    if cls is None:
        raise _bad(source, f"{what}: unknown type {kind!r}; expected one of {sorted(registry)}")
    hyper = {k: v for k, v in spec.items() if k != "type"}
    if "betas" in hyper and isinstance(hyper["betas"], list):
        hyper["betas"] = tuple(hyper["betas"])
    try:
        obj = cls(**hyper)
    except (TypeError, ValueError) as e:
        raise _bad(source, f"{what} {kind!r}: {e}") from None
    if obj.to_spec() != spec:
        raise _bad(source, f"{what} {kind!r}: unexpected description {spec!r}")
    return obj


def _expected_tensors(
    layers: list[Layer],
) -> tuple[list[tuple[str, tuple[int, ...]]], list[tuple[str, tuple[int, ...]]]]:
    """(parameters, buffers) as (name, shape), read from the architecture alone, so that a file
    is checked against its data before anything of its size is allocated."""
    params: list[tuple[str, tuple[int, ...]]] = []
    buffers: list[tuple[str, tuple[int, ...]]] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            params.append((f"{i}.weight", (layer.out_features, layer.in_features)))
            if layer.bias:
                params.append((f"{i}.bias", (layer.out_features,)))
        elif isinstance(layer, (BatchNorm1d, LayerNorm)):
            k = layer.num_features if isinstance(layer, BatchNorm1d) else layer.normalized_shape
            params += [(f"{i}.weight", (k,)), (f"{i}.bias", (k,))]
            if isinstance(layer, BatchNorm1d):
                buffers += [(f"{i}.running_mean", (k,)), (f"{i}.running_var", (k,))]
                buffers.append((f"{i}.num_batches_tracked", ()))
    return params, buffers


def _check_tensor(
    tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...], dtype: str, source: str
) -> np.ndarray:
    a = tensors[name]
    if a.dtype.name != dtype:
        raise _bad(source, f"tensor {name!r}: dtype {a.dtype.name}, expected {dtype}")
    if a.shape != shape:
        raise _bad(source, f"tensor {name!r}: shape {a.shape}, the architecture's is {shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise _bad(source, f"tensor {name!r}: contains NaN or infinity")
    return a


def _training_state(text: str, names: list[str], source: str) -> dict[str, Any]:
    state = _json(text, "training_state", source)
    keys = {
        "optimizer_steps",
        "optimizer_state",
        "lr",
        "rng_state",
        "training_forwards",
        "epochs_done",
        "clip_grad_norm",
    }
    # "schedule" (a schedule's position) is optional: files saved before it existed still load.
    if not isinstance(state, dict) or not keys <= set(state) <= keys | {"schedule"}:
        raise _bad(source, f"training_state: expected the keys {sorted(keys)} (and 'schedule')")

    def count(key: str) -> int:
        v = state[key]
        if not _is_int(v) or not 0 <= v < 2**64:
            raise _bad(source, f"training_state {key!r}: expected an integer >= 0, got {v!r}")
        return int(v)

    for key in ("optimizer_steps", "training_forwards", "epochs_done"):
        count(key)
    lr = state["lr"]
    # 0 is a learning rate a schedule reaches (CosineAnnealingLR's default eta_min).
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr < 0:
        raise _bad(source, f"training_state 'lr': expected a finite number >= 0, got {lr!r}")
    clip = state["clip_grad_norm"]
    if clip is not None and (
        not isinstance(clip, (int, float))
        or isinstance(clip, bool)
        or not math.isfinite(clip)
        or clip <= 0
    ):
        raise _bad(source, f"training_state 'clip_grad_norm': expected None or > 0, got {clip!r}")
    rng = state["rng_state"]
    if (
        not isinstance(rng, list)
        or len(rng) != 4
        or not all(_is_int(w) and 0 <= w < 2**64 for w in rng)
        or not any(rng)
    ):
        raise _bad(
            source,
            "training_state 'rng_state': expected 4 integers in [0, 2**64), not all 0",
        )
    schedule = state.get("schedule")
    if schedule is not None and not (
        isinstance(schedule, dict)
        and set(schedule) == {"schedule", "base_lr", "last_epoch"}
        and isinstance(schedule["schedule"], str)
        and isinstance(schedule["base_lr"], (int, float))
        and not isinstance(schedule["base_lr"], bool)
        and math.isfinite(schedule["base_lr"])
        and schedule["base_lr"] >= 0
        and _is_int(schedule["last_epoch"])
        and 0 <= schedule["last_epoch"] < 2**63
    ):
        raise _bad(
            source,
            "training_state 'schedule': expected null or {schedule: str, base_lr: number >= 0, "
            f"last_epoch: integer >= 0}}, got {schedule!r}",
        )
    if state["optimizer_state"] != names:
        raise _bad(
            source,
            f"training_state 'optimizer_state': {state['optimizer_state']!r} disagrees with the "
            f"optimizer's state buffers {names}",
        )
    return state


def _build(tensors: dict[str, np.ndarray], metadata: dict[str, str], source: str) -> Any:
    from bpcore.network import Network

    if "network" not in metadata:
        raise _bad(source, "no 'network' description in the metadata")
    spec = _json(metadata["network"], "network", source)
    keys = {"layers", "loss", "optimizer", "seed", "dtype"}
    if not isinstance(spec, dict) or set(spec) != keys:
        raise _bad(source, f"'network' metadata: expected the keys {sorted(keys)}")
    if not isinstance(spec["layers"], list) or not spec["layers"]:
        raise _bad(source, "'network' metadata: 'layers' must be a non-empty list")
    layers = [_spec_object(s, LAYERS, f"layers[{i}]", source) for i, s in enumerate(spec["layers"])]
    loss: Loss = _spec_object(spec["loss"], LOSSES, "loss", source)
    optimizer: Optimizer = _spec_object(spec["optimizer"], OPTIMIZERS, "optimizer", source)
    dtype, seed = spec["dtype"], spec["seed"]
    if dtype not in ("float32", "float64"):
        raise _bad(source, f"dtype {dtype!r}, expected 'float32' or 'float64'")
    if not _is_int(seed) or not 0 <= seed < 2**64:
        raise _bad(source, f"seed {seed!r}, expected an integer in [0, 2**64)")

    params, buffers = _expected_tensors(layers)
    expected = [name for name, _ in params + buffers]
    state_names = _optimizer_state_names(optimizer)
    has_state = "training_state" in metadata
    if has_state:
        expected += [OPTIMIZER_PREFIX + name for name in state_names]
    missing = [name for name in expected if name not in tensors]
    extra = [name for name in tensors if name not in expected]
    if missing or extra:
        raise _bad(
            source,
            f"tensors do not match the architecture (missing {missing}, extra {extra})",
        )
    weights = {name: _check_tensor(tensors, name, shape, dtype, source) for name, shape in params}
    values: dict[str, np.ndarray] = {}
    for name, shape in buffers:
        counter = name.endswith(".num_batches_tracked")
        a = _check_tensor(tensors, name, shape, "int64" if counter else dtype, source)
        if (counter or name.endswith(".running_var")) and (a < 0).any():
            raise _bad(source, f"tensor {name!r}: must not be negative")
        values[name] = a
    n_params = sum(math.prod(shape) for _, shape in params)
    state_buffers = []
    state: dict[str, Any] = {}
    if has_state:
        state = _training_state(metadata["training_state"], state_names, source)
        for name in state_names:
            a = _check_tensor(tensors, OPTIMIZER_PREFIX + name, (n_params,), dtype, source)
            if name in _NON_NEGATIVE_STATE and (a < 0).any():
                raise _bad(source, f"tensor {OPTIMIZER_PREFIX + name!r}: must not be negative")
            state_buffers.append(a)

    try:
        net = Network(layers, loss=loss, optimizer=optimizer, dtype=dtype, seed=seed)
    except (TypeError, ValueError) as e:
        raise _bad(source, f"invalid architecture: {e}") from None
    info = [(name, tuple(shape)) for name, shape, _ in net._native.param_info()]
    if info != params or list(net._native.optimizer_state_names()) != state_names:
        # pragma: no cover - the layout above mirrors the core's
        raise _bad(source, "the architecture's tensors disagree with the core's layout")
    net.set_parameters(weights)
    net.set_buffers(values)
    if has_state:
        native = net._native
        native.load_optimizer_state(state["optimizer_steps"], state_buffers)
        native.lr = float(state["lr"])
        native.set_rng_state(state["rng_state"])
        native.training_forwards = state["training_forwards"]
        native.clip_grad_norm = state["clip_grad_norm"]
        net._epochs_done = state["epochs_done"]
        net._schedule_state = net._schedule_to_resume = state.get("schedule")
    return net


def _optimizer_state_names(optimizer: Optimizer) -> list[str]:
    """torch's state names of `optimizer`, as the core keeps them."""
    spec = optimizer.to_spec()
    kind = spec["type"]
    if kind == "sgd":
        return ["momentum_buffer"] if spec["momentum"] != 0 else []
    if kind in ("adam", "adamw"):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if spec["amsgrad"] else [])
    if kind == "rmsprop":
        names = ["square_avg"]
        if spec["momentum"] > 0:
            names.append("momentum_buffer")
        if spec["centered"]:
            names.append("grad_avg")
        return names
    return ["sum"]


def _from_pickle(data: bytes) -> Any:
    """Unpickling hook of `Network.__reduce__`: the network of its safetensors bytes."""
    return from_bytes(data, source="pickled network")


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "decode",
    "encode",
    "from_bytes",
    "load",
    "save",
    "to_bytes",
    "write_atomic",
]

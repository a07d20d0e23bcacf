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
  so that training resumes bit for bit where it stopped, and "checksums" = JSON of each tensor's
  name -> the CRC-32 of its bytes (files saved before it existed load without the check).

Files are written by hand (no dependency) and readable by the `safetensors` package. Loading
never executes code and checks everything before building anything, cheapest first: the header
length against the file's size, the header's size in JSON values before it is parsed, the layers,
each tensor's dtype and shape against the architecture, then the data, read once straight into
the arrays handed to the core, and its checksums. Any problem with a file is a ValueError naming
it, never a crash and never a partly loaded network.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import json
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Mapping
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any, TypeVar, Union

import numpy as np

from bpcore.bpcore import describe_tensors
from bpcore.layers import (
    LAYERS,
    Layer,
)
from bpcore.losses import LOSSES, Loss
from bpcore.optimizers import OPTIMIZERS, Optimizer
from bpcore.schedules import MAX_LAST_EPOCH
from bpcore.training_state import TrainingState

if TYPE_CHECKING:
    from bpcore.network import Network

#: The network class a file is built as (`Network`, given by its caller: this module does not
#: import bpcore.network, which imports it).
N = TypeVar("N", bound="Network")

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

PathLike = Union[str, "os.PathLike[str]"]

#: The value of the "format" metadata key of every bpcore file.
FORMAT = "bpcore"
#: The version of the file layout this module writes and reads.
FORMAT_VERSION = "1"
#: Largest header accepted (as the safetensors library's own limit): a hostile length is refused
#: before anything is allocated for it.
MAX_HEADER_BYTES = 100_000_000
#: Most JSON values a header (or a metadata string in it) may hold, counted before parsing: a
#: bpcore file of MAX_LAYERS layers needs about 335,000 (5,000 Dense and 5,000 BatchNorm1d
#: layers with AMSGrad's state); a header of 100 MB of empty lists would otherwise cost seconds
#: and gigabytes to parse before anything could refuse it.
MAX_JSON_ITEMS = 1_000_000
#: Deepest nesting of brackets a header or metadata string may have: a bpcore file needs 6 (its
#: strings' brackets counted as if they nested).
MAX_JSON_DEPTH = 64
#: Most layers a file may describe (the core's limit for any network).
MAX_LAYERS = 10_000
#: The metadata key of the tensors' checksums: JSON of tensor name -> CRC-32 of its bytes.
CHECKSUMS_KEY = "checksums"
#: Prefix of the optimizer's state tensors.
OPTIMIZER_PREFIX = "optimizer."

_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
}
_CODES = {"float32": "F32", "float64": "F64", "int64": "I64"}


def _bad(source: str, message: str) -> ValueError:
    return ValueError(f"{source}: not a valid bpcore file: {message}")


# ----- writing ---------------------------------------------------------------------------------


def to_bytes(net: Any, include_optimizer: bool = False) -> bytes:
    """The safetensors bytes of `net` (see the module docstring); with `include_optimizer`,
    also everything needed to resume training exactly."""
    return b"".join(_pieces(net, include_optimizer))


def _pieces(net: Any, include_optimizer: bool) -> list[Union[bytes, memoryview]]:
    """The bytes of `to_bytes` in pieces (the header, then each tensor's bytes as a view), so
    that a save writes them without joining them into one more copy of the network."""
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
        training = TrainingState.of(net)
        for name, buffer in training.optimizer_state.items():
            tensors[OPTIMIZER_PREFIX + name] = buffer
        metadata["training_state"] = json.dumps(training.to_metadata())
    return _encode_pieces(tensors, metadata)


def encode(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    """safetensors bytes of float32/float64/int64 `tensors` (in the given order) and string
    `metadata`, to which the tensors' checksums are added (`CHECKSUMS_KEY`); the header is
    padded with spaces to a multiple of 8 bytes, as the library does."""
    return b"".join(_encode_pieces(tensors, metadata))


def _encode_pieces(
    tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]
) -> list[Union[bytes, memoryview]]:
    """`encode`'s bytes in pieces: the length and header, then a view of each tensor's bytes."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    sums: dict[str, str] = {}
    chunks = []
    offset = 0
    for name, array in tensors.items():
        a = np.asarray(array)
        code = _CODES.get(a.dtype.name)
        if code is None:
            raise TypeError(f"{name}: cannot store dtype {a.dtype}")
        # A view of the array's bytes, not a copy.
        raw = np.ascontiguousarray(a, dtype=_DTYPES[code]).data.cast("B")
        header[name] = {
            "dtype": code,
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        sums[name] = _checksum(raw)
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"][CHECKSUMS_KEY] = json.dumps(sums, separators=(",", ":"))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return [struct.pack("<Q", len(text)) + text, *chunks]


def _write_all(f: IO[bytes], data: Union[bytes, memoryview]) -> None:
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


def write_atomic(path: PathLike, data: Union[bytes, list[Union[bytes, memoryview]]]) -> None:
    """Writes `data` (bytes, or pieces written one after another) to `path` atomically: into
    a temporary file in the same folder, flushed and fsynced, then renamed over `path`. If
    anything fails before the rename, `path` keeps its previous content and the temporary file
    is removed. A process killed while saving cannot remove its temporary: the next save to the
    same `path` does (on POSIX, where each save holds a lock on its temporary while it writes,
    so a temporary that can be locked has lost its writer). A save that races another's cleanup
    can fail with OSError; neither corrupts `path`."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        # Said of the user's path: the temporary file's name would be all mkstemp reports.
        if os.path.exists(directory):
            raise NotADirectoryError(
                errno.ENOTDIR, f"cannot save: {directory!r} is not a folder", target
            )
        raise FileNotFoundError(
            errno.ENOENT, f"cannot save: the folder {directory!r} does not exist", target
        )
    mode = _file_mode(target)
    _remove_stale_temporaries(directory, os.path.basename(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            for piece in [data] if isinstance(data, bytes) else data:
                _write_all(f, piece)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, mode)
            if fcntl is not None:
                # Renamed while still locked: a cleanup never sees it unlocked under its name.
                os.replace(tmp, target)
        if fcntl is None:  # pragma: no cover - Windows renames closed files only
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


#: Characters of the random part of tempfile.mkstemp's names.
_TEMPORARY_NAME_LENGTH = 8


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Removes the temporaries `write_atomic` left for `base` in `directory` when a save was
    killed: those whose lock no live save holds."""
    if fcntl is None:  # pragma: no cover - no flock on Windows: temporaries stay
        return
    prefix = f".{base}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        middle = name[len(prefix) : -len(".tmp")]
        if not (
            name.startswith(prefix)
            and name.endswith(".tmp")
            and len(middle) == _TEMPORARY_NAME_LENGTH
            and "." not in middle
        ):
            continue
        stale = os.path.join(directory, name)
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(stale)
        except OSError:
            pass  # a live save holds it, or it is already gone
        finally:
            os.close(fd)


def _path(path: Any) -> str:
    """`path` as a str, or a TypeError naming the argument (os.fspath's own names none)."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}") from None
    if not isinstance(text, str):
        raise TypeError(f"path: expected a str or os.PathLike, got bytes {text!r}")
    return text


def save(net: Any, path: PathLike, include_optimizer: bool = False) -> None:
    """Saves `net` to `path` (safetensors, written atomically); see `Network.save`."""
    target = _path(path)
    write_atomic(target, _pieces(net, include_optimizer))


# ----- reading: the header ---------------------------------------------------------------------


class _Entry:
    """One tensor of a header: its dtype code, shape and [begin, end) in the data section."""

    __slots__ = ("begin", "code", "end", "shape")

    def __init__(self, code: str, shape: tuple[int, ...], begin: int, end: int) -> None:
        self.code, self.shape, self.begin, self.end = code, shape, begin, end


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's dict, refusing a repeated key (json.loads would keep the last, hiding
    the first: a file could then say one thing to bpcore and another to a different reader)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"the key {repeated!r} appears more than once")
    return out


#: +1 for an opening bracket, -1 for a closing one, 0 for any other byte.
_BRACKET_STEPS = np.zeros(256, dtype=np.int8)
_BRACKET_STEPS[[ord("["), ord("{")]] = 1
_BRACKET_STEPS[[ord("]"), ord("}")]] = -1


def _nesting(raw: bytes) -> int:
    """The deepest bracket nesting of `raw` (brackets inside strings counted too: an upper
    bound), in blocks so that the temporaries stay small."""
    block = 1 << 20
    codes = np.frombuffer(raw, dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, codes.size, block):
        levels = np.cumsum(_BRACKET_STEPS[codes[start : start + block]], dtype=np.int64) + depth
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
    return deepest


def _bounded_json(raw: Union[bytes, str], what: str, source: str) -> Any:
    """`raw` parsed as JSON after bounding, before parsing, what parsing it can cost: at most
    MAX_JSON_ITEMS values (counted as the commas and opening brackets, at least the number of
    values inside containers) and MAX_JSON_DEPTH levels of nesting (the parser recurses once a
    level: however high the recursion limit is set, the C stack is safe); no repeated keys."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    items = data.count(b",") + data.count(b"[") + data.count(b"{")
    if items > MAX_JSON_ITEMS:
        raise _bad(source, f"{what} has over {MAX_JSON_ITEMS} JSON values (limit)")
    if _nesting(data) > MAX_JSON_DEPTH:
        raise _bad(
            source,
            f"corrupted {what}: not valid JSON for bpcore (nested over {MAX_JSON_DEPTH} deep)",
        )
    try:
        return json.loads(raw, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(source, f"corrupted {what}: not valid JSON ({e})") from None


def _header_length(prefix: bytes, size: int, source: str) -> int:
    """The header length of a file of `size` bytes beginning with `prefix`, checked against
    the limit and the size before the header is read."""
    if size < 8:
        raise _bad(source, f"truncated: {size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n > MAX_HEADER_BYTES:
        raise _bad(source, f"header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    if 8 + n > size:
        raise _bad(
            source, f"truncated: the header needs {n} bytes, the file has {size - 8} after 8"
        )
    return int(n)


def _parse_header(
    raw: Union[bytes, memoryview], body_size: int, source: str
) -> tuple[dict[str, _Entry], dict[str, str]]:
    """The tensor entries and string metadata of a header, after checking the layout: JSON,
    dtypes, shapes against byte counts, and offsets that tile the `body_size` data bytes exactly
    (in range, no overlap, no gap, nothing after)."""
    raw = bytes(raw)
    if not raw.startswith(b"{"):
        raise _bad(source, "the header is not a JSON object (wrong format?)")
    header = _bounded_json(raw, "header", source)
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
    entries: dict[str, _Entry] = {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _bad(source, f"tensor {name!r}: expected dtype, shape and data_offsets")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in _DTYPES:
            raise _bad(source, f"tensor {name!r}: dtype {code!r} not supported (F32, F64 or I64)")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise _bad(source, f"tensor {name!r}: shape {shape!r} is not a list of sizes")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body_size
        ):
            raise _bad(
                source,
                f"tensor {name!r}: data_offsets {offsets!r} out of range of the "
                f"{body_size} data bytes (truncated or corrupted)",
            )
        begin, end = offsets
        needed = math.prod(shape) * _DTYPES[code].itemsize
        if needed != end - begin:
            raise _bad(
                source,
                f"tensor {name!r}: shape {shape} of {code} needs {needed} bytes, its data has "
                f"{end - begin}",
            )
        entries[name] = _Entry(code, tuple(shape), begin, end)
    position = 0
    for name, entry in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin < position:
            raise _bad(source, f"tensor {name!r}: its data overlaps another tensor's")
        if entry.begin > position:
            raise _bad(source, f"tensor {name!r}: a gap of unused bytes before its data")
        position = entry.end
    if position != body_size:
        raise _bad(
            source, f"{body_size - position} bytes after the last tensor (truncated or corrupted)"
        )
    return entries, dict(metadata)


# ----- reading: the data ---------------------------------------------------------------------


class _Data:
    """The data section of a file or of bytes in memory, read by offset straight into the
    arrays that receive it: loading holds no second copy of the data."""

    def __init__(
        self,
        source: str,
        body: memoryview | None = None,
        f: io.BufferedReader | None = None,
        start: int = 0,
    ) -> None:
        self.source, self.body, self.f, self.start = source, body, f, start

    def read_into(self, entry: _Entry, out: np.ndarray) -> None:
        """Fills the contiguous `out` (exactly the entry's bytes long) with its data."""
        target = out.data.cast("B")
        if self.body is not None:
            target[:] = self.body[entry.begin : entry.end]
            return
        assert self.f is not None
        self.f.seek(self.start + entry.begin)
        done = 0
        while done < len(target):
            got = self.f.readinto(target[done:])
            if not got:
                raise _bad(self.source, "the file ended early (was it changed while loading?)")
            done += got


def _checksum(data: Union[bytes, memoryview, np.ndarray]) -> str:
    """The checksum stored for a tensor's bytes: CRC-32 as 8 hexadecimal digits (zlib's, the
    one of zip and PNG, which detects every burst of flipped bits up to 32 bits long)."""
    view = data.data.cast("B") if isinstance(data, np.ndarray) else data
    return f"{zlib.crc32(view):08x}"


def _checksums(metadata: Mapping[str, str], names: list[str], source: str) -> dict[str, str]:
    """The stored checksum of every tensor (an empty dict for files saved without them)."""
    if CHECKSUMS_KEY not in metadata:
        return {}
    sums = _bounded_json(metadata[CHECKSUMS_KEY], f"metadata {CHECKSUMS_KEY!r}", source)
    if (
        not isinstance(sums, dict)
        or set(sums) != set(names)
        or not all(isinstance(v, str) and len(v) == 8 for v in sums.values())
    ):
        raise _bad(
            source, f"metadata {CHECKSUMS_KEY!r}: expected a checksum for each of {sorted(names)}"
        )
    return sums


def _allocate(count: int, dtype: np.dtype[Any], source: str) -> np.ndarray:
    try:
        return np.empty(count, dtype=dtype)
    except MemoryError:
        raise _bad(source, f"{count} values of {dtype} cannot be allocated") from None


def load(path: PathLike, network_type: type[N]) -> N:
    """The network saved at `path`, built as a `network_type` (`Network`); see `Network.load`.
    The header length is checked against the file's size before the header is read, the header
    before any data is read, and the data is read straight into the arrays handed to the
    network."""
    source = _path(path)
    with open(source, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        n = _header_length(f.read(8), size, source)
        raw = f.read(n)
        if len(raw) != n:
            raise _bad(source, "the file ended early (was it changed while loading?)")
        entries, metadata = _parse_header(raw, size - 8 - n, source)
        del raw
        return _build(entries, metadata, _Data(source, f=f, start=8 + n), source, network_type)


def from_bytes(
    data: Union[bytes, bytearray, memoryview], network_type: type[N], source: str = "data"
) -> N:
    """The network of safetensors bytes written by `to_bytes`, built as a `network_type`.
    Everything is checked before the network is built; any problem is a ValueError that names
    `source` and the problem."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    view = memoryview(data).cast("B")
    n = _header_length(bytes(view[:8]), len(view), source)
    entries, metadata = _parse_header(view[8 : 8 + n], len(view) - 8 - n, source)
    return _build(entries, metadata, _Data(source, body=view[8 + n :]), source, network_type)


def _json(text: str, key: str, source: str) -> Any:
    return _bounded_json(text, f"metadata {key!r}", source)


def decode(data: bytes, source: str = "data") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors (copies, native byte order) and the string metadata of safetensors bytes,
    after checking the layout (see `_parse_header`) and the checksums, if the file has them."""
    view = memoryview(data).cast("B")
    n = _header_length(bytes(view[:8]), len(view), source)
    entries, metadata = _parse_header(view[8 : 8 + n], len(view) - 8 - n, source)
    sums = _checksums(metadata, list(entries), source)
    reader = _Data(source, body=view[8 + n :])
    tensors: dict[str, np.ndarray] = {}
    for name, entry in entries.items():
        a = np.empty(entry.shape, dtype=_DTYPES[entry.code])
        reader.read_into(entry, a)
        if sums and _checksum(a) != sums[name]:
            raise _bad(source, f"tensor {name!r}: its bytes do not match their checksum")
        tensors[name] = a.astype(a.dtype.newbyteorder("="), copy=False)
    return tensors, dict(metadata)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: Any, low: float) -> bool:
    """Whether a JSON value is a number >= `low` that a float holds finitely (an integer
    beyond float's range is not: float() of it would raise OverflowError)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        v = float(value)
    except OverflowError:
        return False
    return math.isfinite(v) and v >= low


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
    layers: list[Layer], loss: Loss, optimizer: Optimizer, seed: int
) -> tuple[
    list[tuple[str, tuple[int, ...]]], list[tuple[str, tuple[int, ...]]], list[str], set[str]
]:
    """(parameters, buffers) as (name, shape), the optimizer's state names and those of them
    that are never negative, as the core reports them for the architecture alone, so that a
    file is checked against its data before anything of its size is allocated."""
    spec = {
        "layers": [layer.to_spec() for layer in layers],
        "loss": loss.to_spec(),
        "optimizer": optimizer.to_spec(),
        "seed": seed,
    }
    tensors = describe_tensors(json.dumps(spec))
    params = [(name, tuple(shape)) for name, shape, _ in tensors["params"]]
    buffers = [(name, tuple(shape)) for name, shape, _ in tensors["buffers"]]
    buffers += [(name, ()) for name in tensors["counters"]]
    return params, buffers, list(tensors["optimizer_state"]), set(tensors["non_negative_state"])


def _check_entry(
    entries: Mapping[str, _Entry], name: str, shape: tuple[int, ...], dtype: str, source: str
) -> _Entry:
    """The header entry of tensor `name`, checked against the architecture's dtype and shape
    before any of its data is read."""
    entry = entries[name]
    got = _DTYPES[entry.code].name
    if got != dtype:
        raise _bad(source, f"tensor {name!r}: dtype {got}, expected {dtype}")
    if entry.shape != shape:
        raise _bad(source, f"tensor {name!r}: shape {entry.shape}, the architecture's is {shape}")
    return entry


#: Values checked at once for NaN, infinity or a negative sign: bounds the temporary masks.
_CHECK_CHUNK = 1 << 20


def _check_values(a: np.ndarray, name: str, non_negative: bool, source: str) -> None:
    """Refuses NaN and infinity in a float tensor and, where asked, negative values."""
    for i in range(0, a.size, _CHECK_CHUNK):
        part = a[i : i + _CHECK_CHUNK]
        if part.dtype.kind == "f" and not np.isfinite(part).all():
            raise _bad(source, f"tensor {name!r}: contains NaN or infinity")
        if non_negative and (part < 0).any():
            raise _bad(source, f"tensor {name!r}: must not be negative")


def _native_order(a: np.ndarray) -> np.ndarray:
    """`a` in the machine's byte order (files are little-endian)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


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
    # 0 is a learning rate a schedule reaches (CosineAnnealingLR's default eta_min).
    if not _is_finite_number(state["lr"], low=0.0):
        raise _bad(
            source, f"training_state 'lr': expected a finite number >= 0, got {state['lr']!r}"
        )
    clip = state["clip_grad_norm"]
    if clip is not None and not (_is_finite_number(clip, low=0.0) and clip > 0):
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
        and _is_finite_number(schedule["base_lr"], low=0.0)
        and _is_int(schedule["last_epoch"])
        and 0 <= schedule["last_epoch"] <= MAX_LAST_EPOCH
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


def _build(
    entries: dict[str, _Entry],
    metadata: dict[str, str],
    data: _Data,
    source: str,
    network_type: type[N],
) -> N:
    if "network" not in metadata:
        raise _bad(source, "no 'network' description in the metadata")
    # Each layer is one JSON object: more objects than MAX_LAYERS + 2 (the loss and the
    # optimizer) is refused before parsing builds them.
    if metadata["network"].count("{") > MAX_LAYERS + 3:
        raise _bad(source, f"'network' metadata: more than {MAX_LAYERS} layers (limit)")
    spec = _json(metadata["network"], "network", source)
    keys = {"layers", "loss", "optimizer", "seed", "dtype"}
    if not isinstance(spec, dict) or set(spec) != keys:
        raise _bad(source, f"'network' metadata: expected the keys {sorted(keys)}")
    if not isinstance(spec["layers"], list) or not 0 < len(spec["layers"]) <= MAX_LAYERS:
        raise _bad(
            source, f"'network' metadata: 'layers' must be a non-empty list of at most {MAX_LAYERS}"
        )
    layers = [_spec_object(s, LAYERS, f"layers[{i}]", source) for i, s in enumerate(spec["layers"])]
    loss: Loss = _spec_object(spec["loss"], LOSSES, "loss", source)
    optimizer: Optimizer = _spec_object(spec["optimizer"], OPTIMIZERS, "optimizer", source)
    dtype, seed = spec["dtype"], spec["seed"]
    if not isinstance(dtype, str) or dtype not in ("float32", "float64"):
        raise _bad(source, f"dtype {dtype!r}, expected 'float32' or 'float64'")
    if not _is_int(seed) or not 0 <= seed < 2**64:
        raise _bad(source, f"seed {seed!r}, expected an integer in [0, 2**64)")

    try:
        params, buffers, state_names, never_negative = _expected_tensors(
            layers, loss, optimizer, seed
        )
    except ValueError as e:
        raise _bad(source, f"invalid architecture: {e}") from None
    expected = [name for name, _ in params + buffers]
    has_state = "training_state" in metadata
    if has_state:
        expected += [OPTIMIZER_PREFIX + name for name in state_names]
    expected_names = set(expected)  # a set: a list made this quadratic in the tensors
    missing = [name for name in expected if name not in entries]
    extra = [name for name in entries if name not in expected_names]
    if missing or extra:
        raise _bad(
            source,
            f"tensors do not match the architecture (missing {missing}, extra {extra})",
        )
    sums = _checksums(metadata, list(entries), source)
    running = [(name, shape) for name, shape in buffers if shape != ()]
    counters = [name for name, shape in buffers if shape == ()]
    n_params = sum(math.prod(shape) for _, shape in params)
    for name, shape in params + running:
        _check_entry(entries, name, shape, dtype, source)
    for name in counters:
        _check_entry(entries, name, (), "int64", source)
    for name in state_names if has_state else []:
        _check_entry(entries, OPTIMIZER_PREFIX + name, (n_params,), dtype, source)
    state: dict[str, Any] = (
        _training_state(metadata["training_state"], state_names, source) if (has_state) else {}
    )

    # Everything but the data is checked: read it, straight into the flat arrays the core takes.
    stored = np.dtype(dtype).newbyteorder("<")
    reads: list[tuple[str, np.ndarray, bool]] = []  # (tensor, its array, never negative)

    def flat(tensors: list[tuple[str, tuple[int, ...]]], non_negative: Any) -> np.ndarray:
        out = _allocate(sum(math.prod(shape) for _, shape in tensors), stored, source)
        offset = 0
        for name, shape in tensors:
            size = math.prod(shape)
            reads.append((name, out[offset : offset + size], bool(non_negative(name))))
            offset += size
        return out

    weights = flat(params, lambda name: False)
    statistics = flat(running, lambda name: name.endswith(".running_var"))
    counts = np.empty(len(counters), dtype=np.dtype("<i8"))
    reads += [(name, counts[k : k + 1], True) for k, name in enumerate(counters)]
    state_buffers = [
        flat([(OPTIMIZER_PREFIX + name, (n_params,))], lambda _, n=name: n in never_negative)
        for name in (state_names if has_state else [])
    ]
    for name, array, _ in sorted(reads, key=lambda r: entries[r[0]].begin):
        data.read_into(entries[name], array)
    for name, array, non_negative in reads:
        _check_values(array, name, non_negative, source)
    for name, array, _ in reads:
        if sums and _checksum(array) != sums[name]:
            raise _bad(
                source,
                f"tensor {name!r}: its bytes do not match their checksum (corrupted file)",
            )

    try:
        net = network_type(layers, loss=loss, optimizer=optimizer, dtype=dtype, seed=seed)
    except (TypeError, ValueError) as e:
        raise _bad(source, f"invalid architecture: {e}") from None
    native = net.native
    native.set_params(_native_order(weights))
    del weights
    if counters:
        native.set_buffers(_native_order(statistics), _native_order(counts))
    if has_state:
        named = {name: _native_order(b) for name, b in zip(state_names, state_buffers)}
        del state_buffers
        TrainingState.from_metadata(state, named).restore(net)
    return net


def _from_pickle(data: bytes) -> Any:
    """The unpickling hook that pickles of earlier bpcore versions name: the network of their
    safetensors bytes. (`Network.__reduce__` now names one in bpcore.network; this module does
    not import that one, which imports it.)"""
    network = importlib.import_module("bpcore.network")
    return from_bytes(data, network.Network, source="pickled network")


__all__ = [
    "CHECKSUMS_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_JSON_ITEMS",
    "MAX_LAYERS",
    "decode",
    "encode",
    "from_bytes",
    "load",
    "save",
    "to_bytes",
    "write_atomic",
]

"""Seeded fuzzing of loading: mutated saved files (from disk and from bytes), mutated pickles and
pickles of mutated files, each loaded in a child process of its own under a memory limit and a
timeout, so that a crash, an abort, a hang or a runaway allocation fails the test instead of
killing the run.

Every load must end in a network or in ValueError, TypeError or OSError (for raw pickle bytes,
the pickle module's own errors too, as long as no bpcore frame raised them); no child may be
killed by a signal or peak above MAX_PEAK_MB of resident memory; and a change inside the tensor
data must never load (the checksums). The default run tries a few hundred mutations; the long
run (`-m slow`) a few thousand.
"""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bpcore as bp
from bpcore import serialization

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="each case runs in a fork()ed child under RLIMIT_AS (Linux)",
)

#: Most resident memory a child may reach (a forked child starts at the worker's, ~100 MB).
MAX_PEAK_MB = 1024
#: Address space each child may map beyond the worker's, and seconds it may run: far above
#: what a load of these small files needs, so only a runaway or a hang reaches them.
EXTRA_ADDRESS_SPACE = 1536 * 1024**2
TIMEOUT_SECONDS = 120


def models() -> list[bytes]:
    """Saved files of four networks covering every kind of tensor and training state."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 4))
    nets = [
        bp.Network(
            [bp.Dense(4, 6), bp.ReLU(), bp.Dense(6, 2)],
            loss="mse",
            optimizer=bp.SGD(lr=0.1, momentum=0.9),
            dtype="float32",
            seed=1,
        ),
        bp.Network(
            [bp.Dense(4, 5), bp.BatchNorm1d(5), bp.GELU(), bp.Dropout(0.2), bp.Dense(5, 2)],
            loss="mse",
            optimizer=bp.Adam(amsgrad=True),
            dtype="float64",
            seed=2,
        ),
        bp.Network(
            [bp.Dense(4, 5), bp.LayerNorm(5), bp.Tanh(), bp.Dense(5, 2)],
            loss="huber",
            optimizer=bp.RMSprop(momentum=0.5, centered=True),
            dtype="float32",
            seed=3,
        ),
        bp.Network(
            [bp.Dense(4, 5), bp.Softplus(beta=2.0), bp.Dense(5, 3), bp.ELU()],
            loss="cross_entropy",
            optimizer=bp.Adagrad(),
            dtype="float64",
            seed=4,
        ),
    ]
    files = []
    for i, net in enumerate(nets):
        y = rng.integers(0, 3, 24) if i == 3 else rng.normal(size=(24, 2))
        net.fit(X, y, epochs=2, batch_size=8, progress=False)
        files.append(net.to_bytes(include_optimizer=i != 0))
    return files


#: Numbers and values a mutated header may carry in place of one of its numbers.
ODD_VALUES = [
    "-1",
    "0",
    "18446744073709551616",
    "9223372036854775807",
    "1" + "0" * 400,
    "1e999",
    "-1e308",
    "3.5",
    "null",
    "true",
    '"x"',
    '["F32"]',
    "[" + ",".join(["1"] * 65) + "]",
    "{}",
]


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, bool]:
    """One random mutation of a file; also whether it changed only tensor bytes (which must
    then never load)."""
    (n,) = struct.unpack("<Q", data[:8])
    body_start = 8 + n
    kind = rng.integers(9)
    b = bytearray(data)
    if kind == 0:  # flip one bit anywhere
        i = int(rng.integers(len(b)))
        b[i] ^= 1 << int(rng.integers(8))
        return bytes(b), i >= body_start
    if kind == 1:  # flip a bit inside the tensor data
        i = int(rng.integers(body_start, len(b)))
        b[i] ^= 1 << int(rng.integers(8))
        return bytes(b), True
    if kind == 2:  # truncate
        return bytes(b[: int(rng.integers(len(b)))]), False
    if kind == 3:  # insert random bytes
        i = int(rng.integers(len(b) + 1))
        return bytes(b[:i]) + rng.bytes(int(rng.integers(1, 16))) + bytes(b[i:]), False
    if kind == 4:  # delete a range
        i = int(rng.integers(len(b)))
        return bytes(b[:i]) + bytes(b[i + int(rng.integers(1, 64)) :]), False
    if kind == 5:  # a random header length
        lengths = [0, 1, n - 1, n + 1, n + 8, 2**62, 2**64 - 1, 100_000_001]
        length = lengths[int(rng.integers(len(lengths)))]
        return struct.pack("<Q", length) + bytes(b[8:]), False
    text = data[8:body_start].decode()
    if kind == 6:  # one number of the header replaced by an odd value
        digits = [i for i, c in enumerate(text) if c.isdigit() and not text[i - 1].isdigit()]
        i = int(rng.choice(digits))
        j = i
        while j < len(text) and (text[j].isdigit() or text[j] in ".e-"):
            j += 1
        text = text[:i] + ODD_VALUES[int(rng.integers(len(ODD_VALUES)))] + text[j:]
    elif kind == 7:  # one punctuation character of the header replaced
        marks = [i for i, c in enumerate(text) if c in '{}[]:,"\\']
        i = int(rng.choice(marks))
        text = text[:i] + str(rng.choice(list('{}[]:,"\\ x0'))) + text[i + 1 :]
    else:  # a piece of the header repeated (keys, entries, metadata)
        i = int(rng.integers(len(text)))
        piece = text[i : i + int(rng.integers(1, 200))]
        text = text[:i] + piece + text[i:]
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw + data[body_start:], False


class Pickled:
    """Pickles as a network does: its file's bytes behind bpcore's loader."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):
        return (serialization._from_pickle, (self.data,))


def cases(seed: int, count: int) -> list[dict]:
    """`count` mutations (seeded): files loaded from disk and from bytes, pickles of mutated
    files, and mutated pickles."""
    rng = np.random.default_rng(seed)
    files = models()
    pickled = [pickle.dumps(bp.Network.from_bytes(f), protocol=4) for f in files]
    out: list[dict] = []
    while len(out) < count:
        which = int(rng.integers(len(files)))
        how = str(rng.choice(["file", "bytes", "pickled_file", "pickle"]))
        if how == "pickle":
            data = bytearray(pickled[which])
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(len(data)))] = int(rng.integers(256))
            mutated, data_only = bytes(data), False
            original = pickled[which]
        else:
            mutated, data_only = mutate(files[which], rng)
            original = files[which]
            if how == "pickled_file":
                mutated, original = pickle.dumps(Pickled(mutated)), pickle.dumps(Pickled(original))
        if mutated != original:
            out.append({"how": how, "data": mutated.hex(), "data_only": data_only})
    return out


#: The worker: forks one child per case, which sets its limits, loads, and reports.
WORKER = textwrap.dedent(
    """
    import io, json, os, pickle, resource, signal, sys, tempfile, traceback
    import bpcore as bp

    cases = json.load(open(sys.argv[1]))
    extra, timeout = int(sys.argv[2]), int(sys.argv[3])
    package = os.path.dirname(bp.__file__)

    class OnlyBpcore(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("bpcore.serialization", "_from_pickle"):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def vm_size():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
        return 0

    def load(case, folder):
        data = bytes.fromhex(case["data"])
        if case["how"] == "file":
            path = os.path.join(folder, "case.safetensors")
            with open(path, "wb") as f:
                f.write(data)
            return bp.Network.load(path)
        if case["how"] == "bytes":
            return bp.Network.from_bytes(data)
        return OnlyBpcore(io.BytesIO(data)).load()

    results = []
    folder = tempfile.mkdtemp()
    for case in cases:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            limit = vm_size() + extra
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.alarm(timeout)
            try:
                net = load(case, folder)
                outcome = {"loaded": isinstance(net, bp.Network)}
            except BaseException as e:
                frames = traceback.extract_tb(e.__traceback__)
                outcome = {
                    "error": type(e).__name__,
                    "message": str(e)[:300],
                    "from_bpcore": any(f.filename.startswith(package) for f in frames),
                }
            os.write(write, json.dumps(outcome).encode())
            os._exit(0)
        os.close(write)
        chunks = []
        while True:
            chunk = os.read(read, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read)
        _, status, usage = os.wait4(pid, 0)
        outcome = json.loads(b"".join(chunks) or b"{}")
        outcome["signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        outcome["peak_mb"] = usage.ru_maxrss / 1024
        results.append(outcome)
    print(json.dumps(results))
    """
)

#: What a load may raise: the promises' exceptions (OSError for the file system).
ALLOWED = {"ValueError", "TypeError", "OSError"}


def problems(case: dict, outcome: dict) -> str | None:
    """What is wrong with one case's outcome, or None."""
    if outcome.get("signal") is not None:
        return f"killed by signal {outcome['signal']} (crash, abort or timeout)"
    if outcome["peak_mb"] > MAX_PEAK_MB:
        return f"peak resident memory {outcome['peak_mb']:.0f} MB"
    if "error" in outcome:
        raw_pickle = case["how"] == "pickle" and not outcome["from_bpcore"]
        if outcome["error"] not in ALLOWED and not raw_pickle:
            return f"{outcome['error']}: {outcome['message']}"
        return None
    if not outcome.get("loaded"):
        return f"no outcome reported: {outcome}"
    if case["data_only"]:
        return "a change in the tensor data loaded (silent corruption)"
    return None


def fuzz(seed: int, count: int, tmp_path) -> None:
    batch = cases(seed, count)
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(batch))
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(path), str(EXTRA_ADDRESS_SPACE), str(TIMEOUT_SECONDS)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(outcomes) == len(batch)
    failures = [
        f"case {i} ({case['how']}, seed {seed}): {problem}"
        for i, (case, outcome) in enumerate(zip(batch, outcomes))
        if (problem := problems(case, outcome)) is not None
    ]
    assert not failures, "\n".join(failures[:20])
    refused = sum("error" in o for o in outcomes)
    # Nearly every mutation must be caught; a few (spaces, equal numbers) are harmless.
    assert refused >= 0.9 * len(outcomes), f"only {refused} of {len(outcomes)} refused"


def test_a_few_hundred_mutations_load_or_are_refused_cleanly(tmp_path):
    fuzz(seed=0, count=200, tmp_path=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_thousands_of_mutations_load_or_are_refused_cleanly(seed, tmp_path):
    fuzz(seed=seed, count=1200, tmp_path=tmp_path)

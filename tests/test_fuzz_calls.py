"""Seeded fuzzing of the API with hostile arguments: constructors of every layer, loss,
optimizer and schedule, and a network's methods with arrays of odd shapes, dtypes, views and
extreme values, each call in a forked child under a memory limit and a timeout.

Every call must return or raise ValueError or TypeError (training calls may also raise
bp.TrainingDivergedError); no child may crash, hang or exceed the memory limit; and a call that
raises must leave the network's parameters and optimizer state bit for bit as they were.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="each case runs in a fork()ed child under RLIMIT_AS (Linux)",
)

#: The worker: builds each case from its seed, forks a child per case, reports the outcomes.
WORKER = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    import numpy as np
    import bpcore as bp

    seed, count, extra, timeout = (int(a) for a in sys.argv[1:5])

    SCALARS = [0, -1, 1, 2, 3, 0.5, 1e-300, 1e308, -1e308, 2**40 + 1, 2**63, 10**400, -10**400,
               float("nan"), float("inf"), -float("inf"), True, None, "a", [1, 2], (0.5,),
               np.float32(3), np.int64(-5), np.float64(0.9), 1e-320]
    CONSTRUCTORS = {
        "Dense": (bp.Dense, 3), "LeakyReLU": (bp.LeakyReLU, 1), "ELU": (bp.ELU, 1),
        "Softplus": (bp.Softplus, 2), "Dropout": (bp.Dropout, 1),
        "BatchNorm1d": (bp.BatchNorm1d, 3), "LayerNorm": (bp.LayerNorm, 2),
        "SGD": (bp.SGD, 5), "Adam": (bp.Adam, 5), "AdamW": (bp.AdamW, 5),
        "RMSprop": (bp.RMSprop, 6), "Adagrad": (bp.Adagrad, 5), "StepLR": (bp.StepLR, 2),
        "ExponentialLR": (bp.ExponentialLR, 1), "CosineAnnealingLR": (bp.CosineAnnealingLR, 2),
        "HuberLoss": (bp.HuberLoss, 1), "CrossEntropyLoss": (bp.CrossEntropyLoss, 1),
    }
    SHAPES = [(0, 3), (1, 3), (2, 3), (5, 3), (2, 4), (3,), (2, 3, 1), (2, 2), (5, 1), (5,)]
    DTYPES = ["float32", "float64", "int64", "uint8", "bool", "complex64", "object", "U1"]
    SPECIAL = [None, np.nan, np.inf, 1e300, 1e39, -1e39, 1e20, 2**70]

    def scalar(rng):
        return SCALARS[int(rng.integers(len(SCALARS)))]

    def array(rng):
        kind = int(rng.integers(10))
        if kind == 0:
            return np.broadcast_to(np.zeros(3), (2**40, 3))
        if kind == 1:
            return np.ma.masked_array(np.ones((5, 3)), mask=rng.integers(0, 2, (5, 3)))
        if kind == 2:
            return scalar(rng)
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        dtype = DTYPES[int(rng.integers(len(DTYPES)))]
        try:
            a = rng.normal(size=shape).astype(dtype)
        except (TypeError, ValueError):
            a = np.zeros(shape, dtype=dtype)
        value = SPECIAL[int(rng.integers(len(SPECIAL)))]
        if value is not None and a.size and a.dtype.kind in "f":
            a.flat[int(rng.integers(a.size))] = value
        return a.T if kind == 3 else a

    def network():
        return bp.Network([bp.Dense(3, 4), bp.BatchNorm1d(4), bp.ReLU(), bp.Dense(4, 2)],
                          loss="mse", optimizer=bp.Adam(lr=0.01), seed=0)

    def named(net, rng, what):
        values = {k: array(rng) if rng.random() < 0.5 else v
                  for k, v in getattr(net, what)().items()}
        if rng.random() < 0.2:
            values.pop(next(iter(values)))
        return values

    def call(rng, net):
        kind = int(rng.integers(12))
        if kind < 3:
            name = sorted(CONSTRUCTORS)[int(rng.integers(len(CONSTRUCTORS)))]
            make, arity = CONSTRUCTORS[name]
            args = [scalar(rng) for _ in range(int(rng.integers(arity + 1)))]
            return name, False, lambda: make(*args)
        # Each argument good or hostile, so that calls get past their first check too.
        X = rng.normal(size=(5, 3)) if rng.random() < 0.4 else array(rng)
        y = rng.normal(size=(5, 2)) if rng.random() < 0.4 else array(rng)
        w = None if rng.random() < 0.6 else rng.random(5) if rng.random() < 0.4 else array(rng)
        params = lambda: named(net, rng, "parameters")
        methods = {
            3: ("forward", False, lambda: net.forward(X)),
            4: ("train_step", True, lambda: net.train_step(X, y, sample_weight=w)),
            5: ("gradients", False, lambda: net.gradients(X, y, sample_weight=w)),
            6: ("loss", False, lambda: net.loss(X, y)),
            7: ("set_parameters", False, lambda: net.set_parameters(params())),
            8: ("apply_gradients", False, lambda: net.apply_gradients(params())),
            9: ("set_buffers", False, lambda: net.set_buffers(named(net, rng, "buffers"))),
            10: ("load_state_dict", False,
                 lambda: net.load_state_dict(named(net, rng, "state_dict"))),
        }
        if kind in methods:
            return methods[kind]
        options = {k: scalar(rng) for k in ("epochs", "batch_size", "validation_split",
                                            "clip_grad_norm") if rng.random() < 0.3}
        epochs = options.get("epochs", 1)
        if isinstance(epochs, (int, np.integer)) and not isinstance(epochs, bool) and epochs > 3:
            options["epochs"] = 3  # a valid count that runs long is not what this looks for
        return "fit", True, lambda: net.fit(X, y, progress=False, **options)

    def state(net):
        steps, buffers = net.native.optimizer_state()
        return [net.native.params().tobytes(), steps, [b.tobytes() for b in buffers]]

    results = []
    for case in range(count):
        rng = np.random.default_rng([seed, case])
        net = network()
        net.train_step(np.random.default_rng(case).normal(size=(4, 3)), np.zeros((4, 2)))
        name, training, run = call(rng, net)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            limit = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (limit + extra, limit + extra))
            signal.alarm(timeout)
            before = state(net)
            try:
                run()
                outcome = {"error": None}
            except BaseException as e:
                allowed = isinstance(e, (ValueError, TypeError)) or (
                    training and isinstance(e, bp.TrainingDivergedError))
                outcome = {"error": type(e).__name__, "message": str(e)[:200],
                           "allowed": allowed,
                           "unchanged": state(net) == before or isinstance(
                               e, bp.TrainingDivergedError)}
            os.write(write, json.dumps(outcome).encode())
            os._exit(0)
        os.close(write)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        _, status, usage = os.wait4(pid, 0)
        outcome = json.loads(b"".join(chunks) or b"{}")
        outcome.update(name=name, signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                       peak_mb=usage.ru_maxrss / 1024)
        results.append(outcome)
    print(json.dumps(results))
    """
)

MAX_PEAK_MB = 1024
EXTRA_ADDRESS_SPACE = 1536 * 1024**2
TIMEOUT_SECONDS = 120


def fuzz(seed: int, count: int) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            str(seed),
            str(count),
            str(EXTRA_ADDRESS_SPACE),
            str(TIMEOUT_SECONDS),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    failures = []
    for i, o in enumerate(outcomes):
        where = f"case {i} ({o['name']}, seed {seed})"
        if o["signal"] is not None:
            failures.append(f"{where}: killed by signal {o['signal']}")
        elif o["peak_mb"] > MAX_PEAK_MB:
            failures.append(f"{where}: peak resident memory {o['peak_mb']:.0f} MB")
        elif o.get("error") and not o["allowed"]:
            failures.append(f"{where}: {o['error']}: {o['message']}")
        elif o.get("error") and not o["unchanged"]:
            failures.append(f"{where}: refused ({o['message']}) but changed the network")
    assert not failures, "\n".join(failures[:20])
    assert sum(bool(o.get("error")) for o in outcomes) > len(outcomes) // 2  # mostly hostile


def test_a_few_hundred_hostile_calls_return_or_raise_cleanly():
    fuzz(seed=0, count=200)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_thousands_of_hostile_calls_return_or_raise_cleanly(seed):
    fuzz(seed=seed, count=1000)

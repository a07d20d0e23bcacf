"""The CNN row: training epochs of the digits CNN (scikit-learn's 1,797 8×8 digits as 1×8×8
images; Conv2d(1,16,3,padding=1) → ReLU → MaxPool2d(2) → Conv2d(16,32,3,padding=1) → ReLU →
MaxPool2d(2) → Flatten → Dense(128,10), Adam, cross-entropy) at batch 32 and 128, in bpcore,
PyTorch's eager loop and, when jax is installed, a JAX epoch compiled with ``lax.scan``.

The systems take turns epoch by epoch, so that load from elsewhere on the machine falls on all
of them alike, and each reports the median of its turns in samples per second (the epoch's
shuffling included; JAX's compilation excluded, its first epoch being a warm-up as every
system's is).

    python -m bpcore.bench.cnn [--turns 7] [--no-torch] [--no-jax]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import bpcore as bp
from bpcore.bench.results import Result
from bpcore.bench.timing import SETTLE_SECONDS

#: The workload's name in the benchmark's table (`--only cnn`).
WORKLOAD = "cnn"
#: What the rows train, for the benchmark's list of workloads.
DESCRIPTION = (
    "digits as 1x8x8 images, Conv2d(1,16,3,p=1) → ReLU → MaxPool2d(2) → Conv2d(16,32,3,p=1) → "
    "ReLU → MaxPool2d(2) → Flatten → Dense(128,10), Adam"
)

BATCH_SIZES = (32, 128)
#: torch runs at each of these thread counts and keeps the faster (as the suite's rows do).
TORCH_THREADS = (1, 2)
LEARNING_RATE = 1e-3
#: Epochs per turn: one epoch of the digits is a few milliseconds, below a timer's comfort.
EPOCHS_PER_TURN = 3


def layers() -> list[bp.Layer]:
    """The digits CNN, in bpcore's layers."""
    return [
        bp.Reshape((1, 8, 8)),
        bp.Conv2d(1, 16, 3, padding=1),
        bp.ReLU(),
        bp.MaxPool2d(2),
        bp.Conv2d(16, 32, 3, padding=1),
        bp.ReLU(),
        bp.MaxPool2d(2),
        bp.Flatten(),
        bp.Dense(128, 10),
    ]


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, pixels scaled to [0, 1] (float32), labels int64."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y.astype(np.int64)


def _timed(epoch: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(EPOCHS_PER_TURN):
        epoch()
    return time.perf_counter() - start


def bpcore_epoch(X: np.ndarray, y: np.ndarray, batch: int) -> Callable[[], object]:
    """One shuffled training epoch of bpcore's net.fit."""
    net = bp.Network(layers(), loss="cross_entropy", optimizer=bp.Adam(lr=LEARNING_RATE))
    return lambda: net.fit(X, y, epochs=1, batch_size=batch, progress=False)


def torch_epoch(
    X: np.ndarray, y: np.ndarray, batch: int, start: dict[str, np.ndarray], threads: int
) -> Callable[[], object]:
    """One shuffled training epoch of the equal torch module in torch's eager loop, on
    `threads` threads."""
    import torch

    module = bp.to_torch(bp.Network(layers(), loss="cross_entropy"))
    module.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()})
    optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(X), torch.from_numpy(y)

    def epoch() -> None:
        torch.set_num_threads(threads)
        order = torch.randperm(len(xs))
        for i in range(0, len(xs), batch):
            rows = order[i : i + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(module(xs[rows]), ys[rows]).backward()
            optimizer.step()

    return epoch


def _jax() -> tuple[Any, Any]:
    # Imported by name: jax is optional and has no type stubs where the package is checked.
    return importlib.import_module("jax"), importlib.import_module("jax.numpy")


def jax_forward(p: dict[str, Any], x: Any) -> Any:
    """The digits CNN's outputs in JAX, from bpcore's parameters by name."""
    jax, jnp = _jax()

    def conv(h: Any, w: Any, b: Any) -> Any:
        out = jax.lax.conv_general_dilated(h, w, (1, 1), ((1, 1), (1, 1)))
        return out + b[None, :, None, None]

    def pool(h: Any) -> Any:
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    h = x.reshape(-1, 1, 8, 8)
    h = pool(jax.nn.relu(conv(h, p["1.weight"], p["1.bias"])))
    h = pool(jax.nn.relu(conv(h, p["4.weight"], p["4.bias"])))
    return h.reshape(h.shape[0], -1) @ p["8.weight"].T + p["8.bias"]


def jax_epoch(
    X: np.ndarray, y: np.ndarray, batch: int, start: dict[str, np.ndarray]
) -> Callable[[], object]:
    """One shuffled training epoch in JAX: the whole epoch's steps compiled as one
    ``lax.scan`` (full batches; the remainder batch is dropped, which only flatters JAX)."""
    jax, jnp = _jax()

    def loss(p: dict[str, Any], xb: Any, yb: Any) -> Any:
        z = jax_forward(p, xb)
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(yb.shape[0]), yb])

    b1, b2, eps = 0.9, 0.999, 1e-8

    def step(state: Any, batch_xy: Any) -> Any:
        p, m, v, t = state
        g = jax.grad(loss)(p, *batch_xy)
        t = t + 1
        m = jax.tree.map(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
        v = jax.tree.map(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
        scale = LEARNING_RATE * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        p = jax.tree.map(lambda p_, m_, v_: p_ - scale * m_ / (jnp.sqrt(v_) + eps), p, m, v)
        return (p, m, v, t), None

    steps = len(X) // batch

    def whole_epoch(state: Any, key: Any) -> Any:
        order = jax.random.permutation(key, len(X))[: steps * batch]
        xb = jnp.asarray(X)[order].reshape(steps, batch, -1)
        yb = jnp.asarray(y)[order].reshape(steps, batch)
        return jax.lax.scan(step, state, (xb, yb))[0]

    run = jax.jit(whole_epoch)

    params = {k: jnp.asarray(v) for k, v in start.items()}
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = [(params, zeros, zeros, jnp.zeros((), jnp.float32)), jax.random.PRNGKey(0)]

    def epoch() -> None:
        state[1], key = jax.random.split(state[1])
        state[0] = run(state[0], key)
        jax.block_until_ready(state[0])

    return epoch


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def measure(
    turns: int = 7, use_torch: bool = True, use_jax: bool = True, samples: int | None = None
) -> list[Result]:
    """The CNN rows: per batch size, each available system's median samples/s over `turns`
    alternating turns (after one warm-up turn each), on the first `samples` digits (all of
    them by default)."""
    X, y = digits()
    X, y = X[:samples], y[:samples]
    start = bp.Network(layers(), loss="cross_entropy").parameters()
    rows = []
    for batch in BATCH_SIZES:
        systems = {"bpcore": bpcore_epoch(X, y, batch)}
        if use_torch and _available("torch"):
            for threads in TORCH_THREADS:
                systems[f"torch/{threads}"] = torch_epoch(X, y, batch, start, threads)
        if use_jax and _available("jax"):
            systems["jax"] = jax_epoch(X, y, batch, start)
        for epoch in systems.values():
            _timed(epoch)  # warm-up: buffers, thread pools, JAX's compilation
        seconds: dict[str, list[float]] = {name: [] for name in systems}
        for _ in range(turns):
            for name, epoch in systems.items():
                time.sleep(SETTLE_SECONDS)  # the previous system's idle threads settle
                seconds[name].append(_timed(epoch))
        rates = {
            name: EPOCHS_PER_TURN * len(X) / statistics.median(times)
            for name, times in seconds.items()
        }
        note = f"median of {turns} alternating turns of {EPOCHS_PER_TURN} epochs"
        workload = f"{WORKLOAD} (batch {batch})"
        rows.append(Result(workload, "bpcore", "samples/s", rates["bpcore"],
                           bp.get_num_threads(), note=f"net.fit, {note}"))  # fmt: skip
        torch_rates = {t: rates[f"torch/{t}"] for t in TORCH_THREADS if f"torch/{t}" in rates}
        if torch_rates:
            best = max(torch_rates, key=lambda t: torch_rates[t])
            each = ", ".join(f"{t} thr: {r:,.0f}" for t, r in torch_rates.items())
            rows.append(Result(workload, "torch", "samples/s", torch_rates[best], best,
                               note=f"eager loop, {note}; best of {each}"))  # fmt: skip
        if "jax" in rates:
            rows.append(Result(workload, "jax", "samples/s", rates["jax"],
                               note=f"one jit lax.scan per epoch, {note}"))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    """Prints the CNN rows and bpcore's speed-up over each other system."""
    parser = argparse.ArgumentParser(description="bpcore's CNN benchmark row")
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-jax", action="store_true")
    args = parser.parse_args(argv)
    rows = measure(args.turns, not args.no_torch, not args.no_jax)
    ours = {r.workload: r.value for r in rows if r.system == "bpcore"}
    for r in rows:
        ratio = "" if r.system == "bpcore" else f"  (bpcore x{ours[r.workload] / r.value:.2f})"
        threads = "" if r.threads is None else f", {r.threads} threads"
        print(f"{r.workload:16} {r.system:7} {r.value:10,.0f} samples/s{threads}{ratio}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

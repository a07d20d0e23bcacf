"""JAX with optax on the same workloads, imported lazily: the benchmark skips it when JAX or optax
is missing.

Two ways JAX users train a small network, both from bpcore's initial weights:

- ``jit step``: one jitted function per step (the batch gathered from the data on the device
  by an index inside it, the loss, ``jax.grad``, the optax update), called from a Python loop;
- ``scan epoch``: a whole epoch compiled as one function, the shuffled data cut into batches
  and ``jax.lax.scan`` running the steps over them (the remainder of a batch is dropped and not
  counted).

float64 workloads run with ``jax_enable_x64`` on, for that measurement only.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from bpcore.bench.timing import median_microseconds, samples_per_second
from bpcore.bench.workloads import Workload

MODES = ("scan epoch", "jit step")


def available() -> bool:
    """Whether both jax and optax can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("jax", "optax"))


def version() -> str:
    """``jax X, optax Y``."""
    import jax
    import optax

    return f"jax {jax.__version__}, optax {optax.__version__}"


@contextlib.contextmanager
def precision(dtype: str) -> Iterator[None]:
    """JAX computing in ``dtype``: 64-bit types enabled for float64, and restored after."""
    import jax

    before = bool(jax.config.read("jax_enable_x64"))
    jax.config.update("jax_enable_x64", dtype == "float64")
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def _layers(parameters: Mapping[str, np.ndarray], dtype: str) -> list[tuple[Any, Any]]:
    """The (weight, bias) pairs of bpcore's ``parameters`` (``0.weight``, ``0.bias``, ...)."""
    import jax.numpy as jnp

    indices = sorted({int(name.split(".")[0]) for name in parameters})
    return [
        (
            jnp.asarray(parameters[f"{i}.weight"], dtype=dtype),
            jnp.asarray(parameters[f"{i}.bias"], dtype=dtype),
        )
        for i in indices
    ]


def _forward(workload: Workload) -> Any:
    """``forward(layers, x)``: the dense layers with the workload's activation between them."""
    import jax.numpy as jnp

    activation = jnp.tanh if workload.activation == "tanh" else (lambda z: jnp.maximum(z, 0))

    def forward(layers: list[tuple[Any, Any]], x: Any) -> Any:
        for i, (w, b) in enumerate(layers):
            x = x @ w.T + b
            if i < len(layers) - 1:
                x = activation(x)
        return x

    return forward


def _loss(workload: Workload) -> Any:
    """``loss(layers, x, y)``: the mean loss of a batch, as torch's."""
    import jax.numpy as jnp
    import optax

    forward = _forward(workload)

    def loss(layers: list[tuple[Any, Any]], x: Any, y: Any) -> Any:
        out = forward(layers, x)
        if workload.loss == "cross_entropy":
            return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
        return jnp.mean((out - y) ** 2)

    return loss


def _optimizer(workload: Workload) -> Any:
    """The workload's optimizer in optax (torch's update rules)."""
    import optax

    if workload.optimizer == "sgd":
        return optax.sgd(workload.lr, momentum=workload.momentum or None)
    return optax.adam(workload.lr)


def _update(workload: Workload) -> tuple[Any, Any]:
    """``(optimizer, update)``: optax's optimizer for the workload and ``update((layers, state),
    x, t) -> ((layers, state), loss)``, one training step on a batch."""
    import jax

    loss = _loss(workload)
    opt = _optimizer(workload)

    def update(carry: Any, x: Any, t: Any) -> tuple[Any, Any]:
        layers, state = carry
        value, grads = jax.value_and_grad(loss)(layers, x, t)
        updates, state = opt.update(grads, state, layers)
        layers = jax.tree_util.tree_map(lambda p, u: p + u, layers, updates)
        return (layers, state), value

    return opt, update


def train_steps(
    workload: Workload, X: np.ndarray, y: np.ndarray, parameters: Mapping[str, np.ndarray]
) -> tuple[list[float], dict[str, np.ndarray]]:
    """The losses of jitted steps over ``X`` batch after batch, in order, from ``parameters``,
    and the parameters after them (bpcore's names): what the timed loops compute."""
    import jax

    with precision(workload.dtype):
        opt, update = _update(workload)
        layers = _layers(parameters, workload.dtype)
        carry = (layers, opt.init(layers))
        step = jax.jit(update)
        B, losses = workload.batch_size, []
        for s in range(0, len(X) - B + 1, B):
            carry, value = step(carry, X[s : s + B], y[s : s + B])
            losses.append(float(value))
        final = {}
        for i, (w, b) in enumerate(carry[0]):
            index = 2 * i  # the dense layers sit at even indices, activations between them
            final[f"{index}.weight"], final[f"{index}.bias"] = np.asarray(w), np.asarray(b)
        return losses, final


def train_rate(
    workload: Workload,
    X: np.ndarray,
    y: np.ndarray,
    parameters: Mapping[str, np.ndarray],
    mode: str,
) -> float:
    """Samples per second of shuffled epochs in ``mode`` (one of ``MODES``), after one untimed
    epoch that compiles."""
    import jax
    import jax.numpy as jnp

    with precision(workload.dtype):
        opt, update = _update(workload)
        layers = _layers(parameters, workload.dtype)
        state = opt.init(layers)
        Xd, yd = jnp.asarray(X), jnp.asarray(y)
        B, n = workload.batch_size, len(X)
        rng = np.random.default_rng(0)

        if mode == "jit step":

            @jax.jit
            def step(carry: Any, index: Any) -> tuple[Any, Any]:
                return update(carry, Xd[index], yd[index])

            def epoch(carry: Any) -> tuple[Any, int]:
                order = rng.permutation(n)
                value = None
                for s in range(0, n - B + 1, B):
                    carry, value = step(carry, order[s : s + B])
                jax.block_until_ready(value)
                return carry, (n // B) * B

        elif mode == "scan epoch":
            n_batches = n // B

            @jax.jit
            def run_epoch(carry: Any, order: Any) -> tuple[Any, Any]:
                index = order[: n_batches * B].reshape(n_batches, B)
                xs, ts = Xd[index], yd[index]
                return jax.lax.scan(lambda c, xt: update(c, *xt), carry, (xs, ts))

            def epoch(carry: Any) -> tuple[Any, int]:
                carry, values = run_epoch(carry, jnp.asarray(rng.permutation(n)))
                jax.block_until_ready(values)
                return carry, n_batches * B

        else:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

        box = {"carry": (layers, state)}
        box["carry"], trained = epoch(box["carry"])  # compiles

        def timed() -> None:
            box["carry"], _ = epoch(box["carry"])

        rate = samples_per_second(timed, trained, workload.min_seconds)
    return rate


def predict_microseconds(
    workload: Workload, parameters: Mapping[str, np.ndarray], x1: np.ndarray, calls: int
) -> float:
    """Median microseconds of a jitted forward pass on one sample (array in, result ready)."""
    import jax

    with precision(workload.dtype):
        layers = _layers(parameters, workload.dtype)
        forward = jax.jit(_forward(workload))
        xd = jax.numpy.asarray(x1)

        def call() -> Any:
            return forward(layers, xd).block_until_ready()

        return median_microseconds(call, calls)

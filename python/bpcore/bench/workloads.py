"""The networks the benchmark trains: sizes, loss, optimizer, batch size and how long to time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    """One training workload: a dense network ``widths[0]-...-widths[-1]`` with ``activation``
    between its layers, trained with ``loss`` and ``optimizer`` at ``batch_size``.

    ``samples`` is the size of one timed epoch; epochs are repeated until at least
    ``min_seconds`` have passed (0: a single epoch). ``reference_samples`` (0: not run) is how
    many samples the slow pure-Python reference trains on.
    """

    name: str
    widths: tuple[int, ...]
    activation: str  # "tanh" or "relu"
    loss: str  # "mse" or "cross_entropy"
    optimizer: str  # "sgd" (with momentum) or "adam"
    lr: float
    batch_size: int
    samples: int
    min_seconds: float = 0.0
    momentum: float = 0.0
    reference_samples: int = 0
    dtype: str = "float32"  # or "float64"

    @property
    def n_weights(self) -> int:
        """Weights of the dense layers (biases not counted)."""
        return sum(a * b for a, b in zip(self.widths[:-1], self.widths[1:]))

    @property
    def flops_per_sample(self) -> int:
        """A training step counted as 6 flops per weight per sample (2 forward, 4 backward)."""
        return 6 * self.n_weights

    @property
    def description(self) -> str:
        """E.g. ``784-256-128-10 relu, cross_entropy, adam(lr=0.001), batch 32``."""
        opt = f"{self.optimizer}(lr={self.lr:g}"
        opt += f", momentum={self.momentum:g})" if self.optimizer == "sgd" else ")"
        return (
            f"{'-'.join(map(str, self.widths))} {self.activation}, {self.loss}, {opt}, "
            f"batch {self.batch_size}" + ("" if self.dtype == "float32" else f", {self.dtype}")
        )


TRAINING: dict[str, Workload] = {
    "tiny": Workload(
        "tiny", (10, 32, 32, 1), "tanh", "mse", "sgd", lr=0.01, momentum=0.9,
        batch_size=16, samples=16_384, min_seconds=1.0, reference_samples=320,
    ),
    "small": Workload(
        "small", (784, 256, 128, 10), "relu", "cross_entropy", "adam", lr=1e-3,
        batch_size=32, samples=8_192, min_seconds=1.0,
    ),
    "mnist": Workload(
        "mnist", (784, 256, 128, 10), "relu", "cross_entropy", "adam", lr=1e-3,
        batch_size=128, samples=60_000,
    ),
    "wide": Workload(
        "wide", (1024, 2048, 2048, 10), "relu", "cross_entropy", "adam", lr=1e-3,
        batch_size=256, samples=40 * 256,
    ),
}  # fmt: skip

# The mnist and small networks again in float64 (JAX with 64-bit types enabled, torch in double).
for _name in ("mnist", "small"):
    TRAINING[f"{_name}-f64"] = dataclasses.replace(
        TRAINING[_name], name=f"{_name}-f64", dtype="float64"
    )

# How cost grows with work: 784-h-h-10 at two batch sizes, each cell timed for about a second.
SWEEP_WIDTHS = (32, 128, 512, 2048)
SWEEP_BATCHES = (32, 256)
SWEEP: dict[str, Workload] = {
    f"sweep-h{h}-b{b}": Workload(
        f"sweep-h{h}-b{b}", (784, h, h, 10), "relu", "cross_entropy", "adam", lr=1e-3,
        batch_size=b, samples=max(2048, min(16_384, (1 << 27) // (h * h))) // b * b,
        min_seconds=1.0,
    )
    for b in SWEEP_BATCHES
    for h in SWEEP_WIDTHS
}  # fmt: skip
TRAINING.update(SWEEP)

# Workloads that are not training: one-sample latency and the matrix-multiply rate.
OTHER = ("predict", "sgemm")
# What --only accepts: each training workload, "sweep" for all of its cells, and the others.
ALL = (*(name for name in TRAINING if name not in SWEEP), "sweep", *OTHER)

# The threads rows: bpcore's fit of these workloads on one thread against all of its threads.
THREADS_WORKLOAD = "threads"
THREADS_WORKLOADS = ("mnist", "small")
ONE_THREAD = "1 thread"  # the system name of the one-thread rows (the others are "bpcore")


def threads_row_name(name: str) -> str:
    """The workload name of the threads rows of training workload ``name``."""
    return f"{THREADS_WORKLOAD}-{name}"


PREDICT_CALLS = 2_000
SGEMM_SIZE = 1024
SGEMM_REPEATS = 5


def quick(workload: Workload) -> Workload:
    """The same network on far fewer samples, for a run of a few seconds (``--quick``)."""
    base = workload.name.removesuffix("-f64")
    batches = {"tiny": 64, "small": 16, "mnist": 8, "wide": 2}.get(base, 2)
    return dataclasses.replace(
        workload,
        samples=batches * workload.batch_size,
        min_seconds=0.0,
        reference_samples=min(workload.reference_samples, 64),
    )

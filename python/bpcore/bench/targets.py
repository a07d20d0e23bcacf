"""The speed targets bpcore aims at, checked against one run's results as ratios."""

from __future__ import annotations

from dataclasses import dataclass

from bpcore.bench.results import Results
from bpcore.bench.workloads import ONE_THREAD, SWEEP, threads_row_name


@dataclass
class Target:
    """One goal: ``measured`` should reach ``goal`` (both ratios where more is better)."""

    name: str
    goal: float
    measured: float | None
    unit: str  # "x" (a ratio) or "%" (a fraction)
    missing: str = ""  # why it could not be measured

    @property
    def status(self) -> str:
        """PASS, MISS, or n/a when it was not measured."""
        if self.measured is None:
            return "n/a"
        return "PASS" if self.measured >= self.goal else "MISS"

    def describe(self) -> tuple[str, str, str]:
        """(goal, measured, status) formatted for the table."""
        if self.unit == "%":
            goal = f"≥ {self.goal:.0%}"
            got = "-" if self.measured is None else f"{self.measured:.1%}"
        else:
            goal = f"≥ {self.goal:g}x"
            got = "-" if self.measured is None else f"{self.measured:.2f}x"
        return goal, got if self.measured is not None else self.missing or "-", self.status


def _fraction(results: Results, workload: str) -> float | None:
    row = results.get(workload, "bpcore")
    return None if row is None else row.sgemm_fraction


def _matmul_ratio(results: Results) -> float | None:
    ours, numpy = results.get("sgemm", "bpcore"), results.get("sgemm", "numpy")
    if ours is None or numpy is None:
        return None
    return ours.value / numpy.value


def _thread_speedup(results: Results, name: str) -> float | None:
    """bpcore's samples/s on all its threads ÷ on one thread, from the threads rows of ``name``
    (None when they were not measured, or bpcore had one thread)."""
    return results.advantage(threads_row_name(name), ONE_THREAD)


def _sweep_worst(results: Results) -> float | None:
    """The smallest advantage over the best peer among the sweep's measured cells."""
    ratios = [results.advantage_over_best(name) for name in SWEEP]
    measured = [r for r in ratios if r is not None]
    return min(measured) if measured else None


def _float64_worst(results: Results) -> float | None:
    """The smaller advantage over the best peer of the two float64 workloads."""
    ratios = [results.advantage_over_best(name) for name in ("mnist-f64", "small-f64")]
    measured = [r for r in ratios if r is not None]
    return min(measured) if measured else None


def evaluate(results: Results) -> list[Target]:
    """Every target with what this run measured (None where not measured). "best peer" is the
    fastest of torch, JAX's scan epoch and JAX's jitted step on that workload."""
    adv, best = results.advantage, results.advantage_over_best
    return [
        Target("mnist: bpcore vs best peer samples/s", 1.3, best("mnist"), "x"),
        Target("mnist: bpcore GFLOP/s vs best sgemm", 0.70, _fraction(results, "mnist"), "%"),
        Target("small: bpcore vs best peer samples/s", 1.3, best("small"), "x"),
        Target("wide: bpcore vs best peer samples/s", 1.1, best("wide"), "x"),
        Target("wide: bpcore GFLOP/s vs best sgemm", 0.85, _fraction(results, "wide"), "%"),
        Target("tiny: bpcore vs JAX scan epoch samples/s", 2.0, adv("tiny", "jax scan"), "x"),
        Target("tiny: bpcore vs torch samples/s", 50.0, adv("tiny", "torch"), "x"),
        Target("tiny: bpcore vs reference samples/s", 1000.0, adv("tiny", "reference"), "x"),
        Target("predict: torch µs ÷ bpcore µs (≤ ¼ latency)", 4.0, adv("predict", "torch"), "x"),
        Target("predict: JAX jit µs ÷ bpcore µs (≤ ½)", 2.0, adv("predict", "jax jit"), "x"),
        Target("sweep: every cell vs best peer (worst)", 1.1, _sweep_worst(results), "x"),
        Target("float64 mnist, small vs best peer (worst)", 1.0, _float64_worst(results), "x"),
        Target("sgemm: bpcore matmul vs NumPy", 0.90, _matmul_ratio(results), "%"),
        Target("memory: torch MB ÷ bpcore MB (mnist epoch)", 1.0, adv("memory", "torch"), "x"),
        Target("threads: mnist, all ÷ 1 thread", 1.8, _thread_speedup(results, "mnist"), "x"),
        Target("threads: small, all ÷ 1 thread", 1.6, _thread_speedup(results, "small"), "x"),
    ]

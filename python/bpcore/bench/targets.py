"""The speed targets bpcore aims at, checked against one run's results as ratios."""

from __future__ import annotations

from dataclasses import dataclass

from bpcore.bench.results import Results


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


def evaluate(results: Results) -> list[Target]:
    """Every target of the issue with what this run measured (None where not measured)."""
    adv = results.advantage
    return [
        Target("mnist: bpcore GFLOP/s vs NumPy sgemm", 0.65, _fraction(results, "mnist"), "%"),
        Target("mnist: bpcore vs torch samples/s", 1.5, adv("mnist", "torch"), "x"),
        Target("wide: bpcore GFLOP/s vs NumPy sgemm", 0.75, _fraction(results, "wide"), "%"),
        Target("wide: bpcore vs torch samples/s", 1.2, adv("wide", "torch"), "x"),
        Target("small: bpcore vs torch samples/s", 3.0, adv("small", "torch"), "x"),
        Target("tiny: bpcore vs torch samples/s", 50.0, adv("tiny", "torch"), "x"),
        Target("tiny: bpcore vs reference samples/s", 1000.0, adv("tiny", "reference"), "x"),
        Target("predict: torch µs ÷ bpcore µs (≤ ¼ latency)", 4.0, adv("predict", "torch"), "x"),
        Target("sgemm: bpcore matmul vs NumPy", 0.90, _matmul_ratio(results), "%"),
        Target("memory: torch MB ÷ bpcore MB (mnist epoch)", 1.0, adv("memory", "torch"), "x"),
    ]

"""The measurements of one run: rows of (workload, system, metric, value) and look-ups on them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Metrics where more is better; for the others (µs per call, MB) less is better.
HIGHER_IS_BETTER = {
    "samples/s": True,
    "GFLOP/s": True,
    "us/call": False,
    "MB": False,
    "s/fit": False,
}


@dataclass
class Result:
    """One measurement. ``gflops`` and ``sgemm_fraction`` are set for training workloads."""

    workload: str
    system: str
    metric: str  # "samples/s", "us/call", "GFLOP/s" or "MB"
    value: float
    threads: int | None = None
    gflops: float | None = None
    sgemm_fraction: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the JSON file."""
        return asdict(self)


# The systems bpcore is measured against, for "bpcore ÷ best peer".
PEERS = ("torch", "jax scan", "jax jit")


class Results:
    """The rows of one run, in the order they were measured."""

    def __init__(self) -> None:
        self.rows: list[Result] = []

    def add(self, row: Result) -> Result:
        """Appends ``row`` and returns it."""
        self.rows.append(row)
        return row

    def get(self, workload: str, system: str) -> Result | None:
        """The row of ``system`` on ``workload``, if it was measured."""
        for row in self.rows:
            if row.workload == workload and row.system == system:
                return row
        return None

    def advantage(self, workload: str, system: str) -> float | None:
        """How many times better bpcore is than ``system`` on ``workload``: bpcore ÷ other for
        rates, other ÷ bpcore for times and memory. None if either is missing."""
        ours, theirs = self.get(workload, "bpcore"), self.get(workload, system)
        if ours is None or theirs is None or ours.value <= 0 or theirs.value <= 0:
            return None
        if HIGHER_IS_BETTER[ours.metric]:
            return ours.value / theirs.value
        return theirs.value / ours.value

    def best_peer(self, workload: str, peers: tuple[str, ...] = PEERS) -> Result | None:
        """The best of ``peers``' rows on ``workload`` (by the metric's direction), if any."""
        rows = [r for r in (self.get(workload, p) for p in peers) if r is not None and r.value > 0]
        if not rows:
            return None
        if HIGHER_IS_BETTER[rows[0].metric]:
            return max(rows, key=lambda r: r.value)
        return min(rows, key=lambda r: r.value)

    def advantage_over_best(self, workload: str, peers: tuple[str, ...] = PEERS) -> float | None:
        """bpcore's advantage over the best of ``peers`` on ``workload`` (see ``advantage``)."""
        best = self.best_peer(workload, peers)
        return None if best is None else self.advantage(workload, best.system)

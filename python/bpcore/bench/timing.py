"""Clocks: repeat a training epoch for long enough, the median of many short calls, the best of
a few long ones."""

from __future__ import annotations

import statistics
import time
from typing import Callable

#: How long a system's turn waits before its clock starts. The thread pools of the system
#: measured just before it spin for a while after their last call before they sleep (OpenBLAS's
#: for 2^28 cycles by default, about 0.08 s here; OpenMP's and XLA's for less), and a system
#: timed while they spin loses a core to them: profiles of bpcore's epochs right after NumPy's
#: showed OpenBLAS's idle workers in 3-6% of the samples.
SETTLE_SECONDS = 0.25


def samples_per_second(epoch: Callable[[], object], samples: int, min_seconds: float) -> float:
    """Runs ``epoch`` (which trains on ``samples`` samples) until ``min_seconds`` have passed,
    at least once, and returns the samples trained per second."""
    done, start = 0, time.perf_counter()
    while True:
        epoch()
        done += samples
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def median_microseconds(call: Callable[[], object], calls: int) -> float:
    """The median duration of ``call`` in microseconds over ``calls`` timed calls (after 10%
    as many untimed ones)."""
    for _ in range(max(calls // 10, 1)):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1e3


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    """The shortest of ``repeats`` timed calls of ``call``, after one untimed call."""
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best

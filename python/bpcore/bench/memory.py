"""Peak resident memory of one mnist epoch, measured in a fresh process per system.

``python -m bpcore.bench.memory SYSTEM SAMPLES THREADS`` prints a JSON object: ``baseline_mb``
(resident memory after importing the library and creating the data), ``peak_mb`` (the peak
resident memory by the end of one epoch) and ``training_mb`` (their difference: what training
itself took).

On Linux the peak is ``VmHWM`` of ``/proc/self/status``, reset to the current size just before
training through ``/proc/self/clear_refs``. ``getrusage``'s ``ru_maxrss`` (the fallback elsewhere)
is not used there because a process started by fork + exec inherits its parent's peak in it: a
fresh process would report the benchmark's own peak.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys

from bpcore.bench.workloads import TRAINING


def _status_mb(field: str) -> float | None:
    """``field`` ("VmRSS", "VmHWM") of /proc/self/status in MB, None if unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _start_peak() -> float:
    """Resets the peak to the current resident size where possible; returns the baseline."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to VmRSS
        now = _status_mb("VmRSS")
        if now is not None:
            return now
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mb() -> float:
    """The peak resident size so far in MB."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_here(system: str, samples: int, threads: int) -> dict[str, float]:
    """One epoch of the mnist workload on ``samples`` samples in this process."""
    from bpcore.bench.data import make_data
    from bpcore.bench.run_bpcore import make_network

    workload = dataclasses.replace(TRAINING["mnist"], samples=samples)
    X, y = make_data(workload, samples)
    parameters = make_network(workload).parameters()
    if system == "torch":
        import torch

        from bpcore.bench import run_torch

        torch.set_num_threads(threads)
        baseline = _start_peak()
        run_torch.train_rate(workload, X, y, parameters, threads)
    else:
        import bpcore

        bpcore.set_num_threads(threads)
        baseline = _start_peak()
        net = make_network(workload)
        net.fit(X, y, epochs=1, batch_size=workload.batch_size, shuffle=True)
    peak = _peak_mb()
    return {"baseline_mb": baseline, "peak_mb": peak, "training_mb": peak - baseline}


def measure(system: str, samples: int, threads: int) -> dict[str, float]:
    """``measure_here`` in a fresh Python subprocess (so earlier work doesn't raise the peak)."""
    out = subprocess.run(
        [sys.executable, "-m", "bpcore.bench.memory", system, str(samples), str(threads)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    peaks: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return peaks


if __name__ == "__main__":
    system, samples, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(measure_here(system, samples, threads)))

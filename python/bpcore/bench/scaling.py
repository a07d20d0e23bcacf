"""The scaling row: the mnist workload on 1 process × 2 bpcore threads against 2 MPI processes ×
1 thread each, at the same global batch.

The two processes are launched by the benchmark itself, ``mpiexec -n 2 python -m
bpcore.bench.scaling_worker SAMPLES``; each holds half the data (``bpcore.distributed.shard``)
and trains with a local batch of 64, the global batch being the single process's 128. Both
report global samples per second: all ranks' samples ÷ the wall time of the epoch.

The single-process number is measured again here, in turns alternating with the mpiexec runs
(each keeps its best), rather than taken from the mnist row: a burst of load from elsewhere on
the machine then hurts neither side alone, and ``--only scaling`` measures the same thing.

Without mpi4py or mpiexec, or when the launch fails, the row says why instead of stopping the
benchmark.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bpcore as bp
from bpcore.bench import run_bpcore
from bpcore.bench.data import make_data
from bpcore.bench.results import Result, Results
from bpcore.bench.workloads import Workload

WORKLOAD = "scaling"  # the rows' workload name, and what --only selects
PROCESSES = 2
ONE_PROCESS = "1 process"  # the system names of the two rows
MPI_PROCESSES = f"{PROCESSES} procs"
# Generous: a full-size launch takes a few seconds; only a hung MPI job comes near it.
LAUNCH_TIMEOUT_SECONDS = 300.0


class LaunchError(RuntimeError):
    """The mpiexec job did not produce a measurement; the message says why."""


def description(workload: Workload) -> str:
    """The line of the report's workload list."""
    return (
        f"mnist's network and data, global batch {workload.batch_size}: 1 process with "
        f"{PROCESSES} bpcore threads vs {PROCESSES} MPI processes with 1 thread and batch "
        f"{workload.batch_size // PROCESSES} each"
    )


def mpiexec() -> str | None:
    """The mpiexec to launch with: the one next to this Python (the ``mpich`` wheel puts it
    there, matching the MPI library mpi4py loads), else the first on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mpiexec")


def unavailable() -> str | None:
    """Why the scaling row cannot be measured here, or None when it can be."""
    if importlib.util.find_spec("mpi4py") is None:
        return 'mpi4py is not installed (pip install "bpcore[mpi]")'
    if mpiexec() is None:
        return f"no mpiexec next to {sys.executable} nor on PATH"
    return None


@contextmanager
def bpcore_threads(n: int) -> Iterator[None]:
    """bpcore runs on ``n`` threads inside the block, on the previous number after it."""
    before = bp.get_num_threads()
    bp.set_num_threads(n)
    try:
        yield
    finally:
        bp.set_num_threads(before)


def run_ranks(samples: int, timeout: float = LAUNCH_TIMEOUT_SECONDS) -> dict[str, Any]:
    """One ``mpiexec -n 2`` run of ``scaling_worker`` on ``samples`` global samples: rank 0's
    JSON result. Raises `LaunchError` when the job fails or outlives ``timeout``."""
    command = [mpiexec() or "mpiexec", "-n", str(PROCESSES), sys.executable,
               "-m", "bpcore.bench.scaling_worker", str(samples)]  # fmt: skip
    # Its own session, so that a hung job can be ended whole: mpiexec and every rank under it.
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as job:
        try:
            out, err = job.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate()
            raise LaunchError(f"mpiexec -n {PROCESSES} ran over {timeout:.0f} s") from None
    if job.returncode != 0:
        tail = " | ".join(line.strip() for line in err.strip().splitlines()[-3:])
        raise LaunchError(f"mpiexec -n {PROCESSES} exited with {job.returncode}: {tail}")
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise LaunchError(f"mpiexec -n {PROCESSES} printed no result: {out.strip()[-200:]!r}")


def skipped(reason: str) -> Result:
    """The row that stands for the scaling measurement when it could not be made."""
    return Result(WORKLOAD, MPI_PROCESSES, "samples/s", 0.0,
                  note=f"skipped: {reason}", extra={"skipped": reason})  # fmt: skip


def measure(workload: Workload, turns: int) -> list[Result]:
    """The two scaling rows for ``workload`` (mnist at the run's size), each side the best of
    ``turns`` alternating turns: 1 process × 2 threads, then 2 processes × 1 thread. One
    skipped row instead when MPI is not available here or the job fails."""
    reason = unavailable()
    if reason is not None:
        return [skipped(reason)]
    X, y = make_data(workload, workload.samples)
    one_process = 0.0
    ranks: dict[str, Any] | None = None
    for _ in range(max(turns, 1)):
        with bpcore_threads(PROCESSES):
            one_process = max(one_process, run_bpcore.train_rate(workload, X, y))
        try:
            got = run_ranks(workload.samples)
        except LaunchError as e:
            return [skipped(str(e))]
        if ranks is None or got["samples_per_second"] > ranks["samples_per_second"]:
            ranks = got
    assert ranks is not None  # at least one turn ran
    return _rows(workload, one_process, ranks, turns)


def _rows(w: Workload, one_process: float, ranks: dict[str, Any], turns: int) -> list[Result]:
    """The two rows, with the per-step breakdown in the second one's ``extra``."""
    mpi_rate = float(ranks["samples_per_second"])
    ratio = mpi_rate / one_process
    steps = int(ranks["steps"])
    epoch = f"epochs of {w.samples}" + (f", best of {turns} turns" if turns > 1 else "")
    step_ms = 1e3 * w.samples / one_process / steps  # both sides take the same number of steps
    extra = {
        "processes": PROCESSES,
        "threads_per_process": 1,
        "batch_per_rank": ranks["batch_per_rank"],
        "global_batch": w.batch_size,
        "ratio_vs_one_process": ratio,
        "step_ms": 1e3 * ranks["seconds"] / steps,
        "one_process_step_ms": step_ms,
        "allreduce_ms_per_step": [1e3 * s / steps for s in ranks["allreduce_seconds"]],
        "lone_allreduce_ms": 1e3 * ranks["lone_allreduce_seconds"],
        **{k: ranks[k] for k in ("steps", "allreduce_calls", "gradient_floats", "mpi_library")},
        "mpiexec": mpiexec(),
    }
    flops = w.flops_per_sample / 1e9
    return [
        Result(WORKLOAD, ONE_PROCESS, "samples/s", one_process, PROCESSES, one_process * flops,
               note=f"net.fit, 1 process, {PROCESSES} threads, batch {w.batch_size}, {epoch}",
               extra={"processes": 1, "threads_per_process": PROCESSES,
                      "one_process_step_ms": step_ms}),
        Result(WORKLOAD, MPI_PROCESSES, "samples/s", mpi_rate, 1, mpi_rate * flops,
               note=f"mpiexec -n {PROCESSES}, 1 thread and batch {ranks['batch_per_rank']} "
               f"each, {epoch}; {PROCESSES} procs ÷ 1 process = {ratio:.2f}x",
               extra=extra),
    ]  # fmt: skip


def summary(results: Results) -> list[str]:
    """A few lines under the table on where a data-parallel step's time goes (none when the
    scaling row was not measured)."""
    row = results.get(WORKLOAD, MPI_PROCESSES)
    if row is None:
        return []
    if "skipped" in row.extra:
        return [f"scaling: skipped, {row.extra['skipped']}"]
    x = row.extra
    reduce_ms = ", ".join(
        f"rank {rank} {ms:.2f} ms" for rank, ms in enumerate(x["allreduce_ms_per_step"])
    )
    return [
        f"scaling: {PROCESSES} MPI processes of 1 thread train at "
        f"{x['ratio_vs_one_process']:.2f}x the samples/s of 1 process of {PROCESSES} threads",
        f"  per step (global batch {x['global_batch']}): {x['step_ms']:.2f} ms on {PROCESSES} "
        f"processes, {x['one_process_step_ms']:.2f} ms on 1 process",
        f"  of the {PROCESSES}-process step, in Allreduce (moving the data and waiting for the "
        f"other rank): {reduce_ms}",
        f"  a lone Allreduce of the {x['gradient_floats']:,} float32 gradients: "
        f"{x['lone_allreduce_ms']:.2f} ms ({x['mpi_library']})",
    ]

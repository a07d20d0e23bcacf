"""The benchmark runs end to end (``--quick``) and its NumPy baseline computes what bpcore does.

Nothing here asserts a speed: the benchmark reports, it is not a test of time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from optional import require

import bpcore as bp
from bpcore.bench import cnn, report, run_bpcore, run_jax, run_torch, scaling, sklearn_fit
from bpcore.bench.parity import compare_with_jax, compare_with_numpy
from bpcore.bench.results import Result, Results
from bpcore.bench.targets import evaluate
from bpcore.bench.workloads import (
    ONE_THREAD,
    SWEEP,
    THREADS_WORKLOADS,
    TRAINING,
    quick,
    threads_row_name,
)


def expected_systems() -> dict[str, set[str]]:
    """Workload -> the systems a full quick run must report on this installation."""
    torch = {"torch"} if run_torch.available() else set()
    jax = {"jax scan", "jax jit"} if run_jax.available() else set()
    # The quick run times the sweep's first cell; NumPy trains the float32 workloads outside it.
    timed = [name for name in TRAINING if name not in SWEEP] + list(SWEEP)[:1]
    expected = {name: {"bpcore"} | torch | jax for name in timed}
    for name in timed:
        if name not in SWEEP and TRAINING[name].dtype == "float32":
            expected[name].add("numpy")
    expected["tiny"].add("reference")
    expected["predict"] = {"bpcore", "numpy"} | torch | (jax & {"jax jit"})
    expected["sgemm"] = {"numpy"} | ({"bpcore"} if run_bpcore.has_matmul() else set())
    expected["memory"] = {"bpcore"} | torch
    # Without MPI here, one row that says why.
    mpi = scaling.unavailable() is None
    expected["scaling"] = {scaling.MPI_PROCESSES} | ({scaling.ONE_PROCESS} if mpi else set())
    expected.update({name: {"bpcore", "scikit-learn"} for name in sklearn_fit.workloads()})
    # One thread against all of bpcore's; on a one-thread machine, one row that says so.
    threads = {ONE_THREAD} | ({"bpcore"} if bp.get_num_threads() > 1 else set())
    expected.update({threads_row_name(name): threads for name in THREADS_WORKLOADS})
    cnn_peers = ({"torch"} if run_torch.available() else set()) | (
        {"jax"} if run_jax.available() else set()
    )
    expected.update(
        {f"{cnn.WORKLOAD} (batch {b})": {"bpcore"} | cnn_peers for b in cnn.BATCH_SIZES}
    )
    return expected


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = Path(tmp_path_factory.mktemp("bench")) / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bpcore.bench", "--quick", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang, not a limit on speed: a busy machine is slow
    )
    assert done.returncode == 0, done.stderr
    assert "targets (ratios measured in this run)" in done.stdout
    return json.loads(path.read_text())


def test_quick_run_reports_every_workload_and_system(quick_run: dict) -> None:
    measured: dict[str, set[str]] = {}
    for row in quick_run["results"]:
        if "skipped" in row["extra"]:
            assert row["extra"]["skipped"], row
        else:
            assert math.isfinite(row["value"]) and row["value"] > 0, row
        measured.setdefault(row["workload"], set()).add(row["system"])
    assert measured == expected_systems()


def test_training_rows_carry_flops_and_sgemm_fraction(quick_run: dict) -> None:
    for row in quick_run["results"]:
        if row["workload"] in TRAINING:
            assert row["metric"] == "samples/s"
            assert row["gflops"] > 0 and row["sgemm_fraction"] > 0, row


def test_every_target_is_listed(quick_run: dict) -> None:
    assert len(quick_run["targets"]) == 16
    for target in quick_run["targets"]:
        assert target["status"] in {"PASS", "MISS", "n/a"}
        if target["measured"] is not None:
            assert target["measured"] > 0


def test_the_thread_targets_read_the_speed_up_of_the_threads_rows() -> None:
    results = Results()
    results.add(Result(threads_row_name("mnist"), "bpcore", "samples/s", 150.0, 2))
    results.add(Result(threads_row_name("mnist"), ONE_THREAD, "samples/s", 100.0, 1))
    got = {t.name: (t.measured, t.status) for t in evaluate(results)}
    assert got["threads: mnist, all ÷ 1 thread"] == (1.5, "MISS")
    assert got["threads: small, all ÷ 1 thread"] == (None, "n/a")


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_numpy_baseline_computes_what_bpcore_computes(name: str) -> None:
    # Same weights, same batches, same optimizer: float32 losses and parameters agree.
    diff = compare_with_numpy(quick(TRAINING[name]), steps=5)
    assert diff["loss"] < 1e-4
    assert diff["parameters"] < 1e-4


@pytest.mark.parametrize("name", ["tiny", "small", "small-f64"])
def test_jax_loops_compute_what_bpcore_computes(name: str) -> None:
    # JAX's step trains the same network the same way, so its rows compare like with like.
    require("jax", install="jax[cpu]")
    require("optax")
    diff = compare_with_jax(quick(TRAINING[name]), steps=5)
    assert diff["loss"] < 1e-4
    assert diff["parameters"] < 1e-4


# A tiny scaling measurement: 512 samples, 4 data-parallel steps of 2 × 64.
TINY_MNIST = dataclasses.replace(TRAINING["mnist"], samples=512)


def test_scaling_rows_at_a_tiny_size() -> None:
    rows = scaling.measure(TINY_MNIST, turns=1)
    reason = scaling.unavailable()
    if reason is not None:
        assert [(r.system, r.extra) for r in rows] == [(scaling.MPI_PROCESSES, {"skipped": reason})]
        return
    assert [r.system for r in rows] == [scaling.ONE_PROCESS, scaling.MPI_PROCESSES], rows
    one, two = rows
    assert "skipped" not in two.extra, two.note  # MPI is here, so the job must have run
    for row in rows:
        assert row.workload == "scaling" and row.metric == "samples/s"
        assert math.isfinite(row.value) and row.value > 0, row
    assert (one.threads, two.threads) == (scaling.PROCESSES, 1)
    assert two.extra["ratio_vs_one_process"] == pytest.approx(two.value / one.value)
    assert two.extra["batch_per_rank"] * scaling.PROCESSES == TINY_MNIST.batch_size
    assert two.extra["steps"] == 4
    assert len(two.extra["allreduce_ms_per_step"]) == scaling.PROCESSES
    assert two.extra["lone_allreduce_ms"] > 0
    results = Results()
    for row in rows:
        results.add(row)
    assert "procs ÷ 1 process" in report.format_table(results)
    assert scaling.summary(results)[0].startswith("scaling: 2 MPI processes")


def test_scaling_without_mpi_is_a_skipped_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaling, "unavailable", lambda: "mpi4py is not installed")
    rows = scaling.measure(TINY_MNIST, turns=1)
    assert [(r.value, r.extra) for r in rows] == [(0.0, {"skipped": "mpi4py is not installed"})]
    results = Results()
    results.add(rows[0])
    assert "skipped" in report.format_table(results)
    assert scaling.summary(results) == ["scaling: skipped, mpi4py is not installed"]


def test_scaling_with_a_failing_mpiexec_is_a_skipped_row(monkeypatch: pytest.MonkeyPatch) -> None:
    # An mpiexec that exits at once with an error: the row says so, the bench goes on.
    monkeypatch.setattr(scaling, "unavailable", lambda: None)
    monkeypatch.setattr(scaling, "mpiexec", lambda: "false")
    (row,) = scaling.measure(TINY_MNIST, turns=1)
    assert row.value == 0.0
    assert "exited with 1" in row.extra["skipped"]

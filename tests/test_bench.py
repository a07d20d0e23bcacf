"""The benchmark runs end to end (``--quick``) and its NumPy baseline computes what bpcore does.

Nothing here asserts a speed: the benchmark reports, it is not a test of time.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bpcore.bench import run_bpcore, run_torch
from bpcore.bench.parity import compare_with_numpy
from bpcore.bench.workloads import TRAINING, quick


def expected_systems() -> dict[str, set[str]]:
    """Workload -> the systems a full quick run must report on this installation."""
    torch = {"torch"} if run_torch.available() else set()
    expected = {name: {"bpcore", "numpy"} | torch for name in TRAINING}
    expected["tiny"].add("reference")
    expected["predict"] = {"bpcore", "numpy"} | torch
    expected["sgemm"] = {"numpy"} | ({"bpcore"} if run_bpcore.has_matmul() else set())
    expected["memory"] = {"bpcore"} | torch
    return expected


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = Path(tmp_path_factory.mktemp("bench")) / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bpcore.bench", "--quick", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "targets of issue 3" in done.stdout
    return json.loads(path.read_text())


def test_quick_run_reports_every_workload_and_system(quick_run: dict) -> None:
    measured: dict[str, set[str]] = {}
    for row in quick_run["results"]:
        assert math.isfinite(row["value"]) and row["value"] > 0, row
        measured.setdefault(row["workload"], set()).add(row["system"])
    assert measured == expected_systems()


def test_training_rows_carry_flops_and_sgemm_fraction(quick_run: dict) -> None:
    for row in quick_run["results"]:
        if row["workload"] in TRAINING:
            assert row["metric"] == "samples/s"
            assert row["gflops"] > 0 and row["sgemm_fraction"] > 0, row


def test_every_target_is_listed(quick_run: dict) -> None:
    assert len(quick_run["targets"]) == 10
    for target in quick_run["targets"]:
        assert target["status"] in {"PASS", "MISS", "n/a"}
        if target["measured"] is not None:
            assert target["measured"] > 0


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_numpy_baseline_computes_what_bpcore_computes(name: str) -> None:
    # Same weights, same batches, same optimizer: float32 losses and parameters agree.
    diff = compare_with_numpy(quick(TRAINING[name]), steps=5)
    assert diff["loss"] < 1e-4
    assert diff["parameters"] < 1e-4

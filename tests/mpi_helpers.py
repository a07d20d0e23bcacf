"""Finding an MPI that can start two ranks, for the tests that launch real mpiexec jobs.

Those tests skip, saying why, only when MPI cannot start here; with BPCORE_REQUIRE_MPI=1 (as
CI sets it) they fail instead, so that a broken MPI install cannot pass as skipped tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _mpiexec() -> str | None:
    """The mpiexec next to this Python (the mpich wheel's), else the one on PATH."""
    here = str(Path(sys.executable).parent)
    return shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))


def _mpi_problem(mpiexec: str | None) -> str | None:
    """Why MPI cannot start two ranks here, or None when it can."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return 'mpi4py is not installed (pip install ".[mpi]")'
    if mpiexec is None:
        return "no mpiexec next to this Python or on PATH"
    # Both ranks print (their lines may interleave, so each ends its own word).
    probe = "from mpi4py import MPI; print(f'size={MPI.COMM_WORLD.Get_size()};')"
    try:
        done = subprocess.run(
            [mpiexec, "-n", "2", sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"mpiexec -n 2 did not run: {e}"
    if done.returncode != 0 or done.stdout.count("size=2;") != 2:
        return (
            f"mpiexec -n 2 failed ({done.returncode}): {done.stdout.strip()[-300:]!r} "
            f"{done.stderr.strip()[-500:]}"
        )
    return None


def mpiexec_or_skip() -> str:
    """The path of an mpiexec that starts two ranks; else skips the test (fails it under
    BPCORE_REQUIRE_MPI=1), saying why."""
    mpiexec = _mpiexec()
    problem = _mpi_problem(mpiexec)
    if problem is not None:
        if os.environ.get("BPCORE_REQUIRE_MPI") == "1":
            pytest.fail(f"MPI is required here (BPCORE_REQUIRE_MPI=1) but {problem}")
        pytest.skip(f"MPI cannot start: {problem}")
    assert mpiexec is not None
    return mpiexec

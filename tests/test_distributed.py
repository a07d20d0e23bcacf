"""Data-parallel fit over MPI: sharding, one-rank communicators in this process, and
real jobs under ``mpiexec -n 2`` (tests/mpi/) for equivalence, faults and restarts.

The mpiexec tests are skipped only when MPI cannot start here, and say why; CI sets
BPCORE_REQUIRE_MPI=1 so that there a missing MPI fails instead (tests/mpi_helpers.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mpi_helpers import mpiexec_or_skip
from optional import require

import bpcore as bp
from bpcore.distributed import DistributedTrainingError, shard, shard_bounds

MPI_DIR = Path(__file__).parent / "mpi"
# Long enough for the slowest machine, there only so that a hang fails the test instead of CI.
HANG_TIMEOUT = 600


@pytest.fixture(scope="module")
def mpiexec() -> str:
    return mpiexec_or_skip()


def run_ranks(mpiexec: str, script: str, *args: str, ranks: int = 2) -> tuple[int, list[Any]]:
    """(exit code, the JSON records the ranks printed) of `script` under mpiexec."""
    done = subprocess.run(
        [mpiexec, "-n", str(ranks), sys.executable, str(MPI_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if not records:
        raise AssertionError(f"no results from {script}:\n{done.stdout}\n{done.stderr}")
    return done.returncode, records


# ----- sharding ---------------------------------------------------------------------------


@pytest.mark.parametrize("n, size", [(10, 3), (7, 7), (5, 8), (60000, 4), (0, 2)])
def test_shards_cover_the_rows_once_in_rank_order(n: int, size: int) -> None:
    bounds = [shard_bounds(n, rank=r, size=size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [end - start for start, end in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_shard_slices_every_array_alike() -> None:
    X, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    parts = [shard(X, y, rank=r, size=3) for r in range(3)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), X)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), y)
    assert np.shares_memory(parts[1][0], X)  # views, not copies


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"rank": 2, "size": 2}, ValueError, "rank: must be in"),
        ({"rank": 0, "size": 0}, ValueError, "size: must be at least 1"),
        ({"rank": 0}, ValueError, "comm, rank, size"),
        ({"rank": 0.5, "size": 2}, TypeError, "rank: expected an integer"),
    ],
)
def test_shard_refuses_bad_ranks(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        shard(np.zeros(4), **kwargs)


def test_shard_refuses_arrays_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        shard(np.zeros(4), np.zeros(5), rank=0, size=2)


# ----- one rank, in this process ----------------------------------------------------------


def _net(dtype: str = "float64", dropout: bool = True) -> bp.Network:
    layers: list[bp.Layer] = [bp.Dense(5, 12), bp.ReLU()]
    if dropout:
        layers.append(bp.Dropout(0.2))
    layers.append(bp.Dense(12, 3))
    return bp.Network(layers, loss="cross_entropy", optimizer=bp.Adam(lr=0.01), dtype=dtype)


def _data(n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 5))
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1).astype(np.int64)


def test_one_rank_trains_as_fit_without_comm() -> None:
    MPI = require("mpi4py.MPI", "bpcore[mpi]")
    X, y = _data()
    alone, ranked = _net(), _net()
    kwargs: dict[str, Any] = {"epochs": 3, "batch_size": 16, "shuffle": False, "progress": False}
    h1 = alone.fit(X, y, validation_split=0.2, metrics=["accuracy"], **kwargs)
    h2 = ranked.fit(X, y, validation_split=0.2, metrics=["accuracy"], comm=MPI.COMM_SELF, **kwargs)
    for name, value in alone.parameters().items():
        np.testing.assert_allclose(ranked.parameters()[name], value, rtol=0, atol=1e-12)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h2.history[key], h1.history[key], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h2.grad_norms["0.weight"], h1.grad_norms["0.weight"], rtol=1e-12)
    assert ranked.fit_progress.epochs_done == 3


def test_one_rank_is_fit_without_comm_bit_for_bit() -> None:
    MPI = require("mpi4py.MPI", "bpcore[mpi]")
    X, y = _data()
    w = np.random.default_rng(5).uniform(0.0, 2.0, size=len(X))

    def net() -> bp.Network:
        layers = [bp.Dense(5, 12), bp.ReLU(), bp.Dropout(0.3), bp.Dense(12, 3)]
        return bp.Network(layers, loss="cross_entropy", optimizer=bp.Adam(lr=0.01), seed=4)

    kwargs: dict[str, Any] = {
        "epochs": 3,
        "batch_size": 16,
        "shuffle": True,
        "progress": False,
        "sample_weight": w,
        "validation_split": 0.2,
        "clip_grad_norm": 0.5,
        "metrics": ["accuracy"],
    }
    alone, ranked = net(), net()
    h1 = alone.fit(X, y, **kwargs)
    h2 = ranked.fit(X, y, comm=MPI.COMM_SELF, **kwargs)
    for key, values in h1.history.items():
        if key != "time":
            assert h2.history[key] == values, key
    assert h2.grad_norms == h1.grad_norms
    assert h2.update_ratios == h1.update_ratios
    # Weights, optimizer state, generator and dropout counter: the same bytes.
    assert ranked.to_bytes(include_optimizer=True) == alone.to_bytes(include_optimizer=True)


def test_one_rank_regression_metrics_match_fit_without_comm() -> None:
    MPI = require("mpi4py.MPI", "bpcore[mpi]")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(64, 3))
    y = np.stack([X[:, 0] - X[:, 1], X[:, 2] ** 2], axis=1)

    def net() -> bp.Network:
        layers = [bp.Dense(3, 8), bp.Tanh(), bp.Dense(8, 2)]
        return bp.Network(layers, loss="mse", optimizer=bp.SGD(lr=0.05), dtype="float64")

    kwargs: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 10,
        "shuffle": False,
        "progress": False,
        "metrics": ["mae", "r2"],
        "validation_split": 0.25,
    }
    h1 = net().fit(X, y, **kwargs)
    h2 = net().fit(X, y, comm=MPI.COMM_SELF, **kwargs)
    for key in ("loss", "mae", "r2", "val_loss", "val_mae", "val_r2"):
        np.testing.assert_allclose(h2.history[key], h1.history[key], rtol=1e-9, atol=1e-12)


def test_a_comm_that_is_not_a_communicator_is_refused_before_anything_changes() -> None:
    X, y = _data()
    net = _net()
    before = net.parameters()
    with pytest.raises(TypeError, match="comm: expected an mpi4py communicator"):
        net.fit(X, y, comm=object(), progress=False)
    for name, value in net.parameters().items():
        assert np.array_equal(value, before[name])
    assert net.fit_progress.epochs_done == 0


def test_one_rank_bad_labels_fail_before_any_step() -> None:
    MPI = require("mpi4py.MPI", "bpcore[mpi]")
    X, y = _data()
    y[5] = 7
    net = _net()
    before = net.parameters()
    with pytest.raises(DistributedTrainingError, match=r"rank 0: ValueError: y: label 7") as e:
        net.fit(X, y, comm=MPI.COMM_SELF, progress=False)
    # The core's message, as fit without comm gives it.
    assert e.value.failures == {
        0: "ValueError: y: label 7 at index 5 is not a class; the classes are 0 to 2 "
        "(the network has 3 outputs)"
    }
    assert isinstance(e.value.__cause__, ValueError)
    for name, value in net.parameters().items():
        assert np.array_equal(value, before[name])


def test_one_rank_callback_failure_stops_with_the_last_weights() -> None:
    MPI = require("mpi4py.MPI", "bpcore[mpi]")

    class Boom(bp.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
            if epoch == 1:
                raise RuntimeError("boom")

    X, y = _data()
    net = _net()
    with pytest.raises(DistributedTrainingError, match="at the end of epoch 2") as e:
        net.fit(X, y, epochs=5, comm=MPI.COMM_SELF, callbacks=[Boom()], progress=False)
    assert e.value.failures == {0: "RuntimeError: boom"}
    assert net.fit_progress.epochs_done == 2
    assert np.isfinite(net.forward(X)).all()  # still usable


def test_one_rank_unexpected_failure_is_raised_not_aborted(monkeypatch: Any) -> None:
    MPI = require("mpi4py.MPI", "bpcore[mpi]")
    from bpcore import _data_parallel

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a bug in the epoch loop")

    monkeypatch.setattr(_data_parallel.RankGroup, "fit_epoch", broken)
    X, y = _data()
    with pytest.raises(AssertionError, match="a bug in the epoch loop"):
        _net().fit(X, y, comm=MPI.COMM_SELF, progress=False)  # alone: nobody waits, no abort


# ----- real jobs: mpiexec -n 2 ------------------------------------------------------------


EQUIVALENCE_CASES = {
    "float64-adam",
    "float64-sgd-dropout",
    "float64-shuffled-dropout",
    "float64-weighted-clipped",
    "float64-validation",
    "float32-adam",
    "float64-batchnorm",
    "float64-accumulated-onecycle",
    "float64-class-weight-loss",
    "float64-class-weight-balanced",
    "float64-weighted-mean-decay",
    "float64-weighted-mean-class-weight-accumulated",
    "float32-class-weight-loss",
}
#: Steps whose loss divides by a divisor summed over the ranks: one process's to rounding.
DIVIDED_BY_SUMS = {
    "float64-class-weight-loss",
    "float64-class-weight-balanced",
    "float64-weighted-mean-decay",
    "float64-weighted-mean-class-weight-accumulated",
}


def _check_equivalence(records: list[Any], ranks: int) -> None:
    cases = {r["case"]: r for r in records}
    assert set(cases) == EQUIVALENCE_CASES
    for name, r in cases.items():
        assert r["ranks"] == ranks
        assert r["rank_spread"] == 0.0, name  # every rank holds the same network and buffers
        if name.endswith("batchnorm"):
            continue  # batch statistics per rank's share: equal ranks, not one process's steps
        tolerance = 1e-10 if name.startswith("float64") else 1e-5
        if name in DIVIDED_BY_SUMS:
            tolerance = 1e-14
        assert r["max_param_diff"] <= tolerance, r
        if name != "float64-weighted-mean-class-weight-accumulated":  # see equivalence.py
            assert r["max_loss_diff"] <= tolerance, r
        assert r.get("max_val_loss_diff", 0.0) <= tolerance, r


def test_two_ranks_equal_one_process_on_the_global_batches(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "equivalence.py")
    assert code == 0
    _check_equivalence(records, 2)


def test_three_ranks_with_uneven_shards_equal_one_process(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "equivalence.py", ranks=3)
    assert code == 0
    _check_equivalence(records, 3)


def _by_rank(records: list[Any]) -> dict[int, Any]:
    out = {r["rank"]: r for r in records}
    assert set(out) == {0, 1}
    return out


def test_a_rank_that_raises_stops_every_rank(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "faults.py", "callback")
    assert code == 0
    for r in _by_rank(records).values():
        assert r["raised"] == "DistributedTrainingError"
        assert r["failures"] == {"1": "OSError: disk of rank 1 is full (injected in epoch 2)"}
        assert "stopped at the start of epoch 2 on every rank" in r["message"]
        assert r["same_weights_on_every_rank"] and r["finite"]
        assert r["epochs_done"] == 1


def test_a_rank_that_fails_inside_an_epoch_stops_every_rank_at_that_step(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "faults.py", "step-fails")
    assert code == 0
    for r in _by_rank(records).values():
        assert r["raised"] == "DistributedTrainingError"
        assert r["failures"] == {"1": "MemoryError: injected: no memory for this step's gradients"}
        assert "stopped at epoch 2, batch 3 on every rank" in r["message"]
        # 13 steps of epoch 1 and 2 of epoch 2 were taken everywhere, the failed one nowhere.
        assert r["optimizer_steps"] == 15
        assert r["same_weights_on_every_rank"] and r["finite"]


def test_ctrl_c_on_one_rank_stops_every_rank(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "faults.py", "interrupt")
    assert code == 0
    for r in _by_rank(records).values():
        assert r["raised"] == "DistributedTrainingError"
        assert r["failures"] == {"0": "KeyboardInterrupt: interrupted (Ctrl-C)"}
        assert r["same_weights_on_every_rank"]
        assert r["epochs_done"] == 2


def test_ctrl_c_inside_an_epoch_stops_every_rank_at_the_same_step(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "faults.py", "interrupt-in-epoch")
    assert code == 0
    for r in _by_rank(records).values():
        assert r["raised"] == "DistributedTrainingError"
        assert r["failures"] == {"0": "KeyboardInterrupt: interrupted (Ctrl-C)"}
        assert r["same_weights_on_every_rank"] and r["finite"]


def test_bad_data_on_one_rank_stops_every_rank_before_any_step(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "faults.py", "bad-labels")
    assert code == 0
    for r in _by_rank(records).values():
        assert r["raised"] == "DistributedTrainingError"
        message = (
            "ValueError: y: label 9 at index 7 is not a class; the classes are 0 to 1 "
            "(the network has 2 outputs)"
        )
        assert r["failures"] == {"1": message}
        assert r["unchanged"] and r["epochs_done"] == 0


def test_ranks_that_disagree_on_arguments_all_raise(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "faults.py", "mismatch")
    assert code == 0
    for r in _by_rank(records).values():
        assert r["raised"] == "ValueError"
        expected = "batch_size differs: ranks [1] have another batch_size than rank 0's 16"
        assert expected in r["message"]


def test_learning_rates_that_drift_apart_stop_every_rank(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "faults.py", "lr-drift")
    assert code == 0
    for r in _by_rank(records).values():
        assert r["raised"] == "ValueError"
        expected = "lr: the ranks' learning rates differ at the start of epoch 1"
        assert r["message"].startswith(expected)
        assert r["same_weights_on_every_rank"] and r["epochs_done"] == 0


def test_an_unexpected_failure_aborts_the_job_instead_of_hanging(mpiexec: str) -> None:
    done = subprocess.run(
        [mpiexec, "-n", "2", sys.executable, str(MPI_DIR / "faults.py"), "escape"],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )
    assert done.returncode != 0
    assert "bpcore rank 1: AssertionError: a bug in the epoch loop escaped" in done.stderr
    assert "aborting every rank (MPI_Abort)" in done.stderr
    assert not any(line.startswith("{") for line in done.stdout.splitlines())


def test_divergence_stops_every_rank_together(mpiexec: str) -> None:
    code, records = run_ranks(mpiexec, "faults.py", "diverges")
    assert code == 0
    messages = set()
    for r in _by_rank(records).values():
        assert r["raised"] == "TrainingDivergedError"
        assert r["message"].startswith("training diverged in epoch 1 at batch ")
        assert r["finite"] and r["same_weights_on_every_rank"]
        messages.add(r["message"])
    assert len(messages) == 1, "every rank names the same batch"


def test_a_restarted_job_continues_from_the_checkpoint(mpiexec: str, tmp_path: Path) -> None:
    checkpoint = str(tmp_path / "job.safetensors")
    code, crashed = run_ranks(mpiexec, "faults.py", "crash", checkpoint)
    assert code != 0  # the job failed, as a crashed job does
    assert all(r["raised"] == "DistributedTrainingError" for r in crashed)
    assert all(r["epochs_done"] == 2 for r in crashed)
    code, resumed = run_ranks(mpiexec, "faults.py", "resume", checkpoint)
    assert code == 0
    code, straight = run_ranks(mpiexec, "faults.py", "straight", str(tmp_path / "other"))
    assert code == 0
    a, b = _by_rank(resumed), _by_rank(straight)
    assert a[0]["resumed_at"] == 2
    for rank in (0, 1):
        assert a[rank]["raised"] is None and a[rank]["epochs_done"] == 4
        # Bit for bit: the same shuffles, dropout masks, optimizer state and learning-rate
        # schedule as without the crash (only rank 0 read the checkpoint).
        assert a[rank]["checksum"] == b[rank]["checksum"]
        assert a[rank]["params"] == b[rank]["params"]
        assert a[rank]["lr"] == b[rank]["lr"]
        assert a[rank]["lr"] == pytest.approx(0.01 * 0.7**4, rel=1e-12)

"""Data-parallel training over MPI, on as many processes (ranks) as it is launched with.

Every rank loads scikit-learn's digits, makes the same stratified 80/20 split and the same
standardization, and keeps its own contiguous block of the training set
(`bp.distributed.shard`). `fit(..., comm=MPI.COMM_WORLD)` then trains one network on all of
them: every step's batch of `--batch-size` × ranks samples is drawn from all shards by the
network's generator, every rank computes the gradients of the part in its shard, one Allreduce
sums them, and every rank takes the same Adam step, the one a single process would take on the
whole batch (a plain fit of all the data in batches of that size takes the same steps). The reported
losses, the validation (the last 10% of each rank's shard) and EarlyStopping's decision are
over all ranks; only rank 0 prints and writes the checkpoint.

ModelCheckpoint(include_optimizer=True) saves the network with Adam's state after every epoch.
Started again with the same checkpoint path (after a crash, a kill or a batch job's time
limit), the job resumes: rank 0 reads the file, every rank builds the network from the same
bytes (so the file need only be on rank 0's machine, where it is written), and training goes
on with the epochs left, on the same number of ranks as if it had never stopped (only
EarlyStopping's count of epochs without improvement starts afresh). Without a path, the
checkpoint goes to a new temporary folder, which is kept so that the run can be resumed.

Each rank gives bpcore its share of the machine's cores (BPCORE_NUM_THREADS, if set, wins).
With one rank (plain `python`) the same code runs a plain fit.

    pip install ".[mpi,sklearn]" && mpiexec -n 2 python examples/distributed_digits.py
    python examples/distributed_digits.py [checkpoint.safetensors] [--epochs N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import bpcore as bp

EPOCHS = 100  # in all; EarlyStopping usually ends training sooner
BATCH_SIZE = 32  # per rank


def build() -> bp.Network:
    """The untrained network, the same on every rank."""
    return bp.Network(
        [bp.Dense(64, 128), bp.ReLU(), bp.Dropout(0.2), bp.Dense(128, 10)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=1e-3),
        dtype="float32",
        seed=0,
    )


def threads_per_rank(comm: MPI.Intracomm) -> int:
    """This rank's share of its machine's cores: the machine's cores divided by the ranks on it,
    and no more than the cores the launcher bound this rank to (``-bind-to socket``)."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    ranks_here = node.Get_size()
    node.Free()
    machine = os.cpu_count() or 1
    allowed = len(os.sched_getaffinity(0)) if sys.platform == "linux" else machine
    return max(1, min(allowed, machine // ranks_here))


def read_checkpoint(path: Path, comm: MPI.Intracomm) -> bytes | None:
    """The checkpoint's bytes on every rank (None when there is none yet): rank 0 reads the
    file and broadcasts them. A failure to read is raised on every rank, none left waiting."""
    found: bytes | str | None = None
    if comm.Get_rank() == 0:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            found = path.read_bytes() if path.exists() else None
        except OSError as e:
            found = f"cannot read the checkpoint {path}: {e}"
    found = comm.bcast(found, root=0)
    if isinstance(found, str):
        raise SystemExit(found)
    return found


def main(
    checkpoint: str | None = None, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE
) -> float:
    """Trains (or resumes) up to `epochs` epochs in all; returns the test accuracy."""
    comm = MPI.COMM_WORLD
    rank, ranks = comm.Get_rank(), comm.Get_size()
    say = print if rank == 0 else (lambda *args, **kwargs: None)

    if "BPCORE_NUM_THREADS" not in os.environ:
        bp.set_num_threads(threads_per_rank(comm))
    if checkpoint is None:  # a new folder, made by rank 0 and named to every rank
        folder = tempfile.mkdtemp(prefix="bpcore-digits-") if rank == 0 else None
        checkpoint = os.path.join(comm.bcast(folder, root=0), "digits.safetensors")
    path = Path(checkpoint)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    X_train = scaler.transform(X_train).astype(np.float32)
    X_test = scaler.transform(X_test).astype(np.float32)
    X_local, y_local = bp.distributed.shard(X_train, y_train, comm=comm)
    shard_sizes = sorted(set(comm.allgather(len(X_local))))

    threads = bp.get_num_threads()
    say(
        f"{ranks} rank{'s' * (ranks > 1)}, {threads} bpcore thread{'s' * (threads > 1)} per "
        f"rank; global batch {batch_size * ranks} ({batch_size} per rank)"
    )
    say(
        f"training set: {len(X_train)} samples, {' or '.join(map(str, shard_sizes))} per rank, "
        "the last 10% of each held out for validation"
    )

    saved = read_checkpoint(path, comm)
    if saved is None:
        net, done = build(), 0
        say(f"starting afresh: {epochs} epochs")
    else:
        net = bp.Network.from_bytes(saved)
        done = net.epochs_done
        say(f"resuming from {path} after epoch {done}: {max(epochs - done, 0)} epochs left")

    if done < epochs:
        stop = bp.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
        began = time.perf_counter()
        history = net.fit(
            X_local,
            y_local,
            epochs=epochs - done,
            batch_size=batch_size,
            validation_split=0.1,
            callbacks=[stop, bp.ModelCheckpoint(path, include_optimizer=True)],
            comm=comm,
        )
        seconds = time.perf_counter() - began
        ended = "early stop" if stop.stopped_epoch is not None else "all epochs"
        best = "none" if stop.best_epoch is None else stop.best_epoch + 1
        say(
            f"epochs {history.epoch[0]}-{history.epoch[-1]} in {seconds:.1f} s ({ended}; best "
            f"val_loss {stop.best:.4f} at epoch {best}, its weights kept)"
        )

    accuracy = float(net.evaluate(X_test, y_test)["accuracy"])
    say(f"test accuracy {accuracy:.2%}")
    say(f"checkpoint (weights and Adam state): {path}")
    say(f"resume with: mpiexec -n {ranks} python {sys.argv[0]} {path} [--epochs N in all]")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("checkpoint", nargs="?", help="checkpoint file (default: a new temp dir)")
    parser.add_argument(
        "--epochs", type=int, default=EPOCHS, help="epochs in all, resumed ones too"
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="samples per rank")
    args = parser.parse_args()
    main(args.checkpoint, args.epochs, args.batch_size)

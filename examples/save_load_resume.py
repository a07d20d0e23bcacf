"""Save, load and resume training: a network saved with its optimizer state trains on, after
loading, bit for bit as if it had never stopped.

A digits classifier (with dropout, so that even the dropout masks must resume in step) trains
for a few epochs and is saved with ``include_optimizer=True``: the weights, Adam's moment
estimates and step count, the learning rate, the shuffling generator and the dropout-mask
counter, in one safetensors file, written atomically. A fresh network loaded from the file
predicts exactly what the original predicts and, trained on, ends with the very parameters of a
network trained straight through, compared bit for bit. Saved without the optimizer, the file
holds the weights alone: enough for inference, but training restarts Adam from scratch and
drifts away from the uninterrupted run.

The file is plain safetensors (readable by the `safetensors` package, and loading it never
executes code); `state_dict()` gives the same tensors by torch.nn.Sequential's names.

    pip install ".[sklearn]" && python examples/save_load_resume.py [model.safetensors]
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bpcore as bp

EPOCHS_BEFORE = 5
EPOCHS_AFTER = 5


def build() -> bp.Network:
    """The same untrained network every time: same layers, optimizer and seed."""
    return bp.Network(
        [bp.Dense(64, 128), bp.ReLU(), bp.Dropout(0.2), bp.Dense(128, 10)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=2e-3),
        seed=0,
    )


def bit_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Whether two state dicts hold the same names, shapes, dtypes and bytes."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def max_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest absolute difference between two state dicts' values."""
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def file_tensors(path: Path) -> dict[str, list[int]]:
    """The tensor names and shapes in a safetensors file's header (8-byte length, then JSON)."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header: dict[str, dict[str, list[int]]] = json.loads(f.read(length))
    return {name: entry["shape"] for name, entry in header.items() if name != "__metadata__"}


def run(path: Path) -> tuple[bool, bool, float]:
    """Trains, saves to `path`, loads, resumes; returns (resumed network bit-identical to the
    uninterrupted one, loaded predictions equal the original's, test accuracy)."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )

    def train(net: bp.Network, epochs: int) -> bp.History:
        return net.fit(X_train, y_train, epochs=epochs, batch_size=32, progress=False)

    straight = build()
    train(straight, EPOCHS_BEFORE + EPOCHS_AFTER)
    print(f"trained straight through for {EPOCHS_BEFORE + EPOCHS_AFTER} epochs")

    first = build()
    train(first, EPOCHS_BEFORE)
    first.save(path, include_optimizer=True)
    size = path.stat().st_size
    print(f"trained {EPOCHS_BEFORE} epochs, saved with the optimizer to {path} ({size:,} bytes)")
    print("tensors in the file:")
    for name, shape in file_tensors(path).items():
        print(f"  {name:22} {tuple(shape)}")

    resumed = bp.Network.load(path)  # a new Network, built from the file alone
    same_predictions = bool(
        np.array_equal(resumed.forward(X_test), first.forward(X_test))
        and np.array_equal(resumed.predict(X_test), first.predict(X_test))
    )
    print(f"loaded network's outputs equal the original's: {same_predictions}")

    history = train(resumed, EPOCHS_AFTER)
    print(f"resumed: epochs {history.epoch[0]} to {history.epoch[-1]} (numbers count on)")
    identical = bit_identical(resumed.state_dict(), straight.state_dict())
    print(f"resumed network bit-identical to the one trained straight through: {identical}")

    weights_only = path.with_name(path.stem + "-weights-only" + path.suffix)
    first.save(weights_only)  # include_optimizer=False: weights and architecture only
    restarted = bp.Network.load(weights_only)
    train(restarted, EPOCHS_AFTER)
    drift = max_difference(restarted.state_dict(), straight.state_dict())
    print(f"saved without the optimizer and trained on: parameters differ by up to {drift:.3g}")
    weights_only.unlink()

    print("state_dict() (torch.nn.Sequential's names):")
    for name, value in resumed.state_dict().items():
        print(f"  {name:10} {value.shape} {value.dtype}")
    accuracy = float(resumed.evaluate(X_test, y_test)["accuracy"])
    print(f"test accuracy of the resumed network: {accuracy:.2%}")
    return identical, same_predictions, accuracy


def main(path: str | None = None) -> tuple[bool, bool, float]:
    """Runs the example, saving to `path` (kept) or to a temporary folder (removed)."""
    if path is not None:
        return run(Path(path))
    with tempfile.TemporaryDirectory() as folder:
        return run(Path(folder) / "digits.safetensors")


if __name__ == "__main__":
    main(*sys.argv[1:2])

"""The demo: a network learns to read handwritten digits (scikit-learn's 8×8 digits)."""

from __future__ import annotations

import time

import numpy as np

import bpcore as bp


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits, scaled to [0, 1], split 80/20 stratified by `seed`."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit("the demo needs scikit-learn: pip install 'bpcore[sklearn]'") from None
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=seed
    )
    return X_train, X_test, y_train, y_test


def digits_network(seed: int = 0, dtype: str = "float32") -> bp.Network:
    """The demo's classifier: 64-128-64-10 with ReLU, cross-entropy and Adam."""
    return bp.Network(
        [bp.Dense(64, 128), bp.ReLU(), bp.Dense(128, 64), bp.ReLU(), bp.Dense(64, 10)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=2e-3),
        dtype=dtype,
        seed=seed,
    )


def main(epochs: int = 40, seed: int = 0) -> float:
    """Trains the digits classifier, printing progress; returns the test accuracy."""
    X_train, X_test, y_train, y_test = load_digits_split(seed)
    net = digits_network(seed)
    print(
        f"bpcore demo: {len(X_train)} training and {len(X_test)} test images of digits, "
        f"network {net.n_features}-128-64-{net.n_outputs}"
    )
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        loss = net.fit(X_train, y_train, epochs=1, batch_size=32).history["loss"][-1]
        if epoch == 1 or epoch % 5 == 0:
            acc = net.evaluate(X_test, y_test)["accuracy"]
            print(f"epoch {epoch:3d}  train loss {loss:.4f}  test accuracy {acc:.2%}")
    elapsed = time.perf_counter() - start
    accuracy = net.evaluate(X_test, y_test)["accuracy"]
    print(
        f"trained {epochs} epochs in {elapsed:.2f} s "
        f"({epochs * len(X_train) / elapsed:,.0f} samples/s)"
    )
    print(f"test accuracy: {accuracy:.2%}")
    return accuracy

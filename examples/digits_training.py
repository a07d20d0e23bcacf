"""Train a digit classifier the way a Keras user would: validation, early stopping, a learning-rate
schedule, a progress bar, and a plot of the history (loss, accuracy and per-layer gradient norms).

    pip install ".[sklearn,plot,progress]" && python examples/digits_training.py [plot.png]
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bpcore as bp


def main(plot_path: str = "digits_history.png") -> float:
    """Trains on scikit-learn's digits, saves the history plot; returns the test accuracy."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    net = bp.Network(
        [
            bp.Dense(64, 128),
            bp.ReLU(),
            bp.Dropout(0.2),
            bp.Dense(128, 64),
            bp.ReLU(),
            bp.Dense(64, 10),
        ],
        loss=bp.CrossEntropyLoss(label_smoothing=0.05),
        optimizer=bp.AdamW(lr=3e-3, weight_decay=1e-3),
        seed=0,
    )
    history = net.fit(
        X_train,
        y_train,
        epochs=60,
        batch_size=32,
        validation_split=0.15,
        callbacks=[bp.EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True)],
        schedule=bp.CosineAnnealingLR(T_max=60),
        progress=True,
    )
    accuracy = net.evaluate(X_test, y_test)["accuracy"]
    epochs = len(history.epoch)
    best = int(np.argmin(history.history["val_loss"])) + 1
    print(
        f"stopped after {epochs} epochs (best val_loss at epoch {best}); "
        f"test accuracy {accuracy:.2%}"
    )
    history.plot(plot_path)
    print(f"history plot saved to {plot_path}")
    return accuracy


if __name__ == "__main__":
    main(*sys.argv[1:2])

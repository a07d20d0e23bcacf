"""A small convolutional network on scikit-learn's 8×8 digits: each row of 64 pixels is read as
a 1×8×8 image (Reshape), two 3×3 convolutions with 2×2 max pooling, then one Dense layer.

    pip install ".[sklearn]" && python examples/digits_cnn.py
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bpcore as bp

#: Conv2d(1,16,3,padding=1) → ReLU → MaxPool2d(2) → Conv2d(16,32,3,padding=1) → ReLU →
#: MaxPool2d(2) → Flatten → Dense(128,10): 8×8 → 16×4×4 → 32×2×2 = 128 features.
LAYERS = [
    bp.Reshape((1, 8, 8)),
    bp.Conv2d(1, 16, 3, padding=1),
    bp.ReLU(),
    bp.MaxPool2d(2),
    bp.Conv2d(16, 32, 3, padding=1),
    bp.ReLU(),
    bp.MaxPool2d(2),
    bp.Flatten(),
    bp.Dense(128, 10),
]


def main(epochs: int = 80) -> float:
    """Trains the CNN on 80% of the digits; prints and returns the accuracy on the rest."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    net = bp.Network(
        LAYERS,
        loss=bp.CrossEntropyLoss(label_smoothing=0.1),
        optimizer=bp.AdamW(lr=2e-3, weight_decay=1e-2),
        seed=0,
    )
    start = time.perf_counter()
    net.fit(
        X_train,
        y_train,
        epochs=epochs,
        batch_size=32,
        schedule=bp.CosineAnnealingLR(T_max=epochs),
        progress=False,
    )
    seconds = time.perf_counter() - start
    accuracy = net.evaluate(X_test, y_test)["accuracy"]
    print(f"{epochs} epochs in {seconds:.1f} s; test accuracy {accuracy:.2%}")
    return accuracy


if __name__ == "__main__":
    main()

"""Regression on scikit-learn's diabetes data: a small network with mean absolute error and R²
reported per epoch, early stopping on the validation loss, compared with a linear baseline. On
this small, nearly linear data set, dropout and weight decay are what let the network match and
slightly beat ridge regression instead of overfitting.

    pip install ".[sklearn]" && python examples/regression_diabetes.py
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import bpcore as bp


def main() -> tuple[float, float]:
    """Trains the network; returns (its test R², the ridge baseline's test R²)."""
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scale_x = StandardScaler().fit(X_train)
    y_mean, y_std = y_train.mean(), y_train.std()
    X_train, X_test = scale_x.transform(X_train), scale_x.transform(X_test)
    t_train = (y_train - y_mean) / y_std

    net = bp.Network(
        [bp.Dense(10, 32), bp.ReLU(), bp.Dropout(0.3), bp.Dense(32, 1)],
        loss="mse",
        optimizer=bp.AdamW(lr=1e-3, weight_decay=0.1),
        dtype="float64",
        seed=0,
    )
    history = net.fit(
        X_train,
        t_train,
        epochs=500,
        batch_size=16,
        validation_split=0.2,
        metrics=["mae", "r2"],
        callbacks=[bp.EarlyStopping(patience=20, restore_best_weights=True)],
        progress=False,
    )
    predicted = net.predict(X_test)[:, 0] * y_std + y_mean
    r2 = r2_score(y_test, predicted)
    baseline = r2_score(y_test, Ridge(alpha=1.0).fit(X_train, y_train).predict(X_test))
    print(f"trained {len(history.epoch)} epochs; last validation R² {history['val_r2'][-1]:.3f}")
    print(f"test R²: network {r2:.3f}, ridge regression {baseline:.3f}")
    print(f"test mean absolute error: {np.mean(np.abs(predicted - y_test)):.1f}")
    return r2, baseline


if __name__ == "__main__":
    main()

"""A tabular model with categorical columns as one Network: an Embeddings layer looks up the
city and the weekday (integer codes) in tables of their own and passes the numeric columns
through, then an MLP regresses. The data are generated with a known structure (a per-city
and a per-weekday effect, a per-city response to temperature, a price effect and noise of
known size), so the best achievable R² is known; the same MLP on the raw codes (the categories
read as numbers) is the baseline.

    python examples/tabular_embeddings.py
"""

from __future__ import annotations

import numpy as np

import bpcore as bp

CITIES, WEEKDAYS, NOISE = 30, 7, 0.3


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Rows (city, weekday, temperature, price) and targets, and the R² of a perfect model
    (1 - noise variance / target variance)."""
    city_effect = rng.normal(size=CITIES)
    weekday_effect = rng.normal(scale=0.7, size=WEEKDAYS)
    city_heat = rng.normal(scale=0.8, size=CITIES)
    city = rng.integers(0, CITIES, n)
    weekday = rng.integers(0, WEEKDAYS, n)
    temperature, price = rng.normal(size=(2, n))
    signal = city_effect[city] + weekday_effect[weekday] + city_heat[city] * temperature
    y = signal - 0.5 * price + rng.normal(scale=NOISE, size=n)
    X = np.column_stack([city, weekday, temperature, price]).astype(np.float32)
    return X, y.astype(np.float32), 1.0 - NOISE**2 / float(np.var(y))


def r2(net: bp.Network, X: np.ndarray, y: np.ndarray) -> float:
    residual = y - net.predict(X)[:, 0]
    return float(1.0 - np.mean(residual**2) / np.var(y))


def train(first: list[bp.Layer], width: int, X: np.ndarray, y: np.ndarray) -> bp.Network:
    net = bp.Network(
        [*first, bp.Dense(width, 64), bp.ReLU(), bp.Dense(64, 1)],
        loss="mse",
        optimizer=bp.Adam(lr=3e-3),
        seed=0,
    )
    net.fit(X, y, epochs=60, batch_size=64, schedule=bp.CosineAnnealingLR(T_max=60), progress=False)
    return net


def main() -> tuple[float, float, float]:
    """Trains both models; prints and returns (embeddings R², raw-codes R², best R²)."""
    rng = np.random.default_rng(0)
    X, y, best = make_data(8000, rng)
    X_train, y_train, X_test, y_test = X[:6000], y[:6000], X[6000:], y[6000:]
    embeddings = bp.Embeddings({0: (CITIES, 6), 1: (WEEKDAYS, 3)}, in_features=4)
    embedded = train([embeddings], 2 + 6 + 3, X_train, y_train)
    raw = train([], 4, X_train, y_train)
    scores = r2(embedded, X_test, y_test), r2(raw, X_test, y_test)
    print(
        f"test R²: embeddings {scores[0]:.3f}, raw codes {scores[1]:.3f}, best possible {best:.3f}"
    )
    return scores[0], scores[1], best


if __name__ == "__main__":
    main()

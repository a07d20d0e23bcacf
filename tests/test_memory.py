"""Steady memory. Repeated steps and predictions allocate nothing that stays,
and a dropped network gives its memory back. Measured as resident memory (Linux /proc)."""

import gc
import sys

import numpy as np
import pytest

import bpcore as bp

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def medium_network(seed=0):
    return bp.Network(
        [bp.Dense(64, 128), bp.ReLU(), bp.Dropout(0.1), bp.Dense(128, 10)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=1e-3),
        seed=seed,
    )


rng = np.random.default_rng(0)
X = rng.normal(size=(32, 64)).astype(np.float32)
Y = rng.integers(0, 10, size=32)


def test_ten_thousand_steps_and_predictions_hold_memory_steady():
    net = medium_network()
    for _ in range(200):  # warm-up: buffers, pools, allocator arenas
        net.train_step(X, Y)
        net.predict(X)
    gc.collect()
    before = rss_mb()
    for _ in range(10_000):
        net.train_step(X, Y)
    for _ in range(10_000):
        net.predict(X)
    gc.collect()
    grown = rss_mb() - before
    assert grown < 5, f"resident memory grew by {grown:.1f} MB"


def wide_network(seed):
    """~300k parameters: ~7 MB with gradients and Adam's state."""
    return bp.Network(
        [bp.Dense(64, 512), bp.ReLU(), bp.Dense(512, 512), bp.ReLU(), bp.Dense(512, 10)],
        loss="cross_entropy",
        optimizer=bp.Adam(),
        seed=seed,
    )


def use_and_drop(seed):
    net = wide_network(seed)
    net.fit(X, Y, epochs=1, batch_size=16)
    net.predict(X)


def test_dropped_networks_give_their_memory_back():
    for k in range(20):  # warm-up: the allocator's arenas settle on this size
        use_and_drop(k)
    gc.collect()
    before = rss_mb()
    for k in range(200):
        use_and_drop(k)
    gc.collect()
    grown = rss_mb() - before
    assert grown < 10, f"200 dropped networks left {grown:.1f} MB resident (one is ~7 MB)"

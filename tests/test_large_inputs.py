"""A fit on 2,000,000 × 100 float32 (800 MB) needs about the data plus one
batch's buffers: no copy of X for C-contiguous float32 input, none for the validation split
(views), and the shuffle gathers one batch at a time. Slow: run with `python -m pytest -m slow`."""

import gc
import sys

import numpy as np
import pytest

import bpcore as bp

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


def status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(key)


def reset_peak():
    """Restarts VmHWM (the peak resident memory) from the current resident memory."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def test_fit_on_800_mb_holds_about_the_data_plus_a_batch():
    n, d = 2_000_000, 100
    rng = np.random.default_rng(0)
    X = np.empty((n, d), np.float32)
    for start in range(0, n, 200_000):  # filled in blocks: no float64 temporary of it all
        X[start : start + 200_000] = rng.standard_normal((200_000, d), np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    net = bp.Network(
        [bp.Dense(d, 32), bp.ReLU(), bp.Dense(32, 2)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=1e-3),
        seed=0,
    )
    gc.collect()
    data_mb = (X.nbytes + y.nbytes) / 2**20
    reset_peak()
    base = status_mb("VmRSS")
    history = net.fit(X, y, epochs=2, batch_size=1024, validation_split=0.1)
    peak = status_mb("VmHWM") - base
    print(f"\ndata {data_mb:.0f} MB, fit's peak above it {peak:.0f} MB")
    assert history.history["val_accuracy"][-1] > 0.95
    # The validation pass holds the outputs of 200,000 samples (a few MB); batches ~0.5 MB.
    assert peak < 100, f"fit's peak resident memory rose {peak:.0f} MB over the data"

"""Ctrl-C during fit stops it within a batch, raises KeyboardInterrupt, and leaves the network
usable."""

import os
import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import bpcore as bp

    rng = np.random.default_rng(0)
    X = rng.random((20000, 256), dtype=np.float32)
    y = rng.integers(0, 10, 20000)
    net = bp.Network([bp.Dense(256, 512), bp.ReLU(), bp.Dense(512, 10)],
                     loss="cross_entropy", seed=0)
    print("ready", flush=True)
    try:
        net.fit(X, y, epochs=10_000, batch_size=64)
    except KeyboardInterrupt:
        params = net.parameters()
        assert all(np.isfinite(v).all() for v in params.values())
        before = net.loss(X[:100], y[:100])
        # One step's momentum may come from other batches: a few steps on these samples
        # lower their loss.
        for _ in range(20):
            net.train_step(X[:100], y[:100])
        assert net.loss(X[:100], y[:100]) < before
        print("interrupted cleanly", flush=True)
        sys.exit(0)
    print("fit finished without the interrupt", flush=True)
    sys.exit(1)
    """
)


def test_sigint_stops_fit_and_leaves_the_network_usable():
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)  # let fit get well into Rust before the signal arrives
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert "interrupted cleanly" in out

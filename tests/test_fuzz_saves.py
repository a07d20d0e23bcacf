"""Saves killed with SIGKILL at seeded random moments: the file at the path is always one of the
complete networks saved there (never torn), and the next save removes what the killed one left.
Slow (a process per kill): run with `python -m pytest -m slow`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import bpcore as bp

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="killing a save needs SIGKILL and flock (POSIX, run on Linux)",
    ),
]

KILLS = 60
LAYERS = [bp.Dense(300, 1000), bp.ReLU(), bp.Dense(1000, 2)]  # 3.6 MB files with Adam's state

#: Saves two networks in turn to the same path until it is killed.
SAVER = textwrap.dedent(
    """
    import sys
    import bpcore as bp
    layers = [bp.Dense(300, 1000), bp.ReLU(), bp.Dense(1000, 2)]
    nets = [bp.Network(layers, loss="mse", seed=seed) for seed in (1, 2)]
    print("ready", flush=True)
    i = 0
    while True:
        nets[i % 2].save(sys.argv[1], include_optimizer=True)
        i += 1
    """
)


def test_killed_saves_leave_a_whole_file_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "net.safetensors"
    expected = [bp.Network(LAYERS, loss="mse", seed=seed).parameters() for seed in (1, 2)]
    bp.Network(LAYERS, loss="mse", seed=1).save(path, include_optimizer=True)
    rng = np.random.default_rng(0)
    left_temporaries = 0
    for _ in range(KILLS):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE)
        assert saver.stdout is not None and saver.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.0, 0.2)))  # where the kill lands, not a time limit
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        loaded = bp.Network.load(path).parameters()
        assert any(all(np.array_equal(loaded[k], e[k]) for k in e) for e in expected)
        left_temporaries += len(os.listdir(tmp_path)) > 1
        bp.Network(LAYERS, loss="mse", seed=1).save(path, include_optimizer=True)
        assert os.listdir(tmp_path) == ["net.safetensors"]
    print(f"{left_temporaries} of {KILLS} kills left a temporary; the next save removed each")

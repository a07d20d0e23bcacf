"""The CNN benchmark row runs end to end and its systems train the same network: torch's module
and the JAX forward compute bpcore's outputs from bpcore's parameters.

Nothing here asserts a speed: the benchmark reports, it is not a test of time.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from optional import require

import bpcore as bp
from bpcore.bench import cnn


def test_the_row_reports_each_installed_system_at_both_batch_sizes() -> None:
    rows = cnn.measure(turns=1, use_jax=False, samples=300)
    systems = {"bpcore"} | ({"torch"} if importlib.util.find_spec("torch") else set())
    for batch in cnn.BATCH_SIZES:
        got = {r.system: r for r in rows if r.workload == f"cnn (batch {batch})"}
        assert set(got) == systems
        assert all(r.value > 0 and r.metric == "samples/s" for r in got.values())


def test_the_jax_network_is_bpcores() -> None:
    require("jax", "jax[cpu]")
    net = bp.Network(cnn.layers(), loss="cross_entropy", seed=1)
    X, _ = cnn.digits()
    out = np.asarray(cnn.jax_forward(net.parameters(), X[:50]))
    np.testing.assert_allclose(out, net.forward(X[:50]), rtol=1e-4, atol=1e-5)

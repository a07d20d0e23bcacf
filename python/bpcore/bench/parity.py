"""Evidence that the NumPy baseline and the JAX loops compute what bpcore computes: the same
training steps from the same weights on the same batches give the same losses and parameters
(float32, ~1e-4)."""

from __future__ import annotations

import numpy as np

from bpcore.bench import run_jax
from bpcore.bench.data import make_data
from bpcore.bench.run_bpcore import make_network
from bpcore.bench.run_numpy import make_mlp
from bpcore.bench.workloads import Workload


def compare_with_numpy(workload: Workload, steps: int = 5, seed: int = 0) -> dict[str, float]:
    """Trains bpcore and the NumPy MLP for ``steps`` identical ``train_step`` calls and returns
    ``{"loss": largest relative difference of the losses, "parameters": largest absolute
    difference of the final parameters}``."""
    X, y = make_data(workload, steps * workload.batch_size, seed=seed)
    net = make_network(workload, seed=seed)
    mlp = make_mlp(workload, net.parameters())
    loss_diff = 0.0
    B = workload.batch_size
    for s in range(0, len(X), B):
        ours = net.train_step(X[s : s + B], y[s : s + B])
        theirs = mlp.train_step(X[s : s + B], y[s : s + B])
        loss_diff = max(loss_diff, abs(ours - theirs) / max(abs(theirs), 1e-6))
    param_diff = 0.0
    theirs_p = mlp.parameters()
    for name, value in net.parameters().items():
        param_diff = max(param_diff, float(np.abs(value - theirs_p[name]).max()))
    return {"loss": loss_diff, "parameters": param_diff}


def compare_with_jax(workload: Workload, steps: int = 5, seed: int = 0) -> dict[str, float]:
    """``compare_with_numpy`` for JAX's jitted step (needs JAX and optax)."""
    X, y = make_data(workload, steps * workload.batch_size, seed=seed)
    net = make_network(workload, seed=seed)
    theirs, theirs_p = run_jax.train_steps(workload, X, y, net.parameters())
    B = workload.batch_size
    ours = [net.train_step(X[s : s + B], y[s : s + B]) for s in range(0, len(X), B)]
    loss_diff = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(ours, theirs))
    param_diff = 0.0
    for name, value in net.parameters().items():
        param_diff = max(param_diff, float(np.abs(value - theirs_p[name]).max()))
    return {"loss": loss_diff, "parameters": param_diff}

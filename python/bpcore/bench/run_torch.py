"""PyTorch on the same workloads, imported lazily: the benchmark skips it when torch is missing.

Each run sets ``torch.set_num_threads``; the caller tries 1 and 2 threads and keeps the faster.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import numpy as np

from bpcore.bench.timing import median_microseconds, samples_per_second
from bpcore.bench.workloads import Workload


def available() -> bool:
    """Whether torch can be imported."""
    return importlib.util.find_spec("torch") is not None


def version() -> str:
    """torch.__version__."""
    import torch

    return str(torch.__version__)


def make_model(workload: Workload, parameters: Mapping[str, np.ndarray]) -> Any:
    """An ``nn.Sequential`` equal to the bpcore network, loaded with its ``parameters``."""
    import torch
    from torch import nn

    activation = {"tanh": nn.Tanh, "relu": nn.ReLU}[workload.activation]
    modules: list[nn.Module] = []
    for n_in, n_out in zip(workload.widths[:-1], workload.widths[1:]):
        modules += [nn.Linear(n_in, n_out), activation()]
    model = nn.Sequential(*modules[:-1])
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in parameters.items()})
    return model.to(getattr(torch, workload.dtype))


def train_rate(
    workload: Workload,
    X: np.ndarray,
    y: np.ndarray,
    parameters: Mapping[str, np.ndarray],
    threads: int,
) -> float:
    """Samples per second of the usual PyTorch loop (randperm, index, zero_grad, forward,
    loss, backward, step) with ``threads`` intra-op threads."""
    import torch
    from torch.nn import functional

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = make_model(workload, parameters)
    if workload.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=workload.lr, momentum=workload.momentum)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=workload.lr)
    loss_fn = functional.cross_entropy if workload.loss == "cross_entropy" else functional.mse_loss
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    B = workload.batch_size

    def epoch(n: int) -> None:
        order = torch.randperm(n)
        for s in range(0, n, B):
            idx = order[s : s + B]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    epoch(2 * B)  # warm-up
    return samples_per_second(lambda: epoch(len(X)), len(X), workload.min_seconds)


def predict_microseconds(
    workload: Workload,
    parameters: Mapping[str, np.ndarray],
    x1: np.ndarray,
    calls: int,
    threads: int,
) -> float:
    """Median microseconds of ``model(x)`` on one sample under ``torch.no_grad()`` (tensor in,
    tensor out: no NumPy conversion counted against torch)."""
    import torch

    torch.set_num_threads(threads)
    model = make_model(workload, parameters)
    xt = torch.from_numpy(x1)

    def call() -> Any:
        with torch.no_grad():
            return model(xt)

    return median_microseconds(call, calls)

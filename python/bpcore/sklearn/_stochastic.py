"""The stochastic solvers' epochs: scikit-learn's learning-rate rules between epochs, and one
epoch of mini-batches trained by the core.

Each epoch visits the rows in the order scikit-learn's would (a permutation drawn from the
estimator's `random_state`, when `shuffle`), so that the same `random_state` gives the same
batches in both libraries; the core trains on them in order, one native call per epoch (per
block of batches for sparse input, made dense a block at a time).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from bpcore.network import Network
from bpcore.sklearn import _network


class LearningRate:
    """scikit-learn's learning-rate rule of the stochastic solvers ("constant", "invscaling",
    "adaptive"), kept where scikit-learn keeps its optimizer (`_optimizer`) and with its names.

    `learning_rate` is the rate of the next epoch in scikit-learn's units; the core's optimizer
    gets it times `scale` (the ratio of scikit-learn's gradient to the core's).
    """

    def __init__(self, learning_rate_init: float, schedule: str, power_t: float) -> None:
        self.learning_rate_init = learning_rate_init
        self.lr_schedule = schedule
        self.power_t = power_t
        self.learning_rate = float(learning_rate_init)

    def iteration_ends(self, time_step: int) -> None:
        """After an epoch, `time_step` samples seen in all: invscaling's lr_init / (t+1)^power_t."""
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, message: str, verbose: bool) -> bool:
        """Whether to stop once the loss or score stopped improving: yes, except for "adaptive",
        which first divides the rate by 5 until it is below 1e-6."""
        if self.lr_schedule != "adaptive":
            if verbose:
                print(message + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(message + f" Setting learning rate to {self.learning_rate:f}")
        return False


def epoch_order(
    previous: np.ndarray | None, n: int, shuffle: bool, random_state: np.random.RandomState
) -> np.ndarray | None:
    """The rows' order for one epoch: scikit-learn's shuffle of the previous epoch's order
    (0..n-1 for a fit's first), as scikit-learn reshuffles its running `sample_idx`; or None
    (in order)."""
    if not shuffle:
        return None
    from sklearn.utils import shuffle as sklearn_shuffle

    start = np.arange(n) if previous is None else previous
    order: np.ndarray = sklearn_shuffle(start, random_state=random_state)
    return order


def epoch(
    net: Network,
    X: Any,
    targets: np.ndarray,
    weights: np.ndarray | None,
    batch_size: int,
    order: np.ndarray | None,
    decay_per_weight: bool = True,
) -> tuple[float, float]:
    """One epoch of mini-batches of `batch_size` over the rows in `order`; returns (the core's
    mean batch loss, its L2 term's), each weighted by the batches' rows (scikit-learn's
    accumulated loss / n; the L2 term of the weights before each batch's step).

    As scikit-learn's: each batch's loss is Σ w_i·l_i / Σ w_i ("mean_with_sample_weight"), and
    with `decay_per_weight` its weight decay is the optimizer's over the batch's Σ w (its row
    count without weights), scikit-learn's alpha / Σ w_batch."""
    n = X.shape[0]
    if sp.issparse(X):
        per_call = batch_size * max(1, _network.row_blocks(X)[0].stop // batch_size)
    else:
        per_call = n
    total = penalty = 0.0
    for start in range(0, n, per_call):
        rows: Any = slice(start, min(n, start + per_call))
        if order is not None:
            rows = order[rows]
        x = _network.dense(X, rows, net.dtype)
        w = None if weights is None else weights[rows]
        history = net.fit(
            x,
            targets[rows],
            epochs=1,
            batch_size=batch_size,
            shuffle=False,
            metrics=[],
            progress=False,
            sample_weight=w,
            sample_weight_reduction="mean_with_sample_weight",
            weight_decay_per_batch_weight=decay_per_weight,
        )
        total += float(history.history["loss"][-1]) * x.shape[0]
        if decay_per_weight:
            penalty += float(history.history["penalty"][-1]) * x.shape[0]
    return total / n, penalty / n

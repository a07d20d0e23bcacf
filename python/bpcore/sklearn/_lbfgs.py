"""`solver="lbfgs"`: scipy's L-BFGS-B on scikit-learn's full-batch objective, each evaluation's
loss and gradient computed by the Rust core over all rows at once.

The objective is scikit-learn's: Σ w_i·l_i / Σ w_i + ½·alpha·‖W‖² / Σ w_i, with the penalty on the
weights only. The core gives Σ w_i·l_i / n (its sample-weight convention); handing it the
weights times n / Σ w turns that into the weighted mean. Sparse inputs are made dense a block of
rows at a time, their sums added up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from bpcore._user_warnings import warn
from bpcore.network import Network
from bpcore.sklearn import _network


@dataclass
class Scales:
    """How the core's loss relates to scikit-learn's, for one output layout.

    `gradient`: scikit-learn's objective (the one its gradients follow) is this times the
    core's loss; `report`: the loss scikit-learn reports is this times the core's loss, plus
    `offset` (the terms of scikit-learn's loss that do not depend on the network)."""

    gradient: float
    report: float
    offset: float = 0.0


class Objective:
    """scikit-learn's full-batch loss and its gradient at a flat parameter vector."""

    def __init__(
        self,
        net: Network,
        X: Any,
        targets: np.ndarray,
        sample_weight: np.ndarray | None,
        alpha: float,
        scales: Scales,
    ) -> None:
        self.net, self.X, self.targets, self.alpha, self.scales = net, X, targets, alpha, scales
        n = X.shape[0]
        self.n = n
        self.weight_sum = float(n if sample_weight is None else sample_weight.sum())
        self.weights = None
        if sample_weight is not None:
            self.weights = np.ascontiguousarray(sample_weight * (n / self.weight_sum), net.dtype)
        self.blocks = _network.row_blocks(X)
        self.mask = _network.weight_mask(net)
        self.last_loss = np.nan
        self.evaluations = 0

    def data_loss_and_gradient(self) -> tuple[float, np.ndarray]:
        """The core's Σ w_i·l_i / Σ w_i over all rows, and its flat gradient (float64)."""
        if len(self.blocks) == 1:
            x = _network.dense(self.X, self.blocks[0], self.net.dtype)
            loss, grad = _network.loss_and_gradient(self.net, x, self.targets, self.weights)
            return loss, grad.astype(np.float64)
        total, grad_sum = 0.0, np.zeros(self.mask.shape[0])
        for rows in self.blocks:
            x = _network.dense(self.X, rows, self.net.dtype)
            w = None if self.weights is None else self.weights[rows]
            loss, grad = _network.loss_and_gradient(self.net, x, self.targets[rows], w)
            total += loss * x.shape[0]
            grad_sum += grad * x.shape[0]
        return total / self.n, grad_sum / self.n

    def __call__(self, flat: np.ndarray) -> tuple[float, np.ndarray]:
        """(objective, gradient) at `flat`, as scipy.optimize.minimize(jac=True) takes them."""
        self.evaluations += 1
        _network.set_flat_parameters(self.net, flat)
        data, grad = self.data_loss_and_gradient()
        weights = flat[self.mask].astype(np.float64)
        penalty = 0.5 * self.alpha * float(weights @ weights) / self.weight_sum
        scales = self.scales
        self.last_loss = scales.report * data + penalty + scales.offset
        grad *= scales.gradient
        grad[self.mask] += self.alpha * weights / self.weight_sum
        return scales.gradient * data + penalty, grad


@dataclass
class Result:
    """What the estimator keeps of a run: iterations, final reported loss, per-iteration losses."""

    n_iter: int
    loss: float
    loss_curve: list[float]


def minimize(
    objective: Objective, max_iter: int, max_fun: int, tol: float, verbose: bool
) -> Result:
    """Runs L-BFGS-B from the network's parameters with scikit-learn's options (`maxiter`,
    `maxfun`, `gtol=tol`) and leaves the network at the solution. Warns ConvergenceWarning, as
    scikit-learn does, when the run stopped on a limit."""
    net = objective.net
    start = _network.flat_parameters(net).astype(np.float64)
    curve: list[float] = []

    def record(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        # The line search's last evaluation is the accepted point.
        curve.append(float(objective.last_loss))
        if verbose:
            print(f"Iteration {len(curve)}, loss = {curve[-1]:.8f}")

    result = scipy.optimize.minimize(
        objective,
        start,
        method="L-BFGS-B",
        jac=True,
        callback=record,
        options={"maxfun": max_fun, "maxiter": max_iter, "gtol": tol},
    )
    objective(result.x)
    n_iter = min(int(result.nit), max_iter)
    if result.status != 0:
        message = (
            f"lbfgs failed to converge after {n_iter} iteration(s) (status={result.status}):\n"
            f"{result.message}\n"
        )
        if n_iter == max_iter:
            message += (
                "\nIncrease the number of iterations to improve the convergence "
                f"(max_iter={max_iter})."
            )
        message += (
            "\nYou might also want to scale the data as shown in:\n"
            "    https://scikit-learn.org/stable/modules/preprocessing.html"
        )
        warn(message, ConvergenceWarning)
    return Result(n_iter, float(objective.last_loss), curve)

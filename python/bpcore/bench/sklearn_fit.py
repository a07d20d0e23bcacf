"""scikit-learn's MLPClassifier against bpcore.sklearn's: seconds per `fit` with equal parameters
on the same data, one after the other in one run, with the test accuracies side by side.

Two data sets, scikit-learn's digits (1,797 × 64, 10 classes, scaled to [0, 1]) and a synthetic
one (`make_classification`, 50,000 × 100, 10 classes, standardized), each split 80/20; two
solvers, "adam" for a fixed number of epochs (`tol=0`, `n_iter_no_change=inf`, so both do the same
work) and "lbfgs" up to `max_iter` iterations. Both libraries compute in float64 (the data's
dtype), from the same initial weights (bpcore draws scikit-learn's for a `random_state`).
"""

from __future__ import annotations

import importlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import bpcore as bp
from bpcore.bench.results import Result, Results

#: The name every row's workload starts with, and the one `--only` selects them by.
WORKLOAD = "sklearn"
SYSTEMS = ("bpcore", "scikit-learn")


@dataclass(frozen=True)
class Case:
    """One timed fit: a data set, a solver and the parameters both estimators get."""

    data: str
    solver: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def workload(self) -> str:
        """The rows' workload name, e.g. "sklearn digits adam"."""
        return f"{WORKLOAD} {self.data} {self.solver}"


def cases(quick: bool) -> list[Case]:
    """The fits of a run: every data set with every solver, fewer iterations when `quick`."""
    epochs, iterations = (3, 10) if quick else (20, 100)
    solvers: dict[str, dict[str, Any]] = {
        "adam": {"max_iter": epochs, "tol": 0.0, "n_iter_no_change": np.inf},
        "lbfgs": {"max_iter": iterations},
    }
    common = {"hidden_layer_sizes": (100,), "random_state": 0}
    return [
        Case(data, solver, {**common, "solver": solver, **params})
        for data in ("digits", "synthetic")
        for solver, params in solvers.items()
    ]


def workloads() -> list[str]:
    """The workload names of a run's rows."""
    return [case.workload for case in cases(quick=True)]


def unavailable() -> str | None:
    """Why the comparison cannot run here, or None."""
    try:
        import sklearn.neural_network  # noqa: F401
    except ImportError as e:
        return f"scikit-learn is not installed ({e})"
    return None


def dataset(name: str, quick: bool) -> tuple[np.ndarray, ...]:
    """(X_train, X_test, y_train, y_test) of data set `name`, float64."""
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split

    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    else:
        n = 5_000 if quick else 50_000
        X, y = make_classification(
            n_samples=n, n_features=100, n_informative=40, n_classes=10, random_state=0
        )
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    parts: list[np.ndarray] = train_test_split(X, y, test_size=0.2, random_state=0)
    return tuple(parts)


def fit_once(system: str, case: Case, data: tuple[np.ndarray, ...]) -> dict[str, float]:
    """Fits `system`'s estimator on the training part; its seconds, test accuracy, iterations."""
    module = "bpcore.sklearn" if system == "bpcore" else "sklearn.neural_network"
    estimator = importlib.import_module(module).MLPClassifier(**case.params)
    X_train, X_test, y_train, y_test = data
    with warnings.catch_warnings():
        # A fixed number of epochs is the point: not having converged is expected.
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        estimator.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "accuracy": float(estimator.score(X_test, y_test)),
        "n_iter": float(estimator.n_iter_),
        "samples": float(X_train.shape[0]),
    }


def measure(quick: bool, turns: int = 1) -> list[Result]:
    """One row per case and system (the faster of `turns` alternating fits each), or one
    skipped row saying why scikit-learn is not here."""
    reason = unavailable()
    if reason is not None:
        return [Result(WORKLOAD, "scikit-learn", "s/fit", 0.0, extra={"skipped": reason})]
    rows = []
    for case in cases(quick):
        data = dataset(case.data, quick)
        best: dict[str, dict[str, float]] = {}
        for _ in range(max(turns, 1)):
            for system in SYSTEMS:
                got = fit_once(system, case, data)
                if system not in best or got["seconds"] < best[system]["seconds"]:
                    best[system] = got
        for system in SYSTEMS:
            got = best[system]
            rows.append(
                Result(
                    case.workload,
                    system,
                    "s/fit",
                    got["seconds"],
                    threads=bp.get_num_threads() if system == "bpcore" else None,
                    note=f"{int(got['n_iter'])} iterations on {int(got['samples']):,} rows, "
                    f"test accuracy {got['accuracy']:.4f}",
                    extra=got,
                )
            )
    return rows


def summary(results: Results) -> list[str]:
    """One line per case: both fits' seconds and accuracies, and bpcore's speed-up."""
    lines = []
    for workload in dict.fromkeys(r.workload for r in results.rows if r.workload in workloads()):
        ours, theirs = results.get(workload, "bpcore"), results.get(workload, "scikit-learn")
        if ours is None or theirs is None:
            continue
        lines.append(
            f"{workload}: bpcore {ours.value:.2f} s (accuracy {ours.extra['accuracy']:.4f}), "
            f"scikit-learn {theirs.value:.2f} s (accuracy {theirs.extra['accuracy']:.4f}): "
            f"{theirs.value / ours.value:.2f}x"
        )
    skipped = results.get(WORKLOAD, "scikit-learn")
    if skipped is not None and "skipped" in skipped.extra:
        lines.append(f"{WORKLOAD}: skipped, {skipped.extra['skipped']}")
    return lines

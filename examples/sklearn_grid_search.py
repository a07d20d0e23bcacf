"""bpcore's scikit-learn estimator in a Pipeline, tuned by GridSearchCV.

`bpcore.sklearn.MLPClassifier` takes scikit-learn's MLPClassifier parameters (plus `dropout`
and `dtype`) and trains with bpcore's Rust kernels, so it drops into anything scikit-learn
builds: here a Pipeline (StandardScaler, then the network) whose hidden layer sizes, dropout
rate and learning rate a 3-fold grid search picks on the digits; the best pipeline, refitted on
all the training data, is then scored on held-out test data.

The search fits its candidates in `n_jobs` joblib worker processes (estimators are sent to them
pickled, through bpcore's safe safetensors bytes). Each worker gets its own bpcore thread pool,
so with as many workers as cores, give each one thread (BPCORE_NUM_THREADS=1, as this example
does) instead of letting every worker start one thread per core. The same code runs on a
cluster by switching joblib's backend, with no change to the estimator:

    from dask.distributed import Client          # pip install "dask[distributed]"
    client = Client("scheduler-address:8786")
    with joblib.parallel_backend("dask"):
        search.fit(X_train, y_train)

    from ray.util.joblib import register_ray      # pip install ray
    register_ray()
    with joblib.parallel_backend("ray"):
        search.fit(X_train, y_train)

    pip install ".[sklearn]" && python examples/sklearn_grid_search.py [n_jobs]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import bpcore as bp
from bpcore.sklearn import MLPClassifier


@contextmanager
def threads_for_new_workers(n: int) -> Iterator[None]:
    """Sets BPCORE_NUM_THREADS=n for the worker processes started inside the `with` block (they
    inherit the environment; bpcore reads it when it starts its pool) and restores it after.
    This process keeps the pool it already has."""
    before = os.environ.get("BPCORE_NUM_THREADS")
    os.environ["BPCORE_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            del os.environ["BPCORE_NUM_THREADS"]
        else:
            os.environ["BPCORE_NUM_THREADS"] = before


def main(n_jobs: int = 2) -> tuple[dict[str, Any], float, float]:
    """Runs the search with `n_jobs` workers; returns (best parameters, their mean CV accuracy,
    the refitted best pipeline's test accuracy)."""
    threads = bp.get_num_threads()  # starts this process's pool (all cores, by default)
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "mlp",
                # Stops when the training loss has improved by less than tol for 10 epochs.
                MLPClassifier(
                    batch_size=64, max_iter=200, tol=1e-3, dtype="float32", random_state=0
                ),
            ),
        ]
    )
    grid: dict[str, list[Any]] = {
        "mlp__hidden_layer_sizes": [(64,), (128, 64)],
        "mlp__dropout": [0.0, 0.2],  # bpcore's own: a Dropout layer after each hidden layer
        "mlp__learning_rate_init": [1e-3, 1e-2],
    }
    search = GridSearchCV(pipeline, grid, cv=3, n_jobs=n_jobs)
    start = time.perf_counter()
    with threads_for_new_workers(1):
        search.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    candidates = len(search.cv_results_["params"])
    print(
        f"{candidates} candidates x 3 folds fitted in {seconds:.1f} s with n_jobs={n_jobs} "
        f"(bpcore threads: {threads} in this process"
        + (", 1 in each worker)" if n_jobs != 1 else ")")
    )
    for rank, params, score in sorted(
        zip(
            search.cv_results_["rank_test_score"],
            search.cv_results_["params"],
            search.cv_results_["mean_test_score"],
        ),
        key=lambda row: int(row[0]),
    ):
        shown = ", ".join(f"{k.removeprefix('mlp__')}={v}" for k, v in params.items())
        print(f"  {int(rank)}. CV accuracy {score:.4f}  {shown}")
    best: dict[str, Any] = dict(search.best_params_)
    cv_score = float(search.best_score_)
    test_accuracy = float(search.score(X_test, y_test))
    print(f"best parameters: {best}")
    print(f"best mean CV accuracy: {cv_score:.4f}")
    print(f"test accuracy of the refitted best pipeline: {test_accuracy:.4f}")
    return best, cv_score, test_accuracy


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:2]))

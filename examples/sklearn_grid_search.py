"""bpcore's scikit-learn estimator in a Pipeline, tuned by GridSearchCV over worker processes.

`bpcore.sklearn.MLPClassifier` takes scikit-learn's MLPClassifier parameters (plus `dropout`
and `dtype`) and trains with bpcore's Rust kernels, so it drops into anything scikit-learn
builds: here a Pipeline (StandardScaler, then the network) whose hidden layer sizes, dropout
rate and learning rate a 3-fold grid search picks on the digits; the best pipeline, refitted on
all the training data, is then scored on held-out test data.

The search fits its candidates in `--jobs` joblib (loky) worker processes, 2 by default; the
estimators travel to them pickled, through bpcore's safe safetensors bytes, and the results
equal a serial search's (`--jobs 1`). Each process has its own bpcore thread pool, and nothing
needs configuring for the workers not to oversubscribe the cores: joblib starts each worker with
`OMP_NUM_THREADS` set to its share of the cores, and bpcore's pool follows it (unless
`BPCORE_NUM_THREADS` says otherwise).

On a cluster the same search runs over many machines through joblib's dask or ray backend,
with no change to the estimator or the search (neither package is a bpcore dependency):

    from dask.distributed import Client            # pip install "dask[distributed]"
    client = Client("tcp://scheduler:8786")
    with joblib.parallel_backend("dask"):
        search.fit(X_train, y_train)

    from ray.util.joblib import register_ray       # pip install ray
    register_ray()
    with joblib.parallel_backend("ray"):
        search.fit(X_train, y_train)

There, give each worker process one bpcore thread through its environment, which bpcore reads
when its pool starts (`OMP_NUM_THREADS=1` does too):
`BPCORE_NUM_THREADS=1 dask worker tcp://scheduler:8786 --nworkers 8 --nthreads 1`, or
`ray.init(runtime_env={"env_vars": {"BPCORE_NUM_THREADS": "1"}})`. A worker process that owns a
whole machine keeps bpcore's default, all its cores.

    pip install ".[sklearn]" && python examples/sklearn_grid_search.py [--jobs N]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import joblib
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import bpcore as bp
from bpcore.sklearn import MLPClassifier


def worker_threads(n_jobs: int) -> list[int]:
    """bpcore's thread count as measured inside the workers joblib runs tasks on now."""
    counts = joblib.Parallel(n_jobs=n_jobs)(
        joblib.delayed(bp.get_num_threads)() for _ in range(4 * abs(n_jobs))
    )
    return sorted({int(n) for n in counts})


def main(n_jobs: int = 2) -> tuple[dict[str, Any], float, float]:
    """Runs the search with `n_jobs` workers; returns (best parameters, their mean CV accuracy,
    the refitted best pipeline's test accuracy)."""
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
    search.fit(X_train, y_train)
    threads = worker_threads(n_jobs) if n_jobs != 1 else None
    seconds = time.perf_counter() - start
    candidates = len(search.cv_results_["params"])
    workers = "" if threads is None else f", {'/'.join(map(str, threads))} in each worker"
    print(
        f"{candidates} candidates x 3 folds fitted in {seconds:.1f} s with n_jobs={n_jobs} "
        f"(bpcore threads, measured: {bp.get_num_threads()} in this process{workers})"
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs", type=int, default=2, help="joblib worker processes (1: serial; default 2)"
    )
    main(parser.parse_args().jobs)

"""bpcore's scikit-learn estimators across joblib's loky worker processes, with no configuration:
each worker's bpcore pool takes its share of the cores from the limits joblib sets, the
estimators pickle there and back exactly, and a parallel grid search equals a serial one, score
for score."""

from __future__ import annotations

import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
import threadpoolctl
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import bpcore as bp
from bpcore.sklearn import MLPClassifier, MLPRegressor

# A few epochs are enough to compare runs; they are not meant to converge.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


#: The variables bpcore's default thread count follows, in its order.
THREAD_VARIABLES = (
    "BPCORE_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def worker_share() -> int:
    """The threads joblib gives each of 2 loky workers when nothing is configured: its
    OMP_NUM_THREADS and the like are set to the cores divided among the workers."""
    return max(joblib.cpu_count() // 2, 1)


@pytest.fixture
def no_thread_settings(monkeypatch):
    """No thread-count variable here (so none inherited by the workers), and this process on the
    workers' share of threads: same thread count, bit-identical results (bpcore's promise), so
    serial and parallel runs must agree exactly."""
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    n = bp.get_num_threads()
    bp.set_num_threads(worker_share())
    yield
    bp.set_num_threads(n)


def test_the_default_thread_count_follows_the_limits_set_for_other_pools():
    def threads(**variables: str) -> int:
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
        code = "import bpcore; print(bpcore.get_num_threads())"
        done = subprocess.run(
            [sys.executable, "-c", code], env={**env, **variables}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert threads(OMP_NUM_THREADS="1") == 1
    assert threads(OMP_NUM_THREADS="3,1") == 3
    assert threads(MKL_NUM_THREADS="2") == 2
    assert threads(BPCORE_NUM_THREADS="2", OMP_NUM_THREADS="1") == 2


def test_threadpoolctl_reports_and_limits_bpcores_pool():
    n = bp.get_num_threads()
    pools = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "bpcore"]
    assert [p["num_threads"] for p in pools] == [n]
    with threadpoolctl.threadpool_limits(limits=1):
        assert bp.get_num_threads() == 1
    assert bp.get_num_threads() == n


def test_workers_share_the_cores_with_no_configuration(no_thread_settings):
    counts = joblib.Parallel(n_jobs=2)(joblib.delayed(bp.get_num_threads)() for _ in range(8))
    assert set(counts) == {worker_share()}


def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400], y[:400]


# Scorers that report where a fold was fitted and scored, measured inside that process.
def bpcore_threads(estimator, X, y):
    return bp.get_num_threads()


def process_id(estimator, X, y):
    return os.getpid()


def fit_in_worker(estimator, X, y):
    return estimator.fit(X, y), os.getpid(), bp.get_num_threads()


def test_estimators_fitted_in_a_worker_come_back_equal_to_serial_ones(no_thread_settings):
    X, y = digits()
    X = X / 16.0
    made = [
        MLPClassifier((16,), max_iter=5, random_state=0),
        MLPRegressor(hidden_layer_sizes=(16,), max_iter=5, random_state=0, dtype="float32"),
    ]
    targets = [y, y.astype(float)]
    returned = joblib.Parallel(n_jobs=2)(
        joblib.delayed(fit_in_worker)(est, X, t) for est, t in zip(made, targets)
    )
    for (remote, pid, threads), est, t in zip(returned, made, targets):
        assert pid != os.getpid() and threads == worker_share()
        assert not hasattr(est, "coefs_")  # the worker fitted a pickled copy
        local = est.fit(X, t)
        assert remote.n_iter_ == local.n_iter_ == 5
        assert remote.loss_curve_ == local.loss_curve_
        for a, b in zip(remote.coefs_ + remote.intercepts_, local.coefs_ + local.intercepts_):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    # A fitted estimator also travels to a worker and predicts there as here.
    clf = made[0]
    there = joblib.Parallel(n_jobs=2)(joblib.delayed(clf.predict_proba)(X[i::2]) for i in (0, 1))
    for i in (0, 1):
        np.testing.assert_array_equal(there[i], clf.predict_proba(X[i::2]))


def search(n_jobs):
    pipe = make_pipeline(StandardScaler(), MLPClassifier(batch_size=32, max_iter=8, random_state=0))
    grid = {
        "mlpclassifier__hidden_layer_sizes": [(8,), (32,)],
        "mlpclassifier__learning_rate_init": [1e-3, 1e-2],
    }
    # The log loss tells apart trainings that differ in any weight, where accuracy would not.
    scoring = {
        "log_loss": "neg_log_loss",
        "accuracy": "accuracy",
        "threads": bpcore_threads,
        "pid": process_id,
    }
    return GridSearchCV(pipe, grid, cv=3, n_jobs=n_jobs, scoring=scoring, refit="log_loss").fit(
        *digits()
    )


def test_grid_search_with_two_workers_equals_the_serial_search(no_thread_settings):
    serial, parallel = search(1), search(2)
    here = os.getpid()
    folds = [f"split{i}_test_" for i in range(3)]

    # Where the folds ran: here for n_jobs=1; in worker processes with their share of threads.
    assert {p for f in folds for p in serial.cv_results_[f + "pid"]} == {here}
    pids = {p for f in folds for p in parallel.cv_results_[f + "pid"]}
    assert here not in pids and 1 <= len(pids) <= 2
    for f in folds:
        assert list(parallel.cv_results_[f + "threads"]) == [worker_share()] * 4

    # The same numbers, bit for bit, for every candidate and fold.
    for f in folds:
        for metric in ("log_loss", "accuracy"):
            assert np.array_equal(serial.cv_results_[f + metric], parallel.cv_results_[f + metric])
    assert parallel.best_params_ == serial.best_params_
    assert parallel.best_score_ == serial.best_score_
    # Not a vacuous agreement: the candidates score differently and sensibly.
    scores = serial.cv_results_["mean_test_log_loss"]
    assert len(set(scores)) == 4 and -1.0 < serial.best_score_ < 0
    assert serial.cv_results_["mean_test_accuracy"].max() > 0.8
    X, _ = digits()
    np.testing.assert_array_equal(
        parallel.best_estimator_.predict_proba(X), serial.best_estimator_.predict_proba(X)
    )

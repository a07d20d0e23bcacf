"""bpcore used the way users use it, for `mypy --strict` to check the public types against.

Not a pytest module (its name does not start with ``test_``); CI type-checks it with
``mypy --strict tests/typing_usage.py`` against the installed wheel, and it also runs as a
script: ``python tests/typing_usage.py``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

import bpcore as bp
from bpcore import bpcore as native
from bpcore.sklearn import MLPClassifier


class PrintEveryEpoch(bp.Callback):
    """A user's own callback: the hooks' signatures must match the base class's."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        self.seen.append(epoch)
        return None


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)

    net = bp.Network(
        [bp.Dense(4, 8), bp.ReLU(), bp.Dense(8, 2)],
        loss=bp.CrossEntropyLoss(label_smoothing=0.1),
        optimizer=bp.Adam(lr=1e-2),
        dtype="float32",
        seed=0,
    )
    out: np.ndarray = net.forward(X)
    loss: float = net.loss(X, y)
    grads: dict[str, np.ndarray] = net.gradients(X, y)
    step_loss: float = net.train_step(X, y)
    net.apply_gradients(grads)

    callback = PrintEveryEpoch()
    history: bp.History = net.fit(
        X,
        y,
        epochs=3,
        batch_size=16,
        validation_split=0.25,
        callbacks=[bp.EarlyStopping(patience=2, restore_best_weights=True), callback],
        schedule=bp.CosineAnnealingLR(T_max=3),
        clip_grad_norm=1.0,
        progress=False,
    )
    losses: list[float] = history.history["loss"]
    norms: dict[str, list[float]] = history.grad_norms

    labels: np.ndarray = net.predict(X)
    proba: np.ndarray = net.predict_proba(X)
    scores: dict[str, float] = net.evaluate(X, y)
    params: dict[str, np.ndarray] = net.parameters()
    net.set_parameters(params)
    lr: float = net.lr

    explanation: bp.Explanation = bp.explain(net, X[0], int(y[0]), layer=0, index=(0, 1))
    terms: list[tuple[str, float]] = explanation.terms
    product: float = explanation.product

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.safetensors")
        net.save(path, include_optimizer=True)
        loaded: bp.Network = bp.Network.load(path)
    same: bool = bool(np.array_equal(loaded.forward(X), out))

    regression = bp.Network(
        [bp.Dense(4, 8), bp.Tanh(), bp.Dropout(0.1), bp.Dense(8, 1)],
        loss="mse",
        optimizer=bp.SGD(lr=0.05, momentum=0.9),
        dtype="float64",
    )
    target = X[:, :1].astype(np.float64)
    regression.fit(X.astype(np.float64), target, epochs=2, progress=False)

    # The native module, through its stubs.
    threads: int = bp.get_num_threads()
    bp.set_num_threads(threads)
    product_matrix = native.matmul(X, X.T.copy())
    width: int = net.n_outputs

    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    accuracy: float = clf.score(X, y)
    try:
        raise bp.TrainingDivergedError("example")
    except ArithmeticError as e:
        message: str = str(e)

    # Data-parallel fit, here on a one-rank communicator.
    from mpi4py import MPI

    X_local, y_local = bp.distributed.shard(X, y, comm=MPI.COMM_SELF)
    start, end = bp.distributed.shard_bounds(len(X), rank=0, size=1)
    try:
        net.fit(X_local, y_local, epochs=1, comm=MPI.COMM_SELF, progress=False)
    except bp.distributed.DistributedTrainingError as e:
        failed: dict[int, str] = e.failures
        print(failed)

    print(out.shape, loss, step_loss, losses, sorted(norms), labels.shape, proba.shape, scores)
    print(lr, terms, product, same, product_matrix.shape, width, message, accuracy, start, end)


if __name__ == "__main__":
    main()

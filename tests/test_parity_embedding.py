"""Embedding and the tabular Embeddings layer in bpcore against the reference and torch, in
float32 and float64; indices that are not indices are refused with their column and row; the
torch exchange and saved files keep the tables."""

from __future__ import annotations

import numpy as np
import pytest
from optional import require
from parity_helpers import (
    DTYPES,
    TOLERANCES,
    assert_dicts_close,
    check_forward_loss_gradients,
    make_pair,
    random_parameters,
)

import bpcore as bp

#: Four columns: a number, a category of 4, a number, a category of 3.
TABULAR = [
    bp.Embeddings({1: (4, 3), 3: (3, 2)}, in_features=4),
    bp.Dense(7, 5),
    bp.Tanh(),
    bp.Dense(5, 3),
]
#: Rows of 3 indices of one table of 6, each embedded in 2.
SEQUENCE = [bp.Reshape((3,)), bp.Embedding(6, 2), bp.Flatten(), bp.Dense(6, 3)]


def _tabular_rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(n, 2))
    return np.column_stack(
        [numbers[:, 0], rng.integers(0, 4, n), numbers[:, 1], rng.integers(0, 3, n)]
    )


def _data(layers: list[bp.Layer], n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    X = _tabular_rows(n, seed) if layers is TABULAR else rng.integers(0, 6, (n, 3)).astype(float)
    return X, rng.integers(0, 3, n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layers", [TABULAR, SEQUENCE], ids=["tabular", "sequence"])
def test_forward_loss_gradients_and_steps_match_the_reference(
    layers: list[bp.Layer], dtype: str
) -> None:
    probe = bp.Network(layers, loss="cross_entropy", dtype=dtype)
    params = random_parameters(probe, np.random.default_rng(1))
    net, oracle = make_pair(layers, loss="cross_entropy", dtype=dtype, parameters=params)
    X, y = _data(layers, 9)
    X = X.astype(dtype).astype(np.float64)
    check_forward_loss_gradients(net, oracle, X, y, dtype)
    for _ in range(2):
        assert np.isclose(net.train_step(X, y), oracle.train_step(X, y), **TOLERANCES[dtype])
    assert_dicts_close(net.parameters(), oracle.parameters(), dtype, "after 2 steps")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layers", [TABULAR, SEQUENCE], ids=["tabular", "sequence"])
def test_forward_loss_and_gradients_match_torch(layers: list[bp.Layer], dtype: str) -> None:
    torch = require("torch")
    net = bp.Network(layers, loss="cross_entropy", dtype=dtype, seed=3)
    X, y = _data(layers, 30, seed=2)
    module = bp.to_torch(net)
    out = module(torch.from_numpy(X.astype(dtype)))
    loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    tol = TOLERANCES[dtype]
    np.testing.assert_allclose(net.forward(X), out.detach().numpy(), **tol)
    assert np.isclose(net.loss(X, y), float(loss.detach()), **tol)
    assert_dicts_close(net.gradients(X, y), grads, dtype, "gradient vs torch")
    back = bp.from_torch(module, loss="cross_entropy")
    assert back.layers == net.layers
    np.testing.assert_array_equal(back.forward(X), net.forward(X))


def test_a_plain_torch_embedding_is_read() -> None:
    torch = require("torch")
    nn = torch.nn
    module = nn.Sequential(nn.Unflatten(1, (3,)), nn.Embedding(6, 2), nn.Flatten(), nn.Linear(6, 1))
    net = bp.from_torch(module)
    assert net.layers[1] == bp.Embedding(6, 2)
    x = np.array([[0.0, 5.0, 2.0]], dtype=np.float32)
    want = module(torch.from_numpy(x).long()).detach().numpy()
    np.testing.assert_allclose(net.forward(x), want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"module\[1\] \(Embedding\): padding_idx"):
        bp.from_torch(nn.Sequential(nn.Unflatten(1, (3,)), nn.Embedding(6, 2, padding_idx=0)))


@pytest.mark.parametrize(
    ("value", "what"), [(4.0, "4"), (1.5, "1.5"), (-1.0, "-1")], ids=["high", "half", "neg"]
)
def test_bad_indices_are_refused_with_column_and_row_and_change_nothing(
    value: float, what: str
) -> None:
    net = bp.Network(TABULAR, loss="cross_entropy", seed=0)
    X, y = _data(TABULAR, 6)
    X[4, 1] = value
    before = net.parameters()
    message = rf"column 1 of row 4 is {what}, not an index of its embedding \(an integer in \[0, 4"
    with pytest.raises(ValueError, match=message):
        net.forward(X)
    with pytest.raises(ValueError, match=message):
        net.fit(X, y, epochs=1, progress=False)
    with pytest.raises(ValueError, match=message):
        net.train_step(X, y)
    assert_dicts_close(net.parameters(), before, "float32", "after refused calls")


def test_saved_files_keep_the_tables() -> None:
    net = bp.Network(TABULAR, loss="cross_entropy", seed=4)
    X, y = _data(TABULAR, 16)
    net.fit(X, y, epochs=2, batch_size=4, progress=False)
    assert list(net.state_dict())[:2] == ["0.tables.1.weight", "0.tables.3.weight"]
    loaded = bp.Network.from_bytes(net.to_bytes(include_optimizer=True))
    assert loaded.layers == net.layers
    assert loaded.train_step(X, y) == net.train_step(X, y)


def test_tables_start_as_torch_draws_them() -> None:
    net = bp.Network([bp.Reshape((1,)), bp.Embedding(2000, 50), bp.Flatten(), bp.Dense(50, 1)])
    table = net.parameters()["1.weight"]
    assert abs(table.mean()) < 0.01 and abs(table.std() - 1.0) < 0.01


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([bp.Dense(3, 3), bp.Embedding(4, 2), bp.Flatten()], r"layers\[1\]: Embedding .* first"),
        ([bp.Embedding(4, 2), bp.Flatten(), bp.Dense(2, 1)], r"start the network with Reshape"),
        (
            [bp.Embeddings({5: (2, 2)}, in_features=6), bp.Dense(5, 1)],
            r"layers\[1\]: Dense in_features is 5 but the layer before gives 7",
        ),
    ],
)
def test_misplaced_embeddings_are_refused(layers: list[bp.Layer], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bp.Network(layers)


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"columns: a column: must be in \[0, 2\]"):
        bp.Embeddings({3: (2, 2)}, in_features=3)
    with pytest.raises(TypeError, match=r"columns\[0\]: expected \(num_embeddings"):
        bp.Embeddings({0: 5}, in_features=3)
    with pytest.raises(ValueError, match="columns: at least one"):
        bp.Embeddings({}, in_features=3)
    with pytest.raises(ValueError, match="sparse"):
        bp.Embedding(3, 2, sparse=True)
    with pytest.raises(ValueError, match="embedding_dim: must be in"):
        bp.Embedding(3, 0)

"""Embedding tables, exactly ``torch.nn.Embedding``, and the tabular layer that embeds chosen
columns and passes the others through.

A layer is described by ``columns``: for each input column, ``None`` (a number, copied) or the
name of the table its index is looked up in. The output row concatenates, in column order,
the numbers and the looked-up table rows:

    z = [x[0]] + table[x[1]] + [x[2]] + ...     (column 1 embedded)

Backward: z copies table rows, so ∂L/∂table[r][j] sums ∂L/∂z over every position that
copied entry j of row r; the indices get no gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def check_indices(
    x: Sequence[Sequence[float]], columns: Sequence[str | None], tables: Mapping[str, Any]
) -> None:
    """A ValueError naming the column and row of the first value of an embedded column that
    is not an integer index of its table."""
    for r, row in enumerate(x):
        for c, name in enumerate(columns):
            if name is None:
                continue
            v, rows = row[c], len(tables[name])
            if not (v == int(v) and 0 <= v < rows):
                raise ValueError(
                    f"X: column {c} of row {r} is {v}, not an index of its embedding "
                    f"(an integer in [0, {rows}))"
                )


def embeddings_forward(
    x: Sequence[Sequence[float]], columns: Sequence[str | None], tables: Mapping[str, Any]
) -> list[list[float]]:
    """Each row's numbers and looked-up table rows, concatenated in column order."""
    out = []
    for row in x:
        z: list[float] = []
        for v, name in zip(row, columns):
            z.extend([v] if name is None else tables[name][int(v)])
        out.append(z)
    return out


def embeddings_backward(
    x: Sequence[Sequence[float]],
    grad_z: Sequence[Sequence[float]],
    columns: Sequence[str | None],
    tables: Mapping[str, Any],
) -> dict[str, list[list[float]]]:
    """∂L/∂table for every table, by name (a table never looked up gets zeros)."""
    grads = {name: [[0.0] * len(t[0]) for _ in t] for name, t in tables.items()}
    for row, g_row in zip(x, grad_z):
        at = 0
        for v, name in zip(row, columns):
            if name is None:
                at += 1
                continue
            target = grads[name][int(v)]
            for j in range(len(target)):
                target[j] += g_row[at + j]
            at += len(target)
    return grads

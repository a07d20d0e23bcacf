"""Turning user data into plain Python lists of floats, with shape checks.

Anything with ``.tolist()`` (a NumPy array, a torch tensor) is converted first; then the
value must be a rectangular nested list of numbers.
"""

from __future__ import annotations

from typing import Any


def to_list(value: Any) -> Any:
    """``value.tolist()`` when the value has it, else the value itself."""
    return value.tolist() if hasattr(value, "tolist") else value


def as_rows(value: Any, name: str, width: int | None = None) -> list[list[float]]:
    """A 2-D batch as a list of rows of floats; ``width``, if given, is checked."""
    rows = to_list(value)
    if not isinstance(rows, (list, tuple)) or any(not isinstance(r, (list, tuple)) for r in rows):
        raise ValueError(f"{name} must be 2-D (a list of rows)")
    out = [[float(v) for v in r] for r in rows]
    if out and width is None:
        width = len(out[0])
    if any(len(r) != width for r in out):
        raise ValueError(f"{name} must have rows of {width} values")
    return out


def as_vector(value: Any, name: str, length: int) -> list[float]:
    """A 1-D list of ``length`` floats."""
    vec = to_list(value)
    if not isinstance(vec, (list, tuple)) or any(isinstance(v, (list, tuple)) for v in vec):
        raise ValueError(f"{name} must be 1-D")
    if len(vec) != length:
        raise ValueError(f"{name} must have shape ({length},), got ({len(vec)},)")
    return [float(v) for v in vec]


def as_matrix(value: Any, name: str, rows: int, cols: int) -> list[list[float]]:
    """A 2-D list of ``rows`` × ``cols`` floats."""
    matrix = to_list(value)
    if (
        not isinstance(matrix, (list, tuple))
        or len(matrix) != rows
        or any(not isinstance(r, (list, tuple)) or len(r) != cols for r in matrix)
    ):
        raise ValueError(f"{name} must have shape ({rows}, {cols})")
    return [[float(v) for v in r] for r in matrix]


def as_labels(value: Any, name: str, length: int) -> list[int]:
    """``length`` integer class labels (integral floats are accepted)."""
    labels = to_list(value)
    if not isinstance(labels, (list, tuple)) or len(labels) != length:
        raise ValueError(f"{name} must be {length} integer labels, one per sample")
    out = []
    for v in labels:
        if isinstance(v, (list, tuple, bool)) or int(v) != v:
            raise ValueError(f"{name} must hold integer class labels, got {v!r}")
        out.append(int(v))
    return out


def as_targets(value: Any, name: str, n: int, width: int) -> list[list[float]]:
    """n rows of ``width`` float targets; a flat list of n values is accepted if width is 1."""
    targets = to_list(value)
    if (
        width == 1
        and isinstance(targets, (list, tuple))
        and all(not isinstance(v, (list, tuple)) for v in targets)
    ):
        return [[v] for v in as_vector(targets, name, n)]
    return as_matrix(targets, name, n, width)


def flat_values(value: Any) -> list[float]:
    """The numbers of a nested list (of any depth), in row-major order."""
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in flat_values(item)]
    return [float(value)]


def nested(flat: list[float], shape: tuple[int, ...]) -> Any:
    """``flat`` (row-major) as nested lists of ``shape``."""
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [nested(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def as_array(value: Any, name: str, shape: tuple[int, ...]) -> Any:
    """Nested lists of floats of ``shape`` (a vector for a 1-tuple)."""
    array = to_list(value)

    def check(item: Any, dims: tuple[int, ...]) -> None:
        if not dims:
            if isinstance(item, (list, tuple)):
                raise ValueError(f"{name} must have shape {shape}")
            return
        if not isinstance(item, (list, tuple)) or len(item) != dims[0]:
            raise ValueError(f"{name} must have shape {shape}")
        for sub in item:
            check(sub, dims[1:])

    check(array, shape)
    return nested(flat_values(array), shape)

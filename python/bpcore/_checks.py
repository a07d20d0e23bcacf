"""Argument checks shared by the public API: clear messages that name the argument."""

from __future__ import annotations

import math
import numbers
from typing import Any

#: Largest width (features of a layer) and size the core takes: 2**40, as its buffers.
MAX_SIZE = 2**40


def integer(value: Any, arg: str, low: int | None = None, high: int | None = None) -> int:
    """Return `value` as an int in [`low`, `high`] (either bound optional), or raise TypeError
    (not an integer; True and False are not) or ValueError naming `arg`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{arg}: expected an integer, got {type(value).__name__} {value!r}")
    number = int(value)
    below = low is not None and number < low
    above = high is not None and number > high
    if (below or above) and low is not None and high is not None:
        raise ValueError(f"{arg}: must be in [{low}, {high}], got {number}")
    if below:
        raise ValueError(f"{arg}: must be at least {low}, got {number}")
    if above:
        raise ValueError(f"{arg}: must be at most {high}, got {number}")
    return number


def positive_int(value: Any, arg: str, high: int | None = None) -> int:
    """Return `value` as an int >= 1 (and <= `high`), or raise TypeError/ValueError naming
    `arg`."""
    return integer(value, arg, low=1, high=high)


def width(value: Any, arg: str) -> int:
    """A layer width: an int in [1, MAX_SIZE], or raise naming `arg`."""
    return positive_int(value, arg, high=MAX_SIZE)


def real(
    value: Any,
    arg: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return `value` as a finite float inside the given bounds, or raise naming `arg`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{arg}: expected a number, got {type(value).__name__} {value!r}")
    v = as_float(value, arg)
    if low is not None and (v < low or (low_open and v == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{arg}: must be {bound}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise ValueError(f"{arg}: must be {bound}, got {v}")
    return v


def as_float(value: numbers.Real, arg: str) -> float:
    """`value` as a finite float, or a ValueError naming `arg`: an integer too large for a
    float (float() would raise OverflowError) is refused like infinity."""
    try:
        v = float(value)
    except OverflowError:
        size = f"an integer of {value.bit_length()} bits" if isinstance(value, int) else "a number"
        raise ValueError(f"{arg}: must be finite, got {size} (beyond float's range)") from None
    if not math.isfinite(v):
        raise ValueError(f"{arg}: must be finite, got {v}")
    return v


def boolean(value: Any, arg: str) -> bool:
    """Return `value` if it is a bool, else raise TypeError naming `arg`."""
    if not isinstance(value, bool):
        raise TypeError(f"{arg}: expected True or False, got {type(value).__name__} {value!r}")
    return value

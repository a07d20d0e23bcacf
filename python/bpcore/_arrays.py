"""Conversion of user inputs to the contiguous NumPy arrays the native module reads.

Lists and other numeric dtypes are converted; objects, strings, complex numbers, wrong shapes
and empty arrays are refused with a message naming the argument. NaN and infinity are refused by
the core, in the same pass that reads the data. Masked arrays with a masked value are refused
(the mask would otherwise be dropped without a word). A conversion's size is checked before the
copy is made: a view (a broadcast array's zero strides can make 16 TiB out of 16 bytes) larger
than the core's limit is refused with a ValueError, and a copy the machine cannot allocate is a
ValueError too, not numpy's MemoryError.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bpcore._checks import MAX_SIZE
from bpcore._label_targets import refuse_non_labels


def _from_torch(value: Any, arg: str) -> Any:
    """A torch tensor as a NumPy array: detached (bpcore never backpropagates into torch, so a
    tensor that requires grad is read by value) and copied to the CPU. Anything else as is."""
    if not (type(value).__module__.startswith("torch") and hasattr(value, "detach")):
        return value
    try:
        return value.detach().cpu().numpy()
    except (TypeError, RuntimeError) as e:  # a dtype NumPy lacks (bfloat16), a meta tensor
        raise TypeError(
            f"{arg}: a torch tensor of dtype {value.dtype} on {value.device} cannot be read as "
            f"a NumPy array ({e}); convert it first, e.g. {arg}.detach().float().cpu()"
        ) from None


def _numeric(value: Any, arg: str) -> np.ndarray:
    value = _from_torch(value, arg)
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise ValueError(
            f"{arg}: a masked array with masked values; fill them (e.g. {arg}.filled(0)) or "
            "drop those samples first"
        )
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise ValueError(f"{arg}: could not be read as an array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{arg}: expected numbers, got an array of dtype {a.dtype}")
    return a


def _contiguous(a: np.ndarray, dtype: np.dtype, arg: str) -> np.ndarray:
    """`a` as a C-contiguous array of `dtype`: `a` itself when it is one, else a copy whose
    size is checked before it is allocated (at most MAX_SIZE values, as the core's buffers)."""
    if a.flags.c_contiguous and a.dtype == dtype:
        return a
    if a.size > MAX_SIZE:
        raise ValueError(
            f"{arg}: shape {a.shape} holds {a.size} values, more than the limit of 2**40 "
            "(a view such as np.broadcast_to is copied before the core reads it)"
        )
    try:
        out = np.empty(a.shape, dtype=dtype)
    except MemoryError:
        raise ValueError(
            f"{arg}: its copy as a contiguous {dtype} array ({a.size * dtype.itemsize} bytes) "
            "cannot be allocated"
        ) from None
    cast_into(out, a, arg)
    return out


def cast_into(out: np.ndarray, a: np.ndarray, arg: str) -> None:
    """Copies `a` into `out` (same shape), refusing a finite value that the cast would turn
    into infinity (1e300 into float32) with a ValueError naming `arg` and the dtype's range,
    instead of a message about infinity the caller never gave."""
    try:
        with np.errstate(over="raise"):
            np.copyto(out, a, casting="unsafe")
    except FloatingPointError:
        largest = f"largest {float(np.finfo(out.dtype).max):.4g}; " if out.dtype.kind == "f" else ""
        raise ValueError(
            f"{arg}: a value exceeds {out.dtype}'s range ({largest}it would become infinity)"
        ) from None


def as_network_dtype(a: np.ndarray, dtype: np.dtype, arg: str) -> np.ndarray:
    """`a` (numbers, any dtype) as a contiguous array of the network's `dtype`, refusing NaN,
    infinity and values beyond the dtype's range with a ValueError naming `arg`: finite means
    finite in the network's dtype, checked after the conversion."""
    out = _contiguous(a, dtype, arg)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise ValueError(f"{arg}: contains NaN or infinity")
    return out


def as_inputs(X: Any, dtype: np.dtype, n_features: int, arg: str = "X") -> np.ndarray:
    """X as a C-contiguous (n_samples, n_features) array of `dtype`."""
    if (
        type(X) is np.ndarray
        and X.dtype == dtype
        and X.ndim == 2
        and X.shape[0] > 0
        and X.shape[1] == n_features
        and X.flags.c_contiguous
    ):
        return X  # already what the core reads: no copy, and a cheap call for one sample
    a = _numeric(X, arg)
    if a.ndim != 2:
        raise ValueError(
            f"{arg}: expected a 2-d array (n_samples, {n_features}), got shape {a.shape}"
        )
    if a.shape[0] == 0:
        raise ValueError(f"{arg}: needs at least one sample, got 0")
    if a.shape[1] != n_features:
        raise ValueError(f"{arg}: expected {n_features} features per sample, got {a.shape[1]}")
    return _contiguous(a, dtype, arg)


def as_labels(y: Any, n_samples: int, arg: str = "y") -> np.ndarray:
    """y as a C-contiguous (n_samples,) int64 array of class labels."""
    refuse_non_labels(y, arg)
    a = _numeric(y, arg)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2 and a.shape[0] and _one_hot(a):
        raise ValueError(
            f"{arg}: looks one-hot encoded (shape {a.shape}, one 1 per row); this loss takes "
            f"class indices: pass {arg}.argmax(axis=1)"
        )
    if a.ndim != 1:
        raise ValueError(
            f"{arg}: expected a 1-d array of {n_samples} class labels, got shape {a.shape}"
        )
    if a.shape[0] != n_samples:
        raise ValueError(
            f"{arg}: expected {n_samples} labels (one per sample of X), got {a.shape[0]}"
        )
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            i = int(np.argmin(finite))
            raise ValueError(f"{arg}: contains NaN or infinity ({float(a[i])} at index {i})")
        if not np.array_equal(a, np.round(a)):
            raise ValueError(f"{arg}: class labels must be whole numbers")
    if a.dtype.kind in "fu" and a.size:
        # Beyond int64 a cast would wrap; such a label is no class either way (the core checks
        # the range of the rest).
        outside = (a > _LABEL_LIMIT) | (a < -_LABEL_LIMIT)
        if outside.any():
            i = int(np.argmax(outside))
            raise ValueError(f"{arg}: label {a[i]!r} at index {i} is outside the classes")
    return _contiguous(a, np.dtype(np.int64), arg)


def _one_hot(a: np.ndarray) -> bool:
    """Whether every row of the 2-d `a` is zeros but for a single 1."""
    return bool(((a == 0) | (a == 1)).all() and (a.sum(axis=1) == 1).all())


#: Labels of float or unsigned arrays beyond this are refused before the cast to int64.
_LABEL_LIMIT = 2**62


def as_values(y: Any, dtype: np.dtype, n_samples: int, width: int, arg: str = "y") -> np.ndarray:
    """y as a C-contiguous (n_samples, width) array of `dtype`; (n,) is taken when width is 1."""
    a = _numeric(y, arg)
    if a.ndim == 1 and width == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2 or a.shape[1] != width:
        raise ValueError(
            f"{arg}: expected shape ({n_samples}, {width}) like the network's output, got {a.shape}"
        )
    if a.shape[0] != n_samples:
        raise ValueError(
            f"{arg}: expected {n_samples} rows (one per sample of X), got {a.shape[0]}"
        )
    return _contiguous(a, dtype, arg)


def as_weights(
    w: Any, dtype: np.dtype, n_samples: int, arg: str = "sample_weight"
) -> np.ndarray | None:
    """Per-sample weights as a C-contiguous (n_samples,) array of `dtype`, or None for None.

    Only the type and shape are checked here; the core refuses negative, NaN and infinite
    weights (naming `arg`) in the pass that reads them.
    """
    if w is None:
        return None
    a = _numeric(w, arg)
    if a.ndim != 1:
        raise ValueError(
            f"{arg}: expected a 1-d array of {n_samples} weights (one per sample), "
            f"got shape {a.shape}"
        )
    if a.shape[0] != n_samples:
        raise ValueError(
            f"{arg}: expected {n_samples} weights (one per sample of X), got {a.shape[0]}"
        )
    return _contiguous(a, dtype, arg)


def as_dtype(dtype: Any) -> np.dtype:
    """The network dtype: float32 or float64 (names or NumPy dtypes)."""
    try:
        d: np.dtype[Any] = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}") from None
    if d not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return d

"""The checks of the estimators' parameters, made at `fit` as scikit-learn makes them: each bad
value is a ValueError naming the parameter, raised before anything changes."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from bpcore import _checks as checks

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
#: scikit-learn's solvers, then bpcore's own stochastic ones.
SOLVERS = ("lbfgs", "sgd", "adam", "adamw", "rmsprop", "adagrad")
STOCHASTIC_SOLVERS = SOLVERS[1:]
LEARNING_RATES = ("constant", "invscaling", "adaptive")
REGRESSION_LOSSES = ("squared_error", "poisson")
DTYPES = (None, "float32", "float64")


def number(
    value: Any, name: str, low: float, high: float, low_open: bool, high_open: bool
) -> float:
    """`value` as a float in the interval, else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if v < low or (low_open and v == low) or v > high or (high_open and v == high):
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name}: must be in {lo}{low}, {high}{hi}, got {value!r}")
    return v


def integer(value: Any, name: str, low: int = 1) -> int:
    """`value` as an int >= `low` (the package's one integer check), else a ValueError naming
    `name`: scikit-learn reports a parameter of the wrong type as a ValueError too."""
    try:
        return checks.integer(value, name, low=low)
    except TypeError as e:
        raise ValueError(str(e)) from None


def hidden_sizes(value: Any) -> list[int]:
    """`hidden_layer_sizes` as a list of widths >= 1 (an int is one hidden layer)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    try:
        sizes = list(value)
    except TypeError:
        raise ValueError(
            f"hidden_layer_sizes: expected an int or a sequence of ints, got {value!r}"
        ) from None
    return [integer(s, "hidden_layer_sizes") for s in sizes]


def one_of(value: Any, name: str, options: tuple[Any, ...]) -> None:
    """A ValueError naming `name` unless `value` is one of `options`."""
    if not any(value is o or (isinstance(value, str) and value == o) for o in options):
        raise ValueError(f"{name}: expected one of {list(options)}, got {value!r}")


def check(params: dict[str, Any]) -> None:
    """Checks the estimator's parameters (`get_params()`), scikit-learn's ranges plus bpcore's
    `dropout` and `dtype`."""
    hidden_sizes(params["hidden_layer_sizes"])
    one_of(params["activation"], "activation", ACTIVATIONS)
    one_of(params["solver"], "solver", SOLVERS)
    one_of(params["learning_rate"], "learning_rate", LEARNING_RATES)
    if "loss" in params:
        one_of(params["loss"], "loss", REGRESSION_LOSSES)
    one_of(params["dtype"], "dtype", DTYPES)
    number(params["alpha"], "alpha", 0.0, math.inf, False, True)
    if not (isinstance(params["batch_size"], str) and params["batch_size"] == "auto"):
        integer(params["batch_size"], "batch_size")
    number(params["learning_rate_init"], "learning_rate_init", 0.0, math.inf, True, True)
    number(params["power_t"], "power_t", 0.0, math.inf, False, True)
    integer(params["max_iter"], "max_iter")
    integer(params["max_fun"], "max_fun")
    number(params["tol"], "tol", 0.0, math.inf, False, True)
    number(params["momentum"], "momentum", 0.0, 1.0, False, False)
    number(params["validation_fraction"], "validation_fraction", 0.0, 1.0, False, True)
    number(params["beta_1"], "beta_1", 0.0, 1.0, False, True)
    number(params["beta_2"], "beta_2", 0.0, 1.0, False, True)
    number(params["epsilon"], "epsilon", 0.0, math.inf, True, True)
    no_change = params["n_iter_no_change"]
    if not (isinstance(no_change, numbers.Real) and no_change == math.inf):
        integer(no_change, "n_iter_no_change")
    number(params["dropout"], "dropout", 0.0, 1.0, False, True)
    if params["dropout"] > 0 and params["solver"] == "lbfgs":
        raise ValueError("dropout: lbfgs minimizes a deterministic full-batch loss; use 0")
    verbose = params["verbose"]
    if not isinstance(verbose, (bool, np.bool_)):
        integer(verbose, "verbose", low=0)
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
        if not isinstance(params[name], (bool, np.bool_)):
            raise ValueError(f"{name}: expected True or False, got {params[name]!r}")

"""Optimizers with torch.optim's update rules and defaults, step for step.

Every optimizer's `no_decay` leaves some parameter tensors out of its weight decay: those whose
name contains one of its fragments (``no_decay=["bias"]`` decays the weights only, as
scikit-learn's alpha and the usual transformer recipes do). torch users reach the same with a
parameter group of ``weight_decay=0``, Keras users with `exclude_from_weight_decay`. The
default, none, decays every tensor, as torch's default. A fragment in no tensor's name is a
ValueError when the network is built; it is saved and loaded with the optimizer.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from bpcore._checks import boolean, real
from bpcore._spec import Described
from bpcore.bpcore import optimizer_defaults

#: Every optimizer's hyperparameters with their defaults (torch.optim's), by spec name, as the
#: core defines them: the constructors' defaults below are these values.
DEFAULTS: dict[str, dict[str, Any]] = optimizer_defaults()
_SGD, _ADAM, _ADAMW, _RMSPROP, _ADAGRAD = (
    DEFAULTS[name] for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad")
)

#: Every optimizer class by its spec name (a subclass with a `type_name` adds itself).
OPTIMIZERS: dict[str, type[Optimizer]] = {}

#: Smallest eps of Adam, RMSprop and Adagrad: float32's smallest normal number. With 0 (which
#: torch allows), or a subnormal (flushed to 0 while bpcore computes), a parameter whose
#: gradients have all been 0 steps by 0/0 and becomes NaN, which no file can hold.
MIN_EPS = 1.1754943508222875e-38


def _eps(eps: float) -> float:
    return real(eps, "eps", low=MIN_EPS)


def _no_decay(value: Any) -> tuple[str, ...]:
    """The name fragments of `no_decay`: a list of non-empty strings."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(
            f'no_decay: expected a list of parameter-name fragments such as ["bias"], got '
            f"{type(value).__name__} {value!r}"
        )
    for i, fragment in enumerate(value):
        if not isinstance(fragment, str) or not fragment:
            raise TypeError(
                f"no_decay[{i}]: expected a non-empty string (part of a parameter's name such "
                f'as "bias"), got {fragment!r}'
            )
    return tuple(value)


def learning_rate(value: Any, arg: str) -> float:
    """The one rule for a learning rate, wherever it is set (an optimizer, `Network.lr`, a
    schedule or a callback): a finite number >= 0, as torch.optim allows 0 (a schedule may
    anneal to it, so a user may set it). Raises naming `arg`."""
    return real(value, arg, low=0.0)


class Optimizer(Described):
    """Base of all optimizers: a description with a `to_spec()` dict. Subclasses' `_hyper()`
    adds their hyperparameters to the learning rate's; a subclass that names its core rule
    (`type_name`) is registered under it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" in cls.__dict__:
            OPTIMIZERS[cls.type_name] = cls

    def __init__(self, lr: float, no_decay: Sequence[str] = ()) -> None:
        self.lr = learning_rate(lr, "lr")
        #: Name fragments of the parameter tensors left out of the weight decay.
        self.no_decay = _no_decay(no_decay)

    def _hyper(self) -> dict[str, Any]:
        # no_decay only when given, so that a default optimizer's spec is what it always was.
        return {"lr": self.lr, **({"no_decay": list(self.no_decay)} if self.no_decay else {})}


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay."""

    type_name = "sgd"

    def __init__(
        self,
        lr: float = _SGD["lr"],
        momentum: float = _SGD["momentum"],
        dampening: float = _SGD["dampening"],
        nesterov: bool = _SGD["nesterov"],
        weight_decay: float = _SGD["weight_decay"],
        no_decay: Sequence[str] = (),
    ) -> None:
        super().__init__(lr, no_decay=no_decay)
        self.momentum = real(momentum, "momentum", low=0.0)
        self.dampening = real(dampening, "dampening")
        self.nesterov = boolean(nesterov, "nesterov")
        self.weight_decay = real(weight_decay, "weight_decay", low=0.0)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov: needs momentum > 0 and dampening = 0")

    def _hyper(self) -> dict[str, Any]:
        return {
            **super()._hyper(),
            "momentum": self.momentum,
            "dampening": self.dampening,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 weight decay added to the gradient and optional AMSGrad.

    Example:
        >>> import numpy as np, bpcore as bp
        >>> net = bp.Network([bp.Dense(1, 1)], loss="mse", optimizer=bp.Adam(lr=0.1),
        ...                  dtype="float64", seed=0)
        >>> net.set_parameters({"0.weight": np.array([[1.0]]), "0.bias": np.array([0.0])})
        >>> net.apply_gradients({"0.weight": np.array([[2.0]]), "0.bias": np.array([-3.0])})
        >>> {k: np.round(v, 4).tolist() for k, v in net.parameters().items()}  # steps of ~lr
        {'0.weight': [[0.9]], '0.bias': [0.1]}
    """

    type_name = "adam"

    def __init__(
        self,
        lr: float = _ADAM["lr"],
        betas: tuple[float, float] = tuple(_ADAM["betas"]),
        eps: float = _ADAM["eps"],
        weight_decay: float = _ADAM["weight_decay"],
        amsgrad: bool = _ADAM["amsgrad"],
        no_decay: Sequence[str] = (),
    ) -> None:
        super().__init__(lr, no_decay=no_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair of numbers, got {betas!r}")
        self.betas = (
            real(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True),
            real(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True),
        )
        self.eps = _eps(eps)
        self.weight_decay = real(weight_decay, "weight_decay", low=0.0)
        self.amsgrad = boolean(amsgrad, "amsgrad")

    def _hyper(self) -> dict[str, Any]:
        return {
            **super()._hyper(),
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p ← p (1 - lr·weight_decay)."""

    type_name = "adamw"

    def __init__(
        self,
        lr: float = _ADAMW["lr"],
        betas: tuple[float, float] = tuple(_ADAMW["betas"]),
        eps: float = _ADAMW["eps"],
        weight_decay: float = _ADAMW["weight_decay"],
        amsgrad: bool = _ADAMW["amsgrad"],
        no_decay: Sequence[str] = (),
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad, no_decay=no_decay)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum."""

    type_name = "rmsprop"

    def __init__(
        self,
        lr: float = _RMSPROP["lr"],
        alpha: float = _RMSPROP["alpha"],
        eps: float = _RMSPROP["eps"],
        weight_decay: float = _RMSPROP["weight_decay"],
        momentum: float = _RMSPROP["momentum"],
        centered: bool = _RMSPROP["centered"],
        no_decay: Sequence[str] = (),
    ) -> None:
        super().__init__(lr, no_decay=no_decay)
        self.alpha = real(alpha, "alpha", low=0.0, high=1.0)
        self.eps = _eps(eps)
        self.weight_decay = real(weight_decay, "weight_decay", low=0.0)
        self.momentum = real(momentum, "momentum", low=0.0)
        self.centered = boolean(centered, "centered")

    def _hyper(self) -> dict[str, Any]:
        return {
            **super()._hyper(),
            "alpha": self.alpha,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "centered": self.centered,
        }


class Adagrad(Optimizer):
    """Adagrad, with torch's learning-rate decay."""

    type_name = "adagrad"

    def __init__(
        self,
        lr: float = _ADAGRAD["lr"],
        lr_decay: float = _ADAGRAD["lr_decay"],
        weight_decay: float = _ADAGRAD["weight_decay"],
        eps: float = _ADAGRAD["eps"],
        initial_accumulator_value: float = _ADAGRAD["initial_accumulator_value"],
        no_decay: Sequence[str] = (),
    ) -> None:
        super().__init__(lr, no_decay=no_decay)
        self.lr_decay = real(lr_decay, "lr_decay", low=0.0)
        self.weight_decay = real(weight_decay, "weight_decay", low=0.0)
        self.eps = _eps(eps)
        self.initial_accumulator_value = real(
            initial_accumulator_value, "initial_accumulator_value", low=0.0
        )

    def _hyper(self) -> dict[str, Any]:
        return {
            **super()._hyper(),
            "lr_decay": self.lr_decay,
            "weight_decay": self.weight_decay,
            "eps": self.eps,
            "initial_accumulator_value": self.initial_accumulator_value,
        }


def get_optimizer(optimizer: Optimizer | str | None) -> Optimizer:
    """An Optimizer from its name with defaults (in any case: "adam", "Adam", "AdamW"), None
    (Adam), or the Optimizer itself."""
    if optimizer is None:
        return Adam()
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        # Names in any case, as Keras's "Adam" and torch's class names spell them.
        key = optimizer.lower()
        if key not in OPTIMIZERS:
            close = difflib.get_close_matches(key, OPTIMIZERS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"optimizer: unknown optimizer {optimizer!r}; {hint}expected one of "
                f"{sorted(OPTIMIZERS)} (in any case)"
            )
        # Every registered optimizer has defaults for all its arguments (the base class has none).
        default: Any = OPTIMIZERS[key]
        made: Optimizer = default()
        return made
    raise TypeError(
        f"optimizer: expected a name or a bpcore Optimizer, got {type(optimizer).__name__}"
    )

"""Optimizers with ``torch.optim``'s update rules, step for step.

An optimizer updates flat lists of floats in place: ``opt.step(params, grads)`` takes one
list per parameter (in a fixed order) and the matching gradients. Its state (moments,
buffers) is kept per position in that order, and ``t`` counts steps from 1, as torch's
per-parameter ``step`` does when every parameter is updated on every step.

Weight decay, where an optimizer has it, is L2 regularization folded into the gradient,
``g = grad + wd · p``, except in AdamW, where it shrinks the parameter directly. The spec's
``no_decay`` (name fragments, e.g. ``["bias"]``) leaves out the parameters whose name contains
one: ``step(params, grads, names)`` updates those with a weight decay of 0, as a torch
parameter group with ``weight_decay=0`` would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .specs import optimizer_spec


class Optimizer:
    """Base class: a complete spec, the step count ``t`` and per-parameter ``state``."""

    kind = ""  # the spec's "type"

    def __init__(self, **options: Any) -> None:
        """Build from the spec's options, e.g. ``SGD(lr=0.1, momentum=0.9)``."""
        no_decay = options.pop("no_decay", [])
        self.spec: dict[str, Any] = optimizer_spec({"type": self.kind, **options})
        #: Name fragments of the parameters left undecayed.
        self.no_decay = [str(fragment) for fragment in no_decay]
        #: The spec the parameter being updated follows (the spec, or it without decay).
        self.tensor_spec = self.spec
        self.t = 0
        self.state: list[dict[str, list[float]]] = []

    def to_spec(self) -> dict[str, Any]:
        """The complete spec dict (so an instance can be given to ``Network``)."""
        extra = {"no_decay": list(self.no_decay)} if self.no_decay else {}
        return {**self.spec, **extra}

    def step(
        self,
        params: Sequence[list[float]],
        grads: Sequence[Sequence[float]],
        names: Sequence[str] | None = None,
    ) -> None:
        """One update of every ``params[k]`` (a flat list, changed in place) by ``grads[k]``;
        ``names[k]`` is its name, for ``no_decay``."""
        if len(params) != len(grads) or any(len(p) != len(g) for p, g in zip(params, grads)):
            raise ValueError("params and grads must match in number and length")
        if self.no_decay and (names is None or len(names) != len(params)):
            raise ValueError("no_decay needs the parameters' names, one per parameter")
        if not self.state:
            self.state = [self._init_state(p) for p in params]
        if len(self.state) != len(params):
            raise ValueError("the number of parameters changed between steps")
        self.t += 1
        undecayed = {**self.spec, "weight_decay": 0.0}
        for k, (p, g, state) in enumerate(zip(params, grads, self.state)):
            excluded = names is not None and any(f in names[k] for f in self.no_decay)
            self.tensor_spec = undecayed if excluded else self.spec
            self._update(p, g, state)
        self.tensor_spec = self.spec

    def _init_state(self, p: list[float]) -> dict[str, list[float]]:
        return {}

    def _update(self, p: list[float], g: Sequence[float], state: dict[str, Any]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov, decay.

    d = grad + wd p; with momentum μ: buf = d on the first step, else
    buf = μ buf + (1 - dampening) d; then d = d + μ buf (Nesterov) or d = buf; p -= lr d.
    """

    kind = "sgd"

    def _init_state(self, p: list[float]) -> dict[str, list[float]]:
        return {"momentum_buffer": [0.0] * len(p)}

    def _update(self, p: list[float], g: Sequence[float], state: dict[str, Any]) -> None:
        s = self.tensor_spec
        lr, mu, damp, wd = s["lr"], s["momentum"], s["dampening"], s["weight_decay"]
        buf = state["momentum_buffer"]
        for j, grad in enumerate(g):
            d = grad + wd * p[j] if wd else grad
            if mu:
                buf[j] = d if self.t == 1 else mu * buf[j] + (1.0 - damp) * d
                d = d + mu * buf[j] if s["nesterov"] else buf[j]
            p[j] -= lr * d


class Adam(Optimizer):
    """Adam: bias-corrected first and second moment estimates, optional AMSGrad.

    m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  bc1 = 1 - β1^t;  bc2 = 1 - β2^t;
    denom = √v̂ / √bc2 + eps, with v̂ = v, or the running max of v under AMSGrad;
    p -= (lr / bc1) m / denom.
    """

    kind = "adam"

    decoupled = False  # AdamW sets this: weight decay shrinks p instead of entering g

    def _init_state(self, p: list[float]) -> dict[str, list[float]]:
        zeros = [0.0] * len(p)
        return {
            "exp_avg": zeros,
            "exp_avg_sq": list(zeros),
            "max_exp_avg_sq": list(zeros),
        }

    def _update(self, p: list[float], g: Sequence[float], state: dict[str, Any]) -> None:
        s = self.tensor_spec
        lr, eps, wd, amsgrad = s["lr"], s["eps"], s["weight_decay"], s["amsgrad"]
        b1, b2 = s["betas"]
        m, v, v_max = state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"]
        step_size = lr / (1.0 - b1**self.t)
        bc2_sqrt = math.sqrt(1.0 - b2**self.t)
        for j, grad in enumerate(g):
            if self.decoupled:
                p[j] *= 1.0 - lr * wd
                d = grad
            else:
                d = grad + wd * p[j] if wd else grad
            m[j] = b1 * m[j] + (1.0 - b1) * d
            v[j] = b2 * v[j] + (1.0 - b2) * d * d
            if amsgrad:
                v_max[j] = max(v_max[j], v[j])
                denom = math.sqrt(v_max[j]) / bc2_sqrt + eps
            else:
                denom = math.sqrt(v[j]) / bc2_sqrt + eps
            p[j] -= step_size * (m[j] / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr·wd, then the Adam step without wd."""

    kind = "adamw"

    decoupled = True


class RMSprop(Optimizer):
    """RMSprop: divide by a running root mean square of the gradient.

    d = grad + wd p; sq = α sq + (1-α) d²; avg = √(sq - ga²) + eps with the centered
    running mean ga = α ga + (1-α) d, else √sq + eps; then with momentum μ > 0:
    buf = μ buf + d / avg, p -= lr buf; else p -= lr d / avg.
    """

    kind = "rmsprop"

    def _init_state(self, p: list[float]) -> dict[str, list[float]]:
        zeros = [0.0] * len(p)
        return {
            "square_avg": zeros,
            "grad_avg": list(zeros),
            "momentum_buffer": list(zeros),
        }

    def _update(self, p: list[float], g: Sequence[float], state: dict[str, Any]) -> None:
        s = self.tensor_spec
        lr, alpha, eps = s["lr"], s["alpha"], s["eps"]
        wd, mu, centered = s["weight_decay"], s["momentum"], s["centered"]
        sq, ga, buf = state["square_avg"], state["grad_avg"], state["momentum_buffer"]
        for j, grad in enumerate(g):
            d = grad + wd * p[j] if wd else grad
            sq[j] = alpha * sq[j] + (1.0 - alpha) * d * d
            if centered:
                ga[j] = alpha * ga[j] + (1.0 - alpha) * d
                avg = math.sqrt(sq[j] - ga[j] * ga[j]) + eps
            else:
                avg = math.sqrt(sq[j]) + eps
            if mu > 0.0:
                buf[j] = mu * buf[j] + d / avg
                p[j] -= lr * buf[j]
            else:
                p[j] -= lr * (d / avg)


class Adagrad(Optimizer):
    """Adagrad: divide by the root of the running sum of squared gradients.

    clr = lr / (1 + (t-1) lr_decay); d = grad + wd p; sum += d²; p -= clr d / (√sum + eps),
    the sum starting at ``initial_accumulator_value``.
    """

    kind = "adagrad"

    def _init_state(self, p: list[float]) -> dict[str, list[float]]:
        return {"sum": [self.spec["initial_accumulator_value"]] * len(p)}

    def _update(self, p: list[float], g: Sequence[float], state: dict[str, Any]) -> None:
        s = self.tensor_spec
        eps, wd = s["eps"], s["weight_decay"]
        clr = s["lr"] / (1.0 + (self.t - 1) * s["lr_decay"])
        acc = state["sum"]
        for j, grad in enumerate(g):
            d = grad + wd * p[j] if wd else grad
            acc[j] += d * d
            p[j] -= clr * (d / (math.sqrt(acc[j]) + eps))


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
}


def make_optimizer(spec: Any = None) -> Optimizer:
    """The optimizer for a spec (dict, type name, object with ``.to_spec()``, or None)."""
    if hasattr(spec, "to_spec"):
        spec = spec.to_spec()
    no_decay = spec.get("no_decay", []) if isinstance(spec, dict) else []
    if isinstance(spec, dict):
        spec = {k: v for k, v in spec.items() if k != "no_decay"}
    options = optimizer_spec(spec)
    kind = options.pop("type")
    return OPTIMIZERS[kind](**options, no_decay=no_decay)

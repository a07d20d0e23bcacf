"""Learning-rate schedules give torch's per-epoch learning rates, in fit and on their own."""

from __future__ import annotations

import math

import numpy as np
import pytest
from optional import require

import bpcore as bp


def closed_form(schedule: bp.Schedule, base: float, epoch: int) -> float:
    """The textbook formulas (torch's documentation), computed independently of bpcore."""
    if isinstance(schedule, bp.StepLR):
        return base * schedule.gamma ** (epoch // schedule.step_size)
    if isinstance(schedule, bp.ExponentialLR):
        return base * schedule.gamma**epoch
    eta, t = schedule.eta_min, schedule.T_max
    return eta + (base - eta) * (1 + math.cos(math.pi * epoch / t)) / 2


SCHEDULES = [
    lambda: bp.StepLR(step_size=3, gamma=0.5),
    lambda: bp.StepLR(step_size=1),
    lambda: bp.ExponentialLR(gamma=0.9),
    lambda: bp.CosineAnnealingLR(T_max=7),
    lambda: bp.CosineAnnealingLR(T_max=4, eta_min=1e-3),
]


@pytest.mark.parametrize("make", SCHEDULES)
def test_values_follow_the_closed_forms(make):
    schedule = make()
    base, n = 0.1, 20  # past T_max: cosine rises again, as torch's
    values = schedule.values(base, n)
    expected = [closed_form(schedule, base, e) for e in range(n)]
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-16)
    assert not schedule.started  # values() runs a copy


@pytest.mark.parametrize("make", SCHEDULES)
def test_fit_uses_the_schedules_lr_in_each_epoch_and_continues_across_calls(make):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 3)), rng.normal(size=16)
    net = bp.Network([bp.Dense(3, 1)], optimizer=bp.SGD(lr=0.05), dtype="float64")
    schedule = make()
    first = net.fit(X, y, epochs=4, batch_size=8, schedule=schedule, progress=False)
    second = net.fit(X, y, epochs=5, batch_size=8, schedule=schedule, progress=False)
    lrs = first.history["lr"] + second.history["lr"]
    assert lrs == schedule.values(0.05, 9)  # the same recursive arithmetic: bit for bit
    expected = [closed_form(schedule, 0.05, e) for e in range(9)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert net.lr == pytest.approx(closed_form(schedule, 0.05, 9), rel=1e-12)


def test_cosine_can_reach_zero_and_training_goes_on():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 3)), rng.normal(size=8)
    net = bp.Network([bp.Dense(3, 1)], optimizer=bp.SGD(lr=0.1), dtype="float64")
    history = net.fit(X, y, epochs=4, schedule=bp.CosineAnnealingLR(T_max=2), progress=False)
    assert history.history["lr"][2] == pytest.approx(0.0, abs=1e-17)
    assert history.history["lr"][3] == pytest.approx(0.05, rel=1e-12)


@pytest.mark.parametrize(
    ("make", "exc", "word"),
    [
        (lambda: bp.StepLR(step_size=0), ValueError, "step_size"),
        (lambda: bp.StepLR(step_size=2.5), TypeError, "step_size"),
        (lambda: bp.ExponentialLR(gamma=0), ValueError, "gamma"),
        (lambda: bp.CosineAnnealingLR(T_max=0), ValueError, "T_max"),
        (lambda: bp.CosineAnnealingLR(T_max=3, eta_min=-1), ValueError, "eta_min"),
    ],
)
def test_bad_arguments_are_refused_by_name(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


def test_fit_refuses_a_function_as_schedule():
    net = bp.Network([bp.Dense(2, 1)])
    with pytest.raises(TypeError, match="LearningRateScheduler"):
        net.fit(np.ones((4, 2)), np.ones(4), schedule=lambda e, lr: lr)


def _torch_lrs(name: str, kwargs: dict, base: float, n: int) -> list[float]:
    torch = require("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base)
    sched = getattr(torch.optim.lr_scheduler, name)(opt, **kwargs)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(
    ("name", "kwargs", "make"),
    [
        ("StepLR", {"step_size": 3, "gamma": 0.5}, lambda: bp.StepLR(3, 0.5)),
        ("ExponentialLR", {"gamma": 0.9}, lambda: bp.ExponentialLR(0.9)),
        ("CosineAnnealingLR", {"T_max": 7}, lambda: bp.CosineAnnealingLR(7)),
        (
            "CosineAnnealingLR",
            {"T_max": 4, "eta_min": 1e-3},
            lambda: bp.CosineAnnealingLR(4, eta_min=1e-3),
        ),
    ],
)
def test_values_equal_torch_lr_scheduler(name, kwargs, make):
    expected = _torch_lrs(name, kwargs, 0.1, 25)
    np.testing.assert_allclose(make().values(0.1, 25), expected, rtol=1e-15, atol=1e-18)

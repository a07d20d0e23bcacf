"""Per-step learning-rate schedules (LinearLR, OneCycleLR, SequentialLR, or any schedule with
interval="step"): torch's rates step for step, taken one per batch by the native loop, resumed
from a checkpoint, and gradient clipping by value."""

import math
import warnings

import numpy as np
import pytest
from optional import require

import bpcore as bp


def data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)
    return X, y


def network():
    return bp.Network(
        [bp.Dense(4, 8), bp.Tanh(), bp.Dense(8, 2)],
        loss="cross_entropy",
        optimizer=bp.SGD(lr=0.1, momentum=0.9),
        dtype="float64",
        seed=3,
    )


SCHEDULES = {
    "linear": lambda: bp.LinearLR(start_factor=0.1, end_factor=0.9, total_iters=7),
    "onecycle": lambda: bp.OneCycleLR(max_lr=0.5, total_steps=40),
    "onecycle-three-phase-linear": lambda: bp.OneCycleLR(
        max_lr=0.5, total_steps=41, pct_start=0.25, anneal_strategy="linear", three_phase=True
    ),
    "warmup-cosine": lambda: bp.SequentialLR(
        [bp.LinearLR(0.01, total_iters=5), bp.CosineAnnealingLR(T_max=20, interval="step")],
        milestones=[5],
    ),
}


def torch_schedule(torch, name, optimizer):
    lr_scheduler = torch.optim.lr_scheduler
    if name == "linear":
        return lr_scheduler.LinearLR(optimizer, 0.1, 0.9, 7)
    if name == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, 0.5, total_steps=40, cycle_momentum=False)
    if name == "onecycle-three-phase-linear":
        return lr_scheduler.OneCycleLR(
            optimizer,
            0.5,
            total_steps=41,
            pct_start=0.25,
            anneal_strategy="linear",
            three_phase=True,
            cycle_momentum=False,
        )
    warm = lr_scheduler.LinearLR(optimizer, 0.01, total_iters=5)
    cosine = lr_scheduler.CosineAnnealingLR(optimizer, 20)
    return lr_scheduler.SequentialLR(optimizer, [warm, cosine], [5])


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_the_rates_are_torchs_step_for_step(name):
    torch = require("torch")
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.2)
    scheduler = torch_schedule(torch, name, optimizer)
    want = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on the order of step() calls
        for _ in range(40):
            want.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    got = SCHEDULES[name]().values(0.2, 40)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-16)


def test_the_rates_follow_the_written_formulas():
    # LinearLR: base · (start + (end - start) · min(t, T) / T).
    got = bp.LinearLR(0.25, 0.75, 4).values(0.2, 7)
    want = [0.2 * (0.25 + 0.5 * min(t, 4) / 4) for t in range(7)]
    np.testing.assert_allclose(got, want, rtol=1e-14)
    # OneCycleLR: cosine from max/div up to max over pct·T - 1 steps, then down to the floor.
    total, top = 20, 0.4
    start, floor, up = top / 25, top / 25 / 1e4, 0.3 * total - 1

    def cos(a, b, pct):
        return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)

    want = [
        cos(start, top, t / up) if t <= up else cos(top, floor, (t - up) / (total - 1 - up))
        for t in range(total)
    ]
    np.testing.assert_allclose(bp.OneCycleLR(top, total).values(1.0, total), want, rtol=1e-14)


@pytest.mark.parametrize("name", ["linear", "onecycle", "warmup-cosine"])
def test_fit_takes_one_rate_per_step_inside_the_native_loop(name):
    X, y = data()
    net = network()
    history = net.fit(
        X, y, epochs=3, batch_size=8, shuffle=False, schedule=SCHEDULES[name](), progress=False
    )
    # The same steps, one train_step each at the schedule's rate.
    single = network()
    rates = SCHEDULES[name]().values(0.1, 3 * 7 + 1)
    for epoch in range(3):
        for s, start in enumerate(range(0, 50, 8)):
            single.lr = rates[7 * epoch + s]
            single.train_step(X[start : start + 8], y[start : start + 8])
    for key, value in net.parameters().items():
        np.testing.assert_allclose(value, single.parameters()[key], rtol=0, atol=1e-13)
    assert net.lr == pytest.approx(rates[21], rel=1e-15), "the rate of the next step"
    assert history.history["lr"] == pytest.approx([rates[0], rates[7], rates[14]], rel=1e-15)


def test_a_checkpoint_resumes_a_per_step_schedule_exactly(tmp_path):
    X, y = data()
    straight = network()
    straight.fit(X, y, epochs=4, batch_size=8, schedule=SCHEDULES["onecycle"](), progress=False)
    first = network()
    first.fit(X, y, epochs=2, batch_size=8, schedule=SCHEDULES["onecycle"](), progress=False)
    first.save(tmp_path / "half.safetensors", include_optimizer=True)
    resumed = bp.Network.load(tmp_path / "half.safetensors")
    resumed.fit(X, y, epochs=2, batch_size=8, schedule=SCHEDULES["onecycle"](), progress=False)
    for key, value in resumed.parameters().items():
        np.testing.assert_array_equal(value, straight.parameters()[key])
    assert resumed.lr == straight.lr


def test_a_fit_that_would_step_onecycle_past_its_end_is_refused_before_it_starts():
    X, y = data()
    net = network()
    before = net.parameters()
    schedule = bp.OneCycleLR(max_lr=0.5, total_steps=20)  # 3 epochs of 7 steps need 21
    with pytest.raises(ValueError, match="has 20 steps left, but this fit takes 21"):
        net.fit(X, y, epochs=3, batch_size=8, schedule=schedule, progress=False)
    for key, value in net.parameters().items():
        np.testing.assert_array_equal(value, before[key])


def test_any_schedule_may_step_per_batch():
    X, y = data()
    net = network()
    net.fit(
        X,
        y,
        epochs=2,
        batch_size=10,
        schedule=bp.ExponentialLR(0.9, interval="step"),
        progress=False,
    )
    assert net.lr == pytest.approx(0.1 * 0.9**10, rel=1e-14)  # 2 epochs of 5 steps
    with pytest.raises(ValueError, match="interval: expected 'epoch' or 'step'"):
        bp.StepLR(2, interval="batch")
    with pytest.raises(ValueError, match="must all step at one interval"):
        bp.SequentialLR([bp.LinearLR(), bp.StepLR(2)], milestones=[3])


def test_clip_grad_value_clamps_every_gradient_of_every_step():
    X, y = data(n=16)
    net = network()
    net.fit(X, y, epochs=1, batch_size=16, clip_grad_value=1e-3, progress=False)
    single = network()
    grads = single.gradients(X, y)
    assert max(np.abs(g).max() for g in grads.values()) > 1e-3, "something to clip"
    single.apply_gradients({k: np.clip(g, -1e-3, 1e-3) for k, g in grads.items()})
    for key, value in net.parameters().items():
        np.testing.assert_allclose(value, single.parameters()[key], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="clip_grad_value"):
        net.fit(X, y, epochs=1, clip_grad_value=0.0, progress=False)

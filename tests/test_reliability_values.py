"""Extreme values and huge views get a ValueError or TypeError naming the argument, never
numpy's MemoryError or Python's OverflowError; finite means finite in the network's dtype; and
whatever training writes, loading reads back."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bpcore as bp

HUGE = 10**400  # an integer no float holds: float() of it raises OverflowError


def small(dtype: str = "float32", layers=None, optimizer="adam") -> bp.Network:
    return bp.Network(
        layers or [bp.Dense(3, 4), bp.ReLU(), bp.Dense(4, 2)],
        loss="mse",
        optimizer=bp.optimizers.get_optimizer(optimizer) if optimizer != "adam" else bp.Adam(0.01),
        dtype=dtype,
        seed=0,
    )


def unchanged(net: bp.Network, before: dict[str, np.ndarray]) -> None:
    after = net.parameters()
    assert all(np.array_equal(after[k], v) for k, v in before.items())


# ----- sizes are refused before anything is allocated, views too ------------------------------


def test_a_broadcast_view_beyond_the_size_limit_is_refused_before_it_is_copied():
    net = small()
    view = np.broadcast_to(np.zeros(3, np.float64), (2**40, 3))
    targets = np.broadcast_to(np.zeros(2), (2**40, 2))
    for call in (net.forward, net.predict, lambda X: net.train_step(X, targets)):
        with pytest.raises(ValueError, match=r"^X: shape \(1099511627776, 3\) holds"):
            call(view)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the memory limit is set with RLIMIT_AS, which only Linux enforces",
)
def test_a_view_whose_copy_cannot_be_allocated_is_a_value_error_not_a_memory_error():
    # 2**30 rows of 4 float64 zeros as a view; its float32 copy needs 16 GiB, over the limit.
    script = textwrap.dedent(
        """
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 * 1024**3, 4 * 1024**3))
        import numpy as np, bpcore as bp
        net = bp.Network([bp.Dense(4, 2)], loss="mse")
        try:
            net.forward(np.broadcast_to(np.zeros(4), (2**30, 4)))
        except ValueError as e:
            print(e)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("X: its copy as a contiguous float32 array"), done.stdout


def test_views_inside_the_limit_are_still_read():
    net = small()
    view = np.broadcast_to(np.arange(3, dtype=np.float64), (5, 3))
    np.testing.assert_array_equal(net.forward(view), net.forward(np.tile(np.arange(3.0), (5, 1))))


# ----- only ValueError or TypeError for bad values --------------------------------------------


@pytest.mark.parametrize(
    ("make", "arg"),
    [
        (lambda: bp.Adam(lr=HUGE), "lr"),
        (lambda: bp.SGD(momentum=HUGE), "momentum"),
        (lambda: bp.Dropout(HUGE), "p"),
        (lambda: bp.StepLR(step_size=1, gamma=HUGE), "gamma"),
        (lambda: bp.ExponentialLR(gamma=-HUGE), "gamma"),
        (lambda: bp.HuberLoss(delta=HUGE), "delta"),
        (lambda: bp.BatchNorm1d(3, eps=HUGE), "eps"),
        (lambda: bp.LeakyReLU(HUGE), "negative_slope"),
        (lambda: small().fit(np.ones((4, 3)), np.ones((4, 2)), clip_grad_norm=HUGE), "clip"),
    ],
)
def test_integers_beyond_floats_range_are_a_value_error_naming_the_argument(make, arg):
    with pytest.raises(ValueError, match=rf"^{arg}"):
        make()


def test_setting_a_learning_rate_beyond_floats_range_is_a_value_error():
    net = small()
    with pytest.raises(ValueError, match=r"^lr"):
        net.lr = HUGE


@pytest.mark.parametrize(
    ("make", "arg"),
    [
        (lambda: bp.LeakyReLU(1e308), "negative_slope"),
        (lambda: bp.LeakyReLU(-1001.0), "negative_slope"),
        (lambda: bp.ELU(alpha=1e308), "alpha"),
        (lambda: bp.Softplus(beta=1e-300), "beta"),
        (lambda: bp.Softplus(beta=1e300), "beta"),
    ],
)
def test_activation_scales_that_make_every_output_infinite_are_refused(make, arg):
    with pytest.raises(ValueError, match=rf"^{arg}"):
        make()


@pytest.mark.parametrize("make", [bp.Adam, bp.AdamW, bp.RMSprop, bp.Adagrad])
def test_an_eps_of_zero_or_subnormal_is_refused_as_it_steps_zero_gradients_by_nan(make):
    for eps in (0.0, 1e-40):
        with pytest.raises(ValueError, match=r"^eps: must be >= 1\.17"):
            make(eps=eps)
    # The smallest eps accepted keeps a zero gradient's step finite, in float32 too.
    optimizer = make(eps=bp.optimizers.MIN_EPS)
    net = bp.Network([bp.Dense(3, 2)], loss="mse", optimizer=optimizer, dtype="float32")
    net.apply_gradients({"0.weight": np.zeros((2, 3)), "0.bias": np.zeros(2)})
    assert all(np.isfinite(v).all() for v in net.parameters().values())


def test_activation_scales_at_the_limit_are_accepted_and_stay_finite():
    limit = bp.layers.MAX_ACTIVATION_SCALE
    for layer in (bp.LeakyReLU(-limit), bp.ELU(alpha=limit), bp.Softplus(beta=1 / limit)):
        net = small(layers=[bp.Dense(3, 4), layer, bp.Dense(4, 2)])
        assert np.isfinite(net.forward(np.full((2, 3), -5.0))).all()


# ----- finite means finite in the network's dtype ---------------------------------------------


def test_inputs_beyond_float32s_range_say_so():
    net = small()
    with pytest.raises(ValueError, match=r"^X: a value exceeds float32's range"):
        net.forward(np.full((2, 3), 1e300))
    with pytest.raises(ValueError, match=r"^y: a value exceeds float32's range"):
        net.train_step(np.ones((2, 3)), np.full((2, 2), 1e300))


@pytest.mark.parametrize("how", ["set_parameters", "load_state_dict"])
def test_parameters_beyond_float32s_range_are_refused_after_the_cast(how):
    net = small()
    before = net.parameters()
    values = {**before, "0.weight": np.full((4, 3), 1e39)}
    with pytest.raises(ValueError, match=r"0\.weight.*exceeds float32's range"):
        getattr(net, how)(values)
    unchanged(net, before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_whose_step_would_overflow_are_refused_and_change_nothing(dtype):
    net = small(dtype)
    before = net.parameters()
    state_before = net.native.optimizer_state()
    grads = {k: np.full(v.shape, 1e300 if dtype == "float64" else 1e30) for k, v in before.items()}
    with pytest.raises(ValueError, match=r"^gradients"):
        net.apply_gradients(grads)
    unchanged(net, before)
    steps, buffers = net.native.optimizer_state()
    assert steps == state_before[0]
    assert all(np.array_equal(a, b) for a, b in zip(buffers, state_before[1]))


# ----- whatever training writes, load reads back ----------------------------------------------


def test_batch_norm_statistics_of_huge_inputs_stay_finite_and_the_file_loads():
    net = small(layers=[bp.Dense(3, 3), bp.BatchNorm1d(3), bp.Dense(3, 2)])
    net.set_parameters({**net.parameters(), "0.weight": np.eye(3), "0.bias": np.zeros(3)})
    X = np.array([[1e20, 1e20, 1e20], [-1e20, -1e20, -1e20]] * 2)
    loss = net.train_step(X, np.zeros((4, 2)))
    assert np.isfinite(loss)
    running_var = net.buffers()["1.running_var"]
    assert np.isfinite(running_var).all()
    assert (running_var == np.finfo(np.float32).max).all()  # saturated, not infinite
    back = bp.Network.from_bytes(net.to_bytes(include_optimizer=True))
    np.testing.assert_array_equal(back.buffers()["1.running_var"], running_var)


def test_gradients_of_1e30_in_training_are_a_divergence_and_the_state_still_saves():
    net = small()
    with pytest.raises(bp.TrainingDivergedError):
        net.train_step(np.full((4, 3), 1e30), np.zeros((4, 2)))
    _, buffers = net.native.optimizer_state()
    assert all(np.isfinite(b).all() for b in buffers)
    bp.Network.from_bytes(net.to_bytes(include_optimizer=True))


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "adagrad"])
def test_a_finite_step_whose_squares_overflow_keeps_the_state_finite_and_the_file_loads(
    optimizer,
):
    # Inputs of 1e12 give a finite loss and float32 gradients near 1e24, whose squares (1e48)
    # are beyond float32: torch's exp_avg_sq would be inf; bpcore's saturates at the largest.
    net = small(optimizer=optimizer)
    loss = net.train_step(np.full((4, 3), 1e12), np.zeros((4, 2)))
    assert np.isfinite(loss)
    _, buffers = net.native.optimizer_state()
    assert all(np.isfinite(b).all() for b in buffers)
    assert any((b == np.finfo(np.float32).max).any() for b in buffers), "saturated"
    assert all(np.isfinite(v).all() for v in net.parameters().values())
    back = bp.Network.from_bytes(net.to_bytes(include_optimizer=True))
    assert back.native.optimizer_state()[0] == 1


def test_a_batch_counter_at_its_limit_saturates_and_the_file_loads():
    net = small(layers=[bp.Dense(3, 3), bp.BatchNorm1d(3), bp.Dense(3, 2)])
    buffers = net.buffers()
    buffers["1.num_batches_tracked"] = np.array(2**63 - 1)
    net.set_buffers(buffers)
    net.train_step(np.random.default_rng(0).normal(size=(4, 3)), np.zeros((4, 2)))
    assert int(net.buffers()["1.num_batches_tracked"]) == 2**63 - 1
    bp.Network.from_bytes(net.to_bytes())


def test_a_training_forward_counter_at_its_limit_saturates_and_the_file_loads():
    net = small()
    net.native.training_forwards = 2**64 - 1
    net.train_step(np.ones((4, 3)), np.zeros((4, 2)))
    assert net.native.training_forwards == 2**64 - 1
    bp.Network.from_bytes(net.to_bytes(include_optimizer=True))


def with_epochs_done(data: bytes, epochs: int) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    state = json.loads(header["__metadata__"]["training_state"])
    header["__metadata__"]["training_state"] = json.dumps({**state, "epochs_done": epochs})
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n :]


def test_a_network_loaded_at_the_epoch_limit_trains_and_saves_a_file_that_loads():
    net = small()
    data = with_epochs_done(net.to_bytes(include_optimizer=True), 2**64 - 1)
    loaded = bp.Network.from_bytes(data)
    loaded.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=1, progress=False)
    bp.Network.from_bytes(loaded.to_bytes(include_optimizer=True))


def test_a_schedule_position_saturates_below_the_loaders_limit():
    schedule = bp.StepLR(step_size=3, gamma=0.5)
    schedule.start(0.1)
    schedule.last_epoch = bp.schedules.MAX_LAST_EPOCH
    schedule.step(0.1)
    assert schedule.last_epoch == bp.schedules.MAX_LAST_EPOCH


# ----- masked arrays and argument names -------------------------------------------------------


def test_masked_values_are_refused_not_silently_read():
    net = small()
    X = np.ma.masked_array(np.ones((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"^X: a masked array"):
        net.forward(X)
    y = np.ma.masked_array(np.ones((2, 2)), mask=[[0, 0], [1, 0]])
    with pytest.raises(ValueError, match=r"^y: a masked array"):
        net.train_step(np.ones((2, 3)), y)
    w = np.ma.masked_array(np.ones(2), mask=[1, 0])
    with pytest.raises(ValueError, match=r"^sample_weight: a masked array"):
        net.train_step(np.ones((2, 3)), np.ones((2, 2)), sample_weight=w)
    # Nothing masked: the data is the array's.
    unmasked = np.ma.masked_array(np.ones((2, 3)))
    np.testing.assert_array_equal(net.forward(unmasked), net.forward(np.ones((2, 3))))


def test_messages_name_the_argument():
    net = small()
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"^validation_data\[1\]"):
        net.fit(X, np.ones((4, 2)), validation_data=(X, np.ones((4, 5))), progress=False)
    with pytest.raises(TypeError, match=r"^path"):
        net.save(None)
    with pytest.raises(TypeError, match=r"^path"):
        bp.Network.load(None)


def test_a_view_whose_outputs_would_exceed_the_limit_is_refused_before_its_copy():
    net = bp.Network([bp.Dense(1, 4096)], loss="mse", seed=0)
    view = np.broadcast_to(np.zeros(1, np.float32), (2**29, 1))  # 2^41 outputs, 2 GiB copy
    with pytest.raises(ValueError, match=r"^X: 536870912 samples would have"):
        net.forward(view)

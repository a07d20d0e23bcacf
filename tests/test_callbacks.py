"""Callbacks: the protocol's calls and order, EarlyStopping, ReduceLROnPlateau and
LearningRateScheduler on scripted monitor sequences."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp
from bpcore import training
from bpcore.callbacks import Callback


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5])


def regressor(lr=0.01):
    return bp.Network(
        [bp.Dense(3, 4), bp.Tanh(), bp.Dense(4, 1)],
        optimizer=bp.SGD(lr=lr),
        dtype="float64",
        seed=0,
    )


class Script(Callback):
    """Replaces logs[key] by the next scripted value at every epoch end, and keeps a copy of
    the parameters after each epoch."""

    def __init__(self, values, key="val_loss"):
        super().__init__()
        self.values, self.key = list(values), key
        self.params = []

    def on_epoch_end(self, epoch, logs):
        logs[self.key] = self.values[epoch]
        self.params.append(self.network.parameters())


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs):
        self.calls.append(("train_begin", dict(logs)))

    def on_epoch_begin(self, epoch, logs):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs):
        self.calls.append(("train_end",))


def test_protocol_calls_in_order_with_keys_and_epochs_counting_across_fits():
    X, y = data()
    net, rec = regressor(), Recorder()
    net.fit(X, y, epochs=2, validation_split=0.25, metrics=["mae"], callbacks=[rec], progress=False)
    keys = ["loss", "mae", "val_loss", "val_mae", "lr", "time"]
    assert rec.calls[0] == (
        "train_begin",
        {"epochs": 2, "batch_size": 32, "samples": 24, "steps": 1, "log_keys": keys},
    )
    assert rec.calls[1:] == [
        ("epoch_begin", 0),
        ("epoch_end", 0, sorted(keys)),
        ("epoch_begin", 1),
        ("epoch_end", 1, sorted(keys)),
        ("train_end",),
    ]
    assert rec.network is net
    rec.calls.clear()
    net.fit(X, y, epochs=1, callbacks=[rec], progress=False)
    assert rec.calls[1] == ("epoch_begin", 2)


def test_returning_true_or_setting_stop_training_stops_after_that_epoch():
    X, y = data()

    class StopAt(Callback):
        def __init__(self, at, by_flag):
            super().__init__()
            self.at, self.by_flag = at, by_flag

        def on_epoch_end(self, epoch, logs):
            if epoch == self.at:
                if self.by_flag:
                    self.network.stop_training = True
                    return None
                return True
            return None

    assert regressor().fit(X, y, epochs=10, callbacks=[StopAt(2, False)], progress=False).epoch == [
        1,
        2,
        3,
    ]
    net = regressor()
    assert net.fit(X, y, epochs=10, callbacks=[StopAt(3, True)], progress=False).epoch == [
        1,
        2,
        3,
        4,
    ]
    assert net.fit(X, y, epochs=2, progress=False).epoch == [5, 6]  # the flag is reset


def test_a_changed_log_value_is_recorded_in_the_history():
    X, y = data()
    h = regressor().fit(
        X, y, epochs=3, callbacks=[Script([5.0, 6.0, 7.0], key="loss")], progress=False
    )
    assert h.history["loss"] == [5.0, 6.0, 7.0]


def test_early_stopping_stops_at_the_right_epoch():
    X, y = data()
    # best at epoch 1; epochs 2 and 3 do not improve: patience 2 runs out after epoch 3.
    script = Script([1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    stop = bp.EarlyStopping(patience=2)
    h = regressor().fit(
        X, y, epochs=6, validation_split=0.25, callbacks=[script, stop], progress=False
    )
    assert h.epoch == [1, 2, 3, 4]
    assert h.history["val_loss"] == [1.0, 0.8, 0.9, 0.85]
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == (0.8, 1, 3)


def test_early_stopping_min_delta_and_max_mode():
    X, y = data()
    script = Script([1.0, 0.95, 0.92, 0.5])  # improvements of < 0.1 do not count
    stop = bp.EarlyStopping(patience=2, min_delta=0.1)
    h = regressor().fit(
        X, y, epochs=4, validation_split=0.25, callbacks=[script, stop], progress=False
    )
    assert h.epoch == [1, 2, 3]
    acc = Script([0.5, 0.7, 0.6, 0.65, 0.9], key="val_mae")
    stop = bp.EarlyStopping(monitor="val_mae", patience=2, mode="max")
    h = regressor().fit(
        X,
        y,
        epochs=5,
        validation_split=0.25,
        metrics=["mae"],
        callbacks=[acc, stop],
        progress=False,
    )
    assert h.epoch == [1, 2, 3, 4] and stop.best == 0.7
    assert bp.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert bp.EarlyStopping(monitor="val_r2").mode == "max"
    assert bp.EarlyStopping(monitor="loss").mode == "min"


@pytest.mark.parametrize("stops_early", [True, False])
def test_restore_best_weights_puts_back_the_best_epochs_parameters(stops_early):
    X, y = data()
    values = [1.0, 0.5, 0.9, 0.95, 0.97] if stops_early else [1.0, 0.5, 0.9, 0.6, 0.55]
    script = Script(values)
    stop = bp.EarlyStopping(patience=2 if stops_early else 10, restore_best_weights=True)
    net = regressor()
    h = net.fit(X, y, epochs=5, validation_split=0.25, callbacks=[script, stop], progress=False)
    assert len(h.epoch) == (4 if stops_early else 5)
    for name, value in script.params[1].items():
        np.testing.assert_array_equal(net.parameters()[name], value)
    assert not np.array_equal(script.params[1]["0.weight"], script.params[-1]["0.weight"])


def test_monitor_missing_from_logs_is_a_clear_error_before_training():
    X, y = data()
    net = regressor()
    before = net.parameters()
    with pytest.raises(ValueError, match=r"'val_loss'.*validation_split or validation_data"):
        net.fit(X, y, epochs=3, callbacks=[bp.EarlyStopping()], progress=False)
    with pytest.raises(ValueError, match="'val_los'"):
        net.fit(X, y, validation_split=0.25, callbacks=[bp.ReduceLROnPlateau(monitor="val_los")])
    for name, value in before.items():
        np.testing.assert_array_equal(net.parameters()[name], value)


def test_reduce_lr_on_plateau_lowers_lr_after_patience_epochs():
    X, y = data()
    script = Script([1.0] * 7)
    reduce = bp.ReduceLROnPlateau(factor=0.5, patience=2)
    h = regressor(lr=0.1).fit(
        X, y, epochs=7, validation_split=0.25, callbacks=[script, reduce], progress=False
    )
    assert h.history["lr"] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025]


def test_reduce_lr_on_plateau_cooldown_min_lr_and_improvement():
    X, y = data()
    script = Script([1.0] * 8)
    reduce = bp.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2, min_lr=0.03)
    h = regressor(lr=0.1).fit(
        X, y, epochs=8, validation_split=0.25, callbacks=[script, reduce], progress=False
    )
    # reduced after epoch 2; two epochs of cooldown; reduced after epoch 5 to min_lr.
    assert h.history["lr"] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.03]
    script = Script([1.0, 0.9, 0.8, 0.8, 0.7, 0.7, 0.7])  # improvements reset the wait
    h = regressor(lr=0.1).fit(
        X,
        y,
        epochs=7,
        validation_split=0.25,
        callbacks=[script, bp.ReduceLROnPlateau(factor=0.5, patience=2)],
        progress=False,
    )
    assert h.history["lr"] == [0.1] * 7


def test_learning_rate_scheduler_sets_each_epochs_lr():
    X, y = data()
    net = regressor(lr=0.1)
    cb = bp.LearningRateScheduler(lambda epoch, lr: 0.2 * 0.5**epoch)
    h = net.fit(X, y, epochs=3, callbacks=[cb], progress=False)
    assert h.history["lr"] == [0.2, 0.1, 0.05]
    h = net.fit(X, y, epochs=1, callbacks=[cb], progress=False)
    assert h.history["lr"] == [0.025]
    bad = bp.LearningRateScheduler(lambda epoch, lr: float("nan"))
    with pytest.raises(ValueError, match="LearningRateScheduler"):
        net.fit(X, y, callbacks=[bad], progress=False)


@pytest.mark.parametrize(
    ("make", "exc", "word"),
    [
        (lambda: bp.EarlyStopping(patience=-1), ValueError, "patience"),
        (lambda: bp.EarlyStopping(mode="up"), ValueError, "mode"),
        (lambda: bp.ReduceLROnPlateau(factor=1.0), ValueError, "factor"),
        (lambda: bp.ReduceLROnPlateau(cooldown=1.5), TypeError, "cooldown"),
        (lambda: bp.LearningRateScheduler(0.1), TypeError, "schedule"),
    ],
)
def test_bad_callback_arguments(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


def test_on_batch_end_is_called_at_progress_ticks(monkeypatch):
    monkeypatch.setattr(training, "PROGRESS_INTERVAL", 0.01)
    rng = np.random.default_rng(0)
    # An epoch of 3750 batches: about 0.1 s here, ten ticks and more.
    X = rng.random((60000, 128), dtype=np.float32)
    y = rng.integers(0, 10, 60000)
    net = bp.Network([bp.Dense(128, 256), bp.ReLU(), bp.Dense(256, 10)], loss="cross_entropy")

    class Ticks(Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_batch_end(self, batch, logs):
            self.seen.append((batch, logs["batches"], logs["samples"], logs["loss"]))

    ticks = Ticks()
    net.fit(X, y, epochs=1, batch_size=16, callbacks=[ticks], progress=False)
    assert ticks.seen, "an epoch of 3750 batches should see at least one 10 ms tick"
    batches = [b for b, _, _, _ in ticks.seen]
    assert batches == sorted(batches) and all(0 <= b < 3750 for b in batches)
    assert all(b + 1 == n and s == 16 * n for b, n, s, _ in ticks.seen)
    assert all(np.isfinite(loss) for *_, loss in ticks.seen)

"""ModelCheckpoint: which epochs it saves, what the files hold, and resuming from one."""

import numpy as np
import pytest

import bpcore as bp
from bpcore.callbacks import Callback


class Script(Callback):
    """Sets logs["val_loss"] to the next scripted value and records the parameters."""

    def __init__(self, values):
        super().__init__()
        self.values = list(values)
        self.params = []

    def on_epoch_end(self, epoch, logs):
        logs["val_loss"] = self.values[epoch]
        self.params.append(self.network.parameters())


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X @ rng.normal(size=(4, 3))).argmax(axis=1)


def network(dtype="float64"):
    return bp.Network(
        [bp.Dense(4, 8), bp.ReLU(), bp.Dropout(0.2), bp.Dense(8, 3)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=0.01),
        dtype=dtype,
        seed=1,
    )


def same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_save_best_only_keeps_the_best_epoch_in_one_file(tmp_path):
    path = tmp_path / "best.safetensors"
    X, y = data()
    script = Script([0.9, 0.7, 0.8, 0.5, 0.6])  # improvements at epochs 1, 2 and 4
    checkpoint = bp.ModelCheckpoint(path, save_best_only=True)
    network().fit(
        X, y, epochs=5, validation_split=0.25, callbacks=[script, checkpoint], progress=False
    )
    assert checkpoint.saved == [str(path)] * 3
    assert checkpoint.best == 0.5
    assert same(bp.Network.load(path).parameters(), script.params[3])


def test_a_formatted_path_saves_every_epoch(tmp_path):
    X, y = data()
    script = Script([0.9, 0.8, 0.7])
    pattern = str(tmp_path / "ck-{epoch:02d}-{val_loss:.1f}.safetensors")
    checkpoint = bp.ModelCheckpoint(pattern)
    network().fit(X, y, epochs=3, callbacks=[script, checkpoint], progress=False)
    names = [p.rsplit("/", 1)[1] for p in checkpoint.saved]
    assert names == ["ck-01-0.9.safetensors", "ck-02-0.8.safetensors", "ck-03-0.7.safetensors"]
    for path, params in zip(checkpoint.saved, script.params):
        assert same(bp.Network.load(path).parameters(), params)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_checkpoint_with_the_optimizer_resumes_exactly(tmp_path, dtype):
    X, y = data(64)
    pattern = str(tmp_path / "epoch-{epoch}.safetensors")
    checkpoint = bp.ModelCheckpoint(pattern, include_optimizer=True)
    straight = network(dtype)
    straight.fit(X, y, epochs=3, batch_size=8, callbacks=[checkpoint], progress=False)
    resumed = bp.Network.load(checkpoint.saved[1])
    resumed.fit(X, y, epochs=1, batch_size=8, progress=False)
    for name, value in straight.parameters().items():
        assert resumed.parameters()[name].tobytes() == value.tobytes(), name


@pytest.mark.parametrize(
    "make_schedule",
    [
        lambda: bp.StepLR(step_size=2, gamma=0.5),
        lambda: bp.ExponentialLR(gamma=0.8),
        lambda: bp.CosineAnnealingLR(T_max=3, eta_min=0.001),
    ],
    ids=["StepLR", "ExponentialLR", "CosineAnnealingLR"],
)
def test_a_checkpoint_resumes_the_schedule_where_it_stopped(tmp_path, make_schedule):
    X, y = data(64)
    pattern = str(tmp_path / "epoch-{epoch}.safetensors")
    checkpoint = bp.ModelCheckpoint(pattern, include_optimizer=True)
    straight = network()
    history = straight.fit(
        X, y, epochs=5, batch_size=8, schedule=make_schedule(), callbacks=[checkpoint],
        progress=False,
    )  # fmt: skip
    resumed = bp.Network.load(checkpoint.saved[1])  # after epoch 2
    assert resumed.lr == history.history["lr"][2]  # the lr of epoch 3, the schedule stepped
    rest = resumed.fit(X, y, epochs=3, batch_size=8, schedule=make_schedule(), progress=False)
    assert rest.history["lr"] == history.history["lr"][2:]
    assert resumed.lr == straight.lr
    for name, value in straight.parameters().items():
        assert resumed.parameters()[name].tobytes() == value.tobytes(), name


def test_another_schedule_after_loading_starts_afresh(tmp_path):
    X, y = data(64)
    path = tmp_path / "net.safetensors"
    checkpoint = bp.ModelCheckpoint(path, include_optimizer=True)
    net = network()
    net.fit(X, y, epochs=2, schedule=bp.StepLR(1, 0.5), callbacks=[checkpoint], progress=False)
    loaded = bp.Network.load(path)
    lr = loaded.lr
    other = bp.StepLR(1, 0.1)  # not the saved schedule: starts from the loaded lr
    history = loaded.fit(X, y, epochs=2, schedule=other, progress=False)
    assert history.history["lr"] == [lr, lr * 0.1]
    assert other.base_lr == lr and other.last_epoch == 2


def test_bad_arguments_name_themselves(tmp_path):
    with pytest.raises(TypeError, match="filepath"):
        bp.ModelCheckpoint(3)
    with pytest.raises(TypeError, match="save_best_only"):
        bp.ModelCheckpoint(tmp_path / "m", save_best_only="yes")
    with pytest.raises(ValueError, match="filepath"):
        X, y = data()
        network().fit(
            X, y, callbacks=[bp.ModelCheckpoint(str(tmp_path / "m-{nope}"))], progress=False
        )
    with pytest.raises(ValueError, match="monitor"):
        X, y = data()
        network().fit(
            X,
            y,
            callbacks=[bp.ModelCheckpoint(tmp_path / "m", save_best_only=True)],
            progress=False,
        )


def test_early_stopping_restores_batch_norm_statistics_with_the_weights():
    X, y = data(64)
    net = bp.Network(
        [bp.Dense(4, 8), bp.BatchNorm1d(8), bp.ReLU(), bp.Dense(8, 3)],
        loss="cross_entropy",
        dtype="float64",
        seed=0,
    )

    class Both(Script):
        def on_epoch_end(self, epoch, logs):
            super().on_epoch_end(epoch, logs)
            self.buffers = [*getattr(self, "buffers", []), self.network.buffers()]

    script = Both([0.5, 0.9, 0.9, 0.9])
    stop = bp.EarlyStopping(patience=2, restore_best_weights=True)
    net.fit(
        X,
        y,
        epochs=4,
        batch_size=16,
        validation_split=0.25,
        callbacks=[script, stop],
        progress=False,
    )
    assert same(net.parameters(), script.params[0])
    assert same(net.buffers(), script.buffers[0])


def test_a_fit_refused_by_a_callback_leaves_the_loaded_schedule_position(tmp_path):
    path = tmp_path / "scheduled.safetensors"
    X, y = data()
    net = network()
    net.fit(X, y, epochs=2, schedule=bp.CosineAnnealingLR(T_max=4), progress=False)
    net.save(path, include_optimizer=True)

    def resumed(refused_first: bool) -> list[float]:
        loaded = bp.Network.load(path)
        if refused_first:
            typo = bp.EarlyStopping(monitor="val_los")  # refused at on_train_begin
            with pytest.raises(ValueError, match="val_los"):
                loaded.fit(X, y, schedule=bp.CosineAnnealingLR(T_max=4), callbacks=[typo])
        h = loaded.fit(X, y, epochs=2, schedule=bp.CosineAnnealingLR(T_max=4), progress=False)
        return h.history["lr"]

    # The cosine continues where the checkpoint stopped (epochs 3 and 4 of 4), refused fit or
    # not, instead of starting a new cosine at the loaded rate.
    want = [0.01 * (1 + np.cos(np.pi * t / 4)) / 2 for t in (2, 3)]
    assert resumed(False) == pytest.approx(want)
    assert resumed(True) == pytest.approx(want)

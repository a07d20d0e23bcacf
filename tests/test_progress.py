"""The progress bar: off when stderr is not a terminal, forced on with progress=True, tqdm or the
built-in fallback, fed at the native loop's ticks."""

from __future__ import annotations

import io

import numpy as np
import pytest

import bpcore as bp
from bpcore import progress, training


def fit(capsys, **kwargs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    net = bp.Network([bp.Dense(3, 2)], loss="cross_entropy")
    net.fit(X, (X[:, 0] > 0).astype(int), epochs=2, batch_size=16, validation_split=0.25, **kwargs)
    return capsys.readouterr().err


def test_off_by_default_when_stderr_is_not_a_terminal(capsys):
    assert fit(capsys) == ""
    assert fit(capsys, progress=False) == ""


def test_auto_mode_follows_isatty(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress.enabled(None) is True
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress.enabled(None) is False
    assert progress.enabled(True) is True and progress.enabled(False) is False
    with pytest.raises(TypeError, match="progress"):
        progress.enabled(1)


def test_forced_on_shows_each_epoch_with_loss_metrics_and_speed(capsys):
    err = fit(capsys, progress=True)
    for text in ("epoch 1/2", "epoch 2/2", "loss", "val_accuracy", "samples/s", "3/3"):
        assert text in err


def test_builtin_bar_without_tqdm(capsys, monkeypatch):
    monkeypatch.setattr(progress, "_tqdm", None)
    err = fit(capsys, progress=True)
    assert "\repoch 1/2 [" in err and "] 3/3 loss" in err and "#" * 24 in err
    assert err.count("\n") == 2  # one finished line per epoch


def test_ticks_move_the_builtin_bar_mid_epoch(monkeypatch):
    monkeypatch.setattr(progress, "_tqdm", None)
    monkeypatch.setattr(training, "PROGRESS_INTERVAL", 0.01)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    rng = np.random.default_rng(0)
    X = rng.random((20000, 128), dtype=np.float32)
    net = bp.Network([bp.Dense(128, 256), bp.ReLU(), bp.Dense(256, 10)], loss="cross_entropy")
    net.fit(X, rng.integers(0, 10, 20000), epochs=1, batch_size=16, progress=True)
    lines = err.getvalue().split("\r")
    partial = [s for s in lines if "/1250 loss" in s and "1250/1250" not in s]
    assert partial, "expected at least one mid-epoch redraw"
    assert "samples/s" in partial[0]


def test_bar_is_closed_when_training_fails(capsys, monkeypatch):
    monkeypatch.setattr(progress, "_tqdm", None)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 3))
    net = bp.Network([bp.Dense(3, 1)], optimizer=bp.SGD(lr=1e30), dtype="float32")
    net.set_parameters({"0.weight": np.full((1, 3), 1e10), "0.bias": np.zeros(1)})
    with pytest.raises(bp.TrainingDivergedError), pytest.warns(RuntimeWarning):
        net.fit(X, rng.normal(size=32) * 1e10, epochs=3, progress=True)
    assert capsys.readouterr().err.endswith("\n")

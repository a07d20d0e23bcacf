"""What fit shows: off when no one watches stderr, verbose 0/1/2 as Keras, a bar redrawn with
\\r only on a terminal (or in a notebook), finished lines that fit 80 columns without cutting an
item, tqdm or the built-in bar, fed at the native loop's ticks."""

from __future__ import annotations

import io
import re
import sys
import types

import numpy as np
import pytest
from optional import require

import bpcore as bp
from bpcore import progress, training


class Terminal(io.StringIO):
    """A stream that says it is a terminal, 80 columns wide."""

    def isatty(self):
        return True


def on_terminal(monkeypatch):
    """sys.stderr replaced by a Terminal (inside the test: pytest's capture replaces it between
    a fixture's setup and the test's call)."""
    stream = Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setenv("COLUMNS", "80")
    return stream


def fit(capsys, metrics=None, **kwargs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    net = bp.Network([bp.Dense(3, 2)], loss="cross_entropy")
    net.fit(
        X,
        (X[:, 0] > 0).astype(int),
        epochs=2,
        batch_size=16,
        validation_split=0.25,
        metrics=metrics,
        **kwargs,
    )
    return capsys.readouterr().err if capsys is not None else None


def screen_lines(text):
    """What a terminal shows, line by line: each \\r starts the line again."""
    return [line.split("\r")[-1] for line in text.split("\n")]


def test_off_by_default_when_stderr_is_not_a_terminal(capsys):
    assert fit(capsys) == ""
    assert fit(capsys, progress=False) == ""
    assert fit(capsys, verbose=0) == ""


def test_auto_mode_follows_isatty(monkeypatch):
    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress.enabled(None) is True
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress.enabled(None) is False
    assert progress.enabled(True) is True and progress.enabled(False) is False
    with pytest.raises(TypeError, match="progress"):
        progress.enabled(1)


def test_a_notebook_is_watched_though_its_stderr_is_no_terminal(monkeypatch):
    kernel_shell = types.SimpleNamespace(kernel=object())
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: kernel_shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress.verbosity("auto") == 1
    fake.get_ipython = lambda: None  # type: ignore[attr-defined]  # plain IPython, no kernel
    assert progress.verbosity("auto") == 0


def test_verbose_levels_and_their_checks():
    assert [progress.verbosity(v) for v in (0, 1, 2)] == [0, 1, 2]
    assert progress.verbosity("auto", True) == 1 and progress.verbosity(1, True) == 1
    with pytest.raises(ValueError, match="verbose"):
        progress.verbosity(3)
    with pytest.raises(TypeError, match="verbose"):
        progress.verbosity("loud")
    with pytest.raises(ValueError, match="disagree"):
        progress.verbosity(2, False)


def test_forced_on_shows_each_epoch_with_loss_metrics_and_speed(capsys):
    err = fit(capsys, progress=True)
    for text in ("epoch 1/2", "epoch 2/2", "loss", "val_accuracy", "samples/s", "3/3"):
        assert text in err


def test_a_log_file_gets_one_finished_block_per_epoch_and_no_redraws(capsys):
    err = fit(capsys, verbose=1)
    assert "\r" not in err
    starts = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [s.split(" - ")[0] for s in starts] == ["epoch 1/2", "epoch 2/2"]
    assert "ETA " in starts[0] and "ETA " not in starts[1]  # the fit's ETA, none at the end


def test_verbose_2_writes_lines_even_on_a_terminal(monkeypatch):
    terminal = on_terminal(monkeypatch)
    fit(None, verbose=2)
    assert "\r" not in terminal.getvalue()
    assert terminal.getvalue().count("epoch ") == 2


def test_builtin_bar_without_tqdm_redraws_on_a_terminal(monkeypatch):
    terminal = on_terminal(monkeypatch)
    monkeypatch.setattr(progress, "_tqdm", None)
    fit(None, progress=True)
    err = terminal.getvalue()
    assert "\repoch 1/2 [" + "." * 24 + "] 0/3" in err
    shown = screen_lines(err)
    assert [line.split(" - ")[0] for line in shown if line.startswith("epoch")] == [
        "epoch 1/2",
        "epoch 2/2",
    ]


def test_every_line_fits_80_columns_and_no_value_is_cut(monkeypatch):
    terminal = on_terminal(monkeypatch)
    monkeypatch.setattr(progress, "_tqdm", None)
    fit(None, metrics=["accuracy"], progress=True)
    err = terminal.getvalue()
    for line in re.split(r"[\r\n]", err):
        assert len(line) < 80, line
    items = [item.strip() for line in screen_lines(err) for item in line.split(" - ")]
    values = dict(item.split(" ", 1) for item in items if item.startswith(("loss", "val_")))
    assert set(values) == {"loss", "val_loss", "val_accuracy"}
    for value in values.values():
        float(value)  # each value whole, on one line


def test_wrapping_breaks_between_items_only():
    items = [f"val_metric_{i} 0.{i:04d}" for i in range(12)]
    lines = progress.wrap_items(items, 40)
    assert all(len(line) < 40 for line in lines)
    assert [p.strip() for line in lines for p in line.split(" - ")] == items
    assert all(line.startswith(progress.INDENT) for line in lines[1:])


def test_durations_read_as_people_write_them():
    got = [progress.duration(s) for s in (0.0034, 4.24, 42.4, 125, 3725)]
    assert got == ["3ms", "4.2s", "42s", "2m05s", "1h02m"]


def test_ticks_move_the_builtin_bar_mid_epoch_with_elapsed_and_eta(monkeypatch):
    terminal = on_terminal(monkeypatch)
    monkeypatch.setattr(progress, "_tqdm", None)
    monkeypatch.setattr(training, "PROGRESS_INTERVAL", 0.01)
    rng = np.random.default_rng(0)
    # An epoch of 3750 batches: about 0.1 s here, ten ticks and more.
    X = rng.random((60000, 128), dtype=np.float32)
    net = bp.Network([bp.Dense(128, 256), bp.ReLU(), bp.Dense(256, 10)], loss="cross_entropy")
    net.fit(X, rng.integers(0, 10, 60000), epochs=1, batch_size=16, progress=True)
    redraws = terminal.getvalue().split("\r")
    partial = [s for s in redraws if "/3750 loss" in s and "3750/3750" not in s]
    assert partial, "expected at least one mid-epoch redraw"
    assert re.search(r"\d+(ms|\.\ds|s)<\d+", partial[-1]), partial[-1]  # elapsed<ETA
    assert all(len(line) < 80 for line in re.split(r"[\r\n]", terminal.getvalue()))


def test_tqdm_bar_keeps_validation_values_whole(monkeypatch):
    terminal = on_terminal(monkeypatch)
    require("tqdm")
    fit(None, progress=True)
    shown = screen_lines(terminal.getvalue())
    finished = [line for line in shown if "val_accuracy" in line]
    assert finished and re.search(r"val_accuracy \d", finished[0])
    assert all(len(line) < 80 for line in shown)


def test_bar_is_closed_when_training_fails(monkeypatch):
    terminal = on_terminal(monkeypatch)
    monkeypatch.setattr(progress, "_tqdm", None)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 3))
    net = bp.Network([bp.Dense(3, 1)], optimizer=bp.SGD(lr=1e30), dtype="float32")
    net.set_parameters({"0.weight": np.full((1, 3), 1e10), "0.bias": np.zeros(1)})
    with pytest.raises(bp.TrainingDivergedError), pytest.warns(RuntimeWarning):
        net.fit(X, rng.normal(size=32) * 1e10, epochs=3, progress=True)
    assert terminal.getvalue().endswith("\n")

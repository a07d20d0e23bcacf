"""History.plot draws loss, metrics and gradient norms and saves a PNG."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from optional import require

import bpcore as bp


def trained_history():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    net = bp.Network([bp.Dense(4, 8), bp.ReLU(), bp.Dense(8, 2)], loss="cross_entropy")
    return net.fit(X, y, epochs=4, validation_split=0.2, progress=False)


def test_plot_writes_a_png_with_three_panels(tmp_path):
    require("matplotlib")
    history = trained_history()
    path = tmp_path / "history.png"
    fig = history.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "metrics", "mean gradient norm per epoch"]
    assert fig.axes[2].get_yscale() == "log"
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["loss", "val_loss"]
    assert len(fig.axes[2].get_lines()) == 4  # one per parameter tensor
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), history["loss"])


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"bpcore\[plot\]"):
        trained_history().plot()


def test_empty_history_cannot_be_plotted():
    with pytest.raises(ValueError, match="empty"):
        bp.History().plot()


def test_train_and_validation_have_distinct_colours_and_the_restored_epoch_is_marked():
    require("matplotlib")
    from matplotlib.colors import to_hex

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] > 0).astype(int)
    y[-16:] = 1 - y[-16:]  # validation labels flipped: val_loss rises as training improves
    net = bp.Network(
        [bp.Dense(4, 8), bp.ReLU(), bp.Dense(8, 2)], loss="cross_entropy", optimizer=bp.Adam(0.05)
    )
    stop = bp.EarlyStopping(patience=3, restore_best_weights=True)
    history = net.fit(X, y, epochs=30, validation_split=0.2, callbacks=[stop], progress=False)
    assert history.restored_epoch == stop.best_epoch + 1
    assert len(history.epoch) > history.restored_epoch  # it stopped later, and restored
    fig = history.plot()
    for ax in fig.axes[:2]:
        lines = {line.get_label(): line for line in ax.get_lines()}
        train = next(k for k in lines if not k.startswith(("val_", "restored")))
        assert to_hex(lines[train].get_color()) != to_hex(lines[f"val_{train}"].get_color())
        marker = lines[f"restored: epoch {history.restored_epoch}"]
        assert list(marker.get_xdata()) == [history.restored_epoch] * 2


def test_a_loss_spanning_decades_is_drawn_on_a_log_scale():
    require("matplotlib")
    history = bp.History()
    for epoch, loss in enumerate([10.0, 1.0, 0.1, 0.01], start=1):
        history.record(epoch, loss=loss)
    assert history.plot().axes[0].get_yscale() == "log"
    flat = bp.History()
    for epoch, loss in enumerate([1.0, 0.8, 0.7], start=1):
        flat.record(epoch, loss=loss)
    assert flat.plot().axes[0].get_yscale() == "linear"

"""The examples run as a user would run them, and do what they say."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_digits_training_example_learns_and_saves_its_plot(tmp_path, monkeypatch, capsys):
    plot = tmp_path / "history.png"
    monkeypatch.setattr(sys, "argv", ["digits_training.py", str(plot)])
    module = runpy.run_path(str(EXAMPLES / "digits_training.py"), run_name="example")
    accuracy = module["main"](str(plot))
    assert accuracy >= 0.95
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "test accuracy" in out and "history plot saved" in out


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_has_a_docstring_with_its_command(name):
    text = (EXAMPLES / name).read_text()
    assert text.startswith('"""') and "python examples/" in text


def test_backprop_tutorial_agrees_three_ways_and_shows_vanishing_gradients(tmp_path, capsys):
    module = runpy.run_path(str(EXAMPLES / "backprop_tutorial.py"), run_name="example")
    plot = tmp_path / "norms.png"
    module["main"](str(plot))
    out = capsys.readouterr().out
    assert "∂L/∂w by the Rust kernels" in out
    assert "product and gradient are equal" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    ratios = [line for line in out.splitlines() if "first/last layer ratio" in line]
    sigmoid_ratio = float(ratios[0].split("sigmoid ")[1].split(",")[0])
    assert sigmoid_ratio < 1e-3  # the deep sigmoid network's first layer barely learns


def test_regression_example_matches_the_linear_baseline():
    module = runpy.run_path(str(EXAMPLES / "regression_diabetes.py"), run_name="example")
    r2, baseline = module["main"]()
    assert r2 > 0.3 and r2 >= baseline - 0.05

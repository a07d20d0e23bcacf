"""The examples run as a user would run them, and do what they say."""

import importlib.util
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from mpi_helpers import mpiexec_or_skip
from optional import require

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


def test_digits_cnn_example_reaches_its_accuracy(capsys):
    module = runpy.run_path(str(EXAMPLES / "digits_cnn.py"), run_name="example")
    accuracy = module["main"]()
    line = capsys.readouterr().out.strip().splitlines()[-1]
    printed = float(re.search(r"test accuracy ([0-9.]+)%", line).group(1)) / 100
    assert accuracy >= 0.985 and abs(printed - accuracy) < 1e-4


def test_tabular_embeddings_example_nears_the_best_possible_fit(capsys):
    module = runpy.run_path(str(EXAMPLES / "tabular_embeddings.py"), run_name="example")
    embedded, raw, best = module["main"]()
    assert best - 0.02 <= embedded <= best + 0.01  # the noise's share of the variance is known
    assert embedded > raw + 0.3  # the categories read as numbers fit far worse
    assert "test R²: embeddings" in capsys.readouterr().out


def test_regression_example_matches_the_linear_baseline():
    module = runpy.run_path(str(EXAMPLES / "regression_diabetes.py"), run_name="example")
    r2, baseline = module["main"]()
    assert r2 > 0.3 and r2 >= baseline - 0.05


def test_save_load_resume_example_resumes_bit_for_bit(tmp_path, capsys):
    path = tmp_path / "digits.safetensors"
    module = runpy.run_path(str(EXAMPLES / "save_load_resume.py"), run_name="example")
    identical, same_predictions, accuracy = module["main"](str(path))
    assert identical is True and same_predictions is True
    assert accuracy >= 0.9
    assert path.read_bytes()[8:9] == b"{"  # safetensors: header length, then its JSON
    assert not (tmp_path / "digits-weights-only.safetensors").exists()
    out = capsys.readouterr().out
    assert "optimizer.exp_avg" in out and "0.weight" in out and "3.bias" in out


def test_sklearn_grid_search_example_tunes_a_pipeline(capsys):
    module = runpy.run_path(str(EXAMPLES / "sklearn_grid_search.py"), run_name="example")
    best, cv_score, test_accuracy = module["main"](2)
    assert set(best) == {"mlp__hidden_layer_sizes", "mlp__dropout", "mlp__learning_rate_init"}
    assert cv_score >= 0.9 and test_accuracy >= 0.9
    out = capsys.readouterr().out
    assert "best parameters" in out
    assert "1 in each worker" in out  # the joblib workers do not oversubscribe the cores


def test_torch_exchange_example_agrees_with_torch_or_skips_cleanly(capsys):
    module = runpy.run_path(str(EXAMPLES / "torch_exchange.py"), run_name="example")
    result = module["main"]()
    out = capsys.readouterr().out
    if importlib.util.find_spec("torch") is None:
        assert result is None
        assert 'pip install "bpcore[torch]"' in out
        # As a script, it exits with status 0.
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "torch_exchange.py")], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "bpcore[torch]" in done.stdout
    else:
        assert result is not None
        assert max(result["forward"], result["step"], result["read_back"]) <= 1e-10
        assert result["accuracy"] >= 0.9
        assert "agree to 1e-10 both ways" in out


def test_deploy_onnx_example_serves_both_models_as_bpcore_predicts(tmp_path, capsys):
    for module in ("onnx", "onnxruntime", "skl2onnx"):
        require(module)
    module = runpy.run_path(str(EXAMPLES / "deploy_onnx.py"), run_name="example")
    result = module["main"](str(tmp_path))
    assert result["network_bpcore"] >= 0.95 and result["pipeline_bpcore"] >= 0.9
    assert result["network_onnx"] == result["network_bpcore"]
    assert result["network_probability_difference"] <= 1e-6
    assert result["network_logit_difference"] <= 1e-5
    assert result["pipeline_agreement"] >= 0.99
    assert result["pipeline_probability_difference"] <= 1e-5
    assert (tmp_path / "digits.onnx").stat().st_size > 0
    assert (tmp_path / "digits_pipeline.onnx").stat().st_size > 0
    out = capsys.readouterr().out
    assert "ONNX Runtime" in out and "pipeline:" in out


def test_distributed_digits_example_trains_on_two_ranks_and_resumes(tmp_path):
    mpiexec = mpiexec_or_skip()

    script = str(EXAMPLES / "distributed_digits.py")

    def run(path, *args):
        done = subprocess.run(
            [mpiexec, "-n", "2", sys.executable, script, str(path), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    out = run(tmp_path / "full.safetensors")
    assert "2 ranks" in out and "global batch 64 (32 per rank)" in out
    assert out.count("test accuracy") == 1  # rank 0 alone prints
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", out).group(1)) / 100
    assert accuracy > 0.9
    assert (tmp_path / "full.safetensors").read_bytes()[8:9] == b"{"

    # Stopped after 3 epochs and started again, it picks up at epoch 4 from its checkpoint.
    path = tmp_path / "resumed.safetensors"
    assert "starting afresh: 3 epochs" in run(path, "--epochs", "3")
    out = run(path, "--epochs", "6")
    assert f"resuming from {path} after epoch 3: 3 epochs left" in out
    assert "epochs 4-6" in out

"""scikit-learn's own MLP test file, run against bpcore's estimators.

The installed `sklearn/neural_network/tests/test_mlp.py` is copied into a temporary folder with
one line changed, its import of `MLPClassifier` and `MLPRegressor`, and run by pytest in a
subprocess (with scikit-learn's conftest for its fixtures). Every one of its tests must pass,
except the few named below that assign or call scikit-learn's private internals; each of those
must fail, so that the list says what is true and shrinks when one starts to pass.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sklearn

SKLEARN_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor\n"
BPCORE_IMPORT = "from bpcore.sklearn import MLPClassifier, MLPRegressor\n"

#: Tests of scikit-learn's file that reach into scikit-learn's private implementation, by test
#: function (every parametrization of it), with the reason each cannot pass against bpcore.
PRIVATE_INTERNALS: dict[str, str] = {
    "test_fit": (
        "assigns scikit-learn's private training state by hand (`_coef_grads`, "
        "`_intercept_grads`, `_coef_velocity`, `_intercept_velocity`, `learning_rate_`, "
        "`_no_improvement_count`) and the lists `coefs_` and `intercepts_` themselves, which "
        "bpcore reads from its network (a property without a setter)"
    ),
    "test_gradient": (
        "calls the private `_loss_grad_lbfgs(packed, X, Y, None, activations, deltas, "
        "coef_grads, intercept_grads)` with scikit-learn's per-layer work lists; bpcore's "
        "gradients come from its Rust core, checked against finite differences in its own tests"
    ),
}


def sklearn_test_file() -> Path:
    """The installed scikit-learn's MLP test file."""
    return Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"


def swapped_source() -> str:
    """The test file's text with only its import of the estimators pointing at bpcore."""
    text = sklearn_test_file().read_text()
    assert text.count(SKLEARN_IMPORT) == 1, "scikit-learn's test file imports the MLPs elsewhere"
    return text.replace(SKLEARN_IMPORT, BPCORE_IMPORT)


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """Test id -> (outcome, message) from pytest's JUnit XML report."""
    result = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = "failed" if tag != "skipped" else "skipped"
                message = element.get("message", "") or (element.text or "")
                break
        result[name] = (outcome, message.strip().splitlines()[0] if message.strip() else "")
    return result


@pytest.fixture(scope="module")
def sklearn_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Runs the swapped test file once; the outcome of each of its tests."""
    folder = tmp_path_factory.mktemp("sklearn_mlp")
    (folder / "test_mlp.py").write_text(swapped_source())
    report = folder / "report.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(folder / "test_mlp.py"),
            "-p",
            "sklearn.conftest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(folder),
            "-q",
            f"--junitxml={report}",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert report.exists(), done.stdout + done.stderr
    return outcomes(report)


def base_name(test_id: str) -> str:
    """`test_x[param]` -> `test_x`."""
    return test_id.split("[", 1)[0]


def test_the_import_is_the_only_change() -> None:
    original = sklearn_test_file().read_text().splitlines()
    swapped = swapped_source().splitlines()
    changed = [(a, b) for a, b in zip(original, swapped) if a != b]
    assert len(original) == len(swapped)
    assert changed == [(SKLEARN_IMPORT.strip(), BPCORE_IMPORT.strip())]


def test_sklearn_mlp_tests_pass_except_private_internals(
    sklearn_run: dict[str, tuple[str, str]],
) -> None:
    assert len(sklearn_run) >= 50, sorted(sklearn_run)
    passed = sum(outcome == "passed" for outcome, _ in sklearn_run.values())
    print(
        f"scikit-learn {sklearn.__version__} test_mlp.py against bpcore.sklearn: {passed} of "
        f"{len(sklearn_run)} passed; private internals: {', '.join(PRIVATE_INTERNALS)}"
    )
    unexpected = {
        test_id: message
        for test_id, (outcome, message) in sklearn_run.items()
        if outcome != "passed" and base_name(test_id) not in PRIVATE_INTERNALS
    }
    assert unexpected == {}, "\n".join(f"{k}: {v}" for k, v in sorted(unexpected.items()))
    for name in PRIVATE_INTERNALS:
        ran = {k: v for k, v in sklearn_run.items() if base_name(k) == name}
        assert ran, f"{name} is not in scikit-learn's test file any more"
        passing = [k for k, (outcome, _) in ran.items() if outcome == "passed"]
        assert passing == [], f"{passing} pass now: take {name} off the list"

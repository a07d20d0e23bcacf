"""Optional dependencies of the tests (torch, onnx, onnxruntime, skl2onnx, safetensors, ...).

A test that needs one imports it with `require(name)`: outside CI a missing package skips the
test, saying how to install it; with BPCORE_REQUIRE_OPTIONAL=1 (as `.ci/run` sets it) the same
absence fails the test, so that CI cannot pass by skipping what it should check.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

#: The variable that turns a missing optional dependency from a skip into a failure.
REQUIRE_VARIABLE = "BPCORE_REQUIRE_OPTIONAL"


def required() -> bool:
    """Whether missing optional dependencies fail instead of skipping (CI)."""
    return os.environ.get(REQUIRE_VARIABLE) == "1"


def require(module: str, install: str | None = None) -> ModuleType:
    """The imported `module`; if it cannot be imported, a skip (or, where required, a failure)
    that says what to install (`install`, default the module's top-level name)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = install or module.split(".")[0]
        message = f"{module} cannot be imported ({e}); install it with pip install {what}"
        if required():
            pytest.fail(f"{message} ({REQUIRE_VARIABLE}=1: optional dependencies are required)")
        pytest.skip(message, allow_module_level=True)

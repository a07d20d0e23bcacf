"""Warnings attributed to the user's line: the first frame of the stack outside the bpcore
package, found by walking the stack rather than by counting frames, so that a warning raised
deep inside `fit` (or inside a scikit-learn estimator's `fit`) points at the call the user
wrote."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _outside_package_level() -> int:
    """The `stacklevel` of `warnings.warn`, called from `warn`, that names the first frame
    outside the package."""
    level = 1
    frame = sys._getframe(1)  # the frame of `warn`, whose warnings.warn call is level 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn(message: str | Warning, category: type[Warning]) -> None:
    """`warnings.warn(message, category)` at the user's line. `message` may be a Warning
    instance (carrying attributes such as a cause), whose own class is then the category."""
    warnings.warn(message, category, stacklevel=_outside_package_level())

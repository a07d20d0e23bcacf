"""Renders `bp.explain`'s HTML in headless Chromium and saves a screenshot to look at.

    apt-get install chromium   # Debian's package; or set CHROMIUM=/path/to/chrome
    python examples/explain_html_check.py [out_dir]

The page is the backward pass of one test digit through the demo's network (64-128-64-10,
ReLU, trained 5 epochs), exactly what Jupyter shows for `bp.explain(net, x, y)`. The script
checks what a browser made of it — Chromium's DOM after parsing has one table per layer plus
the summary and the checks' verdict, the screenshot is not blank — and prints the path of the
screenshot, out_dir/explain_html_chromium.png (default out_dir: docs/; the page itself is
written to a temporary folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import bpcore as bp
from bpcore.demo import digits_network, load_digits_split


def chromium() -> str:
    """The Chromium executable: $CHROMIUM, else chromium or chromium-browser on the PATH."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return str(shutil.which(name))
    raise SystemExit("Chromium not found: apt-get install chromium (or set CHROMIUM)")


def headless(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs headless Chromium with a throwaway profile (no sandbox: it may run as root)."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ]
        return subprocess.run(command, capture_output=True, text=True, check=True)


def main(out_dir: str = "docs") -> Path:
    """Renders the page, checks it, saves the screenshot; returns the screenshot's path."""
    X_train, X_test, y_train, y_test = load_digits_split(0)
    net = digits_network(0, dtype="float64")
    net.fit(X_train, y_train, epochs=5, batch_size=32, progress=False)
    backward = bp.explain(net, X_test[0], y_test[0])
    assert backward.matches
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        return check_and_screenshot(backward, len(net.layers), Path(folder), out)


def check_and_screenshot(backward: bp.BackwardPass, layers: int, folder: Path, out: Path) -> Path:
    """Writes the page into `folder`, checks Chromium's DOM, saves the screenshot into `out`."""
    page = folder / "explain_backward_pass.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>bp.explain</title></head>"
        f"<body>{backward._repr_html_()}</body></html>",
        encoding="utf-8",
    )
    url = page.resolve().as_uri()

    dom = headless("--dump-dom", url).stdout
    tables = dom.count("<table")
    expected = 1 + layers  # the summary, then one per layer
    assert tables == expected, f"Chromium's DOM has {tables} tables, expected {expected}"
    assert "bpcore-backward-pass" in dom and "checked: every gradient" in dom

    shot = out / "explain_html_chromium.png"
    headless(f"--screenshot={shot.resolve()}", "--window-size=1150,1560", url)
    from matplotlib import image

    pixels = image.imread(shot)
    colors = len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))
    assert pixels.shape[0] >= 1000 and colors > 50, "the screenshot looks blank"
    print(f"Chromium's DOM: {tables} tables as expected, and the checks' verdict")
    print(f"screenshot: {shot} ({pixels.shape[1]} by {pixels.shape[0]}, {colors} colours)")
    return shot


if __name__ == "__main__":
    main(*sys.argv[1:2])

"""bp.explain seen, not only read: the HTML of Jupyter, the picture of .plot(), and the HTML as
headless Chromium renders it (examples/explain_html_check.py)."""

from __future__ import annotations

import re
import runpy
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from optional import require, required

import bpcore as bp

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Tags(HTMLParser):
    """Counts start and end tags, and collects the text."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: dict[str, int] = {}
        self.closed: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.opened[tag] = self.opened.get(tag, 0) + 1

    def handle_endtag(self, tag):
        self.closed[tag] = self.closed.get(tag, 0) + 1

    def handle_data(self, data):
        self.text.append(data)


def parsed(html):
    tags = Tags()
    tags.feed(html)
    tags.close()
    return tags


def network():
    net = bp.Network(
        [bp.Dense(4, 6), bp.ReLU(), bp.Dropout(0.5), bp.Dense(6, 5), bp.Sigmoid(), bp.Dense(5, 3)],
        loss="cross_entropy",
        dtype="float64",
        seed=2,
    )
    return net


X = np.array([0.3, -1.2, 0.7, 2.0])


def test_html_has_the_summary_and_a_table_per_layer_well_formed():
    net = network()
    p = bp.explain(net, X, 1)
    html = p._repr_html_()
    tags = parsed(html)
    assert tags.opened["table"] == 1 + len(net.layers) == tags.closed["table"]
    for tag in ("div", "tr", "td", "th", "caption"):
        assert tags.opened.get(tag, 0) == tags.closed.get(tag, 0), tag
    text = "".join(tags.text)
    for s in p.layers:
        assert f"layer {s.index}" in text
    assert "δ_3 = ∂L/∂z_3 = (W_5ᵀ δ_5) ⊙ Sigmoid'(z_3)" in text
    assert "checked: every gradient against net.gradients" in text
    # Bars: one per norm in the summary, their widths ordered as the norms (log scale).
    widths = [float(w) for w in re.findall(r"width: (\d+)px; background: #d9534f", html)]
    norms = [s.delta_norm for s in reversed(p.layers)]
    assert len(widths) == len(norms)
    assert np.argsort(widths, kind="stable").tolist() == np.argsort(norms, kind="stable").tolist()
    # Long vectors as strips: one bar per unit of each δ.
    assert html.count("title='[") >= sum(len(s.grad_output) for s in p.layers)


def test_html_escapes_what_it_shows():
    p = bp.explain(network(), X, 1)
    html = p._repr_html_()
    assert "<script" not in html
    assert "(W_5ᵀ δ_5)" in html and "x̂ &lt;" not in html


def test_the_weight_explanation_renders_its_sum_term_by_term():
    e = bp.explain(network(), X, 1, 3, (2, 1))
    tags = parsed(e._repr_html_())
    assert e.chain is not None
    assert tags.opened["tr"] >= len(e.chain.terms) + 6
    text = "".join(tags.text)
    assert f"k = {e.chain.terms[0].k}" in text and "net.gradients" in text
    assert "bpcore.reference" in text and "equal" in text


def test_plot_draws_the_norms_per_layer_and_every_units_delta(tmp_path):
    require("matplotlib", "bpcore[plot]")
    p = bp.explain(network(), X, 1)
    path = tmp_path / "pass.png"
    fig = p.plot(path, title="one sample")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    norms, units = fig.axes[:2]
    assert norms.get_title() == "one sample" and norms.get_xscale() == "log"
    assert [t.get_text() for t in norms.get_yticklabels()] == ["5 Dense", "3 Dense", "0 Dense"]
    assert len(norms.patches) == 3 * 3  # ‖δ‖, ‖∂L/∂W‖, ‖∂L/∂b‖ per Dense layer
    heights = sorted(patch.get_width() for patch in norms.patches[:3])
    assert heights == pytest.approx(sorted(s.delta_norm for s in p.layers if s.kind == "dense"))
    image = units.get_images()[0].get_array()
    assert image.shape == (3, 6)
    np.testing.assert_allclose(image[0, :3], np.abs(p.layers[5].grad_output))


def test_chromium_renders_the_html_and_the_screenshot_is_not_blank(tmp_path, capsys):
    require("matplotlib", "bpcore[plot]")
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        message = "Chromium not found: apt-get install chromium"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    module = runpy.run_path(str(EXAMPLES / "explain_html_check.py"), run_name="example")
    module["main"](str(tmp_path))
    out = capsys.readouterr().out
    assert "tables as expected" in out
    assert (tmp_path / "explain_html_chromium.png").read_bytes()[:4] == b"\x89PNG"

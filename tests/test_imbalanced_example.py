"""The imbalanced-classification example runs as a user would run it and does what it says:
class weights raise the rare class's recall on the test set."""

import runpy
from pathlib import Path

from optional import require

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "imbalanced_classification.py"


def test_class_weights_raise_the_rare_class_recall(tmp_path, capsys) -> None:
    require("sklearn")
    require("matplotlib")
    module = runpy.run_path(str(EXAMPLE), run_name="example")
    plot = tmp_path / "history.png"
    recalls = module["main"](str(plot))
    assert recalls["balanced"] > recalls["None"], recalls
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "22 malignant" in out and "class_weight='balanced'" in out

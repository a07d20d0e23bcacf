"""`bp.explain`: backpropagation of one sample, made visible.

`bp.explain(net, x, y)` gives the whole backward pass (`BackwardPass`), layer by layer from the
loss down to the input; `bp.explain(net, x, y, layer, index)` the chain rule for one weight
(`Explanation`). Both print as text, render as HTML in Jupyter, and check every gradient
against the Rust kernels and `bpcore.reference`.

- ``backward.py``: the pass itself, in NumPy float64;
- ``checks.py``: its comparison with `net.gradients` and `bpcore.reference`;
- ``summary.py``: per layer the norms, largest entries, sums and notes a reader needs;
- ``report.py`` and ``weight.py``: the two results and their text; ``html.py``, ``plot.py``:
  their pictures; ``compute.py``: the arguments and the assembly.
"""

from bpcore.explain.compute import explain
from bpcore.explain.report import BackwardPass
from bpcore.explain.weight import Explanation

__all__ = ["BackwardPass", "Explanation", "explain"]

"""How an explanation writes its numbers: the same in its text and in its HTML."""

from __future__ import annotations

import numpy as np

from bpcore.explain.summary import Entry, Sum


def norm(values: np.ndarray) -> float:
    """The Euclidean norm, as a float."""
    return float(np.linalg.norm(values))


def fmt(value: float) -> str:
    """A number in the pass's tables: 4 significant digits, exponent when needed."""
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3e}"


def entries(items: list[Entry], symbol: str) -> str:
    """'o[3] = -0.01221, o[8] = 0.008112'."""
    return ", ".join(f"{symbol}[{e.index}] = {fmt(e.value)}" for e in items)


def sum_line(s: Sum, symbol: str, delta: str) -> str:
    """'[17] = 0.0123 = Σ_k δ_k·w_k,17: (k=3) -0.01221 · -0.8 + ... + 8 more (0.0003)'."""
    terms = " + ".join(f"({fmt(t.delta)})·({fmt(t.weight)})" for t in s.terms)
    more = f" + {s.rest_count} more terms ({fmt(s.rest)})" if s.rest_count else ""
    ks = ", ".join(str(t.k) for t in s.terms)
    return (
        f"∂L/∂{symbol}[{s.index}] = {fmt(s.value)} = Σ_k {delta}[k]·W[k,{s.index}] "
        f"= {terms}{more}   (largest terms: k = {ks})"
    )

"""The shape shared by layers, losses and optimizers: a named description whose hyperparameters
become the JSON spec the Rust core builds from (and that saved files store)."""

from __future__ import annotations

from typing import Any


class Described:
    """A description: `type_name` plus the hyperparameters `_hyper()` returns."""

    type_name: str = ""

    def _hyper(self) -> dict[str, Any]:
        return {}

    def to_spec(self) -> dict[str, Any]:
        """The description as the core reads it: {"type": ..., hyperparameters...}."""
        return {"type": self.type_name, **self._hyper()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_spec() == other.to_spec()  # type: ignore[attr-defined,unused-ignore]

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(sorted(self._hyper().items()))))

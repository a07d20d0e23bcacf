"""The gradients' health during `fit`: each epoch's mean gradient norm and update ratio of every
parameter tensor, as the native loop measures them, and the warning when a weight tensor's
gradients vanish or explode. `fit` adds a `GradientMonitor` to its callbacks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bpcore._user_warnings import warn
from bpcore.callbacks import Callback, Logs

#: An epoch's mean gradient norm of a weight tensor below this is reported as vanishing.
VANISHING_NORM = 1e-7
#: An epoch's mean gradient norm of a weight tensor above this is reported as exploding.
EXPLODING_NORM = 1e3


class GradientWarning(RuntimeWarning):
    """Gradients of a weight tensor vanish (mean norm < 1e-7) or explode (> 1e3) in an epoch."""


@dataclass
class TensorStats:
    """The last epoch's per-tensor statistics, by parameter name (`fit` fills them in before
    the callbacks' ``on_epoch_end``)."""

    names: Sequence[str]
    grad_norms: Sequence[float] = field(default_factory=list)
    update_ratios: Sequence[float] = field(default_factory=list)


class GradientMonitor(Callback):
    """Warns (`GradientWarning`, at the user's line) once per fit, kind and tensor, when a weight
    tensor's mean gradient norm in an epoch vanishes or explodes."""

    rank_zero_only = True

    def __init__(self, stats: TensorStats) -> None:
        super().__init__()
        self.stats = stats
        self.warned: set[tuple[str, str]] = set()

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        """Checks the epoch's gradient norms."""
        for name, norm in zip(self.stats.names, self.stats.grad_norms):
            if not name.endswith("weight"):
                continue
            if norm < VANISHING_NORM:
                kind = "vanishing"
                message = (
                    f"epoch {epoch + 1}: gradients of {name} are vanishing (mean norm "
                    f"{norm:.3g} < {VANISHING_NORM:g}); the layers below barely learn. Try "
                    "ReLU-like activations, He/Glorot initialization, normalization or fewer "
                    "layers."
                )
            elif norm > EXPLODING_NORM:
                kind = "exploding"
                message = (
                    f"epoch {epoch + 1}: gradients of {name} are exploding (mean norm "
                    f"{norm:.3g} > {EXPLODING_NORM:g}). Try a lower learning rate, "
                    "clip_grad_norm=1.0 or normalization."
                )
            else:
                continue
            if (kind, name) not in self.warned:
                self.warned.add((kind, name))
                warn(message, GradientWarning)
        return None

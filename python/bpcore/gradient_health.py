"""The gradients' health during `fit`, judged relative to the weights and to the loss.

A gradient norm alone says little: 2e3 is large for weights of norm 1e-2 and small for weights
of norm 1e5, and any norm is fine while the loss falls. So the monitor looks at each weight
tensor's relative gradient ‖g‖/‖w‖ (the epoch's mean gradient norm over the tensor's norm after
the epoch) and at the loss's trend over the epochs, and warns, at most once per fit for each
cause, of three things that are true when it says them:

- ``"targets"``: a regression loss (mse, l1, huber) on targets of scale 1e2 or more (the
  root mean square of y) with gradients larger than the weights (‖g‖/‖w‖ > 1) in the fit's
  first epoch. The network's outputs start near 0, so the loss and its gradients are dominated
  by the targets' scale and the steps go to reaching it: standardizing y is the cure.
- ``"exploding"``: the loss rose in each of the last two epochs to at least twice the best so
  far, while the largest ‖g‖/‖w‖ grew: the steps overshoot.
- ``"vanishing"``: a weight tensor's ‖g‖/‖w‖ is below a millionth of the largest one's while
  the loss is still above a millionth of the fit's first: the layers below barely learn. A
  network whose loss has fallen that far has solved its problem, and is not warned.

Each warning is a `GradientWarning` whose ``cause`` attribute is one of those names. Silence
them with ``fit(warnings=False)`` or ``warnings.filterwarnings("ignore",
category=bp.GradientWarning)``. `fit` adds a `GradientMonitor` to its callbacks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bpcore._user_warnings import warn
from bpcore.callbacks import Callback, Logs

#: The losses whose targets may be standardized (an affine change of y changes nothing but the
#: scale of the problem); Poisson's counts and the classification losses' targets may not.
STANDARDIZABLE_LOSSES = ("mse", "l1", "huber")
#: Targets whose root mean square is at least this are "unscaled" for a regression loss.
TARGET_SCALE = 1e2
#: A relative gradient ‖g‖/‖w‖ above this is larger than the weights it updates.
LARGE_RELATIVE_GRADIENT = 1.0
#: A tensor's ‖g‖/‖w‖ below this fraction of the largest one's has vanished.
VANISHING_FRACTION = 1e-6
#: A loss at or below this fraction of the fit's first epoch's has solved the problem.
SOLVED_FRACTION = 1e-6
#: The loss "explodes" when it rose in each of this many epochs in a row...
RISING_EPOCHS = 2
#: ... to at least this multiple of the best loss so far.
RISING_FACTOR = 2.0


class GradientWarning(RuntimeWarning):
    """Training is unhealthy in a way the gradients show: unscaled regression targets, an
    exploding loss or vanishing gradients. The ``cause`` attribute says which ("targets",
    "exploding", "vanishing"); `fit(warnings=False)` silences them all."""

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


@dataclass
class TensorStats:
    """The last epoch's per-tensor statistics, by parameter name (`fit` fills them in before
    the callbacks' ``on_epoch_end``)."""

    names: Sequence[str]
    grad_norms: Sequence[float] = field(default_factory=list)
    update_ratios: Sequence[float] = field(default_factory=list)
    #: Each tensor's norm at the epoch's end.
    weight_norms: Sequence[float] = field(default_factory=list)


@dataclass(frozen=True)
class TargetScale:
    """The scale of regression targets: their root mean square, mean and standard deviation
    (over every value of y)."""

    rms: float
    mean: float
    std: float

    @classmethod
    def of(cls, targets: np.ndarray) -> TargetScale:
        """The scale of a float array of targets."""
        # NumPy's mean and std are the same two passes, with tens of microseconds of
        # bookkeeping each: this runs at the start of every regression fit.
        values = np.asarray(targets, dtype=np.float64).ravel()
        mean = float(np.add.reduce(values)) / values.size
        deviations = values - mean
        std = math.sqrt(float(np.dot(deviations, deviations)) / values.size)
        return cls(rms=math.hypot(mean, std), mean=mean, std=std)

    def decade(self) -> str:
        """The order of magnitude, as "1e2"."""
        return f"1e{math.floor(math.log10(self.rms))}"

    def advice(self) -> str:
        """What the warning tells the user to do."""
        return (
            f"targets have a scale of {self.decade()} (mean {self.mean:.4g}, std "
            f"{self.std:.4g}): standardize y, as (y - y.mean()) / y.std() or with "
            "sklearn.compose.TransformedTargetRegressor(transformer=StandardScaler()), and undo "
            "it on the predictions"
        )


def _relative(grad_norm: float, weight_norm: float) -> float:
    """‖g‖/‖w‖, infinite for a gradient on zero weights and 0 for no gradient."""
    if weight_norm > 0:
        return grad_norm / weight_norm
    return math.inf if grad_norm > 0 else 0.0


class GradientMonitor(Callback):
    """Warns (`GradientWarning`, at the user's line) at most once per fit and cause, as the
    module's docstring describes.

    Args:
        stats: the per-tensor statistics `fit` fills in each epoch.
        targets: the training targets, whose scale is judged for a regression loss (None: not
            judged).
    """

    rank_zero_only = True

    def __init__(self, stats: TensorStats, targets: np.ndarray | None = None) -> None:
        super().__init__()
        self.stats = stats
        self.targets = targets
        self.warned: set[str] = set()
        self._scale: TargetScale | None = None
        self._losses: list[float] = []
        self._largest: list[float] = []

    def on_train_begin(self, logs: Logs) -> None:
        """Forgets the previous fit's epochs and measures the targets' scale."""
        self.warned = set()
        self._losses = []
        self._largest = []
        self._scale = None
        net = self.network
        regression = net is not None and net.loss_function.type_name in STANDARDIZABLE_LOSSES
        if regression and self.targets is not None and self.targets.size:
            scale = TargetScale.of(self.targets)
            if scale.rms >= TARGET_SCALE:
                self._scale = scale

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        """Judges the epoch's gradients against the weights and the loss's trend."""
        if self.network is None:
            return None
        stats = self.stats
        relative = {
            name: _relative(float(g), float(w))
            for name, g, w in zip(stats.names, stats.grad_norms, stats.weight_norms)
            if name.endswith("weight")
        }
        loss = float(logs.get("loss", math.nan))
        self._losses.append(loss)
        finite = [r for r in relative.values() if math.isfinite(r)]
        self._largest.append(max(finite, default=0.0))
        for cause, message in (
            ("targets", self._targets(epoch, relative)),
            ("exploding", self._exploding(epoch, relative)),
            ("vanishing", self._vanishing(epoch, relative)),
        ):
            if message is not None and cause not in self.warned:
                self.warned.add(cause)
                warn(GradientWarning(message, cause), GradientWarning)
        return None

    def _targets(self, epoch: int, relative: dict[str, float]) -> str | None:
        if self._scale is None or len(self._losses) != 1 or not relative:
            return None
        name = max(relative, key=lambda k: relative[k])
        if relative[name] <= LARGE_RELATIVE_GRADIENT:
            return None
        return (
            f"epoch {epoch + 1}: the {self._scale.advice()}. The outputs start near 0, so the "
            f"loss ({self._losses[0]:.3g}) and its gradients are large (‖g‖/‖w‖ of {name} is "
            f"{relative[name]:.3g}) and training spends its steps on the targets' scale."
        )

    def _exploding(self, epoch: int, relative: dict[str, float]) -> str | None:
        losses, largest = self._losses, self._largest
        if len(losses) <= RISING_EPOCHS or not relative:
            return None
        recent = losses[-RISING_EPOCHS - 1 :]
        rising = all(later > earlier for earlier, later in zip(recent, recent[1:]))
        best = min(losses)
        if not (rising and losses[-1] >= RISING_FACTOR * best and largest[-1] > largest[-3]):
            return None
        name = max(relative, key=lambda k: relative[k])
        lr = self.network.lr if self.network is not None else math.nan
        cause = (
            f"the {self._scale.advice()}"
            if self._scale is not None
            else f"lower the learning rate (now {lr:.3g}) or set clip_grad_norm=1.0"
        )
        return (
            f"epoch {epoch + 1}: gradients of {name} are exploding: the loss rose in each of the "
            f"last {RISING_EPOCHS} epochs to {losses[-1]:.3g} (best {best:.3g}) while ‖g‖/‖w‖ "
            f"grew to {largest[-1]:.3g}; the steps overshoot: {cause}."
        )

    def _vanishing(self, epoch: int, relative: dict[str, float]) -> str | None:
        finite = [r for r in relative.values() if math.isfinite(r)]
        if len(finite) < 2 or not self._losses:
            return None
        first, loss = self._losses[0], self._losses[-1]
        if not loss > SOLVED_FRACTION * first:  # solved (or not finite): nothing to say
            return None
        largest = max(finite)
        faded = [k for k, r in relative.items() if r < VANISHING_FRACTION * largest]
        if not faded:
            return None
        worst = min(faded, key=lambda k: relative[k])
        top = max(relative, key=lambda k: relative[k] if math.isfinite(relative[k]) else -1.0)
        others = [k for k in faded if k != worst]
        also = f" (also {', '.join(others)})" if others else ""
        return (
            f"epoch {epoch + 1}: gradients of {worst} are vanishing{also}: its ‖g‖/‖w‖ is "
            f"{relative[worst]:.3g}, {relative[worst] / largest:.2g} of {top}'s, while the loss "
            f"({loss:.3g}) is still {loss / first:.2g} of the first epoch's; the layers below "
            "barely learn. Try ReLU-like activations, He/Glorot initialization, normalization "
            "or fewer layers."
        )

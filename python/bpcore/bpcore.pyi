"""Type stubs of `bpcore.bpcore`, the native (Rust, PyO3) module.

Conversion, dtype dispatch, error mapping and GIL release only; the numerics live in the Rust
crate `bpcore-core`. Users want `bpcore.Network`, which wraps `NativeNetwork`.

Arrays passed in must already have the network's dtype (float32 or float64) and be
C-contiguous: `bpcore.Network` converts and checks them first. Labels for "cross_entropy" are
int64; targets of the other losses have the network's dtype. Errors: ValueError for shapes and
values, TypeError for types, `TrainingDivergedError` for a non-finite loss or gradient.
"""

from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, TypedDict, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "NativeNetwork",
    "NetworkBusyError",
    "TrainingDivergedError",
    "__version__",
    "describe_tensors",
    "epoch_steps",
    "get_num_threads",
    "loss_takes_labels",
    "matmul",
    "optimizer_defaults",
    "set_num_threads",
]

__version__: Final[str]

_Float = np.float32 | np.float64
_FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]

class NetworkBusyError(RuntimeError):
    """The network is in use by another thread: a training call while any other call runs on
    it, or any call while it trains. Nothing was changed; retry once the other call is done."""

class TrainingDivergedError(ArithmeticError):
    """Training produced a non-finite loss or gradient; the step was not applied."""

    #: The epoch it happened in (1-based, as History counts), when fit ran it.
    epoch: int | None
    #: The batch of that epoch (0-based), when an epoch ran it.
    batch: int | None
    #: "loss" when the loss stopped being finite, else "gradient".
    reason: str | None
    #: The step's loss.
    loss: float | None
    #: The global L2 norm of the step's gradients.
    norm: float | None

class _MetricSums(TypedDict):
    rows: int
    correct: float
    exact: float
    abs_err: float
    sq_err: list[float]
    y_sum: list[float]
    y_sq_sum: list[float]

class _EpochResult(TypedDict):
    loss: float
    batches: int
    stopped: bool
    grad_norms: list[float]
    update_ratios: list[float]
    weight_norms: list[float]
    metric_sums: _MetricSums
    penalty: float

def set_num_threads(n: int) -> None:
    """Uses `n` threads for bpcore's parallel work from now on."""

def get_num_threads() -> int:
    """The number of threads bpcore's parallel work runs on."""

class _Tensors(TypedDict):
    params: list[tuple[str, list[int], int]]
    buffers: list[tuple[str, list[int], int]]
    counters: list[str]
    optimizer_state: list[str]
    non_negative_state: list[str]
    output_shapes: list[list[int]]

def describe_tensors(spec_json: str) -> _Tensors:
    """The tensors a network of the JSON description `spec_json` holds, from the description alone:
    {"params": [(name, shape, offset)], "buffers": [...], "counters": [name],
    "optimizer_state": [name], "non_negative_state": [name], "output_shapes": [[size]]}, in
    the core's names and order (what a file must hold; the optimizer's sums of squares are
    never negative; each layer's output shape per sample)."""

def loss_takes_labels(loss_json: str) -> bool:
    """Whether the loss of the JSON description `loss_json` takes integer class labels rather
    than values of the output's shape."""

def epoch_steps(shard_rows: list[int], batch_size: int) -> int:
    """How many steps an epoch over shards of `shard_rows` samples takes in batches of
    `batch_size` per rank (one shard: a process alone), shuffled or not."""

def optimizer_defaults() -> dict[str, dict[str, Any]]:
    """Every optimizer's hyperparameters with their defaults, by spec name: the core's, which the
    Python optimizers and the reference take as theirs."""

def matmul(a: npt.NDArray[_Float], b: npt.NDArray[_Float]) -> _FloatArray:
    """`a @ b` for C-contiguous 2-d float32 or float64 arrays of one dtype."""

@final
class NativeNetwork:
    """The native network. `bpcore.Network` wraps it; use that."""

    def __new__(cls, spec_json: str, dtype: Literal["float32", "float64"]) -> NativeNetwork: ...
    @property
    def dtype(self) -> Literal["float32", "float64"]:
        """ "float32" or "float64"."""
    @property
    def spec_json(self) -> str:
        """The JSON description the network was built from."""
    @property
    def input_width(self) -> int:
        """Features per sample the network takes (the first layer's input width)."""
    @property
    def output_width(self) -> int:
        """Outputs per sample the network gives (the last layer's output width)."""
    def param_info(self) -> list[tuple[str, list[int], int]]:
        """(name, shape, offset) of each parameter tensor, in the flat buffers' order."""
    def params(self) -> _FloatArray:
        """A copy of all parameters, flat."""
    def set_params(self, p: npt.NDArray[_Float]) -> None:
        """Replaces all parameters from a flat array of the network's dtype."""
    def forward(self, x: npt.NDArray[_Float]) -> _FloatArray:
        """Inference outputs (n, output width)."""
    def forward_as_is(self, x: npt.NDArray[Any]) -> _FloatArray | None:
        """`forward` of an `x` already in the form the core reads, else `None` (then nothing
        ran): one-sample calls skip the checks and conversion that such an input does not need."""
    def metric_sums(self, x: npt.NDArray[_Float], y: npt.NDArray[Any]) -> _MetricSums:
        """The metric sums of the inference outputs of `x` against `y`, as `fit_epoch`'s
        "metric_sums" are of its steps' outputs (the one definition of the summed metrics)."""
    def loss(self, x: npt.NDArray[_Float], y: npt.NDArray[Any]) -> float:
        """Mean loss in inference mode."""
    def gradients(
        self,
        x: npt.NDArray[_Float],
        y: npt.NDArray[Any],
        sample_weight: npt.NDArray[_Float] | None = None,
    ) -> tuple[float, _FloatArray]:
        """(loss, flat gradients) in training mode, without an update; with `sample_weight` (1-d,
        the network's dtype) the loss is Σ w_i·l_i / n."""
    def train_step(
        self,
        x: npt.NDArray[_Float],
        y: npt.NDArray[Any],
        sample_weight: npt.NDArray[_Float] | None = None,
    ) -> float:
        """One training step (on the sample-weighted loss with `sample_weight`); returns the loss
        before it."""
    def apply_gradients(self, g: npt.NDArray[_Float]) -> None:
        """One optimizer step with the given flat gradients."""
    def fit_epoch(
        self,
        x: npt.NDArray[_Float],
        y: npt.NDArray[Any],
        batch_size: int,
        shuffle: bool,
        progress: Callable[[int, int, float], object] | None = None,
        progress_interval: float = 0.2,
        sample_weight: npt.NDArray[_Float] | None = None,
        epoch: int | None = None,
        ranks: tuple[int, list[int]] | None = None,
        reduce: Callable[[int, memoryview, BaseException | None], object] | None = None,
        step_lrs: Sequence[float] | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        gradient_accumulation_steps: int = 1,
        weighted_mean: bool = False,
        decay_per_divisor: bool = False,
    ) -> _EpochResult:
        """One epoch of mini-batch training; returns a dict with the mean "loss", "batches" done,
        whether it "stopped" early, per-tensor "grad_norms", "update_ratios" and
        "weight_norms" (at the epoch's end), and this process's training "metric_sums".
        `progress(batches, samples, mean_loss)` is called from this thread every
        `progress_interval` seconds while the epoch runs.
        `sample_weight` (1-d, the network's dtype, one per sample) trains on the weighted
        loss. `epoch` numbers the epoch in a divergence error.

        Data-parallel, `ranks` is (this rank, every rank's shard size) and
        `reduce(step, buffer, failure)` sums `buffer` in place over the ranks (a writable
        memoryview of the network's dtype, valid during the call only, laid out
        `[gradients | loss | divisor | failures]`: the last element counts failed ranks);
        `failure` is this rank's exception when it could not compute its share. An exception
        `reduce` raises ends the epoch with that exception.

        `gradient_accumulation_steps` batches make one optimizer step (their mean gradient over
        all their samples); `step_lrs` gives the learning rate of each optimizer step (a
        per-step schedule's; the optimizer's is left at the last one); `clip_grad_norm` clips the
        gradients' global norm at every step of this epoch (None: the network's setting) and
        `clip_grad_value` every gradient element to ±it after that.

        `weighted_mean`: each step's loss is Σ w_i·l_i / Σ w_i (Keras's reduction
        "mean_with_sample_weight") instead of Σ w_i·l_i / n; `decay_per_divisor`: each step's
        weight decay is the optimizer's over the step's divisor (scikit-learn's alpha), and
        "penalty" its L2 term before each step, averaged over the samples as "loss" is."""
    @property
    def reduce_len(self) -> int:
        """Length of a data-parallel step's buffer: the parameters, the loss, the divisor and
        the failures."""
    def epoch_order(
        self, shard_rows: list[int], batch_size: int, shuffle: bool, epochs: int = 1
    ) -> list[list[npt.NDArray[np.int64]]]:
        """The samples every step of the next `epochs` epochs takes over a group whose shards
        hold `shard_rows` samples, as indices into the whole data set (shards in rank order):
        one list per epoch of one array per step. The generator is not advanced."""
    def check_epochs(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        epochs: int,
        ranks: tuple[int, list[int]] | None = None,
    ) -> None:
        """Checks, changing nothing, that `epochs` epochs of `n` samples can run with these
        settings (`ranks` as `fit_epoch` takes them): batch norm meets no share of one sample in
        any epoch's steps."""
    def check_training_data(
        self,
        x: npt.NDArray[_Float],
        y: npt.NDArray[Any],
        sample_weight: npt.NDArray[_Float] | None = None,
    ) -> None:
        """Checks training data as `fit_epoch` will (inputs finite, targets right for the loss,
        `sample_weight` one per sample, finite, >= 0), so that `fit` can refuse them before it
        changes anything."""
    @property
    def clip_grad_norm(self) -> float | None:
        """The global gradient norm every step is clipped to, or None."""
    @clip_grad_norm.setter
    def clip_grad_norm(self, max_norm: float | None) -> None: ...
    @property
    def lr(self) -> float:
        """The optimizer's current learning rate."""
    @lr.setter
    def lr(self, lr: float) -> None: ...
    @property
    def steps(self) -> int:
        """Optimizer steps taken."""
    def training_loss(self, x: npt.NDArray[_Float], y: npt.NDArray[Any]) -> float:
        """Mean loss in training mode: dropout masks drawn, batch-norm running statistics moved."""
    def buffer_info(self) -> list[tuple[str, list[int], int]]:
        """(name, shape, offset) of each running statistic in the flat first part of
        `buffers()`."""
    def tracked_names(self) -> list[str]:
        """The names "i.num_batches_tracked" of the batch-norm layers, in order."""
    def buffers(self) -> tuple[_FloatArray, npt.NDArray[np.int64]]:
        """(flat running statistics of the network's dtype, int64 num_batches_tracked counts)."""
    def set_buffers(self, running: npt.NDArray[_Float], tracked: npt.NDArray[np.int64]) -> None:
        """Replaces the running statistics (flat, network dtype) and the counts (int64)."""
    @property
    def training_forwards(self) -> int:
        """Training-mode forwards run so far (the step that keys the next dropout masks)."""
    @training_forwards.setter
    def training_forwards(self, forwards: int) -> None: ...
    def optimizer_state_names(self) -> list[str]:
        """torch's names of the optimizer's state buffers, in `optimizer_state()`'s order."""
    def optimizer_state(self) -> tuple[int, list[_FloatArray]]:
        """(steps taken, copies of the flat state buffers, each as long as the parameters)."""
    def load_optimizer_state(self, steps: int, buffers: Sequence[npt.NDArray[_Float]]) -> None:
        """Restores the optimizer's step count and state buffers (flat, the network's dtype, in
        `optimizer_state_names()` order); on an error nothing changes."""
    def rng_state(self) -> list[int]:
        """The shuffling generator's state: four 64-bit words."""
    def set_rng_state(self, state: Sequence[int]) -> None:
        """Restores the shuffling generator from `rng_state()`'s four words (not all zero)."""

"""The one driver behind `Network.fit`: the arguments checked, then the epochs, each one native
call, with validation, metrics and callbacks between them.

The same driver trains a process alone (`bpcore._alone.Alone`) and every rank of a
data-parallel group (`bpcore._data_parallel.RankGroup`): the group decides what is collective
(agreeing to stop, reducing the epoch's sums) and catches each rank's own failures so that
none leaves the others waiting. The progress bar, the gradient-health monitor, the schedule and
the History are callbacks the driver adds around the user's, as Keras's CallbackList adds
History and its progress bar; between the epochs only callbacks run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bpcore import metrics as metric_functions
from bpcore._alone import Alone
from bpcore._arrays import as_inputs, as_labels, as_values, as_weights
from bpcore._checks import boolean, positive_int, real
from bpcore._data_parallel import RankGroup
from bpcore._user_warnings import warn
from bpcore.bpcore import TrainingDivergedError
from bpcore.callbacks import Callback, Logs
from bpcore.class_weights import class_counts, with_class_weights
from bpcore.gradient_health import GradientMonitor, GradientWarning, TensorStats
from bpcore.history import History
from bpcore.optimizers import learning_rate
from bpcore.progress import ProgressLogger, verbosity
from bpcore.schedules import OneCycleLR, Schedule
from bpcore.training_state import MAX_EPOCHS_DONE

if TYPE_CHECKING:
    from typing import Union

    from bpcore.network import Network

    Group = Union[Alone, RankGroup]

__all__ = ["GradientWarning", "fit"]

#: Seconds between the native loop's progress reports (progress bar, on_batch_end).
PROGRESS_INTERVAL = 0.2

#: `sample_weight_reduction`'s values, Keras's names, and whether each divides by Σ w.
SAMPLE_WEIGHT_REDUCTIONS = {"sum_over_batch_size": False, "mean_with_sample_weight": True}


def _weighted_mean(reduction: Any) -> bool:
    """Whether `sample_weight_reduction` divides a batch by its weights' sum."""
    if not isinstance(reduction, str):
        raise TypeError(
            f"sample_weight_reduction: expected one of {sorted(SAMPLE_WEIGHT_REDUCTIONS)}, got "
            f"{type(reduction).__name__}"
        )
    if reduction not in SAMPLE_WEIGHT_REDUCTIONS:
        raise ValueError(
            f"sample_weight_reduction: expected one of {sorted(SAMPLE_WEIGHT_REDUCTIONS)}, got "
            f"{reduction!r}"
        )
    return SAMPLE_WEIGHT_REDUCTIONS[reduction]


def _validation(
    net: Network,
    x: np.ndarray,
    t: np.ndarray,
    validation_split: Any,
    validation_data: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(x_train, t_train, x_val, t_val): the last fraction as Keras, or the given data."""
    split = real(validation_split, "validation_split", low=0.0, high=1.0, high_open=True)
    if validation_data is not None:
        if split > 0:
            raise ValueError(
                "validation_split and validation_data: give one of them, not both "
                f"(validation_split={split})"
            )
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(
                "validation_data: expected a pair (X_val, y_val), got "
                f"{type(validation_data).__name__}"
                + (
                    f" of length {len(validation_data)}"
                    if hasattr(validation_data, "__len__")
                    else ""
                )
            )
        xv = as_inputs(validation_data[0], net.dtype, net.n_features, "validation_data[0]")
        n = xv.shape[0]
        if net.loss_function.takes_labels:
            tv = as_labels(validation_data[1], n, "validation_data[1]")
        else:
            tv = as_values(validation_data[1], net.dtype, n, net.n_outputs, "validation_data[1]")
        return x, t, xv, tv
    if split == 0:
        return x, t, None, None
    n = x.shape[0]
    n_train = math.floor(n * (1.0 - split))
    if n_train < 1 or n_train >= n:
        raise ValueError(
            f"validation_split: {split} of {n} samples leaves {n_train} for training and "
            f"{n - n_train} for validation; both need at least one"
        )
    return x[:n_train], t[:n_train], x[n_train:], t[n_train:]


def _callbacks(callbacks: Any) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    if not isinstance(callbacks, Sequence):
        raise TypeError(
            f"callbacks: expected a list of bpcore.callbacks.Callback, got "
            f"{type(callbacks).__name__}"
        )
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(
                f"callbacks[{i}]: expected a bpcore.callbacks.Callback, got {type(cb).__name__}"
            )
    return list(callbacks)


class _ScheduleStep(Callback):
    """Steps a fit's schedule, before the user's callbacks' on_epoch_end, and keeps its position
    with the network, so that a checkpoint saved by a callback resumes the schedule exactly.
    Starts it at the network's learning rate, or, for a network loaded from a checkpoint of a
    scheduled fit, continues an equal schedule where that one stopped.

    A per-epoch schedule steps after every epoch. A per-step one gives the epoch's rates, one
    per step, to the native loop before the epoch (`epoch_rates`), and the network then takes
    the rate of the step after the epoch's last."""

    def __init__(self, schedule: Schedule, updates_per_epoch: int) -> None:
        super().__init__()
        self.schedule = schedule
        self.updates_per_epoch = updates_per_epoch
        self._next_rate: float | None = None

    @property
    def per_step(self) -> bool:
        """Whether the schedule steps once per batch."""
        return self.schedule.interval == "step"

    def epoch_rates(self, steps: int) -> list[float]:
        """The learning rates of the next epoch's `steps` steps, from the network's; the
        schedule then stands after the epoch's last step."""
        net = self.network
        assert net is not None
        rates = [net.lr]
        for _ in range(steps - 1):
            rates.append(learning_rate(self.schedule.step(rates[-1]), "schedule"))
        self._next_rate = learning_rate(self.schedule.step(rates[-1]), "schedule")
        return rates

    def on_train_begin(self, logs: Logs) -> None:
        net = self.network
        assert net is not None  # fit gives every callback its network first
        # Read, not taken: fit forgets a loaded position only once every callback has begun,
        # so that a fit refused by a callback's on_train_begin leaves it for the next fit.
        saved = net.fit_progress.schedule_to_resume
        if not self.schedule.started:
            if saved is not None and saved["schedule"] == repr(self.schedule):
                self.schedule.resume(saved)
            else:
                self.schedule.start(net.lr)
                net.lr = learning_rate(self.schedule.initial_lr(), "schedule")
        if isinstance(self.schedule, OneCycleLR):
            steps = logs["epochs"] * (self.updates_per_epoch if self.per_step else 1)
            if steps > self.schedule.steps_left():
                raise ValueError(
                    f"schedule: {self.schedule!r} has {self.schedule.steps_left()} steps left, "
                    f"but this fit takes {steps}"
                )

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        net = self.network
        assert net is not None
        if self.per_step:
            assert self._next_rate is not None  # epoch_rates ran before the epoch
            net.lr, self._next_rate = self._next_rate, None
        else:
            net.lr = learning_rate(self.schedule.step(net.lr), "schedule")
        net.fit_progress.schedule = self.schedule.state()
        return None


@dataclass
class _Fit:
    """A fit call's checked arguments and converted data."""

    epochs: int
    batch_size: int
    shuffle: bool
    metrics: metric_functions.Metrics
    callbacks: list[Callback]
    schedule: Schedule | None
    clip_grad_norm: float | None
    clip_grad_value: float | None
    gradient_accumulation_steps: int
    weighted_mean: bool
    decay_per_divisor: bool
    verbose: int
    warnings: bool
    x_train: np.ndarray
    t_train: np.ndarray
    w_train: np.ndarray | None
    validation: tuple[np.ndarray, np.ndarray] | None
    #: "balanced" class weights of a data-parallel fit wait for every rank's class counts:
    #: (class_weight, this shard's counts), folded into w_train by `weigh_classes`.
    balanced: tuple[Any, np.ndarray] | None = None

    def weigh_classes(self, net: Network, counts: np.ndarray) -> None:
        """Folds the "balanced" class weights of every rank's `counts` into w_train."""
        if self.balanced is not None:
            class_weight, _ = self.balanced
            self.w_train = with_class_weights(
                class_weight, self.t_train, self.w_train, net, counts=counts
            )
            self.balanced = None

    def log_keys(self) -> list[str]:
        """The keys every epoch's logs have."""
        keys = ["loss", *(["penalty"] if self.decay_per_divisor else []), *self.metrics]
        if self.validation is not None:
            keys += ["val_loss", *(f"val_{m}" for m in self.metrics)]
        return [*keys, "lr", "time"]

    def agreed_facts(self) -> dict[str, Any]:
        """What must be the same on every rank for the ranks to take the same steps. Callbacks
        may differ (a checkpoint on rank 0 only, say): their stop decisions are agreed anyway,
        and a learning rate that drifts apart is caught at each epoch's start and end."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "metrics": self.metrics,
            "validation": self.validation is not None,
            "sample_weight": self.w_train is not None,
            "clip_grad_norm": self.clip_grad_norm,
            "clip_grad_value": self.clip_grad_value,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "weighted_mean": self.weighted_mean,
            "decay_per_divisor": self.decay_per_divisor,
            "class_weight": "balanced" if self.balanced is not None else None,
            "schedule": repr(self.schedule),
        }


def _prepare(net: Network, X: Any, y: Any, data_parallel: bool = False, **arguments: Any) -> _Fit:
    """Every argument checked and converted before anything changes: a rejected call changes
    nothing."""
    epochs = positive_int(arguments["epochs"], "epochs")
    batch_size = positive_int(arguments["batch_size"], "batch_size")
    shuffle = boolean(arguments["shuffle"], "shuffle")
    names = metric_functions.resolve_metrics(
        arguments["metrics"], net.loss_function, net.n_outputs, data_parallel
    )
    callbacks = _callbacks(arguments["callbacks"])
    schedule = arguments["schedule"]
    if schedule is not None and not isinstance(schedule, Schedule):
        raise TypeError(
            "schedule: expected a bpcore schedule (StepLR, ExponentialLR, CosineAnnealingLR, "
            "LinearLR, OneCycleLR, SequentialLR), "
            f"got {type(schedule).__name__}; for a function use "
            "callbacks=[bp.LearningRateScheduler(fn)]"
        )
    clip = arguments["clip_grad_norm"]
    if clip is not None:
        clip = real(clip, "clip_grad_norm", low=0.0, low_open=True)
    accumulation = positive_int(
        arguments.get("gradient_accumulation_steps", 1), "gradient_accumulation_steps"
    )
    clip_value = arguments.get("clip_grad_value")
    if clip_value is not None:
        clip_value = real(clip_value, "clip_grad_value", low=0.0, low_open=True)
    weighted_mean = _weighted_mean(arguments.get("sample_weight_reduction", "sum_over_batch_size"))
    decay_per_divisor = boolean(
        arguments.get("weight_decay_per_batch_weight", False), "weight_decay_per_batch_weight"
    )
    verbose = verbosity(arguments.get("verbose", "auto"), arguments["progress"])
    health_warnings = boolean(arguments.get("warnings", True), "warnings")
    x = net.as_inputs(X)
    t = net.as_targets(y, x.shape[0])
    # Converted here (type, shape); the core checks the values once per epoch, before any step.
    w = as_weights(arguments["sample_weight"], net.dtype, x.shape[0])
    x_train, t_train, x_val, t_val = _validation(
        net, x, t, arguments["validation_split"], arguments["validation_data"]
    )
    # Validation stays unweighted: the held-out samples' weights are dropped.
    w_train = None if w is None else w[: x_train.shape[0]]
    class_weight = arguments["class_weight"]
    balanced = None
    if data_parallel and isinstance(class_weight, str):
        # "balanced" counts every rank's classes: folded in once the ranks have met.
        balanced = (class_weight, class_counts(class_weight, t_train, net))
    else:
        w_train = with_class_weights(class_weight, t_train, w_train, net)
    native = net.native
    # The core's checks of the whole training set, up front, so that a rejected fit changes
    # nothing on any rank.
    native.check_training_data(x_train, t_train, w_train)
    validation = None
    if x_val is not None and t_val is not None:
        native.loss(x_val, t_val)  # checks the validation targets (labels in range) up front
        validation = (x_val, t_val)
    return _Fit(
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        metrics=names,
        callbacks=callbacks,
        schedule=schedule,
        clip_grad_norm=clip,
        clip_grad_value=clip_value,
        gradient_accumulation_steps=accumulation,
        weighted_mean=weighted_mean,
        decay_per_divisor=decay_per_divisor,
        verbose=verbose,
        warnings=health_warnings,
        x_train=x_train,
        t_train=t_train,
        w_train=w_train,
        validation=validation,
        balanced=balanced,
    )


def fit(net: Network, X: Any, y: Any, *, comm: Any = None, **arguments: Any) -> History:
    """`Network.fit`'s work; see its docstring. `arguments` are its keyword arguments."""
    if comm is None:
        plan = _prepare(net, X, y, **arguments)
        alone = Alone(net, plan.x_train.shape[0])
        alone.check_epochs(plan.batch_size, plan.shuffle, plan.epochs)
        return _train(net, plan, alone)
    group = RankGroup(comm, net)
    try:
        with group.catching_interrupts():
            prepared = group.local(_prepare, net, X, y, data_parallel=True, **arguments)
            facts = {} if prepared is None else prepared.agreed_facts()
            n_train = 0 if prepared is None else prepared.x_train.shape[0]
            counts = None if prepared is None or prepared.balanced is None else prepared.balanced[1]
            group.setup(facts, n_train, counts)
            assert prepared is not None  # setup raised on every rank if any rank's failed
            if group.class_counts is not None:
                group.local(prepared.weigh_classes, net, group.class_counts)
            group.check_epochs(prepared.batch_size, prepared.shuffle, prepared.epochs)
            return _train(net, prepared, group)
    except BaseException as e:
        if not group.agreed:
            group.abort(e)
        raise


def _train(net: Network, plan: _Fit, group: Group) -> History:
    """The epochs of a fit, the same on every process of `group`: the same steps, the same
    logs, the same callback decisions."""
    native = net.native
    tensors = TensorStats([name for name, _, _ in native.param_info()])
    history = History(tensors)
    progress = ProgressLogger(plan.epochs, plan.verbose) if plan.verbose else None
    callbacks: list[Callback] = [GradientMonitor(tensors, plan.t_train)] if plan.warnings else []
    if progress is not None:
        callbacks.append(progress)
    # No more than every sample in one batch: the same epoch, in the core's size type.
    batch_size = min(plan.batch_size, group.samples)
    steps = group.steps(batch_size, plan.shuffle)
    # Optimizer steps of an epoch: a per-step schedule steps once per accumulated group.
    updates = -(-steps // plan.gradient_accumulation_steps)
    if plan.schedule is not None:
        callbacks.append(_ScheduleStep(plan.schedule, updates))
    callbacks += [*plan.callbacks, history]
    callbacks = [cb for cb in callbacks if group.runs(cb)]
    at_ticks = [cb for cb in callbacks if type(cb).on_batch_end is not Callback.on_batch_end]

    def tick(batches: int, samples: int, mean_loss: float) -> None:
        if batches > 0:
            logs = {"loss": mean_loss, "samples": samples, "batches": batches}
            for cb in at_ticks:
                cb.on_batch_end(batches - 1, logs)

    arguments: dict[str, Any] = {
        "x": plan.x_train,
        "y": plan.t_train,
        "batch_size": batch_size,
        "shuffle": plan.shuffle,
        "progress": (lambda *a: group.local(tick, *a)) if at_ticks else None,
        "progress_interval": PROGRESS_INTERVAL,
        "sample_weight": plan.w_train,
        # This fit's clipping goes with each epoch, leaving the network's setting as it was:
        # nothing to write back after training, where a busy network would refuse it.
        "clip_grad_norm": plan.clip_grad_norm,
        "clip_grad_value": plan.clip_grad_value,
        "gradient_accumulation_steps": plan.gradient_accumulation_steps,
        "weighted_mean": plan.weighted_mean,
        "decay_per_divisor": plan.decay_per_divisor,
    }
    scheduler = next((cb for cb in callbacks if isinstance(cb, _ScheduleStep)), None)
    net.stop_training = False
    logs: Logs = {}

    def begin() -> None:
        for cb in callbacks:
            cb.set_network(net)
        begin_logs = {
            "epochs": plan.epochs,
            "batch_size": plan.batch_size,
            "samples": group.samples,
            "steps": steps,
            "log_keys": plan.log_keys(),
        }
        for cb in callbacks:
            cb.on_train_begin(begin_logs)
        # A loaded schedule position is used (or not) from here.
        net.fit_progress.schedule_to_resume = None

    def end_epoch(epoch: int, logs: Logs) -> bool:
        stop = False
        for cb in callbacks:
            if cb.on_epoch_end(epoch, logs):
                stop = True
        return stop or net.stop_training

    try:
        group.local(begin)
        group.agree("the start of training")
        for _ in range(plan.epochs):
            epoch = net.epochs_done  # 0-based, counting across fit calls
            for cb in callbacks:
                group.local(cb.on_epoch_begin, epoch, {"lr": net.lr})
            lr = net.lr
            group.agree(f"the start of epoch {epoch + 1}", False, lr)
            start = time.perf_counter()
            # The epoch's number (1-based) for a divergence error, when the core can count it.
            arguments["epoch"] = epoch + 1 if epoch < MAX_EPOCHS_DONE else None
            if scheduler is not None and scheduler.per_step:
                arguments["step_lrs"] = group.local(scheduler.epoch_rates, updates)
            try:
                result = group.fit_epoch(epoch, arguments)
            except TrainingDivergedError as e:
                warn(f"{e}; the network keeps the weights of the last finite step", RuntimeWarning)
                raise
            net.fit_progress.count_epoch()
            train_sums, val_logs = group.end_epoch(result, plan.metrics, plan.validation)
            logs = {"loss": float(result["loss"])}
            if plan.decay_per_divisor:
                logs["penalty"] = float(result["penalty"])
            if plan.metrics:
                x, t = plan.x_train, plan.t_train
                logs.update(metric_functions.values(plan.metrics, net, x, t, train_sums))
            logs.update(val_logs)
            logs["lr"] = lr
            logs["time"] = time.perf_counter() - start
            tensors.grad_norms = result["grad_norms"]
            tensors.update_ratios = result["update_ratios"]
            tensors.weight_norms = result["weight_norms"]
            stop = group.local(end_epoch, epoch, logs)
            if group.agree(f"the end of epoch {epoch + 1}", bool(stop), net.lr):
                break
        for cb in callbacks:
            group.local(cb.on_train_end, logs)
        group.agree("the end of training")
    finally:
        if progress is not None:
            progress.close()
    return history

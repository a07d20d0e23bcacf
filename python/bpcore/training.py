"""The epoch loop behind `Network.fit`: validation, metrics, callbacks, schedules, progress and
the gradient warnings. Each epoch's batches run in Rust (one native call per epoch); everything
here happens between epochs, or at the progress ticks (about every 0.2 s) while one runs.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bpcore import metrics as metric_functions
from bpcore._arrays import as_inputs, as_labels, as_values, as_weights
from bpcore._checks import boolean, positive_int, real
from bpcore._data_parallel import RankGroup
from bpcore.bpcore import TrainingDivergedError
from bpcore.callbacks import Callback, _set_lr
from bpcore.history import History
from bpcore.progress import ProgressBar, enabled
from bpcore.schedules import Schedule

if TYPE_CHECKING:
    from bpcore.network import Network

#: An epoch's mean gradient norm of a weight tensor below this is reported as vanishing.
VANISHING_NORM = 1e-7
#: An epoch's mean gradient norm of a weight tensor above this is reported as exploding.
EXPLODING_NORM = 1e3
#: The stack level of the code that called Network.fit, seen from _fit_local or _fit_ranks:
#: below them are fit (through _fit_data_parallel for _fit_ranks), Network.fit and its busy
#: guard.
_USER_FRAME = 5
#: Seconds between the native loop's progress reports (progress bar, on_batch_end).
PROGRESS_INTERVAL = 0.2


class GradientWarning(RuntimeWarning):
    """Gradients of a weight tensor vanish (mean norm < 1e-7) or explode (> 1e3) in an epoch."""


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


def _with_epoch(message: str, epoch: int) -> str:
    """The native divergence message with the epoch put in: "training diverged in epoch 3 at
    batch 17: ..."."""
    prefix = "training diverged"
    if message.startswith(prefix):
        return f"{prefix} in epoch {epoch}{message[len(prefix) :]}"
    return f"epoch {epoch}: {message}"


def _warn_gradients(
    names: Sequence[str],
    norms: Sequence[float],
    epoch: int,
    warned: set[tuple[str, str]],
    stacklevel: int,
) -> None:
    for name, norm in zip(names, norms):
        if not name.endswith("weight"):
            continue
        if norm < VANISHING_NORM:
            kind = "vanishing"
            message = (
                f"epoch {epoch}: gradients of {name} are vanishing (mean norm {norm:.3g} < "
                f"{VANISHING_NORM:g}); the layers below barely learn. Try ReLU-like "
                "activations, He/Glorot initialization, normalization or fewer layers."
            )
        elif norm > EXPLODING_NORM:
            kind = "exploding"
            message = (
                f"epoch {epoch}: gradients of {name} are exploding (mean norm {norm:.3g} > "
                f"{EXPLODING_NORM:g}). Try a lower learning rate, clip_grad_norm=1.0 or "
                "normalization."
            )
        else:
            continue
        if (kind, name) not in warned:
            warned.add((kind, name))
            warnings.warn(message, GradientWarning, stacklevel=stacklevel)


def _start_schedule(net: Network, schedule: Schedule | None) -> None:
    """Starts a fit's schedule at the network's learning rate, or, for a network loaded from a
    checkpoint of a scheduled fit, continues an equal schedule where that one stopped."""
    saved, net._schedule_to_resume = net._schedule_to_resume, None
    if schedule is None or schedule.started:
        return
    if saved is not None and saved["schedule"] == repr(schedule):
        schedule.resume(saved)
    else:
        schedule.start(net.lr)


def _step_schedule(net: Network, schedule: Schedule | None) -> None:
    """After an epoch, before the callbacks: the next epoch's learning rate, and the
    schedule's position kept with the network, so that a checkpoint saved by a callback
    resumes the schedule exactly."""
    if schedule is not None:
        _set_lr(net, schedule.step(net.lr), "schedule")
        net._schedule_state = schedule.state()


def _numbers_only(logs: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in logs.items()
        if isinstance(v, (numbers.Real, np.floating)) and not isinstance(v, bool)
    }


def fit(
    net: Network,
    X: Any,
    y: Any,
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    validation_split: float,
    validation_data: Any,
    metrics: Sequence[str] | None,
    callbacks: Any,
    schedule: Schedule | None,
    clip_grad_norm: float | None,
    progress: bool | None,
    sample_weight: Any,
    comm: Any = None,
) -> History:
    """`Network.fit`'s work; see its docstring."""
    arguments = _arguments(locals())
    if comm is None:
        return _fit_local(net, *_prepare(net, X, y, None, **arguments))
    group = RankGroup(comm, net)
    try:
        with group.catching_interrupts():
            return _fit_data_parallel(net, X, y, group, arguments)
    except BaseException as e:
        if not group.agreed:
            group.abort(e)
        raise


def _arguments(given: dict[str, Any]) -> dict[str, Any]:
    """fit's keyword arguments, from its locals, for `_prepare`."""
    skip = ("net", "X", "y", "comm")
    return {k: v for k, v in given.items() if k not in skip}


def _fit_data_parallel(
    net: Network, X: Any, y: Any, group: RankGroup, arguments: dict[str, Any]
) -> History:
    """A fit on every rank of `group`: each rank's preparation, then the agreement that all
    prepared the same fit, then the epochs."""
    prepared = group.local(_prepare, net, X, y, group, **arguments)
    facts: dict[str, Any] = {}
    n_train, local_batch = 0, 1
    if prepared is not None:
        plan = prepared[0]
        n_train, local_batch = plan.x_train.shape[0], plan.batch_size
        # What must be the same everywhere for the ranks to take the same steps. Callbacks may
        # differ (a checkpoint on rank 0 only, say): their stop decisions are agreed anyway,
        # and a learning rate that drifts apart is caught after each epoch.
        facts = {
            "epochs": plan.epochs,
            "batch_size": plan.batch_size,
            "shuffle": plan.shuffle,
            "metrics": plan.names,
            "validation": plan.x_val is not None,
            "sample_weight": plan.w_train is not None,
            "clip_grad_norm": plan.clip_grad_norm,
            "schedule": repr(plan.schedule),
        }
    group.setup(facts, n_train, local_batch)
    assert prepared is not None  # setup raised on every rank if any rank's preparation failed
    return _fit_ranks(net, group, *prepared)


@dataclass
class _Plan:
    """A fit call's checked arguments and converted data."""

    epochs: int
    batch_size: int
    shuffle: bool
    names: list[str]
    cbs: list[Callback]
    schedule: Schedule | None
    clip_grad_norm: float | None
    show: bool
    x_train: np.ndarray
    t_train: np.ndarray
    w_train: np.ndarray | None
    x_val: np.ndarray | None
    t_val: np.ndarray | None
    log_keys: list[str]
    param_names: list[str]
    n_train: int
    n_batches: int
    native_batch: int


def _prepare(
    net: Network,
    X: Any,
    y: Any,
    group: RankGroup | None,
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    validation_split: float,
    validation_data: Any,
    metrics: Sequence[str] | None,
    callbacks: Any,
    schedule: Schedule | None,
    clip_grad_norm: float | None,
    progress: bool | None,
    sample_weight: Any,
) -> tuple[_Plan, list[Callback]]:
    """Every argument checked and converted before anything changes: a rejected call changes
    nothing."""
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    shuffle = boolean(shuffle, "shuffle")
    loss = net.loss_function
    names = metric_functions.resolve_metrics(metrics, loss)
    cbs = _callbacks(callbacks)
    if schedule is not None and not isinstance(schedule, Schedule):
        raise TypeError(
            "schedule: expected a bpcore schedule (StepLR, ExponentialLR, CosineAnnealingLR), "
            f"got {type(schedule).__name__}; for a function use "
            "callbacks=[bp.LearningRateScheduler(fn)]"
        )
    if clip_grad_norm is not None:
        clip_grad_norm = real(clip_grad_norm, "clip_grad_norm", low=0.0, low_open=True)
    show = enabled(progress) and (group is None or group.is_root)
    x = net._x(X)
    t = net._y(y, x.shape[0])
    # Converted here (type, shape); the core checks the values once per epoch, before any step.
    w = as_weights(sample_weight, net.dtype, x.shape[0])
    x_train, t_train, x_val, t_val = _validation(net, x, t, validation_split, validation_data)
    # Validation stays unweighted: the held-out samples' weights are dropped.
    w_train = None if w is None else w[: x_train.shape[0]]
    native = net._native
    # The core's checks of the whole training set, up front: a data-parallel rank's steps
    # check only their own batches, and a rejected fit must change nothing on any rank.
    native.check_training_data(x_train, t_train, w_train)
    if x_val is not None and t_val is not None:
        native.loss(x_val, t_val)  # checks the validation targets (labels in range) up front

    log_keys = ["loss", *names]
    if x_val is not None:
        log_keys += ["val_loss", *(f"val_{m}" for m in names)]
    log_keys += ["lr", "time"]
    param_names = [name for name, _, _ in native.param_info()]
    n_train = x_train.shape[0]
    n_batches = -(-n_train // batch_size)
    native_batch = min(batch_size, n_train)  # one batch of all samples; fits the core's size type
    batch_cbs = [cb for cb in cbs if type(cb).on_batch_end is not Callback.on_batch_end]

    plan = _Plan(
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        names=names,
        cbs=cbs,
        schedule=schedule,
        clip_grad_norm=clip_grad_norm,
        show=show,
        x_train=x_train,
        t_train=t_train,
        w_train=w_train,
        x_val=x_val,
        t_val=t_val,
        log_keys=log_keys,
        param_names=param_names,
        n_train=n_train,
        n_batches=n_batches,
        native_batch=native_batch,
    )
    return plan, batch_cbs


def _fit_local(net: Network, plan: _Plan, batch_cbs: list[Callback]) -> History:
    """The epochs of a fit in this process alone: each one native call."""
    epochs, batch_size, shuffle = plan.epochs, plan.batch_size, plan.shuffle
    names, cbs, schedule, clip_grad_norm = plan.names, plan.cbs, plan.schedule, plan.clip_grad_norm
    x_train, t_train, w_train = plan.x_train, plan.t_train, plan.w_train
    x_val, t_val, log_keys, param_names = plan.x_val, plan.t_val, plan.log_keys, plan.param_names
    n_train, n_batches, native_batch = plan.n_train, plan.n_batches, plan.native_batch
    loss, native = net.loss_function, net._native
    bar = ProgressBar(epochs) if plan.show else None
    history = History()
    warned: set[tuple[str, str]] = set()
    previous_clip = native.clip_grad_norm
    net.stop_training = False
    logs: dict[str, Any] = {}
    try:
        if clip_grad_norm is not None:
            native.clip_grad_norm = clip_grad_norm
        _start_schedule(net, schedule)
        for cb in cbs:
            cb.set_network(net)
        begin = {
            "epochs": epochs,
            "batch_size": batch_size,
            "samples": n_train,
            "log_keys": list(log_keys),
        }
        for cb in cbs:
            cb.on_train_begin(begin)

        def tick(batches: int, samples: int, mean_loss: float) -> None:
            if bar is not None:
                bar.update(batches, samples, mean_loss)
            if batches > 0:
                batch_logs = {"loss": mean_loss, "samples": samples, "batches": batches}
                for cb in batch_cbs:
                    cb.on_batch_end(batches - 1, batch_logs)

        report = tick if bar is not None or batch_cbs else None
        for k in range(epochs):
            epoch = net._epochs_done  # 0-based, counting across fit calls
            for cb in cbs:
                cb.on_epoch_begin(epoch, {"lr": net.lr})
            lr = net.lr
            if bar is not None:
                bar.epoch_begin(k + 1, n_batches)
            start = time.perf_counter()
            try:
                result = native.fit_epoch(
                    x_train, t_train, native_batch, shuffle, report, PROGRESS_INTERVAL, w_train
                )
            except TrainingDivergedError as e:
                message = _with_epoch(str(e), epoch + 1)
                warnings.warn(
                    f"{message}; the network keeps the weights of the last finite step",
                    RuntimeWarning,
                    stacklevel=_USER_FRAME,
                )
                raise TrainingDivergedError(message) from None
            net._epochs_done += 1
            logs = {"loss": float(result["loss"])}
            if names:
                sums = result["metric_sums"]
                logs.update(metric_functions.from_sums(names, sums, loss, net.n_outputs))
            if x_val is not None and t_val is not None:
                logs["val_loss"] = float(native.loss(x_val, t_val))
                if names:
                    val = metric_functions.compute(names, native.forward(x_val), t_val, loss)
                    logs.update({f"val_{m}": v for m, v in val.items()})
            logs["lr"] = lr
            logs["time"] = time.perf_counter() - start
            _warn_gradients(param_names, result["grad_norms"], epoch + 1, warned, _USER_FRAME + 1)
            if bar is not None:
                bar.epoch_end(n_train, logs)
            _step_schedule(net, schedule)
            stop = False
            for cb in cbs:
                if cb.on_epoch_end(epoch, logs):
                    stop = True
            history.record(epoch + 1, **_numbers_only(logs))
            history.record_tensors(param_names, result["grad_norms"], result["update_ratios"])
            if stop or net.stop_training:
                break
        for cb in cbs:
            cb.on_train_end(logs)
    finally:
        if bar is not None:
            bar.close()
        if clip_grad_norm is not None:
            native.clip_grad_norm = previous_clip
    return history


def _fit_ranks(net: Network, group: RankGroup, plan: _Plan, batch_cbs: list[Callback]) -> History:
    """The epochs of a data-parallel fit, the same on every rank of `group`: the same steps,
    the same reduced logs, the same callback decisions. Only rank 0 draws the progress bar,
    warns about gradients and runs rank-zero-only callbacks (ModelCheckpoint)."""
    native, loss = net._native, net.loss_function
    names = plan.names
    cbs = [cb for cb in plan.cbs if group.is_root or not cb.rank_zero_only]
    batch_cbs = [cb for cb in batch_cbs if cb in cbs]
    validation = None
    if plan.x_val is not None and plan.t_val is not None:
        validation = (plan.x_val, plan.t_val)
    bar = ProgressBar(plan.epochs) if plan.show else None
    # The bar and the callbacks count the global epoch: every rank's samples and steps.
    samples, steps = group.global_samples, group.steps(plan.batch_size)
    history = History()
    warned: set[tuple[str, str]] = set()
    previous_clip = native.clip_grad_norm
    net.stop_training = False
    logs: dict[str, Any] = {}

    def start() -> None:
        if plan.clip_grad_norm is not None:
            native.clip_grad_norm = plan.clip_grad_norm
        _start_schedule(net, plan.schedule)
        begin = {
            "epochs": plan.epochs,
            "batch_size": plan.batch_size,
            "samples": samples,
            "log_keys": list(plan.log_keys),
        }
        for cb in cbs:
            cb.set_network(net)
        for cb in cbs:
            cb.on_train_begin(begin)

    def tick(batches: int, samples: int, mean_loss: float) -> None:
        if bar is not None:
            bar.update(batches, samples, mean_loss)
        batch_logs = {"loss": mean_loss, "samples": samples, "batches": batches}
        for cb in batch_cbs:
            cb.on_batch_end(batches - 1, batch_logs)

    def end_epoch(epoch: int, logs: dict[str, Any], result: dict[str, Any]) -> bool:
        if group.is_root:
            # From end_epoch through RankGroup.local, below _fit_ranks and _fit_data_parallel.
            _warn_gradients(
                plan.param_names, result["grad_norms"], epoch + 1, warned, _USER_FRAME + 4
            )
        if bar is not None:
            bar.epoch_end(samples, logs)
        _step_schedule(net, plan.schedule)
        stop = False
        for cb in cbs:
            if cb.on_epoch_end(epoch, logs):
                stop = True
        history.record(epoch + 1, **_numbers_only(logs))
        history.record_tensors(plan.param_names, result["grad_norms"], result["update_ratios"])
        return stop or net.stop_training

    try:
        group.local(start)
        group.agree("the start of training")
        report = tick if bar is not None or batch_cbs else None
        for k in range(plan.epochs):
            epoch = net._epochs_done
            for cb in cbs:
                group.local(cb.on_epoch_begin, epoch, {"lr": net.lr})
            lr = net.lr
            group.agree(f"the start of epoch {epoch + 1}", False, lr)
            if bar is not None:
                group.local(bar.epoch_begin, k + 1, steps)
            begin = time.perf_counter()
            try:
                result = group.run_epoch(
                    plan.x_train,
                    plan.t_train,
                    plan.w_train,
                    plan.batch_size,
                    plan.shuffle,
                    epoch,
                    report,
                    PROGRESS_INTERVAL,
                )
            except TrainingDivergedError as e:
                group.agreed = True  # every rank applied the same sums and diverged together
                message = _with_epoch(str(e), epoch + 1)
                warnings.warn(
                    f"{message}; the network keeps the weights of the last finite step",
                    RuntimeWarning,
                    stacklevel=_USER_FRAME + 1,  # below _fit_data_parallel too
                )
                raise TrainingDivergedError(message) from None
            group.broadcast_buffers()
            net._epochs_done += 1
            train_sums, val_logs = group.reduce_epoch(result, names, validation, epoch)
            logs = {"loss": float(result["loss"])}
            if names:
                logs.update(metric_functions.from_sums(names, train_sums, loss, net.n_outputs))
            logs.update(val_logs)
            logs["lr"] = lr
            logs["time"] = time.perf_counter() - begin
            stop = group.local(end_epoch, epoch, logs, result)
            if group.agree(f"the end of epoch {epoch + 1}", bool(stop), net.lr):
                break
        for cb in cbs:
            group.local(cb.on_train_end, logs)
        group.agree("the end of training")
    finally:
        if bar is not None:
            bar.close()
        native.clip_grad_norm = previous_clip
    return history

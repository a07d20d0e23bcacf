"""bpcore and Python threads: the pool size, and what happens when threads share a network.

The pool has `set_num_threads(n)` threads, else `BPCORE_NUM_THREADS`, else the limit set for
OpenMP and BLAS pools (`OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`, as joblib
sets them in its workers), else one per core. When threadpoolctl is installed the pool is one of
its thread pools too: `threadpoolctl.threadpool_info()` lists it (user_api "bpcore") and
`threadpool_limits(n)` resizes it for the duration of the block.

With n threads, each matrix product of a training step is divided among the calling thread and
n - 1 persistent workers, each computing a block of the product's output. Between products the
workers spin instead of sleeping, so that the next product finds them awake: after a call
returns they keep a core busy for up to half a millisecond, then sleep. Results are the same
from run to run for a given number of threads (which thread computes a block never changes
it); between different numbers they may differ in the last bits.

Inference (`forward`, `predict`, `predict_proba`, `evaluate`, `loss`, `parameters`) releases
the GIL and may run from many threads at once on one network; the results equal serial ones.
A call that changes the network (`train_step`, `fit`, `gradients`, `apply_gradients`,
`set_parameters`, ...) needs it alone: made while another thread uses the network, or a read
made while another thread trains it, it is refused with `NetworkBusyError` before it changes
anything. bpcore never waits, so it never deadlocks and never tears weights; to share one
network between a training thread and serving threads, guard it with your own lock (or predict
on a copy made with `set_parameters`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from bpcore import bpcore as _native
from bpcore._checks import positive_int
from bpcore.bpcore import NetworkBusyError

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


def set_num_threads(n: int) -> None:
    """Uses `n` threads (1 to 1024) for bpcore's parallel work from now on."""
    _native.set_num_threads(positive_int(n, "n"))


def get_num_threads() -> int:
    """The number of threads bpcore's parallel work runs on."""
    return int(_native.get_num_threads())


def _register_with_threadpoolctl() -> None:
    """Makes bpcore's pool one that threadpoolctl reports and limits, if threadpoolctl is here."""
    try:
        import threadpoolctl  # type: ignore[import-untyped]
    except ImportError:
        return

    class BpcoreController(threadpoolctl.LibController):  # type: ignore[misc]
        """threadpoolctl's view of bpcore's pool, found as the loaded bpcore extension."""

        user_api = "bpcore"
        internal_api = "bpcore"
        filename_prefixes = ("bpcore.",)

        def get_num_threads(self) -> int:
            return get_num_threads()

        def set_num_threads(self, num_threads: int) -> None:
            set_num_threads(num_threads)

        def get_version(self) -> str:
            return str(_native.__version__)

    threadpoolctl.register(BpcoreController)


_register_with_threadpoolctl()


def _refusing(method: F) -> F:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except NetworkBusyError:
            # The native network refuses, naming its own method; the message names the one
            # the user called (renamed at every level, the outermost last).
            raise NetworkBusyError(
                f"network is busy: {method.__name__} cannot run while another thread "
                "trains this network, and a training call cannot run while another "
                "thread uses it; nothing was changed (use a lock to share it)"
            ) from None

    return call  # type: ignore[return-value]


def refuses_when_busy(cls: C) -> C:
    """Class decorator: the public methods and properties of `cls` name themselves in the
    native network's `NetworkBusyError`."""
    for name, value in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            setattr(
                cls,
                name,
                property(
                    value.fget and _refusing(value.fget),
                    value.fset and _refusing(value.fset),
                    value.fdel,
                    value.__doc__,
                ),
            )
        elif callable(value) and not isinstance(value, (classmethod, staticmethod, type)):
            setattr(cls, name, _refusing(value))
    return cls

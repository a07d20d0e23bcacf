"""Runs each workload on every available system, one after the other, into a ``Results``."""

from __future__ import annotations

import functools
import statistics
import sys
import time
from typing import Callable

import numpy as np

import bpcore as bp
from bpcore.bench import (
    memory,
    run_bpcore,
    run_jax,
    run_numpy,
    run_reference,
    run_torch,
    scaling,
)
from bpcore.bench.data import make_data
from bpcore.bench.results import Result, Results
from bpcore.bench.timing import SETTLE_SECONDS
from bpcore.bench.workloads import (
    ONE_THREAD,
    PREDICT_CALLS,
    SGEMM_REPEATS,
    SGEMM_SIZE,
    SWEEP,
    THREADS_WORKLOADS,
    TRAINING,
    Workload,
    quick,
    threads_row_name,
)

TORCH_THREADS = (1, 2)


def log(message: str) -> None:
    """Progress, to stderr (the report goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def in_turns(
    contenders: dict[str, Callable[[], float]], turns: int, settle_seconds: float = SETTLE_SECONDS
) -> dict[str, list[float]]:
    """Every contender measured once per turn, the order reversed every other turn, so that a
    burst of load from elsewhere on the machine falls on all of them alike; each after
    `settle_seconds` for the previous one's idle threads to stop spinning (`SETTLE_SECONDS`)."""
    got: dict[str, list[float]] = {name: [] for name in contenders}
    for turn in range(turns):
        order = list(contenders) if turn % 2 == 0 else list(reversed(contenders))
        for name in order:
            time.sleep(settle_seconds)
            got[name].append(contenders[name]())
    return got


def spread(values: list[float]) -> str:
    """``median of 3 turns, range 1,234 to 1,301``, or ``1 turn``."""
    if len(values) == 1:
        return "1 turn"
    low, high = (f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in (min(values), max(values)))
    return f"median of {len(values)} turns, range {low} to {high}"


class Suite:
    """One benchmark run: ``quick`` sizes or full ones, torch and JAX included when asked for,
    each training workload measured in ``repeat`` alternating turns (medians kept)."""

    def __init__(
        self, quick_sizes: bool, use_torch: bool, repeat: int = 1, use_jax: bool = False
    ) -> None:
        self.quick = quick_sizes
        self.use_torch = use_torch
        self.use_jax = use_jax
        self.repeat = max(repeat, 1)
        # A quick run is a smoke test: its turns do not wait for other pools to settle.
        self.settle_seconds = 0.0 if quick_sizes else SETTLE_SECONDS
        self.results = Results()
        self.sgemm_gflops: float | None = None
        self.torch_threads = 1  # the faster count on mnist, reused for its memory run

    def workload(self, name: str) -> Workload:
        """The training workload ``name`` at this run's size."""
        return quick(TRAINING[name]) if self.quick else TRAINING[name]

    def _training_row(
        self, w: Workload, system: str, rate: float, row_name: str | None = None, **kw: object
    ) -> None:
        """A samples/s row of ``w`` (under ``row_name``, else ``w``'s own name) with its GFLOP/s;
        ``kw`` sets the row's other fields."""
        gflops = rate * w.flops_per_sample / 1e9  # its sgemm fraction is set by finish()
        self.results.add(Result(row_name or w.name, system, "samples/s", rate, None, gflops))
        for key, value in kw.items():
            setattr(self.results.rows[-1], key, value)

    # ----- the workloads -------------------------------------------------------------------

    def sgemm(self) -> None:
        """NumPy's float32 n×n matmul rate, and bpcore's own kernel at the same size. Called at
        the start and again at the end of the run; each keeps its better rate."""
        n, repeats = (SGEMM_SIZE, 2) if self.quick else (SGEMM_SIZE, SGEMM_REPEATS)
        log(f"sgemm {n}x{n} float32 ...")
        rng = np.random.default_rng(0)
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        size = f"{n}x{n}, best of {repeats} at the start and {repeats} at the end"
        if run_bpcore.has_matmul():
            rate = run_bpcore.matmul_gflops(a, b, repeats)
            self._keep_best(Result("sgemm", "bpcore", "GFLOP/s", rate, bp.get_num_threads(),
                                   note=f"bpcore.bpcore.matmul, {size}"))  # fmt: skip
        else:
            log("note: this bpcore build has no bpcore.bpcore.matmul; rebuild to measure it")
        rate = run_numpy.sgemm_gflops(a, b, repeats)
        self._keep_best(Result("sgemm", "numpy", "GFLOP/s", rate, note=f"a @ b, {size}"))

    def _keep_best(self, row: Result) -> None:
        old = self.results.get(row.workload, row.system)
        if old is None:
            self.results.add(row)
        elif row.value > old.value:
            old.value = row.value

    def finish(self) -> None:
        """Measures sgemm again and sets every training row's fraction of the machine's sgemm
        rate: the faster of NumPy's BLAS and bpcore's own kernel on a 1024² product. NumPy's
        alone would flatter a machine where its BLAS is the slower (on the AMD EPYC this project
        ran on before, OpenBLAS ran at half the rate of bpcore's kernel)."""
        self.sgemm()
        rates = [r.value for s in ("numpy", "bpcore") if (r := self.results.get("sgemm", s))]
        self.sgemm_gflops = max(rates) if rates else None
        for row in self.results.rows:
            if row.gflops is not None and self.sgemm_gflops:
                row.sgemm_fraction = row.gflops / self.sgemm_gflops

    def training(self, name: str, with_reference: bool, with_numpy: bool = True) -> None:
        """Trains workload ``name`` in bpcore, NumPy (float32 only, if asked), the reference (if
        asked), torch (1 and 2 threads) and JAX (both ways), in alternating turns.

        Each system's row is its median over the turns; torch's is the faster thread count's
        median, so that no system is credited with a lucky turn.
        """
        w = self.workload(name)
        log(f"{name}: {w.description}, {w.samples} samples per epoch ...")
        X, y = make_data(w, w.samples)
        start = run_bpcore.make_network(w).parameters()
        contenders: dict[str, Callable[[], float]] = {
            "bpcore": lambda: run_bpcore.train_rate(w, X, y)
        }
        if with_numpy and w.dtype == "float32":
            contenders["numpy"] = lambda: run_numpy.train_rate(w, X, y, start)
        if self.use_torch:
            for t in TORCH_THREADS:
                contenders[f"torch {t}"] = functools.partial(
                    run_torch.train_rate, w, X, y, start, t
                )
        if self.use_jax:
            for mode in run_jax.MODES:
                contenders[f"jax {mode}"] = functools.partial(
                    run_jax.train_rate, w, X, y, start, mode
                )
        got = in_turns(contenders, self.repeat, self.settle_seconds)
        epoch = f"epochs of {w.samples}" + (f", ≥ {w.min_seconds:g} s" if w.min_seconds else "")

        def row(system: str, turns: list[float], note: str, threads: int | None) -> None:
            self._training_row(w, system, statistics.median(turns), threads=threads,
                               note=f"{note}, {epoch}, {spread(turns)}",
                               extra={"turns": turns})  # fmt: skip

        row("bpcore", got["bpcore"], "net.fit", bp.get_num_threads())
        if "numpy" in got:
            row("numpy", got["numpy"], "hand-written NumPy MLP", None)
        if with_reference and w.reference_samples:
            n = w.reference_samples
            rate = run_reference.train_rate(w, X[:n], y[:n], start)
            self._training_row(w, "reference", rate, threads=1,
                               note=f"pure Python float64, {n} samples, scaled")  # fmt: skip
        if self.use_torch:
            medians = {t: statistics.median(got[f"torch {t}"]) for t in TORCH_THREADS}
            threads = max(medians, key=lambda t: medians[t])
            if name == "mnist":
                self.torch_threads = threads
            others = ", ".join(f"{t} thr: {medians[t]:,.0f}" for t in TORCH_THREADS)
            row("torch", got[f"torch {threads}"], f"faster of {others}", threads)
        if self.use_jax:
            row("jax scan", got["jax scan epoch"], "lax.scan over the shuffled batches", None)
            row("jax jit", got["jax jit step"], "jitted step in a Python loop", None)

    def sweep(self) -> None:
        """The sweep's cells (784-h-h-10 at two batch sizes), bpcore against torch and JAX;
        with ``quick``, its first cell only."""
        names = list(SWEEP)[:1] if self.quick else list(SWEEP)  # quick: one cell, as a check
        for name in names:
            self.training(name, with_reference=False, with_numpy=False)

    def predict(self) -> None:
        """Microseconds per one-sample forward pass through the mnist network: each system's
        median of ``calls`` calls, in alternating turns as the training rows (medians kept)."""
        w = TRAINING["mnist"]
        calls = 200 if self.quick else PREDICT_CALLS
        log(f"predict: one sample through {'-'.join(map(str, w.widths))}, {calls} calls ...")
        x1, _ = make_data(w, 1)
        net = run_bpcore.make_network(w)
        start = net.parameters()
        contenders: dict[str, Callable[[], float]] = {
            "bpcore": lambda: run_bpcore.predict_microseconds(net, x1, calls),
            "numpy": lambda: run_numpy.predict_microseconds(w, start, x1, calls),
        }
        if self.use_torch:
            for t in TORCH_THREADS:
                contenders[f"torch {t}"] = functools.partial(
                    run_torch.predict_microseconds, w, start, x1, calls, t
                )
        if self.use_jax:
            contenders["jax jit"] = lambda: run_jax.predict_microseconds(w, start, x1, calls)
        got = in_turns(contenders, self.repeat, self.settle_seconds)
        us = {name: statistics.median(turns) for name, turns in got.items()}
        note = f"median of {calls} calls, {spread(got['bpcore'])}"
        self.results.add(Result("predict", "bpcore", "us/call", us["bpcore"], bp.get_num_threads(),
                                note=f"net.forward(x1), {note}"))  # fmt: skip
        note = f"median of {calls} calls, {spread(got['numpy'])}"
        self.results.add(Result("predict", "numpy", "us/call", us["numpy"], note=note))
        if self.use_torch:
            threads = min(TORCH_THREADS, key=lambda t: us[f"torch {t}"])
            each = ", ".join(f"{t} thr: {us[f'torch {t}']:,.4g}" for t in TORCH_THREADS)
            note = f"no_grad, tensor in/out, best of {each}, {spread(got[f'torch {threads}'])}"
            self.results.add(Result("predict", "torch", "us/call", us[f"torch {threads}"],
                                    threads, note=note))  # fmt: skip
        if self.use_jax:
            note = f"jitted forward, array in, result ready, median of {calls} calls, "
            self.results.add(Result("predict", "jax jit", "us/call", us["jax jit"],
                                    note=note + spread(got["jax jit"])))  # fmt: skip

    def memory(self) -> None:
        """Peak resident memory of one mnist epoch, each system in a fresh process."""
        samples = 2048 if self.quick else TRAINING["mnist"].samples
        log(f"memory: one mnist epoch of {samples} samples in a fresh process per system ...")
        systems = ["bpcore"] + (["torch"] if self.use_torch else [])
        for system in systems:
            threads = self.torch_threads if system == "torch" else bp.get_num_threads()
            got = memory.measure(system, samples, threads)
            self.results.add(
                Result(
                    "memory", system, "MB", max(got["training_mb"], 1 / 1024), threads,
                    note=f"peak RSS {got['peak_mb']:.0f} MB - {got['baseline_mb']:.0f} MB "
                    "after imports and data",
                    extra=got,
                )
            )  # fmt: skip

    def threads(self) -> None:
        """bpcore alone on the mnist and small workloads: its fit on one thread against all of
        bpcore's threads, in alternating turns (medians kept), so that what the other cores add
        is read from one run; the "1 thread" row's advantage is the speed-up. On a machine
        where bpcore has one thread, one row that says so."""
        threads = bp.get_num_threads()
        for name in THREADS_WORKLOADS:
            w = self.workload(name)
            row_name = threads_row_name(name)
            if threads < 2:
                skipped = {"skipped": "bpcore runs on 1 thread here"}
                self.results.add(Result(row_name, ONE_THREAD, "samples/s", 0.0, 1, extra=skipped))
                continue
            log(f"threads: {name} on 1 and {threads} bpcore threads, {w.samples} samples ...")
            X, y = make_data(w, w.samples)

            def on(n: int, w: Workload = w, X: np.ndarray = X, y: np.ndarray = y) -> float:
                bp.set_num_threads(n)
                try:
                    return run_bpcore.train_rate(w, X, y)
                finally:
                    bp.set_num_threads(threads)

            contenders: dict[str, Callable[[], float]] = {
                "all": functools.partial(on, threads),
                "one": functools.partial(on, 1),
            }
            got = in_turns(contenders, self.repeat, self.settle_seconds)
            epoch = f"epochs of {w.samples}" + (f", ≥ {w.min_seconds:g} s" if w.min_seconds else "")
            for system, n, turns in (("bpcore", threads, got["all"]), (ONE_THREAD, 1, got["one"])):
                self._training_row(w, system, statistics.median(turns), row_name, threads=n,
                                   note=f"net.fit on {n} thread{'s' if n > 1 else ''}, "
                                   f"{w.batch_size} per batch, {epoch}, {spread(turns)}",
                                   extra={"turns": turns})  # fmt: skip

    def scaling(self) -> None:
        """mnist on 1 process × 2 threads vs 2 MPI processes × 1 thread (see ``scaling``)."""
        w = self.workload("mnist")
        log(f"scaling: {scaling.description(w)}, {w.samples} samples per epoch ...")
        for row in scaling.measure(w, self.repeat):
            self.results.add(row)

"""``python -m bpcore.bench``: trains the same networks in bpcore, the pure-Python reference,
NumPy, PyTorch and JAX (each when installed) in one run and prints samples/s and the ratios."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

import bpcore as bp
from bpcore.bench import cnn, report, run_jax, run_torch, scaling, sklearn_fit, targets
from bpcore.bench.data import DATA_NOTE
from bpcore.bench.parity import compare_with_numpy
from bpcore.bench.suite import Suite
from bpcore.bench.workloads import (
    ALL,
    SWEEP,
    THREADS_WORKLOAD,
    THREADS_WORKLOADS,
    TRAINING,
    quick,
)

SELECTABLE = (
    *ALL,
    "memory",
    THREADS_WORKLOAD,
    scaling.WORKLOAD,
    sklearn_fit.WORKLOAD,
    cnn.WORKLOAD,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bpcore.bench",
        description="bpcore vs the pure-Python reference, NumPy, PyTorch and JAX, side by side.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated workloads out of {','.join(SELECTABLE)} (default: all); "
        "sgemm (NumPy's and bpcore's) is always measured, as the yardstick",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw a PNG bar chart (needs matplotlib)")
    parser.add_argument("--threads", type=int, help="bpcore.set_num_threads(N) (default: all)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="train each workload in N turns, every system once per turn and the order reversed "
        "every other turn, and report each system's median (default: 3, 1 with --quick)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--no-jax", action="store_true", help="skip JAX even if installed")
    args = parser.parse_args(argv)
    chosen = [w.strip() for w in args.only.split(",") if w.strip()] or list(SELECTABLE)
    unknown = [w for w in chosen if w not in SELECTABLE]
    if unknown:
        parser.error(f"--only: unknown workloads {unknown}; choose from {', '.join(SELECTABLE)}")
    args.workloads = chosen
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error(f"--repeat: must be at least 1, got {args.repeat}")
    return args


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(args: argparse.Namespace, use_torch: bool, use_jax: bool) -> dict[str, Any]:
    """What ran where: CPU, versions, threads, options."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "bpcore": bp.__version__,
        "bpcore_threads": bp.get_num_threads(),
        "torch": run_torch.version() if use_torch else None,
        "jax": run_jax.version() if use_jax else None,
        "quick": args.quick,
        "repeat": args.repeat,
        "workloads": args.workloads,
        "data": DATA_NOTE,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def parity_lines(names: Sequence[str]) -> list[str]:
    """One line per workload: how closely the NumPy MLP tracks bpcore over 5 identical steps."""
    lines = []
    for name in names:
        diff = compare_with_numpy(quick(TRAINING[name]), steps=5)
        lines.append(
            f"  {name}: 5 identical train_steps from the same weights: losses agree to "
            f"{diff['loss']:.1e} (relative), parameters to {diff['parameters']:.1e} (absolute)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark and prints the report; returns the exit status."""
    args = parse_args(argv)
    # The workloads time fit as users run it, gradient monitor included; on synthetic data
    # whose small networks stall (the sweep's h=32), its advice is not this report's business.
    warnings.filterwarnings("ignore", category=bp.GradientWarning)
    if args.threads is not None:
        bp.set_num_threads(args.threads)
    use_torch = not args.no_torch and run_torch.available()
    use_jax = not args.no_jax and run_jax.available()
    info = machine_info(args, use_torch, use_jax)
    started = time.perf_counter()

    suite = Suite(args.quick, use_torch=use_torch, repeat=args.repeat, use_jax=use_jax)
    suite.sgemm()
    for name in TRAINING:
        if name in args.workloads:
            suite.training(name, with_reference=True)
    if "sweep" in args.workloads:
        suite.sweep()
    if "predict" in args.workloads:
        suite.predict()
    if "memory" in args.workloads:
        suite.memory()
    if THREADS_WORKLOAD in args.workloads:
        suite.threads()
    if scaling.WORKLOAD in args.workloads:
        suite.scaling()
    if sklearn_fit.WORKLOAD in args.workloads:
        for row in sklearn_fit.measure(args.quick, args.repeat):
            suite.results.add(row)
    if cnn.WORKLOAD in args.workloads:
        quick = {"turns": 1, "samples": 256} if args.quick else {"turns": max(args.repeat, 3)}
        for row in cnn.measure(use_torch=use_torch, use_jax=use_jax, **quick):
            suite.results.add(row)
    suite.finish()
    results = suite.results
    checked = targets.evaluate(results)

    command = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"bpcore benchmark: python -m bpcore.bench {command}")
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['platform']}")
    print(
        f"versions: python {info['python']}, numpy {info['numpy']}, bpcore {info['bpcore']}, "
        f"torch {info['torch'] or 'not installed (skipped)'}, "
        f"{info['jax'] or 'jax and optax not installed (skipped)'}"
    )
    print(f"bpcore threads: {info['bpcore_threads']}; NumPy and JAX: their default threads; "
          "torch: 1 and 2 threads tried, the faster kept")  # fmt: skip
    print(f"turns: {args.repeat} per workload, every system once per turn, the order reversed "
          "every other turn; each row is a median")  # fmt: skip
    print(DATA_NOTE)
    print("workloads (float32 unless marked):")
    for name in TRAINING:
        if name in args.workloads:
            print(f"  {name}: {suite.workload(name).description}")
    if "sweep" in args.workloads:
        print(f"  sweep-hH-bB: {suite.workload(next(iter(SWEEP))).description}, "
              "with h = H and batch B")  # fmt: skip
    if THREADS_WORKLOAD in args.workloads:
        print(f"  {THREADS_WORKLOAD}-NAME: bpcore alone, {' and '.join(THREADS_WORKLOADS)} "
              f"on 1 thread and on {info['bpcore_threads']}, in alternating turns")  # fmt: skip
    if scaling.WORKLOAD in args.workloads:
        print(f"  {scaling.WORKLOAD}: {scaling.description(suite.workload('mnist'))}")
    if sklearn_fit.WORKLOAD in args.workloads:
        print(f"  {sklearn_fit.WORKLOAD}: {sklearn_fit.__doc__.splitlines()[0]}")
    if cnn.WORKLOAD in args.workloads:
        print(f"  {cnn.WORKLOAD} (batch B): {cnn.DESCRIPTION}")
    print()
    print(report.format_table(results))
    print()
    peers = report.format_peers(results)
    if peers:
        print("bpcore ÷ best peer (the fastest of torch, JAX's scan epoch and JAX's jit step):")
        print(peers)
        print()
    scaling_lines = scaling.summary(results)
    if scaling_lines:
        print("\n".join(scaling_lines))
        print()
    sklearn_lines = sklearn_fit.summary(results)
    if sklearn_lines:
        print("fit time and test accuracy, bpcore.sklearn vs scikit-learn (equal parameters):")
        print("\n".join(sklearn_lines))
        print()
    print("NumPy baseline computes what bpcore computes:")
    print("\n".join(parity_lines(["tiny", "small"])))
    print()
    print("targets (ratios measured in this run):")
    print(report.format_targets(checked))
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")
    if args.json:
        report.write_json(args.json, results, checked, info)
        print(f"JSON written to {args.json}")
    if args.plot and report.plot(args.plot, results):
        print(f"chart written to {args.plot}")
    if not use_torch:
        print("note: PyTorch is not installed here, so its rows and targets are skipped")
    if not use_jax:
        print("note: JAX or optax is not installed here, so their rows and targets are skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

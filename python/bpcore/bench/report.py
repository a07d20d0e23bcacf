"""The run's results as a table, the targets with PASS/MISS, a JSON file and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bpcore.bench.results import Results
from bpcore.bench.targets import Target


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(results: Results) -> str:
    """One line per (workload, system): its number, GFLOP/s and share of the best sgemm rate
    for training, and bpcore's advantage over it."""
    header = (
        f"{'workload':<15} {'system':<10} {'threads':>7} {'value':>14} {'unit':<10} "
        f"{'GFLOP/s':>8} {'%sgemm':>7} {'bpcore adv.':>11}  note"
    )
    lines = [header, "-" * len(header)]
    previous = None
    for row in results.rows:
        if previous is not None and row.workload != previous:
            lines.append("")
        previous = row.workload
        adv = results.advantage(row.workload, row.system)
        if row.system == "bpcore":
            # bpcore's own row: its advantage over the best of the peers.
            best = results.advantage_over_best(row.workload)
            adv_text = "" if best is None else f"{best:.2f}x peer"
        else:
            adv_text = "" if adv is None else f"{adv:.2f}x"
        lines.append(
            f"{row.workload:<15} {row.system:<10} "
            f"{'-' if row.threads is None else row.threads:>7} "
            f"{'skipped' if 'skipped' in row.extra else _number(row.value):>14} "
            f"{row.metric:<10} "
            f"{'-' if row.gflops is None else f'{row.gflops:.1f}':>8} "
            f"{'-' if row.sgemm_fraction is None else f'{row.sgemm_fraction:.0%}':>7} "
            f"{adv_text:>11}  {row.note}"
        )
    lines.append("")
    lines.append(
        "bpcore adv. = how many times better bpcore is: bpcore ÷ other for samples/s and "
        "GFLOP/s, other ÷ bpcore for µs per call, MB and s per fit; on bpcore's own row "
        '("peer"), over the best of torch and JAX on that workload.'
    )
    return "\n".join(lines)


def format_peers(results: Results) -> str:
    """One line per workload timed against a peer: bpcore ÷ the best of torch and JAX."""
    lines = []
    for workload in dict.fromkeys(row.workload for row in results.rows):
        best, ours = results.best_peer(workload), results.get(workload, "bpcore")
        if ours is not None and ours.metric not in ("samples/s", "us/call"):
            continue
        ratio = results.advantage_over_best(workload)
        if best is None or ours is None or ratio is None:
            continue
        lines.append(
            f"  {workload:<16} {ratio:5.2f}x  over {best.system:<8} "
            f"(bpcore {_number(ours.value)} {ours.metric}, {best.system} {_number(best.value)})"
        )
    return "\n".join(lines)


def format_targets(targets: list[Target]) -> str:
    """The issue's targets: goal, measured ratio, PASS / MISS / n/a."""
    width = max(len(t.name) for t in targets)
    lines = [f"{'target':<{width}}  {'goal':>8}  {'measured':>10}  status", "-" * (width + 36)]
    for target in targets:
        goal, got, status = target.describe()
        lines.append(f"{target.name:<{width}}  {goal:>8}  {got:>10}  {status}")
    return "\n".join(lines)


def write_json(
    path: str | Path, results: Results, targets: list[Target], info: dict[str, Any]
) -> None:
    """Writes ``{"info", "results", "targets"}`` to ``path``."""
    payload = {
        "info": info,
        "results": [row.to_json() for row in results.rows],
        "targets": [
            {
                "name": t.name,
                "goal": t.goal,
                "measured": t.measured,
                "unit": t.unit,
                "status": t.status,
            }
            for t in targets
        ],
    }
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def plot(path: str | Path, results: Results) -> bool:
    """A PNG bar chart, one panel per workload, bars = systems (log scale for wide ranges).
    Returns False,
    after printing a note, when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: --plot needs matplotlib (pip install matplotlib); no chart written")
        return False
    workloads = list(dict.fromkeys(row.workload for row in results.rows))
    colors = {"bpcore": "#d9534f", "numpy": "#5bc0de", "torch": "#f0ad4e", "reference": "#999",
              "jax scan": "#5cb85c", "jax jit": "#8fd18f", "jax": "#5cb85c",
              "1 process": "#d9534f", "2 procs": "#a94442"}  # fmt: skip
    # Rows of at most 6 panels, so that the chart stays readable at a page's width.
    columns = min(6, len(workloads))
    grid_rows = -(-len(workloads) // columns)
    fig, axes = plt.subplots(
        grid_rows, columns, figsize=(2.8 * columns, 3.4 * grid_rows), squeeze=False
    )
    for ax in list(axes.flat)[len(workloads) :]:
        ax.set_visible(False)
    for ax, workload in zip(list(axes.flat), workloads):
        # Skipped rows (the scaling row without MPI) have no value to draw.
        rows = [row for row in results.rows if row.workload == workload and row.value > 0]
        if not rows:
            ax.set_title(f"{workload} (skipped)")
            continue
        ax.bar(
            [row.system for row in rows],
            [row.value for row in rows],
            color=[colors.get(row.system, "#777") for row in rows],
        )
        values = [row.value for row in rows]
        if max(values) > 20 * min(values):  # wide ranges on a log scale, bars from below
            ax.set_yscale("log")
            ax.set_ylim(bottom=min(values) / 3)
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(workload)
        ax.set_ylabel(rows[0].metric)
        ax.tick_params(axis="x", labelrotation=45)
    fig.suptitle("bpcore benchmark (samples/s and GFLOP/s: higher is better; µs, MB: lower)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

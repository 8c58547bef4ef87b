"""Benchmark plots (PNG): throughput against batch size, and first-step (compile) time."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes
from .batch import CROSSOVER_FACTOR, crossovers
from .report import flat_row, is_peak, table_rows


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def plot_throughput(records: list[dict[str, Any]], path: Path) -> None:
    """One panel per spec × precision: samples/s (log) against batch size (log), a line per
    backend/mode, the interquartile range of the step time as error bars. Where the rows have a
    FLOP floor (a peak is known): the ceiling it sets, peak / matmul FLOPs per sample (flat in
    the batch size), dashed; half of it dotted (the crossover condition, step ≤ 2× floor); and
    each backend/mode's crossover batch ringed."""
    plt = _pyplot()
    rows = table_rows(records)
    panels: dict[tuple, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    ceilings: dict[tuple, float] = {}
    for row in rows:
        if row["status"] == "ok" and row["floor_ms"]:
            panel = (row["spec"], row["loss"] or "", row["precision"])
            ceilings[panel] = max(ceilings.get(panel, 0.0), row["batch_size"] * 1e3 / row["floor_ms"])
    crossed = {
        ((c.group[0], c.group[1], c.group[2]), f"{c.backend} {c.mode}"): c.crossover
        for c in crossovers(rows)
        if c.crossover is not None
    }
    for row in rows:
        if row["status"] == "ok":
            q1, q3 = row["step_ms"] - row["iqr_ms"] / 2, row["step_ms"] + row["iqr_ms"] / 2
            b = row["batch_size"]
            point = (b, row["samples_per_s"], b * 1e3 / q3, b * 1e3 / max(q1, 1e-9))
            panels[(row["spec"], row["loss"] or "", row["precision"])][f"{row['backend']} {row['mode']}"].append(point)
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.2), squeeze=False)
    for ax, ((spec, loss, precision), lines) in zip(axes[0], sorted(panels.items())):
        for label, points in sorted(lines.items()):
            points.sort()
            xs, ys, lo, hi = zip(*points)
            bars = ax.errorbar(
                xs,
                ys,
                # clamped: with no spread, rounding could make an error bar a hair negative
                yerr=[[max(0.0, y - a) for y, a in zip(ys, lo)], [max(0.0, b - y) for y, b in zip(ys, hi)]],
                marker="o",
                capsize=3,
                label=label,
            )
            cross = crossed.get(((spec, loss, precision), label))
            if cross is not None:
                y = dict(zip(xs, ys))[cross]
                ax.plot([cross], [y], "o", ms=13, mfc="none", mec=bars[0].get_color(), mew=1.5)
        ceiling = ceilings.get((spec, loss, precision))
        if ceiling:
            ax.axhline(ceiling, color="k", ls="--", lw=1, label="ceiling: the FLOP floor (GEMM peak)")
            ax.axhline(
                ceiling / CROSSOVER_FACTOR, color="k", ls=":", lw=1, label=f"1/{CROSSOVER_FACTOR:g} of it: crossover"
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="batch size",
            ylabel="samples / s",
            title=f"{spec}{' / ' + loss if loss else ''}, {precision}",
        )
        batches = sorted({x for points in lines.values() for x, *_ in points})
        ax.set_xticks(batches, [str(b) for b in batches])  # the swept sizes, not powers of ten
        ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_first_step(records: list[dict[str, Any]], path: Path) -> None:
    """First-step time (tracing + compilation + the step) per backend/mode, the largest batch
    of each spec, beside the steady-state step time."""
    plt = _pyplot()
    rows = [flat_row(r) for r in records if not is_peak(r)]
    rows = [r for r in rows if r["status"] == "ok"]
    largest = {}
    for r in rows:
        key = (r["spec"], r["precision"], r["backend"], r["mode"])
        if key not in largest or r["batch_size"] > largest[key]["batch_size"]:
            largest[key] = r
    items = sorted(largest.values(), key=lambda r: (r["spec"], r["precision"], r["backend"], r["mode"]))
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(items) + 2), 4.2))
    labels = [f"{r['backend']} {r['mode']}\n{r['spec']} b{r['batch_size']} {r['precision']}" for r in items]
    xs = range(len(items))
    ax.bar(xs, [r["first_step_s"] for r in items], label="first step (compile)")
    ax.bar(xs, [r["step_ms"] / 1e3 for r in items], label="steady step", alpha=0.8)
    ax.set_xticks(list(xs), labels, rotation=60, ha="right", fontsize=7)
    ax.set(yscale="log", ylabel="seconds", title="first step vs steady-state step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)

"""Benchmark plots (PNG): throughput against batch size, first-step (compile) time, and
data-parallel scaling efficiency against the device count."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes
from .batch import CROSSOVER_FACTOR, crossovers
from .report import flat_row, is_peak, table_rows
from .scaling import KINDS, devices_of, multi_device_rows, scaling_points


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def _label(row: dict[str, Any]) -> str:
    """backend and mode, and the device count where it is more than one: a line of a plot
    holds one device count, so that it never joins a 2-device point to a 1-device one."""
    n = devices_of(row)
    return f"{row['backend']} {row['mode']}" + (f", {n} devices" if n > 1 else "")


def plot_throughput(records: list[dict[str, Any]], path: Path) -> None:
    """One panel per spec × precision: samples/s (log) against batch size (log), a line per
    backend/mode, the interquartile range of the step time as error bars. Where the rows have a
    FLOP floor (a peak is known): the ceiling it sets, peak / matmul FLOPs per sample (flat in
    the batch size), dashed; half of it dotted (the crossover condition, step ≤ 2× floor); and
    each backend/mode's crossover batch ringed. Runs on several devices are lines of their own
    (the batch size is then the global batch)."""
    plt = _pyplot()
    rows = table_rows(records)
    panels: dict[tuple, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    ceilings: dict[tuple, float] = {}
    for row in rows:
        if row["status"] == "ok" and row["floor_ms"]:
            panel = (row["spec"], row["loss"] or "", row["precision"])
            ceilings[panel] = max(ceilings.get(panel, 0.0), row["batch_size"] * 1e3 / row["floor_ms"])
    crossed: dict[tuple, int] = {}
    for n in {devices_of(r) for r in rows}:  # crossovers follow one device count's batch sizes
        for c in crossovers([r for r in rows if devices_of(r) == n]):
            if c.crossover is not None:
                crossed[(c.group[:3], _label({"backend": c.backend, "mode": c.mode, "devices": n}))] = c.crossover
    for row in rows:
        if row["status"] == "ok":
            q1, q3 = row["step_ms"] - row["iqr_ms"] / 2, row["step_ms"] + row["iqr_ms"] / 2
            b = row["batch_size"]
            point = (b, row["samples_per_s"], b * 1e3 / q3, b * 1e3 / max(q1, 1e-9))
            panels[(row["spec"], row["loss"] or "", row["precision"])][_label(row)].append(point)
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
    of each spec and device count, beside the steady-state step time."""
    plt = _pyplot()
    rows = [flat_row(r) for r in records if not is_peak(r)]
    rows = [r for r in rows if r["status"] == "ok"]
    largest = {}
    for r in rows:
        key = (r["spec"], r["precision"], r["backend"], r["mode"], devices_of(r))
        if key not in largest or r["batch_size"] > largest[key]["batch_size"]:
            largest[key] = r
    items = sorted(largest.values(), key=lambda r: (r["spec"], r["precision"], r["backend"], r["mode"], devices_of(r)))
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(items) + 2), 4.2))
    labels = [f"{_label(r)}\n{r['spec']} b{r['batch_size']} {r['precision']}" for r in items]
    xs = range(len(items))
    ax.bar(xs, [r["first_step_s"] for r in items], label="first step (compile)")
    ax.bar(xs, [r["step_ms"] / 1e3 for r in items], label="steady step", alpha=0.8)
    ax.set_xticks(list(xs), labels, rotation=60, ha="right", fontsize=7)
    ax.set(yscale="log", ylabel="seconds", title="first step vs steady-state step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


#: Line style per scaling kind: strong solid, weak dashed.
_STYLES = {"strong": "-", "weak": "--"}
_MARKERS = "osD^v<>p"


def plot_scaling(records: list[dict[str, Any]], path: Path) -> None:
    """Data-parallel efficiency (:mod:`.scaling`) against the device count, one panel per
    spec × loss × precision × device × threads × inputs. A line per backend × mode × kind ×
    fixed batch (strong: the global batch B, solid; weak: the per-device batch b, dashed),
    from the one-device run, 1.0 by definition; colour per backend × mode, marker per fixed
    batch. The x axis in powers of two, ticked at the device counts; a dashed line at 1.0
    (perfect scaling). Raises ValueError without a timed run on several devices, or without
    one-device runs to hold them against: an empty figure would look like a result."""
    plt = _pyplot()
    rows = table_rows(records)
    if not multi_device_rows(rows):
        raise ValueError("no timed run on more than one device: no scaling to plot")
    points = scaling_points(rows)
    if not points:
        raise ValueError("no one-device run at a multi-device run's global or per-device batch: no scaling to plot")
    panels: dict[tuple, dict[tuple, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        fixed = p.global_batch if p.kind == "strong" else p.baseline_batch
        panel = (p.spec, p.loss, p.precision, p.device, p.threads, p.inputs)
        panels[panel][(p.backend, p.mode, p.kind, fixed)].append((p.devices, p.efficiency))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.2), squeeze=False)
    for ax, ((spec, loss, precision, device, threads, inputs), lines) in zip(axes[0], sorted(panels.items(), key=str)):
        pairs = sorted({(b, m) for b, m, _, _ in lines})
        batches = sorted({fixed for _, _, _, fixed in lines})
        order = lambda kv: (kv[0][0], kv[0][1], KINDS.index(kv[0][2]), kv[0][3])  # noqa: E731
        top = 1.0
        for (backend, mode, kind, fixed), pts in sorted(lines.items(), key=order):
            xs, ys = zip(*sorted([(1, 1.0), *pts]))
            top = max(top, *ys)
            ax.plot(
                xs,
                ys,
                ls=_STYLES[kind],
                marker=_MARKERS[batches.index(fixed) % len(_MARKERS)],
                color=colours[pairs.index((backend, mode)) % len(colours)],
                label=f"{backend} {mode}, {kind} ({'B' if kind == 'strong' else 'b'} = {fixed})",
            )
        ax.axhline(1.0, color="k", ls="--", lw=1, label="perfect scaling")
        counts = sorted({1} | {x for pts in lines.values() for x, _ in pts})
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
        title = f"{spec}{' / ' + loss if loss else ''}, {precision}, {device}" + (
            f", {threads} threads" if threads else ""
        )
        ax.set(
            ylim=(0.0, max(1.1, 1.05 * top)),  # above 1 where a split runs superlinearly (caches)
            xlabel="devices",
            ylabel="scaling efficiency",
            title=title + (", inputs from the host" if inputs == "host" else ""),
        )
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)

r"""Batch sweeps: where a backend × mode turns from overhead-bound to compute-bound.

Every timed row of a sweep has its **FLOP floor**, the time its matmul/conv FLOPs
(:mod:`~gan_backends.bench.flops`) would take at the device's GEMM peak, measured in the same
sweep (:func:`~gan_backends.bench.peaks.measure_gemm_peak`)::

    floor_ms(B) = matmul_flops(B) / peak          (linear in the batch size B)

A step can never beat its floor; the ratio ``step_ms / floor_ms`` is how far it is from it
(1 / utilisation). Two numbers per backend × mode, over the swept batch sizes:

**Crossover**: the smallest swept batch at which the measured step time is within 2× of the
floor, ``step_ms(B) ≤ 2 · floor_ms(B)``: from there on, arithmetic at the device's GEMM rate
accounts for at least half of the step, and launch overhead, Python, the optimiser's and
activations' memory traffic together for at most the other half; below it, they dominate.
It is an absolute yardstick (the same device peak for every framework), so a mode whose
arithmetic itself is slow never crosses: "not reached". Where the floor cannot be computed
(no peak) there is no crossover.

**n½** (Hockney's half-performance length, measured instead of fitted): the smallest swept
batch whose throughput reaches half the best throughput of the same mode in the sweep. With
``t(B) = t₀ + B·c`` (fixed per-step overhead ``t₀``, per-sample cost ``c``) throughput is
``B / (t₀ + B·c)``, half its asymptote exactly at ``B = t₀ / c``, where overhead and
per-sample work cost the same. It is relative to the mode itself: it tells where *its*
overhead stops mattering, however fast its arithmetic. When the throughput still grew by more
than :data:`SATURATION_GAIN` over the last doubling of the batch, the best measured is not the
plateau and n½ is a lower bound (``≥``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

#: The crossover condition: the step within this factor of its FLOP floor.
CROSSOVER_FACTOR = 2.0
#: Throughput growth over the largest batch's doubling below which the best throughput is taken
#: for the plateau (n½ exact); above it n½ is reported as a lower bound.
SATURATION_GAIN = 0.10


@dataclass(frozen=True)
class Crossover:
    """One backend × mode over the batch sizes of one configuration (spec, precision, device)."""

    group: tuple  # (spec, loss, precision, device, threads, inputs)
    backend: str
    mode: str
    batches: tuple[int, ...]  # timed batch sizes, ascending
    crossover: int | None  # smallest batch with step ≤ 2 · floor; None: not reached (or no floor)
    ratio_at_crossover: float | None  # step / floor there
    n_half: int  # smallest batch with throughput ≥ ½ · best
    saturated: bool  # the best throughput is a plateau (n½ exact) rather than still rising
    best_samples_per_s: float
    best_batch: int
    has_floor: bool


def floor_ms(matmul_flops: float | None, peak_tflops: float | None) -> float | None:
    """The step's matmul FLOPs at the peak, in milliseconds (None without either)."""
    if not matmul_flops or not peak_tflops:
        return None
    return matmul_flops / (peak_tflops * 1e12) * 1e3


def group_key(row: dict[str, Any]) -> tuple:
    return (row["spec"], row["loss"] or "", row["precision"], str(row["device"]), row["threads"], row["inputs"])


def crossover_of(points: list[dict[str, Any]]) -> tuple[int | None, float | None]:
    """The crossover batch and ``step / floor`` there, from rows with ``batch_size``,
    ``step_ms`` and ``floor_ms`` (module docstring)."""
    for row in sorted(points, key=lambda r: r["batch_size"]):
        if row["floor_ms"] and row["step_ms"] <= CROSSOVER_FACTOR * row["floor_ms"]:
            return row["batch_size"], row["step_ms"] / row["floor_ms"]
    return None, None


def n_half_of(points: list[dict[str, Any]]) -> tuple[int, bool, float, int]:
    """(n½, saturated, best samples/s, its batch) from rows with ``batch_size`` and ``samples_per_s``."""
    points = sorted(points, key=lambda r: r["batch_size"])
    best = max(points, key=lambda r: r["samples_per_s"])
    n_half = next(r["batch_size"] for r in points if r["samples_per_s"] >= 0.5 * best["samples_per_s"])
    saturated = True
    if len(points) >= 2 and best is points[-1]:
        last, before = points[-1], points[-2]
        saturated = last["samples_per_s"] <= (1 + SATURATION_GAIN) * before["samples_per_s"]
    return n_half, saturated, best["samples_per_s"], best["batch_size"]


def crossovers(rows: list[dict[str, Any]], min_batches: int = 3) -> list[Crossover]:
    """Per configuration and backend × mode with at least ``min_batches`` timed batch sizes
    (a batch sweep), its crossover and n½; rows as :func:`~gan_backends.bench.report.table_rows`
    gives them (``floor_ms`` filled in)."""
    lines: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok" and row["step_ms"]:
            lines[(group_key(row), row["backend"], row["mode"])].append(row)
    out = []
    for (group, backend, mode), points in sorted(lines.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if len({r["batch_size"] for r in points}) < min_batches:
            continue
        batch, ratio = crossover_of(points)
        n_half, saturated, best, best_batch = n_half_of(points)
        out.append(
            Crossover(
                group=group,
                backend=backend,
                mode=mode,
                batches=tuple(sorted(r["batch_size"] for r in points)),
                crossover=batch,
                ratio_at_crossover=ratio,
                n_half=n_half,
                saturated=saturated,
                best_samples_per_s=best,
                best_batch=best_batch,
                has_floor=any(r["floor_ms"] for r in points),
            )
        )
    return out


def markdown_section(rows: list[dict[str, Any]]) -> list[str]:
    """The summary's batch-sweep section: crossover and n½ per backend × mode (empty without
    a batch sweep)."""
    found = crossovers(rows)
    if not found:
        return []
    lines = [
        "## Batch sweep: overhead-bound → compute-bound",
        "",
        f"**Crossover**: the smallest swept batch whose step time is within {CROSSOVER_FACTOR:g}× of its FLOP "
        "floor (the step's matmul FLOPs at the GEMM peak measured in this sweep): from there, arithmetic at "
        "the device's rate is at least half the step. **n½**: the smallest batch reaching half of the mode's "
        "best throughput in the sweep (where overhead and per-sample work cost the same; `≥`: throughput still "
        f"rising by > {SATURATION_GAIN:.0%} at the largest batch, so a lower bound). Definitions: "
        "`docs/benchmarking.md`.",
        "",
    ]
    by_group: dict[tuple, list[Crossover]] = defaultdict(list)
    for c in found:
        by_group[c.group].append(c)
    for (spec, loss, precision, device, threads, inputs), items in by_group.items():
        title = f"{spec}{' / ' + loss if loss else ''}, {precision}, {device}" + (
            f", {threads} threads" if threads else ""
        )
        title += ", inputs from the host" if inputs == "host" else ""
        lines += [
            f"### {title}",
            "",
            "| backend | mode | batches | crossover (step ≤ 2× floor) | step / floor there | n½ "
            "| best samples/s (batch) |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in items:
            if c.crossover is not None:
                cross, ratio = str(c.crossover), f"{c.ratio_at_crossover:.2f}"
            else:
                cross, ratio = ("not reached" if c.has_floor else "no peak measured"), "–"
            n_half = str(c.n_half) if c.saturated else f"≥ {c.n_half}"
            lines.append(
                f"| {c.backend} | {c.mode} | {c.batches[0]}–{c.batches[-1]} | {cross} | {ratio} | {n_half} "
                f"| {c.best_samples_per_s:,.0f} ({c.best_batch}) |"
            )
        lines.append("")
    return lines

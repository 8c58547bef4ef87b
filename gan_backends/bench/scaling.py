r"""Data-parallel scaling: each N-device run held against one-device runs of the same sweep.

A benchmark row's ``batch_size`` is the **global** batch B, split over its ``devices`` N (each
device trains on ``b = B / N`` rows), and its ``samples_per_s`` is ``B / t_N(B)``, ``t_N`` the
median step time on N devices. Two yardsticks, each against the one-device row of the same
backend, mode, spec, loss, precision, device, threads and inputs (nothing else may differ, or
the ratio would measure that difference too)::

    speed-up   S = samples_per_s(N devices, B) / samples_per_s(1 device, B₁)
    efficiency E = S / N                                           (1: perfect scaling)

**Strong scaling** (global batch fixed): ``B₁ = B``, the same work on one device. Then
``S = t_1(B) / t_N(B)``, the step's speed-up from splitting it, and ``E = S / N``.

**Weak scaling** (per-device batch fixed): ``B₁ = B / N = b``, what one of the N devices does
alone. Ideal data parallelism does N times the work in the same time, so
``E = samples_per_s_N / (N · samples_per_s_1) = t_1(b) / t_N(N·b)``, the one-device step time
over the N-device one; ``S`` is the throughput ratio ("scaled speed-up").

A point is absent when its one-device row is (not in the sweep, failed, or ``B`` not divisible
by ``N`` for weak scaling): a missing baseline is not guessed from another batch size, whose
throughput differs for reasons that have nothing to do with parallelism (:mod:`.batch`).

Pure Python over flat rows (:func:`~gan_backends.bench.report.flat_row` or
:func:`~gan_backends.bench.report.table_rows`), so that reports can be rebuilt from a
``results.json`` without any framework installed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

#: Scaling kinds, in the order the report shows them.
KINDS = ("strong", "weak")

#: Why the scaling figures of logical CPU devices are no hardware speed-up.
CPU_NOTE = (
    "These devices are logical partitions of one CPU's cores (XLA host devices, TF logical CPUs, gloo ranks), "
    "so these figures measure each engine's data-parallel overhead, not a speed-up from more hardware."
)

_HEADINGS = {
    "strong": "## Strong scaling (global batch fixed)",
    "weak": "## Weak scaling (per-device batch fixed)",
}
_EXPLAINED = {
    "strong": "Each N-device run against one device at the same global batch B (each of the N devices gets B / N "
    "rows): speed-up S = samples/s on N devices ÷ samples/s on one device = t₁(B) / t_N(B); efficiency S / N "
    "(1: perfect).",
    "weak": "Each N-device run against one device at its per-device batch b = B / N (the work of one of the N "
    "devices alone): efficiency = samples/s on N devices ÷ (N · samples/s on one device) = t₁(b) / t_N(N·b), "
    "1 when N devices do N times the work in the same time; speed-up: the throughput ratio.",
}


@dataclass(frozen=True)
class ScalingPoint:
    """One N-device row against its one-device baseline (module docstring for the formulas)."""

    kind: str  # "strong" (baseline at the global batch) or "weak" (baseline at the per-device batch)
    backend: str
    mode: str
    spec: str
    loss: str  # "" for the spec's own
    precision: str
    device: str  # as requested ("cpu", "cuda", "default")
    threads: int | None
    inputs: str
    devices: int  # N
    global_batch: int  # B
    per_device_batch: float  # B / N (an int whenever N divides B)
    samples_per_s: float  # on N devices at B
    baseline_batch: int  # the one-device run's batch: B (strong) or B / N (weak)
    baseline_samples_per_s: float
    speedup: float  # samples_per_s / baseline_samples_per_s
    efficiency: float  # speedup / N

    @property
    def group(self) -> tuple:
        """What the report's sub-tables are split by: everything but backend, mode and spec."""
        return (self.precision, self.device, self.threads, self.inputs)


def devices_of(row: dict[str, Any]) -> int:
    """A row's device count; rows (and records) from before data parallelism have none: 1."""
    return int(row.get("devices") or 1)


def group_key(row: dict[str, Any]) -> tuple:
    """Everything that must match between an N-device row and its baseline, but the batch."""
    return (
        row["backend"],
        row["mode"],
        row["spec"],
        row["loss"] or "",
        row["precision"],
        str(row["device"]),
        row["threads"],
        row["inputs"],
    )


def _timed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "ok" and r.get("samples_per_s")]


def multi_device_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timed rows on more than one device (what a scaling report is about)."""
    return [r for r in _timed(rows) if devices_of(r) > 1]


def scaling_points(rows: list[dict[str, Any]]) -> list[ScalingPoint]:
    """Strong and weak points of every timed N-device row whose one-device baseline is among
    ``rows``: strong first, then by configuration, device count and global batch. Where one
    configuration was timed more than once (a resumed sweep run again), its fastest row stands
    for it, on either side of the ratio."""
    best: dict[tuple, dict[str, Any]] = {}
    for row in _timed(rows):
        key = (group_key(row), devices_of(row), row["batch_size"])
        if key not in best or row["samples_per_s"] > best[key]["samples_per_s"]:
            best[key] = row
    points: list[ScalingPoint] = []
    for (group, n, batch), row in best.items():
        if n <= 1:
            continue
        per_device = batch // n if batch % n == 0 else batch / n
        baselines = {"strong": batch, "weak": batch // n if batch % n == 0 else None}
        for kind, baseline_batch in baselines.items():
            base = None if baseline_batch is None else best.get((group, 1, baseline_batch))
            if base is None:
                continue
            speedup = row["samples_per_s"] / base["samples_per_s"]
            backend, mode, spec, loss, precision, device, threads, inputs = group
            points.append(
                ScalingPoint(
                    kind=kind,
                    backend=backend,
                    mode=mode,
                    spec=spec,
                    loss=loss,
                    precision=precision,
                    device=device,
                    threads=threads,
                    inputs=inputs,
                    devices=n,
                    global_batch=batch,
                    per_device_batch=per_device,
                    samples_per_s=row["samples_per_s"],
                    baseline_batch=baseline_batch,
                    baseline_samples_per_s=base["samples_per_s"],
                    speedup=speedup,
                    efficiency=speedup / n,
                )
            )
    order = lambda p: (  # noqa: E731
        KINDS.index(p.kind),
        tuple(map(str, p.group)),
        p.spec,
        p.loss,
        p.backend,
        p.mode,
        p.devices,
        p.global_batch,
    )
    return sorted(points, key=order)


def on_cpu(row: dict[str, Any]) -> bool:
    """The run's devices are CPU ones: asked for by name, or the framework's default device
    turned out to be the CPU (``device_name`` as the framework reported it)."""
    return str(row["device"]).lower().startswith("cpu") or "cpu" in str(row.get("device_name") or "").lower()


def _group_title(group: tuple) -> str:
    precision, device, threads, inputs = group
    title = f"{precision}, {device}" + (f", {threads} threads" if threads else "")
    return title + (", inputs from the host" if inputs == "host" else "")


def markdown_section(rows: list[dict[str, Any]]) -> list[str]:
    """The summary's scaling sections, strong then weak, a table per precision × device ×
    threads × inputs (empty without an N-device row). With CPU devices, :data:`CPU_NOTE` under
    the first section: there the figures are an engine's overhead, and must not read as a
    speed-up from more hardware."""
    multi = multi_device_rows(rows)
    if not multi:
        return []
    note = [CPU_NOTE, ""] if any(on_cpu(r) for r in multi) else []
    points = scaling_points(rows)
    if not points:
        return [
            "## Data-parallel scaling",
            "",
            "No one-device run of the same configuration at an N-device run's global batch (strong scaling) or "
            "per-device batch (weak scaling): nothing to scale against. Add those batch sizes with one device.",
            "",
            *note,
        ]
    lines: list[str] = []
    for kind in KINDS:
        found = [p for p in points if p.kind == kind]
        if not found:
            continue
        lines += [_HEADINGS[kind], "", _EXPLAINED[kind], ""]
        lines += note
        note = []
        by_group: dict[tuple, list[ScalingPoint]] = defaultdict(list)
        for p in found:
            by_group[p.group].append(p)
        for group, items in by_group.items():
            lines += [
                f"### {_group_title(group)}",
                "",
                "| backend | mode | spec | devices | global batch | per-device batch | samples/s "
                "| one-device samples/s | speed-up | efficiency |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for p in items:
                spec = p.spec + (f" / {p.loss}" if p.loss else "")
                lines.append(
                    f"| {p.backend} | {p.mode} | {spec} | {p.devices} | {p.global_batch} | {p.per_device_batch:g} "
                    f"| {p.samples_per_s:,.0f} | {p.baseline_samples_per_s:,.0f} (b{p.baseline_batch}) "
                    f"| {p.speedup:.2f} | {p.efficiency:.2f} |"
                )
            lines.append("")
    return lines

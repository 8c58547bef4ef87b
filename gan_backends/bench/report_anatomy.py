"""The summary's "Anatomy of a step" section: per configuration and backend × mode, what one
step launches, the host's time to enqueue it against the time to finish it, and its FLOP and
memory floors beside the measured step (:mod:`.anatomy`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .anatomy import ops_per_step


def row_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The anatomy columns of a record's flat row (None where the record has none)."""
    anatomy = record.get("anatomy") or {}
    dispatch = record.get("dispatch") or {}
    synced = (dispatch.get("synced") or {}).get("median")
    return {
        "ops_per_step": ops_per_step(anatomy),
        "finish_ms": None if synced is None else synced * 1e3,
        "memory_bytes": anatomy.get("memory_bytes"),
        "bandwidth_gb_s": None if not anatomy.get("bandwidth_bytes_per_s") else anatomy["bandwidth_bytes_per_s"] / 1e9,
        "memory_floor_ms": anatomy.get("memory_floor_ms"),
    }


def best_bandwidth(rows: list[dict[str, Any]]) -> None:
    """Read every row's memory floor against the best bandwidth of its device and threads in
    the sweep: on a CPU each run measures it under the load of its moment (as the GEMM peak),
    and the highest is the least disturbed estimate; one figure keeps the floors comparable."""
    best: dict[tuple, float] = {}
    for r in rows:
        if r.get("bandwidth_gb_s"):
            key = (r["device"], r["threads"])
            best[key] = max(best.get(key, 0.0), r["bandwidth_gb_s"])
    for r in rows:
        bw = best.get((r["device"], r["threads"]))
        if bw and r.get("memory_bytes"):
            r["bandwidth_gb_s"], r["memory_floor_ms"] = bw, r["memory_bytes"] / (bw * 1e9) * 1e3


def _ops(record: dict[str, Any]) -> str:
    """The counts of one step with what they count, shortest first."""
    ops = (record.get("anatomy") or {}).get("ops") or {}
    if ops.get("error"):
        return "count failed"
    parts = []
    for key, label in (
        ("kernels", "kernels"),
        ("launches", "launches"),
        ("aten_ops", "aten ops"),
        ("launched", "launched"),
        ("fusions", "fusions"),
        ("compute_ops", "graph ops"),
    ):
        if ops.get(key) is not None:
            parts.append(f"{ops[key]:,} {label}")
    return ", ".join(parts) or "–"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _bound(row: dict[str, Any]) -> str:
    """The step against the larger of its floors: × that floor, and which one."""
    floors = {"FLOP": row.get("floor_ms"), "memory": row.get("memory_floor_ms")}
    known = {k: v for k, v in floors.items() if v}
    if not known or row.get("step_ms") is None:
        return "–"
    name = max(known, key=lambda k: known[k])
    return f"{row['step_ms'] / known[name]:.1f}× ({name})"


def markdown_section(
    ranked_rows: dict[tuple, list[dict[str, Any]]],
    record_of: Callable[[dict[str, Any]], dict[str, Any] | None],
    title: Callable[[tuple], str],
) -> list[str]:
    """Per configuration (``ranked_rows``, as :func:`.report.ranked` gives it), a table of the
    timed rows whose record (``record_of(row)``) has an anatomy (empty when none has)."""
    tables = []
    for key, rows in ranked_rows.items():
        lines = []
        for r in rows:
            record = record_of(r)
            if record is None or not record.get("anatomy") or r["step_ms"] is None:
                continue
            lines.append(
                f"| {r['backend']} | {r['mode']} | {_ops(record)} | {_ms(r['dispatch_ms'])} | {_ms(r['finish_ms'])} "
                f"| {_ms(r['floor_ms'])} | {_ms(r['memory_floor_ms'])} | {r['step_ms']:.3g} | {_bound(r)} |"
            )
        if lines:
            tables += [
                f"### {title(key)}",
                "",
                "| backend | mode | one step launches | enqueue ms | finish ms | FLOP floor ms | memory floor ms "
                "| step ms | step / larger floor |",
                "|---|---|---|---|---|---|---|---|---|",
                *lines,
                "",
            ]
    if not tables:
        return []
    return [
        "## Anatomy of a step",
        "",
        "What one step launches (torch: operators dispatched, and on a GPU kernels and launch calls; JAX `jit` "
        "and TensorFlow `xla`: the compiled XLA program's entry instructions that run work, and its fusions; "
        "TensorFlow `function`/`eager`: the step's graph operations), counted once after the timed blocks. "
        "Enqueue: the host's time for one step's call to return on an idle device; finish: the same step "
        "until the device is done (equal where the framework computes in the call, as on a CPU). Floors: the "
        "step's matmul FLOPs at the peak, and the bytes it must move (parameters, gradients and optimiser "
        "state read and written, activations written and read back) at the memory bandwidth "
        "(`gan_backends/bench/anatomy.py`; on a CPU the best copy rate measured in the sweep's runs). "
        "A step near its larger floor is bound by it; far above both, by overhead (launches, Python, dispatch).",
        "",
        *tables,
    ]

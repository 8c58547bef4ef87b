"""Benchmark results as a terminal table, JSON, CSV and a Markdown summary.

Results are grouped by *configuration* (spec, loss, batch size, device count, precision, device,
threads); within one, the backends and modes are ranked by median step time, each with its ratio to the
fastest. Failed runs stay in every output with their status and reason. A sweep's peak runs
(:data:`~gan_backends.bench.config.PEAK`) are no rows of their own: they give every row its
peak and FLOP floor, and a batch sweep's summary its crossovers (:mod:`.batch`). Runs on
several devices (``config["devices"]`` > 1; ``batch_size`` is then the global batch) are ranked
only among themselves, and held against one-device runs in the scaling sections (:mod:`.scaling`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from . import report_anatomy, scaling
from .batch import floor_ms, markdown_section
from .config import PEAK
from .report_contention import caption, footnote, mode_cell, progress_suffix, row_fields

COLUMNS = (
    "backend",
    "mode",
    "spec",
    "loss",
    "batch_size",
    "devices",
    "precision",
    "device",
    "device_name",
    "threads",
    "inputs",
    "status",
    "step_ms",
    "iqr_ms",
    "min_ms",
    "max_ms",
    "first_step_s",
    "samples_per_s",
    "tflops",
    "utilisation",
    "peak_tflops",
    "matmul_flops",
    "floor_ms",
    "step_over_floor",
    "dispatch_ms",
    "dispatch_fraction",
    "peak_device_mib",
    "host_peak_rss_mib",
    "ops_per_step",
    "finish_ms",
    "memory_bytes",
    "bandwidth_gb_s",
    "memory_floor_ms",
    "disturbed",
    "others_share",
    "involuntary_per_s",
    "disturbed_because",
    "reason",
)


def _mib(n: int | None) -> float | None:
    return None if n is None else n / 2**20


def is_peak(record: dict[str, Any]) -> bool:
    """A sweep's GEMM-peak measurement rather than a timed training step."""
    return record.get("config", {}).get("backend") == PEAK


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """One record as a flat row of :data:`COLUMNS` (None where a failed run has no value).
    ``devices``: 1 for records from before data-parallel runs, which have none."""
    c = record["config"]
    row: dict[str, Any] = {k: c.get(k) for k in ("backend", "mode", "spec", "loss", "batch_size", "precision")}
    row.update(
        devices=scaling.devices_of(c),
        device=c.get("device") or "default",  # as requested: frameworks name one CPU differently
        device_name=record.get("device"),
        threads=c.get("threads"),
        inputs=c.get("inputs", "device"),
        status=record["status"],
    )
    timing = record.get("timing")
    if timing:
        steady = timing["steady"]
        row.update(
            step_ms=steady["median"] * 1e3,
            iqr_ms=(steady["q3"] - steady["q1"]) * 1e3,
            min_ms=steady["min"] * 1e3,
            max_ms=steady["max"] * 1e3,
            first_step_s=timing["first_step_s"],
            samples_per_s=record.get("samples_per_s"),
            tflops=record.get("achieved_tflops"),
            utilisation=record.get("utilisation"),
            peak_tflops=record.get("peak_tflops"),
            peak_device_mib=_mib(record["memory"]["peak_device_bytes"]),
            host_peak_rss_mib=_mib(record["memory"]["host_peak_rss_bytes"]),
            matmul_flops=(record.get("flops_per_step") or {}).get("matmul"),
        )
        dispatch = record.get("dispatch")
        if dispatch:
            row.update(dispatch_ms=dispatch["call"]["median"] * 1e3, dispatch_fraction=dispatch["fraction"])
    row.update(row_fields(record), **report_anatomy.row_fields(record))
    row["reason"] = record.get("reason")
    return {k: row.get(k) for k in COLUMNS}


def config_key(row: dict[str, Any]) -> tuple:
    """What a ranking table holds fixed. The device count is part of it: 2 devices at global
    batch 64 is not the same work per device as 1 at 64, and a ratio between them would be a
    scaling figure (:mod:`.scaling`), not a ranking."""
    return (
        row["spec"],
        row["loss"] or "",
        row["precision"],
        row["batch_size"],
        scaling.devices_of(row),
        str(row["device"]),
        row["threads"],
        row["inputs"],
    )


def config_title(key: tuple) -> str:
    spec, loss, precision, batch, devices, device, threads, inputs = key
    title = f"{spec}{' / ' + loss if loss else ''}, batch {batch}"
    title += f" over {devices} devices ({batch / devices:g} each)" if devices > 1 else ""
    title += f", {precision}, {device}"
    title += f", {threads} threads" if threads else ""
    return title + (", inputs copied from the host in every step" if inputs == "host" else "")


def _peak_key(row: dict[str, Any]) -> tuple:
    return (row["device"], row["threads"], row["precision"])


def measured_peaks(records: list[dict[str, Any]]) -> dict[tuple, tuple[float, str]]:
    """(device, threads, precision) -> (TFLOP/s, source) of the sweep's own peak runs. On a CPU
    in float32 every timed run also measured that same GEMM (NumPy's, 2048²) under the load of
    its moment: the best of all of them is the least disturbed estimate on a shared machine."""
    peaks: dict[tuple, tuple[float, str]] = {}
    for record in records:
        if is_peak(record) and record["status"] == "ok":
            key = _peak_key(flat_row(record))
            if key not in peaks or record["peak_tflops"] > peaks[key][0]:
                peaks[key] = (record["peak_tflops"], record["peak_source"])
    best_run: dict[tuple, float] = {}
    for record in records:
        source = str(record.get("peak_source") or "")
        if is_peak(record) or not record.get("peak_tflops") or not source.startswith("measured"):
            continue
        key = _peak_key(flat_row(record))
        if key in peaks and key[2] == "float32" and record["peak_tflops"] > best_run.get(key, 0.0):
            best_run[key] = record["peak_tflops"]
    for key, tflops in best_run.items():
        if tflops > peaks[key][0]:
            peaks[key] = (
                tflops,
                f"best of this sweep's float32 GEMM measurements: its peak run {peaks[key][0]:.3g}, "
                f"the timed runs' own (NumPy 2048²) up to {tflops:.3g} TFLOP/s",
            )
    return peaks


def _peak_devices(row: dict[str, Any]) -> int:
    """How many devices' peaks a run's work is read against: N GPUs for an N-GPU run; one CPU
    for N logical CPU devices (they share its cores)."""
    return 1 if scaling.on_cpu(row) else scaling.devices_of(row)


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows of the timed runs, their utilisation and FLOP floor against one peak per device,
    threads and precision. Where the sweep measured the peak in a run of its own, that is the
    peak; otherwise the highest among the runs' own: on a CPU each run measures the GEMM peak
    under the load of its moment, and the best of them is the least disturbed estimate. One
    shared peak keeps the utilisations of a table comparable (a data-sheet GPU peak is the same
    in every run), kept per device: an N-GPU run is read against N of them.
    ``floor_ms``: the step's matmul FLOPs at that peak (:mod:`.batch`)."""
    measured = measured_peaks(records)
    rows = [flat_row(r) for r in records if not is_peak(r)]
    peaks: dict[tuple, float] = {key: tflops for key, (tflops, _) in measured.items()}
    for r in rows:
        if r["peak_tflops"] and _peak_key(r) not in measured:
            one = r["peak_tflops"] / _peak_devices(r)
            peaks[_peak_key(r)] = max(peaks.get(_peak_key(r), 0.0), one)
    for r in rows:
        peak = peaks.get(_peak_key(r))
        peak = peak * _peak_devices(r) if peak else peak
        if r["tflops"] is not None and peak:
            r["peak_tflops"], r["utilisation"] = peak, r["tflops"] / peak
        r["floor_ms"] = floor_ms(r["matmul_flops"], peak) if r["step_ms"] is not None else None
        if r["floor_ms"]:
            r["step_over_floor"] = r["step_ms"] / r["floor_ms"]
    report_anatomy.best_bandwidth(rows)
    return rows


def ranked(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Rows grouped by configuration, fastest first (failures last), with ``ratio`` to the
    fastest (1.00 for it)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in table_rows(records):
        groups[config_key(row)].append(row)
    for rows in groups.values():
        rows.sort(key=lambda r: (r["step_ms"] is None, r["step_ms"] or 0.0))
        best = rows[0]["step_ms"]
        for r in rows:
            r["ratio"] = None if r["step_ms"] is None or best is None else r["step_ms"] / best
    order = lambda kv: tuple((0, x, "") if isinstance(x, int) else (1, 0, str(x)) for x in kv[0])  # noqa: E731
    return dict(sorted(groups.items(), key=order))


def peak_source(records: list[dict[str, Any]], key: tuple) -> str:
    spec, loss, precision, batch, devices, device, threads, inputs = key
    measured = measured_peaks(records).get((device, threads, precision))
    if measured:
        return measured[1]
    sources = {
        r.get("peak_source")
        for r in records
        if r.get("peak_source") and not is_peak(r) and config_key(flat_row(r)) == key
    }
    return "; ".join(sorted(sources)) or "unknown"


def _row_id(row: dict[str, Any]) -> tuple:
    return (row["backend"], row["mode"], *config_key(row))


def write_json(records: list[dict[str, Any]], path: Path, meta: dict[str, Any]) -> None:
    """The records as run, each timed one with ``derived``: the peak it is read against, its
    FLOP floor and step/floor (computed over the whole sweep, see :func:`table_rows`); and
    ``scaling``: the sweep's strong and weak scaling points (:mod:`.scaling`; empty without
    runs on several devices)."""
    rows = table_rows(records)
    derived = {_row_id(r): r for r in rows if r["step_ms"] is not None}
    out = []
    for record in records:
        row = None if is_peak(record) else derived.get(_row_id(flat_row(record)))
        if row is not None:
            record = {
                **record,
                "derived": {k: row[k] for k in ("peak_tflops", "utilisation", "floor_ms", "step_over_floor")},
            }
        out.append(record)
    points = [dataclasses.asdict(p) for p in scaling.scaling_points(rows)]
    atomic_write_text(path, json.dumps({**meta, "results": out, "scaling": points}, indent=1, default=str))


def write_csv(records: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for row in table_rows(records):
        writer.writerow(row)
    atomic_write_text(path, buf.getvalue())


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _dispatch(row: dict[str, Any]) -> str:
    """Dispatch time with its share of the same steps synchronised (100%: a synchronous framework)."""
    if row["dispatch_ms"] is None:
        return "–"
    return f"{row['dispatch_ms']:.3g} ({row['dispatch_fraction']:.0%})"


def _on_devices(row: dict[str, Any]) -> str:
    """`` on N devices`` after a (global) batch size when N > 1; nothing for one device."""
    return f" on {row['devices']} devices" if row["devices"] > 1 else ""


def _one_device_count(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows for the batch-sweep section: all of them when they share one device count,
    else the one-device ones. Its crossovers and n½ are read along the batch sizes of one
    configuration, which :func:`.batch.group_key` does not split by device count, so mixed
    counts would make one line of two sweeps."""
    counts = {r["devices"] for r in rows}
    return rows if len(counts) <= 1 else [r for r in rows if r["devices"] == 1]


def markdown(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Per configuration, the backends ranked with ratios; then the peaks, the batch sweep and
    the data-parallel scaling sections (each only where the sweep has them); then failures;
    then the environment."""
    env = meta.get("environment", {})
    lines = ["# gan-backends bench", ""]
    if meta.get("command"):
        lines += ["```bash", meta["command"], "```", ""]
    lines += [
        f"Step = n_critic D updates + one G update on device-resident inputs; median of "
        f"{meta.get('plan', {}).get('repeats', '?')} timed blocks after warm-up (device synchronised "
        "before each clock read), IQR in brackets; FLOP/s from matmul/conv FLOPs counted from the spec. "
        "Floor: those FLOPs at the peak. Dispatch: median time for one step's call to return on an idle "
        "device, with its share of the same step synchronised (100%: the framework computes in the call, "
        "as torch and TensorFlow do on a CPU; the overhead is then not separable by a clock).",
        "",
    ]
    for key, rows in ranked(records).items():
        lines += [f"## {config_title(key)}", ""]
        peak = next((r["peak_tflops"] for r in rows if r["peak_tflops"]), None)
        if peak:
            lines += [f"Utilisation against a peak of {peak:.3g} TFLOP/s ({peak_source(records, key)}).", ""]
        lines += [
            "| rank | backend | mode | ms/step (IQR) | × fastest | samples/s | TFLOP/s | util. | first step s "
            "| peak dev MiB | host RSS MiB | floor ms | dispatch ms (share) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for i, r in enumerate(rows, 1):
            if r["status"] != "ok":
                lines.append(f"| – | {r['backend']} | {r['mode']} | **{r['status']}** | | | | | | | | | |")
                continue
            lines.append(
                f"| {i} | {r['backend']} | {mode_cell(r)} | {r['step_ms']:.2f} ({r['iqr_ms']:.2f}) | {r['ratio']:.2f} "
                f"| {r['samples_per_s']:,.0f} | {_fmt(r['tflops'], '.3f')} | {_fmt(r['utilisation'], '.0%')} "
                f"| {r['first_step_s']:.2f} | {_fmt(r['peak_device_mib'], '.0f')} | {r['host_peak_rss_mib']:.0f} "
                f"| {_fmt(r['floor_ms'], '.3g')} | {_dispatch(r)} |"
            )
        lines.append("")
        lines += footnote(rows)
    peaks = [r for r in records if is_peak(r) and r["status"] == "ok"]
    if peaks:
        lines += ["## Peaks measured in this sweep", ""]
        for r in peaks:
            c = r["config"]
            lines.append(
                f"- {c.get('device') or 'default'}, {c['precision']}, {c.get('threads') or 'default'} threads: "
                f"**{r['peak_tflops']:.3g} TFLOP/s** ({r['peak_source']}; {r['device']})"
            )
        for (device, threads, precision), (tflops, source) in measured_peaks(records).items():
            lines.append(
                f"- used for {device}, {precision}, {threads or 'default'} threads (floors, utilisation): "
                f"**{tflops:.3g} TFLOP/s** ({source})"
            )
        lines.append("")
    rows = table_rows(records)
    by_id = {_row_id(flat_row(r)): r for r in records if not is_peak(r)}
    lines += report_anatomy.markdown_section(ranked(records), lambda row: by_id.get(_row_id(row)), config_title)
    lines += markdown_section(_one_device_count(rows))
    lines += scaling.markdown_section(rows)
    failures = [flat_row(r) for r in records if r["status"] != "ok"]
    if failures:
        lines += ["## Runs without a timing", ""]
        for r in failures:
            lines.append(
                f"- `{r['backend']}/{r['mode']}` {r['spec']} b{r['batch_size']}{_on_devices(r)} {r['precision']}: "
                f"**{r['status']}** — {r['reason']}"
            )
        lines.append("")
    if env:
        lines += ["## Environment", ""]
        versions = ", ".join(b["version"] for b in env.get("backends", []) if b.get("available"))
        gpus = "; ".join(f"{g['name']} (driver {g['driver']})" for g in env.get("gpus", [])) or "none"
        lines += [
            f"- CPU: {env.get('cpu_model')} ({env.get('cpu_count')} cores); GPUs: {gpus}",
            f"- Python {env.get('python')}; {versions}",
            f"- gan-backends {env.get('gan_backends')}, commit {env.get('git_commit')}"
            + (" (with uncommitted changes)" if env.get("git_dirty") else ""),
            "",
        ]
    return "\n".join(lines)


def render(records: list[dict[str, Any]], console: Any) -> None:
    """The ranked tables on a rich console, one per configuration."""
    from rich.markup import escape
    from rich.table import Table

    for key, rows in ranked(records).items():
        table = Table(title=config_title(key), title_justify="left", caption=caption(rows), caption_justify="left")
        # Short headers: the table must fit an 80-column terminal (or a CI log) unwrapped.
        for col in ("backend", "mode", "ms/step", "IQR", "×best", "samples/s", "TFLOP/s", "util", "1st s", "dev MiB"):
            table.add_column(col, justify="left" if col in ("backend", "mode") else "right", no_wrap=True)
        for r in rows:
            if r["status"] != "ok":
                table.add_row(r["backend"], r["mode"], f"[red]{r['status']}[/]", escape(str(r["reason"])[:60]))
                continue
            table.add_row(
                r["backend"],
                f"{r['mode']} [yellow]⚠[/]" if r["disturbed"] else r["mode"],
                f"{r['step_ms']:.2f}",
                f"{r['iqr_ms']:.2f}",
                f"{r['ratio']:.2f}",
                f"{r['samples_per_s']:,.0f}",
                _fmt(r["tflops"], ".3f"),
                _fmt(r["utilisation"], ".0%"),
                f"{r['first_step_s']:.2f}",
                _fmt(r["peak_device_mib"], ".0f"),
            )
        console.print(table)


def progress_line(record: dict[str, Any], skipped: bool) -> str:
    """One line per finished run, printed while the sweep goes on."""
    from rich.markup import escape

    r = flat_row(record)
    head = f"{r['backend']}/{r['mode']} {r['spec']} b{r['batch_size']}{_on_devices(r)} {r['precision']}"
    if is_peak(record):
        head = f"peak: {r['precision']} GEMM {r['batch_size']}²"
        if not skipped and r["status"] == "ok":
            return f"{head}: [bold]{record['peak_tflops']:.3g} TFLOP/s[/] on {escape(str(record['device']))}"
    if skipped:
        return f"[dim]{head}: already recorded ({r['status']})[/]"
    if r["status"] != "ok":
        return f"{head}: [red]{r['status']}[/] {escape(str(r['reason']))}"
    return (
        f"{head}: [bold]{r['step_ms']:.2f} ms[/] (IQR {r['iqr_ms']:.2f}), {r['samples_per_s']:,.0f} samples/s, "
        f"first step {r['first_step_s']:.2f} s{progress_suffix(record)}"
    )

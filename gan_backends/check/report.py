"""Rendering a :class:`~gan_backends.check.model.CheckReport`.

The report is laid out once, as plain tables (:func:`tables`); the terminal (rich) and Markdown
renderers only format them, so both always say the same thing. JSON is in :mod:`.schema`, the
divergence plot in :mod:`.plot`.

The terminal shows, by default, one compact table (:func:`summary_table`: per pair × quantity
group the worst error, its tolerance, the verdict, and the first layer where two backends part;
:mod:`.summary`) and then one verdict line per pair (``torch vs numpy: PASS``). ``full`` detail
prints every per-tensor table first, as the Markdown file always has them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._io import atomic_write_text
from ..environment import environment
from ..spec import NETWORKS
from .model import CheckReport, PairReport
from .plot import plot_divergence
from .summary import summarise
from .verdicts import ROUNDING_FLIPS

#: How much of a report the terminal shows: the compact table, only its failing groups, or
#: every per-tensor table before it.
DETAILS = ("summary", "failures", "full")


def fmt(x: float | None) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.2e}"


@dataclass
class TableData:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    #: Lines printed under the table (verdicts, first divergence).
    notes: list[str] = field(default_factory=list)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def headline(report: CheckReport) -> str:
    s = report.settings
    n = report.spec.numerics
    return (
        f"gan-backends check: spec={report.spec.name!r} dtype={n.dtype} precision={n.matmul_precision} "
        f"batch={s['batch_size']} steps={s['steps']} seed={s['seed']} params={s['n_params']:,}"
    )


def tables(report: CheckReport, *, verbose: bool = True) -> list[TableData]:
    out = [_backends_table(report)]
    out += [_pair_table(pair, verbose) for pair in report.pairs]
    if report.free_run is not None and report.pairs and verbose:
        out.append(_free_running_table(report))
    if report.lock is not None:
        out.append(_lock_step_table(report, verbose))
    return out


def _backends_table(report: CheckReport) -> TableData:
    t = TableData("backends", ["backend", "mode", "device", "dtype", "version", "status"])
    for b in report.backends:
        t.rows.append([b.name, b.mode, b.device, b.dtype, b.version, "ok" if b.error is None else f"FAIL {b.error}"])
    return t


def _pair_table(pair: PairReport, verbose: bool) -> TableData:
    title = f"{pair.a} vs {pair.b}: {verdict(pair.passed)}  (rel = ||{pair.a} - {pair.b}|| / ||{pair.b}||)"
    t = TableData(title, ["quantity", "rel err", "max abs", "tol", ""])
    for row in pair.rows:
        if verbose or not row.passed:
            t.rows.append([row.quantity, fmt(row.rel), fmt(row.max_abs), f"{row.tol:.0e}", _mark(row.passed, row.note)])
    first = pair.first_divergence
    for net in NETWORKS:
        layers = [r for r in pair.layers if r.network == net]
        if not layers:
            continue
        bad = first.get(net)
        if bad is None:
            if not verbose:
                continue
            worst = max(layers, key=lambda r: r.rel)
            t.notes.append(
                f"{net}: all {len(layers)} layers agree "
                f"(worst layer {worst.index}, {worst.layer}: rel {fmt(worst.rel)})"
            )
            continue
        # Show the layers up to the first divergence, and the one after: that is where to look.
        for row in layers[: bad.index + 2]:
            t.rows.append(
                [f"{row.label}", fmt(row.rel), fmt(row.max_abs), f"{row.tol:.0e}", _mark(row.passed, row.note)]
            )
        t.notes.append(
            f"FAIL {net}: first layer parting beyond tolerance is layer {bad.index}, {bad.layer}: "
            f"rel {fmt(bad.rel)}, max abs {fmt(bad.max_abs)} (tol {bad.tol:.0e}); every layer before it agrees"
        )
    return t


def _mark(passed: bool, note: str) -> str:
    return ("ok " if passed else "FAIL ") + note


def _free_running_table(report: CheckReport) -> TableData:
    run = report.free_run
    assert run is not None
    t = TableData(
        f"free-running: {run.steps} steps from the same start (drift = a float32 backend vs its own float64 run)",
        ["pair", "network", "divergence", "own drift", "ratio", "worst ratio", "float64 gap"],
    )
    for pair, nets in run.cross.items():
        for net in NETWORKS:
            series = nets[net]
            if not series.rel:
                continue
            k = len(series.rel) - 1
            own = max(
                (run.drift[n][net].rel[k] for n in pair if n in run.drift and len(run.drift[n][net].rel) > k),
                default=None,
            )
            ratios = [r for r in run.ratio(pair, net) if r is not None]
            control = run.control.get(pair, {}).get(net)
            t.rows.append(
                [
                    f"{pair[0]} vs {pair[1]}",
                    net,
                    fmt(series.rel[k]),
                    fmt(own),
                    f"{ratios[-1]:.2f}" if ratios and run.ratio(pair, net)[-1] is not None else "-",
                    f"{max(ratios):.2f}" if ratios else "-",
                    fmt(control.rel[k]) if control is not None and len(control.rel) > k else "-",
                ]
            )
    t.notes.append(
        f"a step passes within the fixed tolerance or within {report.settings['drift_factor']:g}x the own drift "
        "when the float64 runs agree; the verdicts are the 'params' rows above"
    )
    return t


def _lock_step_table(report: CheckReport, verbose: bool) -> TableData:
    lock = report.lock
    assert lock is not None
    t = TableData(
        f"lock-step: each step from the {lock.reference} reference's state; update error vs the reference's update",
        ["backend", "quantity", "rel err", "max abs", "tol", ""],
    )
    if lock.skipped:
        t.notes.append(f"skipped: {lock.skipped}")
    for name, rows in report.lock_rows.items():
        for row in rows:
            if not verbose and row.passed:
                continue
            t.rows.append(
                [name, row.quantity, fmt(row.rel), fmt(row.max_abs), f"{row.tol:.1e}", _mark(row.passed, row.note)]
            )
    passed = all(r.passed for rows in report.lock_rows.values() for r in rows)
    t.title = f"{t.title}: {verdict(passed)}"
    for net, floor in lock.floor.items():
        if floor and verbose:
            t.notes.append(
                f"{net}: tolerance = update tolerance + {ROUNDING_FLIPS} one-ulp rounding flips of p + Δ "
                f"(one flip: median {np.median(floor):.1e} of the update)"
            )
    return t


# -- terminal -------------------------------------------------------------------------------
def _styled(cell: str) -> str:
    text = escape(cell)
    if cell.startswith(("FAIL", "nan")):
        return f"[red]{text}[/]"
    if cell.startswith(("ok", "PASS")):
        return f"[green]{text[:2]}[/]{text[2:]}" if cell.startswith("ok") else f"[green]{text}[/]"
    return text


def summary_table(report: CheckReport, *, failures_only: bool = False) -> TableData:
    """The compact table: one row per pair × quantity group (:func:`.summary.summarise`), the
    pair named on its first row."""
    t = TableData(
        "the worst of each group, rel = ||a - b|| / ||b|| (--verbose: every tensor)",
        ["pair", "group", "worst", "tol", "", "at"],
    )
    shown = None
    for g in summarise(report):
        if failures_only and g.passed:
            continue
        where = f"first parting: {g.first_divergence}" if g.first_divergence else g.worst
        t.rows.append(
            ["" if g.pair == shown else g.pair, g.group, fmt(g.rel), f"{g.tol:.0e}", verdict(g.passed), where]
        )
        shown = g.pair
    return t


def verdict_lines(report: CheckReport) -> list[str]:
    """A failed backend's error, then ``<a> vs <b>: PASS|FAIL`` per pair, then the lock-step's."""
    lines = [f"{b.name}: FAIL {b.error}" for b in report.backends if b.error is not None]
    lines += [f"{p.a} vs {p.b}: {verdict(p.passed)}" for p in report.pairs]
    lock = report.lock
    if lock is not None:
        passed = all(r.passed for rows in report.lock_rows.values() for r in rows)
        passed = passed and not (lock.skipped and lock.update)
        lines.append(
            f"lock-step vs {lock.reference}: {verdict(passed)}"
            + (f" (skipped: {lock.skipped})" if lock.skipped else "")
        )
    return lines


def _highlight(text: str) -> str:
    return escape(text).replace("PASS", "[green]PASS[/]").replace("FAIL", "[red]FAIL[/]")


def _print_table(console: Console, data: TableData, *, compact: bool = False) -> None:
    title = _highlight(data.title)
    if data.rows:
        table = Table(title=title, title_justify="left", box=box.HEAVY_HEAD)
        if compact:  # narrow: no borders, one space between columns
            table = Table(
                title=title,
                title_justify="left",
                box=box.SIMPLE_HEAD,
                show_edge=False,
                padding=(0, 1, 0, 0),
                pad_edge=False,
            )
        for col in data.columns:
            right = col in ("rel err", "max abs", "tol", "worst")
            wrap = compact and col == data.columns[-1]  # the compact table wraps only its last column
            overflow = "fold" if wrap else "ellipsis"  # a long name wraps whole, never cut
            table.add_column(col, justify="right" if right else "left", no_wrap=compact and not wrap, overflow=overflow)
        for row in data.rows:
            table.add_row(*(_styled(c) for c in row))
        console.print(table)
    else:
        console.print(title)
    for note in data.notes:
        console.print(_styled(note) if note.startswith("FAIL") else f"  {escape(note)}")


def render(report: CheckReport, console: Console, *, detail: str = "summary") -> None:
    """The report on the terminal. ``detail``: ``summary`` (the compact table and the verdict
    lines), ``failures`` (the compact table's failing groups only; none: no table), ``full``
    (every per-tensor table, then the summary)."""
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {', '.join(DETAILS)}, got {detail!r}")
    console.print(f"[bold]{escape(headline(report))}[/]")
    if detail == "full":
        for data in tables(report, verbose=True):
            _print_table(console, data)
    summary = summary_table(report, failures_only=detail == "failures")
    if summary.rows:
        _print_table(console, summary, compact=True)
    for line in verdict_lines(report):
        console.print(_highlight(line))
    if not report.pairs:
        console.print("[red]no backend pair to compare[/]: at least two backends must run")
    console.print("[bold green]PASSED[/]" if report.passed else "[bold red]FAILED[/]")


# -- files ----------------------------------------------------------------------------------
def markdown(report: CheckReport, environment: dict | None = None) -> str:
    lines = [f"# {headline(report)}", "", f"**{'PASSED' if report.passed else 'FAILED'}**", ""]
    if environment:
        lines += [f"- {k}: {v}" for k, v in _flat_env(environment)] + [""]
    for data in tables(report, verbose=True):
        lines += [f"## {data.title}", ""]
        if data.rows:
            lines.append("| " + " | ".join(data.columns) + " |")
            lines.append("|" + "|".join("---" for _ in data.columns) + "|")
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in data.rows]
            lines.append("")
        lines += [f"- {note}" for note in data.notes]
        if data.notes:
            lines.append("")
    return "\n".join(lines)


def _flat_env(env: dict, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in env.items():
        if isinstance(v, dict):
            out += _flat_env(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", str(v)))
    return out


def write_json(report: CheckReport, path: str | Path, environment: dict) -> None:
    data = report.to_dict()
    data["environment"] = environment
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_markdown(report: CheckReport, path: str | Path, environment: dict) -> None:
    atomic_write_text(path, markdown(report, environment) + "\n")


def write_reports(
    report: CheckReport,
    *,
    json_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    plot_path: str | Path | None = None,
) -> list[str]:
    """Write the files asked for (JSON and Markdown with the environment: versions, devices,
    CPU, commit) and return a line per file written, for the terminal."""
    names = [b.name for b in report.backends]
    env = environment(names) if json_path or markdown_path else {}
    written = []
    if json_path is not None:
        write_json(report, json_path, env)
        written.append(f"report written to {json_path}")
    if markdown_path is not None:
        write_markdown(report, markdown_path, env)
        written.append(f"Markdown written to {markdown_path}")
    if plot_path is not None:
        plot_divergence(report, plot_path)
        written.append(f"plot written to {plot_path}")
    return written

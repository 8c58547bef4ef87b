"""Rendering a :class:`~gan_backends.check.agreement.CheckReport`: rich tables and JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._io import atomic_write_text
from .agreement import CheckReport


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.2e}"


def render(report: CheckReport, console: Console, *, verbose: bool = True) -> None:
    s = report.settings
    console.print(
        f"[bold]gan-backends check[/] spec={report.spec.name!r} dtype={report.spec.numerics.dtype} "
        f"precision={report.spec.numerics.matmul_precision} batch={s['batch_size']} steps={s['steps']} "
        f"seed={s['seed']} params={s['n_params']:,}"
    )
    backends = Table(title="backends", title_justify="left")
    for col in ("backend", "mode", "device", "dtype", "version", "status"):
        backends.add_column(col)
    for b in report.backends:
        status = "[green]ok[/]" if b.error is None else f"[red]{escape(b.error)}[/]"
        backends.add_row(b.name, b.mode, b.device, b.dtype, b.version, status)
    console.print(backends)
    for pair in report.pairs:
        verdict = "[green]PASS[/]" if pair.passed else "[red]FAIL[/]"
        title = f"{pair.a} vs {pair.b}: {verdict}  (rel = ||{pair.a} - {pair.b}|| / ||{pair.b}||)"
        table = Table(title=title, title_justify="left")
        for col, justify in (
            ("quantity", "left"),
            ("rel err", "right"),
            ("max abs", "right"),
            ("tol", "right"),
            ("", "left"),
        ):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for row in pair.rows:
            if not verbose and row.passed:
                continue
            mark = ("[green]ok[/] " if row.passed else "[red]FAIL[/] ") + escape(row.note)
            table.add_row(row.quantity, _fmt(row.rel), _fmt(row.max_abs), f"{row.tol:.0e}", mark)
        if verbose or not pair.passed:
            console.print(table)
        else:
            worst = pair.worst
            console.print(
                f"{pair.a} vs {pair.b}: {verdict}  worst {worst.quantity}: rel {_fmt(worst.rel)} (tol {worst.tol:.0e})"
            )
    if not report.pairs:
        console.print("[red]no backend pair to compare[/]: at least two backends must run")
    console.print("[bold green]PASSED[/]" if report.passed else "[bold red]FAILED[/]")


def write_json(report: CheckReport, path: str | Path, environment: dict) -> None:
    data = report.to_dict()
    data["environment"] = environment
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")

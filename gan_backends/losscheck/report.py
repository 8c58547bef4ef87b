"""Terminal and JSON output of a :class:`~gan_backends.losscheck.check.LossCheckReport`."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._io import atomic_write_text
from .check import LossCheckReport


def _err(x: float | None, tol: float) -> str:
    if x is None:
        return "[dim]-[/]"
    if not math.isfinite(x):
        return f"[red]{x}[/]"
    return f"[red]{x:.2e}[/]" if x > tol else f"{x:.2e}"


def render(report: LossCheckReport, console: Console) -> None:
    """One table row per battery case, then the diagnosis and the declaration that accepts it."""
    loss = report.loss.penalty if report.loss.penalty != "none" else report.loss.name
    title = f"losscheck {report.function}: {report.framework}, role {report.role}, loss {loss}"
    tolerances = {c.dtype: c.tolerance for c in report.cases}
    caption = "relative errors; tolerance (value/grad): " + ", ".join(
        f"{dt} {v:.0e}/{g:.0e}" for dt, (v, g) in tolerances.items()
    )
    table = Table(title=escape(title), title_justify="left", caption=caption, caption_justify="left")
    for col in ("case", "dtype", "shape", "value err", "grad err", "result"):
        table.add_column(col)
    for c in report.cases:
        result = "[yellow]skipped[/]" if c.skipped else ("[green]ok[/]" if c.passed else "[red]FAIL[/]")
        if c.error:
            table.add_row(c.name, c.dtype, c.shape, "[red]error[/]", "", result)
            continue
        table.add_row(
            c.name, c.dtype, c.shape, _err(c.value_error, c.tolerance[0]), _err(c.grad_error, c.tolerance[1]),
            result if c.finite else f"{result} [red](non-finite)[/]",
        )  # fmt: skip
    console.print(table)
    for c in report.cases:
        for note in c.notes:
            console.print(f"[dim]{escape(c.name)}: {escape(note)}[/]")
        if c.error:
            console.print(f"[red]{escape(c.name)}:[/] {escape(c.error)}", soft_wrap=True)
    verdict = report.verdict
    colour = "green" if report.passed else "red"
    console.print(f"[bold {colour}]{verdict}[/]")
    d = report.diagnosis
    if d is None:
        return
    console.print(f"[bold]diagnosis:[/] {escape(d.summary)}", soft_wrap=True)
    if d.formula:
        console.print(f"  fitted: {escape(d.formula)}", soft_wrap=True)
    if d.conventions:
        console.print(f"  if intended, declare: --convention {escape(','.join(d.conventions))}", soft_wrap=True)
    bugs = [f.kind for f in d.findings if f.convention is None]
    if bugs:
        console.print(f"  [red]not a convention[/] (no declaration makes it right): {', '.join(bugs)}")


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def write_json(report: LossCheckReport, path: Path) -> None:
    """Strict JSON (infinities as strings), written atomically."""
    atomic_write_text(path, json.dumps(_jsonable(report.to_json()), indent=2, allow_nan=False) + "\n")

"""``check --framework-defaults`` on the terminal and as JSON (the rows: :mod:`.framework_defaults`).

The table is the point of the command: a person porting a GAN by hand reads, per framework, which
of its defaults differs from the spec and what that costs in G(z), D(x) and the parameters after
training. The JSON (schema ``gan-backends/framework-defaults-v1``) holds the same rows.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._io import atomic_write_text
from .framework_defaults import DefaultRow
from .measures import finite

SCHEMA = "gan-backends/framework-defaults-v1"
COLUMNS = ("framework", "default used", "spec says", "framework default", "G(z)", "D(x)", "params", "loss at l=30")


def render(rows: list[DefaultRow], spec_name: str, steps: int, console: Console) -> None:
    """The rows as a table of relative errors, a failed variant's cells holding its error."""
    table = Table(
        title=f"each framework with its own defaults vs the spec {spec_name!r} (float64 reference); "
        f"relative errors, params after {steps} steps",
        title_justify="left",
    )
    for col in COLUMNS:
        table.add_column(col)
    for r in rows:
        values = (r.g_out, r.d_out, r.params, r.saturated)
        cells = [f"{x:.1e}" if x == x else f"[red]{escape(r.error)}[/]" for x in values]
        table.add_row(r.framework, r.setting, r.spec_value, r.default, *cells)
    console.print(table)
    console.print(
        "'as specified' is the measure's own floor: float32 rounding with every value set from the spec. "
        "'loss at l=30': the loss term softplus(30) of a confidently wrong D, where BCE on probabilities saturates."
    )


def write_json(rows: list[DefaultRow], path: str | Path) -> None:
    """Strict JSON: a failed variant's NaN errors are written as ``null``."""
    data = [{k: finite(v) if isinstance(v, float) else v for k, v in dataclasses.asdict(r).items()} for r in rows]
    atomic_write_text(path, json.dumps({"schema": SCHEMA, "rows": data}, indent=2))

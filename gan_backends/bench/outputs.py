"""What a finished sweep leaves in its folder: results.json/.csv, summary.md and the plots.

``results.jsonl`` (appended run by run, :mod:`.sweep`) is what a sweep resumes from; these files
are rewritten from all of its records after every sweep, each with the same ``meta`` (the command,
the sweep, the timing plan, the environment), so that a result is never read without how it was
measured. A plot that cannot be drawn (nothing was timed, no one-device baseline) is a warning,
not a failure: the tables still hold every record.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..environment import environment
from .config import Sweep
from .plot import plot_first_step, plot_scaling, plot_throughput
from .report import markdown, write_csv, write_json

RESULTS_SCHEMA = "gan-backends/bench-results-v1"


@dataclass
class Written:
    """The files written (names in ``out``) and, per plot not drawn, ``(what, why)``."""

    files: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)


def results_meta(sweep: Sweep, argv: list[str]) -> dict[str, Any]:
    """What every output file records beside the results: the command that made them, the sweep,
    its timing plan, and the environment of its backends."""
    return {
        "schema": RESULTS_SCHEMA,
        "command": shlex.join(["gan-backends", *argv]),
        "sweep": sweep.to_dict(),
        "plan": dataclasses.asdict(sweep.plan),
        "environment": environment(list(sweep.modes)),
    }


def write_outputs(records: list[dict[str, Any]], out: Path, meta: dict[str, Any]) -> Written:
    """Write results.json, results.csv, summary.md, throughput.png, first_step.png, and
    scaling.png where a run used several devices."""
    written = Written()
    write_json(records, out / "results.json", meta)
    write_csv(records, out / "results.csv")
    atomic_write_text(out / "summary.md", markdown(records, meta))
    try:
        plot_throughput(records, out / "throughput.png")
        plot_first_step(records, out / "first_step.png")
    except ValueError as exc:  # nothing timed: no plot to draw
        written.warnings.append(("no plots", str(exc)))
    written.files = ["results.json", "results.csv", "summary.md", "throughput.png", "first_step.png"]
    if any(r.get("config", {}).get("devices", 1) > 1 for r in records):
        try:
            plot_scaling(records, out / "scaling.png")
            written.files.append("scaling.png")
        except ValueError as exc:  # no one-device baseline timed
            written.warnings.append(("no scaling plot", str(exc)))
    return written

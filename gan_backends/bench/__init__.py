"""The benchmark job: time each backend's training step in its own process.

``config`` (what runs), ``worker`` (one run, in a subprocess), ``sweep`` (runs them, appends
results, resumes), ``timing`` (the clock discipline), ``flops`` (FLOPs per step from the spec),
``peaks`` (device peaks), ``report`` and ``plot`` (tables, JSON/CSV/Markdown, PNG). Nothing here
imports a framework except the worker, through the backend registry.
"""

from .config import ALL_MODES, PRECISIONS, RunConfig, Sweep, default_sweep
from .sweep import read_records, run_sweep
from .timing import Spread, Timing, TimingPlan, time_interleaved, time_step

__all__ = [
    "ALL_MODES",
    "PRECISIONS",
    "RunConfig",
    "Spread",
    "Sweep",
    "Timing",
    "TimingPlan",
    "default_sweep",
    "read_records",
    "run_sweep",
    "time_interleaved",
    "time_step",
]

"""The JSON form of a check report, schema ``gan-backends/check-v2`` (documented in
``docs/check-report.md``). Strict JSON: a non-finite number is written as ``null``.

The dependency is one-way: :class:`~.model.CheckReport` calls :func:`report_to_dict`, and this
module names the report's types for annotations only (it imports nothing of the model at run time).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..spec import NETWORKS
from .measures import finite

if TYPE_CHECKING:
    from .layers import LayerRow
    from .model import CheckReport, Row
    from .trajectory import Series

SCHEMA = "gan-backends/check-v2"


def _row(row: Row | LayerRow) -> dict[str, Any]:
    return {k: finite(v) if isinstance(v, float) else v for k, v in asdict(row).items()}


def _series(series: Series) -> list[float | None]:
    return [finite(x) for x in series.rel]


def report_to_dict(report: CheckReport) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "passed": report.passed,
        "spec": report.spec.to_dict(),
        "settings": report.settings,
        "backends": [asdict(b) for b in report.backends],
        "pairs": [],
    }
    for pair in report.pairs:
        first = pair.first_divergence
        data["pairs"].append(
            {
                "a": pair.a,
                "b": pair.b,
                "passed": pair.passed,
                "rows": [_row(r) for r in pair.rows],
                "layers": [_row(r) for r in pair.layers],
                "first_divergence": {net: (_row(first[net]) if first.get(net) else None) for net in NETWORKS},
            }
        )
    run = report.free_run
    if run is not None:
        data["free_running"] = {
            "steps": run.steps,
            "pairs": [
                {
                    "a": a,
                    "b": b,
                    **{
                        net: {
                            "rel": _series(run.cross[(a, b)][net]),
                            "drift_ratio": [finite(x) if x is not None else None for x in run.ratio((a, b), net)],
                            "float64_rel": _series(run.control[(a, b)][net]) if (a, b) in run.control else None,
                        }
                        for net in NETWORKS
                    },
                }
                for a, b in run.cross
            ],
            "own_drift": {name: {net: _series(s) for net, s in nets.items()} for name, nets in run.drift.items()},
            "failed": run.failed,
        }
    lock = report.lock
    if lock is not None:
        data["lock_step"] = {
            "steps": lock.steps,
            "reference": lock.reference,
            "skipped": lock.skipped or None,
            "floor": {net: [finite(x) for x in xs] for net, xs in lock.floor.items()},
            "backends": {
                name: {
                    "passed": all(r.passed for r in report.lock_rows.get(name, [])),
                    "rows": [_row(r) for r in report.lock_rows.get(name, [])],
                    "running_statistics": _series(lock.buffers[name]) if lock.buffers.get(name) else None,
                    **{net: _series(s) for net, s in nets.items()},
                }
                for name, nets in lock.update.items()
            },
            "failed": lock.failed,
        }
    return data

"""The check report's data: one :class:`Row` per compared quantity, grouped by pair.

These are plain records, filled by :func:`~gan_backends.check.agreement.run_check` and re-judged
in place by :mod:`.verdicts`; the renderers (:mod:`.report`, :mod:`.plot`) and the JSON layout
(:mod:`.schema`) only read them. Nothing here runs a backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..spec import GANSpec
from .layers import LayerRow, first_divergence
from .schema import report_to_dict
from .trajectory import FreeRun, LockStep


@dataclass
class Row:
    """One quantity of a pair (or of a lock-step backend): its error, the tolerance it was held
    to (a judge may widen it, saying why in ``note``) and the verdict."""

    quantity: str
    kind: str
    rel: float
    max_abs: float
    tol: float
    passed: bool
    note: str = ""


def severity(row: Row | LayerRow) -> float:
    """How far a row is from its tolerance (``rel / tol``; infinite when not finite): the worst
    row of a set is the one nearest to failing, or furthest past it, whatever its scale."""
    return math.inf if not math.isfinite(row.rel) else row.rel / row.tol


@dataclass
class PairReport:
    """Two backends compared: ``rows`` (values, losses, gradients, parameters after steps) and
    ``layers`` (every layer's output). ``b`` is the yardstick: the reference when in the pair."""

    a: str
    b: str
    rows: list[Row]
    layers: list[LayerRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows) and all(r.passed for r in self.layers)

    @property
    def worst(self) -> Row:
        return max(self.rows, key=severity)

    @property
    def first_divergence(self) -> dict[str, LayerRow | None]:
        return first_divergence(self.layers)


@dataclass
class BackendInfo:
    """What ran: a backend's mode, device, version and dtype, or the error that stopped it."""

    name: str
    mode: str
    device: str
    version: str
    dtype: str
    error: str | None = None


@dataclass
class CheckReport:
    """The whole check: every backend, every pair, the trajectories and their verdicts."""

    spec: GANSpec
    settings: dict[str, Any]
    backends: list[BackendInfo]
    pairs: list[PairReport] = field(default_factory=list)
    free_run: FreeRun | None = None
    lock: LockStep | None = None
    #: Lock-step verdicts, per backend: one row per network (its worst step).
    lock_rows: dict[str, list[Row]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            all(b.error is None for b in self.backends)
            and not (self.lock is not None and self.lock.skipped and self.lock.update)
            and all(p.passed for p in self.pairs)
            and all(r.passed for rows in self.lock_rows.values() for r in rows)
            and bool(self.pairs)
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as strict JSON data, schema ``gan-backends/check-v2`` (:mod:`.schema`)."""
        return report_to_dict(self)

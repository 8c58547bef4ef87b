"""The check at a glance: per pair and quantity group, the worst row and its verdict.

A full report has a row per tensor (every gradient, every layer, every network after every
step): hundreds of lines, all but a few of them ``ok``. What a person needs first is, per pair,
whether each kind of quantity agrees, how close the worst one came to its tolerance, and, for
layers, where two backends first part. One :class:`GroupSummary` per pair × group gives that;
the per-tensor rows stay in the report (``--verbose``, JSON, Markdown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..spec import NETWORKS
from .layers import LayerRow
from .model import CheckReport, PairReport, Row, severity

#: The row kinds of a pair, in the order a check computes them, and the group each is shown as
#: (``params``: each network's parameters along the free-running steps).
GROUPS: dict[str, str] = {"value": "values", "loss": "losses", "grad": "gradients", "param": "params"}
LAYERS = "layers"
LOCK_STEP = "lock-step"
#: A row's quantity without what its group already says (the names are stable: docs/check-report.md):
#: ``grad generator.0.kernel`` -> ``generator.0.kernel``, ``generator params after 10 steps`` and
#: ``generator update, worst step (3)`` -> ``generator, step 10`` / ``generator, step 3``.
_SHORT = (
    (re.compile(r"^(?:grad|loss) "), ""),
    (re.compile(r"^(.+?) (?:params|update),? (?:after |worst step \()(\d+)(?: steps?|\))$"), r"\1, step \2"),
    (re.compile(r"^(.+?) statistics, worst step \((\d+)\)$"), r"\1 statistics, step \2"),
)


@dataclass(frozen=True)
class GroupSummary:
    """The worst of one group of rows: its error, the tolerance it was held to, where it is."""

    pair: str
    group: str
    #: How many rows the group holds (tensors, layers, or lock-step networks).
    count: int
    rel: float
    tol: float
    passed: bool
    #: The worst row's quantity, without what the group already says (``discriminator.4.bias``
    #: for the gradients, ``generator, step 10`` for the params); a layer's label for ``layers``.
    worst: str
    #: ``layers`` only: per network, the first layer beyond tolerance ("" when every layer agrees).
    first_divergence: str = ""


def _short(quantity: str) -> str:
    for pattern, replacement in _SHORT:
        quantity = pattern.sub(replacement, quantity)
    return quantity


def _worst(pair: str, group: str, rows: list[Row] | list[LayerRow], label: str = "") -> GroupSummary:
    worst = max(rows, key=severity)
    name = worst.label if isinstance(worst, LayerRow) else _short(worst.quantity)
    return GroupSummary(pair, group, len(rows), worst.rel, worst.tol, all(r.passed for r in rows), name, label)


def _pair_groups(pair: PairReport) -> list[GroupSummary]:
    name = f"{pair.a} vs {pair.b}"
    out = []
    for kind, group in GROUPS.items():
        rows = [r for r in pair.rows if r.kind == kind]
        if rows:
            out.append(_worst(name, group, rows))
    if pair.layers:
        first = pair.first_divergence
        parted = "; ".join(row.label for net in NETWORKS if (row := first.get(net)) is not None)
        out.append(_worst(name, LAYERS, pair.layers, parted))
    return out


def summarise(report: CheckReport) -> list[GroupSummary]:
    """One entry per pair × group (forward values, losses, gradients, parameters along the
    free-running steps, layers), then one per backend's lock-step against the reference."""
    out = [group for pair in report.pairs for group in _pair_groups(pair)]
    reference = report.lock.reference if report.lock is not None else "reference"
    for name, rows in report.lock_rows.items():
        if rows:
            out.append(_worst(f"{name} vs {reference}", LOCK_STEP, rows))
    return out

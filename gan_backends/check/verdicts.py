"""The verdict rules: when a row that misses its fixed tolerance still passes, and why.

The fixed tolerances (:mod:`.tolerances`) are float32's rounding through a few layers and a few
steps. Three things a correct float32 stack does exceed them, and each has a rule here that
lets the row pass only with its evidence: the same two backends run in float64 from the same
numbers agree to float64 precision (the math is the same), and the float32 gap is within a few
times float32's own error. A float32 pre-activation within rounding of a LeakyReLU kink lands on
either side in two stacks (:func:`judge_gradients_at_kinks`); rounding grows through a deep
network (:func:`judge_values_by_depth`); GAN training amplifies both, step by step
(:func:`judge_step`, :func:`trajectory_rows`, :func:`lock_rows`).
"""

from __future__ import annotations

import math

import numpy as np

from .model import PairReport, Row
from .tolerances import Tolerance
from .trajectory import FreeRun, LockStep, Pair

#: How far two float32 trajectories may part, in units of float32's own drift from float64.
DRIFT_FACTOR = 3.0

#: One-ulp rounding flips of ``p + Δ`` a lock-step update may show (see :func:`lock_rows`).
ROUNDING_FLIPS = 2
#: At most this fraction of lock-step steps (and at least one) may be rounding outliers (see
#: :func:`lock_rows`).
MAX_OUTLIER_FRACTION = 0.1
#: A forward value may miss the fixed tolerance by float32 rounding accumulated through a deep
#: network, up to this many times the tolerance (see :func:`judge_values_by_depth`).
DEPTH_FACTOR = 10.0


def judge_step(rel: float, tol: float, own_drift: float, control_rel: float | None, tol64: float) -> tuple[bool, str]:
    """One free-running step of a pair: within the fixed tolerance, or within float32's drift.

    Training a GAN amplifies rounding: a pre-activation within float32 rounding of a LeakyReLU
    kink lands on either side in two stacks, and Adam turns the tiny gradient difference into an
    lr-sized step. So a step that misses the fixed tolerance passes when (1) the same two
    backends, run in float64 from the same numbers, agree within the float64 tolerance (the
    computations are the same), and (2) the float32 gap is at most ``DRIFT_FACTOR`` times the
    larger of the two backends' own float32-vs-float64 drift.
    """
    if math.isfinite(rel) and rel <= tol:
        return True, ""
    if not math.isfinite(rel) or control_rel is None:
        return False, ""
    bound = DRIFT_FACTOR * own_drift
    if control_rel <= tol64 and rel <= bound:
        return (
            True,
            f"{rel / own_drift:.1f}x float32's own drift ({own_drift:.1e}); float64 runs agree to {control_rel:.1e}",
        )
    return False, f"float32 drift {own_drift:.1e}; float64 runs part by {control_rel:.1e}"


def trajectory_rows(run: FreeRun, pair: Pair, tol: Tolerance, tol64: Tolerance) -> list[Row]:
    """Per network: parameters after step 1, after the last step, and the worst step."""
    rows = []
    for net in run.cross[pair]:  # the networks, and G's moving average where the spec keeps one
        series = run.cross[pair][net]
        control = run.control.get(pair, {}).get(net)
        verdicts = []
        for k, rel in enumerate(series.rel):
            own = max((run.drift[n][net].rel[k] for n in pair if n in run.drift), default=0.0)
            control_rel = control.rel[k] if control is not None and k < len(control.rel) else None
            passed, note = judge_step(rel, tol.param, own, control_rel, tol64.param)
            limit = tol.param if rel <= tol.param or not passed else DRIFT_FACTOR * own
            verdicts.append((passed, note, limit))
        if len(series.rel) < run.steps:  # a backend stopped: the missing steps fail
            rows.append(Row(f"{net} params", "param", math.nan, math.nan, tol.param, False, series.note or "stopped"))
            continue
        for k, label in ((0, "after 1 step"), (run.steps - 1, f"after {run.steps} steps")):
            passed, note, limit = verdicts[k]
            rows.append(
                Row(
                    f"{net} params {label}",
                    "param",
                    series.rel[k],
                    series.max_abs[k],
                    limit,
                    passed,
                    series.note or note,
                )
            )
        if run.steps > 2:
            worst = max(
                range(run.steps),
                key=lambda k: series.rel[k] / verdicts[k][2] if math.isfinite(series.rel[k]) else math.inf,
            )
            passed, note, limit = verdicts[worst]
            all_passed = all(v[0] for v in verdicts)
            rows.append(
                Row(
                    f"{net} params, worst step ({worst + 1})",
                    "param",
                    series.rel[worst],
                    series.max_abs[worst],
                    limit,
                    all_passed,
                    note,
                )
            )
    return rows


def lock_rows(run: LockStep, name: str, tol: Tolerance, tol64: Tolerance, start_shown: bool = False) -> list[Row]:
    """Per network, the worst step of ``name``'s lock-step update error against the reference.

    A step passes within the update tolerance plus ``ROUNDING_FLIPS`` one-ulp rounding flips
    of ``p + Δ`` (:func:`.trajectory.update_floor`). A step beyond that is a *rounding outlier*,
    and passes, when the same backend's float64 step from the same state agrees with the
    reference within the float64 tolerance: a float32 pre-activation on the other side of a
    LeakyReLU kink changes one gradient entry slightly, and Adam's ``m / sqrt(v)`` turns that
    into a visible update for parameters whose ``v`` is small. Outliers must stay rare (one, or
    at most ``MAX_OUTLIER_FRACTION`` of the steps) and the median clean step within the gradient tolerance: an
    error in float32 arithmetic shows at every step. Where the backend's float32 arithmetic was
    already shown right on this network (``start_shown``: its start-point values, losses and
    gradients agree with the reference), outliers need not be rare, each still explained by its
    float64 twin, and the median clean step need only be within the update tolerance: a large
    network (the 64x64 DCGAN: 6M parameters, BatchNorm, Adam with beta1 0 under WGAN-GP) has
    entries whose gradient is at float32's noise level at every step, and Adam's normalisation
    turns their noise into lr-sized updates.

    BatchNorm running statistics (batch means and variances of activations) are judged as
    values, with ``DEPTH_FACTOR`` for the depth they come from.
    """
    rows = []
    for net in run.update[name]:  # the networks, and G's moving average where the spec keeps one
        series = run.update[name][net]
        if not series.rel:
            rows.append(Row(f"{net} update", "update", math.nan, math.nan, tol.update, False, run.failed.get(name, "")))
            continue
        limits = [tol.update + ROUNDING_FLIPS * run.floor[net][k] for k in range(len(series.rel))]
        control = run.control.get(name, {}).get(net, {})
        misses = [k for k, (r, lim) in enumerate(zip(series.rel, limits)) if not (math.isfinite(r) and r <= lim)]
        explained = [k for k in misses if math.isfinite(series.rel[k]) and control.get(k, math.inf) <= tol64.update]
        clean = [k for k in range(len(series.rel)) if k not in explained]
        # The typical step, judged without the explained outliers (none left: a one-step run).
        median = float(np.median([series.rel[k] for k in clean])) if clean else 0.0
        few = len(explained) <= max(1, int(MAX_OUTLIER_FRACTION * run.steps))
        # Start point shown right: the clean steps need only be within the update tolerance.
        rare = (few and median <= tol.grad) or (start_shown and median <= tol.update)
        passed = len(series.rel) == run.steps and len(misses) == len(explained) and (not misses or rare)
        pool = clean if clean else list(range(len(series.rel)))
        worst = max(pool, key=lambda k: series.rel[k] / limits[k] if math.isfinite(series.rel[k]) else math.inf)
        note = series.note or run.failed.get(name, "") or f"median {median:.1e}"  # of the clean steps
        if explained:
            big = max(explained, key=lambda k: series.rel[k])
            note += (
                f"; {len(explained)} kink outlier(s): {series.rel[big]:.1e} at step {big + 1}, f64 {control[big]:.0e}"
            )
        if len(explained) > 1 and start_shown:
            note += " (start point agrees: float32 noise amplified by the optimiser)"
        if misses and not rare:
            note += "; outliers not rare" if median <= tol.grad else "; median beyond tolerance"
        rows.append(
            Row(
                f"{net} update, worst step ({worst + 1})",
                "update",
                series.rel[worst],
                series.max_abs[worst],
                limits[worst],
                passed,
                note,
            )
        )
    buffers = run.buffers.get(name)
    if buffers is not None and buffers.rel:
        # Running statistics are batch means/variances of activations: judged as values.
        worst = max(
            range(len(buffers.rel)), key=lambda k: buffers.rel[k] if math.isfinite(buffers.rel[k]) else math.inf
        )
        limit = DEPTH_FACTOR * tol.value
        passed = len(buffers.rel) == run.steps and all(math.isfinite(r) and r <= limit for r in buffers.rel)
        rows.append(
            Row(
                f"BatchNorm running statistics, worst step ({worst + 1})",
                "value",
                buffers.rel[worst],
                buffers.max_abs[worst],
                limit,
                passed,
                buffers.note,
            )
        )
    return rows


def judge_values_by_depth(
    pair: PairReport, own_error: dict[str, dict[str, float]], control: PairReport, tol: Tolerance
) -> None:
    """Re-judge value and loss rows that miss the fixed tolerance, as float32 rounding grown
    through depth.

    The fixed value tolerance is float32's error through a few layers; a 13-layer DCGAN with
    BatchNorm (28 layers from z to D(G(z))) accumulates more. A row passes as such when (1) the
    two backends' float64 runs agree within the float64 tolerance (the math is the same), (2)
    each backend's own float32-vs-float64 error is at most ``DEPTH_FACTOR`` times the
    tolerance (an arithmetic error in a float32 path, a wrong cast or a bf16 product, is far
    larger), and (3) the gap is at most ``DRIFT_FACTOR`` times the larger own error.
    """
    control_rows = {r.quantity: r for r in control.rows}
    names = (pair.a, pair.b)
    for row in pair.rows:
        if row.kind not in ("value", "loss") or row.passed or not math.isfinite(row.rel):
            continue
        own = max(own_error[n][row.quantity] for n in names)
        f64 = control_rows[row.quantity]
        if f64.passed and own <= DEPTH_FACTOR * row.tol and row.rel <= DRIFT_FACTOR * own:
            row.passed, row.tol = True, min(DRIFT_FACTOR * own, DEPTH_FACTOR * row.tol)
            row.note = (
                f"float32 rounding through depth: own float32 error {own:.1e}; float64 runs agree to {f64.rel:.1e}"
            )
        else:
            row.note = f"own float32 error {own:.1e}; float64 runs part by {f64.rel:.1e}"


def judge_gradients_at_kinks(
    pair: PairReport, own_error: dict[str, dict[str, float]], control: PairReport, tol: Tolerance
) -> None:
    """Re-judge gradient rows that miss the fixed tolerance, as rounding at a kink.

    LeakyReLU and ReLU are continuous, their derivatives are not: a pre-activation within
    float32 rounding of 0 falls on either side in two stacks, and the gradient entries fed by
    it differ by ``(1 - slope)`` times that path's contribution, far beyond float32 rounding.
    A gradient row passes as such when (1) the two backends' float64 runs agree within the
    float64 tolerance (the math is the same), (2) every forward value of both backends is
    within the value tolerance of its own float64 run, allowing ``DEPTH_FACTOR`` for depth (values
    are continuous at the kink: an arithmetic error would show there), and (3) the float32 gap
    is at most ``DRIFT_FACTOR`` times the larger of the two backends' own float32-vs-float64
    error on that gradient.
    """
    control_rows = {r.quantity: r for r in control.rows}
    names = (pair.a, pair.b)
    cap = DEPTH_FACTOR * tol.value
    forward_ok = all(own_error[n][q] <= cap for n in names for q, r in control_rows.items() if r.kind == "value")
    for row in pair.rows:
        if row.kind != "grad" or row.passed or not math.isfinite(row.rel):
            continue
        own = max(own_error[n][row.quantity] for n in names)
        f64 = control_rows[row.quantity]
        if f64.passed and forward_ok and row.rel <= DRIFT_FACTOR * own:
            row.passed, row.tol = True, DRIFT_FACTOR * own
            row.note = f"rounding at a kink: own float32 error {own:.1e}; float64 runs agree to {f64.rel:.1e}"
        else:
            row.note = f"own float32 error {own:.1e}; float64 runs part by {f64.rel:.1e}"

"""The agreement check: same parameters, same inputs, every backend, every pair compared.

Inputs are drawn once with NumPy (the frameworks' RNGs differ) and fed to every backend. Per
pair: G(z), D(x), D(G(z)), the four loss terms, every gradient, every layer's output, and each
network's parameters along a free-running trajectory. Per backend: a lock-step trajectory
against the float64 reference (see :mod:`.trajectory`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import REFERENCE as REFERENCE_BACKEND
from ..backends import Backend, BackendUnavailable, TrainBatch, get_backend
from ..losses import LOSS_TERMS
from ..params import init_params, param_shapes
from ..spec import NETWORKS, GANSpec, Numerics
from .layers import LayerRow, collect_activations, compare_layers, first_divergence, layer_inputs
from .measures import compare
from .tolerances import Tolerance, tolerance
from .trajectory import FreeRun, LockStep, Pair, free_running, lock_step

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

Quantities = dict[str, tuple[str, np.ndarray]]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CheckInputs:
    """Everything a check feeds the backends, drawn from one NumPy seed."""

    params: dict[str, np.ndarray]
    z: np.ndarray
    real: np.ndarray
    batches: tuple[TrainBatch, ...]
    #: WGAN-GP's interpolation coefficients for the start gradients, ``(batch,)``; else None.
    alpha: np.ndarray | None = None

    def astype(self, dtype: str) -> CheckInputs:
        """The same numbers in another dtype (float32 values upcast exactly to float64)."""
        cast = lambda a: None if a is None else np.asarray(a, dtype=dtype)  # noqa: E731
        return CheckInputs(
            params={k: cast(v) for k, v in self.params.items()},
            z=cast(self.z),
            real=cast(self.real),
            batches=tuple(TrainBatch(cast(b.real), cast(b.z_d), cast(b.z_g), cast(b.alpha)) for b in self.batches),
            alpha=cast(self.alpha),
        )


def draw_inputs(spec: GANSpec, *, batch_size: int, steps: int, seed: int) -> CheckInputs:
    """Parameters from ``seed``; noise ~ N(0, 1); "real" data ~ U(-1, 1), the tanh range;
    WGAN-GP's interpolation coefficients ~ U(0, 1) (drawn only for that penalty)."""
    rng = np.random.default_rng([seed, 1])
    dtype = np.dtype(spec.numerics.dtype)
    gp = spec.loss.penalty == "wgan_gp"

    def noise(*lead: int) -> np.ndarray:
        return rng.standard_normal((*lead, batch_size, spec.latent_dim)).astype(dtype)

    def data(*lead: int) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, (*lead, batch_size, *spec.data_shape)).astype(dtype)

    def alpha(*lead: int) -> np.ndarray | None:
        return rng.uniform(0.0, 1.0, (*lead, batch_size)).astype(dtype) if gp else None

    # The start inputs are drawn before the batches: they must not depend on the step count.
    z, real, start_alpha = noise(), data(), alpha()
    batches = tuple(
        TrainBatch(real=data(spec.n_critic), z_d=noise(spec.n_critic), z_g=noise(), alpha=alpha(spec.n_critic))
        for _ in range(steps)
    )
    return CheckInputs(params=init_params(spec, seed), z=z, real=real, batches=batches, alpha=start_alpha)


@dataclass
class Row:
    quantity: str
    kind: str
    rel: float
    max_abs: float
    tol: float
    passed: bool
    note: str = ""


def _severity(row: Row | LayerRow) -> float:
    return math.inf if not math.isfinite(row.rel) else row.rel / row.tol


@dataclass
class PairReport:
    a: str
    b: str
    rows: list[Row]
    layers: list[LayerRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows) and all(r.passed for r in self.layers)

    @property
    def worst(self) -> Row:
        return max(self.rows, key=_severity)

    @property
    def first_divergence(self) -> dict[str, LayerRow | None]:
        return first_divergence(self.layers)


@dataclass
class BackendInfo:
    name: str
    mode: str
    device: str
    version: str
    dtype: str
    error: str | None = None


@dataclass
class CheckReport:
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
        from .schema import report_to_dict  # the JSON layout lives beside its documentation

        return report_to_dict(self)


def collect_values(backend: Backend, inputs: CheckInputs) -> Quantities:
    """Forward outputs, loss terms and gradients at the starting parameters."""
    out: Quantities = {}
    fake = backend.generate(inputs.z)
    out["G(z)"] = ("value", fake)
    out["D(x)"] = ("value", backend.discriminate(inputs.real))
    out["D(G(z))"] = ("value", backend.discriminate(fake))
    terms, grads = backend.gradients(inputs.real, inputs.z, inputs.alpha)
    for term in LOSS_TERMS:
        out[f"loss {term}"] = ("loss", np.asarray(terms[term]))
    for name, grad in grads.items():
        out[f"grad {name}"] = ("grad", grad)
    return out


def compare_pair(a: str, b: str, qa: Quantities, qb: Quantities, tol: Tolerance) -> PairReport:
    rows = []
    for quantity, (kind, va) in qa.items():
        rel, max_abs, note = compare(va, qb[quantity][1], (a, b))
        limit = tol.for_kind(kind)
        rows.append(Row(quantity, kind, rel, max_abs, limit, bool(math.isfinite(rel) and rel <= limit), note))
    return PairReport(a, b, rows)


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
    for net in NETWORKS:
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
    for net in NETWORKS:
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


def _ordered(a: str, b: str, dtypes: dict[str, str]) -> Pair:
    # The reference (float64) is always the second member of a pair: errors are relative to it.
    return (b, a) if dtypes[a] == "float64" and dtypes[b] != "float64" else (a, b)


def run_check(
    spec: GANSpec,
    backends: list[str],
    *,
    steps: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    modes: dict[str, str] | None = None,
    device: str | None = None,
    lockstep: bool = True,
    progress: Progress | None = None,
) -> CheckReport:
    """Run every backend on the same inputs and compare every pair.

    A backend that fails to build or run is recorded with its error (the report then fails)
    while the others are still compared. ``progress(phase, done, total)`` is called as the
    trajectories advance.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be at least 1")
    modes = modes or {}
    inputs = draw_inputs(spec, batch_size=batch_size, steps=steps, seed=seed)
    inputs64 = inputs.astype("float64")
    settings = {
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "device": device or "auto",
        "n_params": int(sum(math.prod(s) for s in param_shapes(spec).values())),
        "drift_factor": DRIFT_FACTOR,
    }
    report = CheckReport(spec=spec, settings=settings, backends=[])
    live: dict[str, Backend] = {}
    values: dict[str, Quantities] = {}
    activations: dict[str, dict[str, list[np.ndarray]]] = {}
    inputs_by_net = layer_inputs(inputs.z, inputs.real)
    for name in backends:
        try:
            cls = get_backend(name)
            backend = cls(spec, inputs.params, mode=modes.get(cls.name), device=None if cls.host_only else device)
            info = BackendInfo(cls.name, backend.mode, backend.device, cls.framework_version(), str(backend.dtype))
            values[cls.name] = collect_values(backend, inputs)
            activations[cls.name] = collect_activations(backend, inputs_by_net)
            live[cls.name] = backend
        except Exception as exc:  # recorded, reported, and the check fails; other backends go on
            info = BackendInfo(
                name, modes.get(name, "?"), device or "?", "?", "?", error=f"{type(exc).__name__}: {exc}"
            )
        report.backends.append(info)
    dtypes = {name: str(b.dtype) for name, b in live.items()}
    names = list(live)
    pairs = [_ordered(a, b, dtypes) for i, a in enumerate(names) for b in names[i + 1 :]]

    # The float64 controls: the same trajectory from the same numbers, in float64.
    controls: dict[str, Backend] = {}
    values64: dict[str, Quantities] = {}
    if spec.numerics.dtype != "float64":
        # bf16 is float32 mixed precision: its float64 twin computes in float64 throughout.
        precision64 = "highest" if spec.numerics.matmul_precision == "bf16" else spec.numerics.matmul_precision
        spec64 = spec.replace(numerics=Numerics(dtype="float64", matmul_precision=precision64))
        for name, backend in live.items():
            if dtypes[name] == "float64":
                continue  # already a float64 run
            try:
                cls = type(backend)
                device_arg = None if cls.host_only else device
                controls[name] = cls(spec64, inputs64.params, mode=backend.mode, device=device_arg)
                values64[name] = collect_values(controls[name], inputs64)
            except Exception as exc:
                controls.pop(name, None)
                _record_failure(report, name, f"float64 control: {type(exc).__name__}: {exc}")
    own_error = {
        name: {q: compare(v, values64[name][q][1])[0] if name in values64 else 0.0 for q, (_, v) in qs.items()}
        for name, qs in values.items()
    }
    report.free_run = free_running(
        live,
        controls,
        inputs.batches,
        inputs64.batches,
        pairs,
        lambda k: progress and progress("free-running", k, steps),
    )
    for name, message in report.free_run.failed.items():
        _record_failure(report, name, message)

    tol64 = tolerance("float64", "float64", spec.numerics.matmul_precision)
    for a, b in pairs:
        tol = tolerance(dtypes[a], dtypes[b], spec.numerics.matmul_precision)
        pair = compare_pair(a, b, values[a], values[b], tol)
        if all(n in values64 or dtypes[n] == "float64" for n in (a, b)):
            control = compare_pair(a, b, values64.get(a, values[a]), values64.get(b, values[b]), tol64)
            judge_values_by_depth(pair, own_error, control, tol)
            judge_gradients_at_kinks(pair, own_error, control, tol)
        pair.layers = compare_layers(spec, activations[a], activations[b], tol.value, (a, b))
        pair.rows += trajectory_rows(report.free_run, (a, b), tol, tol64)
        report.pairs.append(pair)

    if lockstep:
        report.lock = _run_lock_step(spec, inputs, inputs64, live, controls, report, progress)
    return report


def _run_lock_step(
    spec: GANSpec,
    inputs: CheckInputs,
    inputs64: CheckInputs,
    live: dict[str, Backend],
    controls: dict[str, Backend],
    report: CheckReport,
    progress: Progress | None,
) -> LockStep:
    steps = len(inputs.batches)
    assert report.free_run is not None
    followers = {n: b for n, b in live.items() if n not in report.free_run.failed and n != REFERENCE_BACKEND}
    try:
        source = get_backend(REFERENCE_BACKEND)(spec, inputs64.params)
    except (BackendUnavailable, NotImplementedError) as exc:
        return LockStep(steps, REFERENCE_BACKEND, {}, {}, skipped=f"no float64 reference for this spec: {exc}")
    tols = {n: tolerance(str(b.dtype), "float64", spec.numerics.matmul_precision) for n, b in followers.items()}
    run = lock_step(
        source,
        followers,
        inputs.batches,
        inputs64.batches,
        controls={n: c for n, c in controls.items() if n in followers},
        explain_above={n: t.update for n, t in tols.items()},
        on_step=lambda k: progress and progress("lock-step", k, steps),
    )
    tol64 = tolerance("float64", "float64", spec.numerics.matmul_precision)
    for name in followers:
        report.lock_rows[name] = lock_rows(run, name, tols[name], tol64, _start_shown(report, name))
    return run


def _start_shown(report: CheckReport, name: str) -> bool:
    """``name``'s start-point values, losses and gradients agree with the reference's."""
    rows = [
        r
        for p in report.pairs
        if {p.a, p.b} == {name, REFERENCE_BACKEND}
        for r in p.rows
        if r.kind in ("value", "loss", "grad")
    ]
    return bool(rows) and all(r.passed for r in rows)


def _record_failure(report: CheckReport, name: str, message: str) -> None:
    for info in report.backends:
        if info.name == name and info.error is None:
            info.error = message

"""The agreement check: same parameters, same inputs, every backend, every pair compared.

Inputs are drawn once with NumPy (:mod:`.inputs`; the frameworks' RNGs differ) and fed to every
backend. Per pair: G(z), D(x), D(G(z)), the four loss terms, every gradient, every layer's
output, and each network's parameters along a free-running trajectory. Per backend: a lock-step
trajectory against the float64 reference (see :mod:`.trajectory`). This module runs them and
fills the report (:mod:`.model`); the rules that judge a row beyond the fixed tolerances are in
:mod:`.verdicts`. Every name of those modules that callers used from here is still importable
from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..backends import FRAMEWORKS, REGISTRY, Backend, BackendUnavailable, get_backend, is_available
from ..backends import REFERENCE as REFERENCE_BACKEND
from ..environment import backend_status
from ..losses import LOSS_TERMS
from ..params import param_shapes
from ..spec import GANSpec, Numerics, SpecError
from .inputs import CheckInputs, draw_inputs
from .layers import collect_activations, compare_layers, layer_inputs
from .measures import compare
from .model import BackendInfo, CheckReport, PairReport, Row
from .tolerances import Tolerance, tolerance
from .trajectory import LockStep, Pair, free_running, lock_step
from .verdicts import (
    DEPTH_FACTOR,
    DRIFT_FACTOR,
    MAX_OUTLIER_FRACTION,
    ROUNDING_FLIPS,
    judge_gradients_at_kinks,
    judge_step,
    judge_values_by_depth,
    lock_rows,
    trajectory_rows,
)

__all__ = [
    "DEPTH_FACTOR",
    "DRIFT_FACTOR",
    "MAX_OUTLIER_FRACTION",
    "ROUNDING_FLIPS",
    "BackendInfo",
    "CheckInputs",
    "CheckReport",
    "PairReport",
    "Row",
    "choose_backends",
    "collect_values",
    "compare",
    "compare_pair",
    "draw_inputs",
    "judge_gradients_at_kinks",
    "judge_step",
    "judge_values_by_depth",
    "lock_rows",
    "run_check",
    "trajectory_rows",
]

Quantities = dict[str, tuple[str, np.ndarray]]
Progress = Callable[[str, int, int], None]


def choose_backends(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """The backends a check runs, and the frameworks left out because they are not installed.

    ``None``: every installed framework and the float64 reference (a missing framework is
    named, not an error: the check runs what is there). Names given: each must be installed
    (a SpecError naming the extra that installs it), and there must be two.
    """
    missing: list[str] = []
    if requested is None:
        names = [*[f for f in FRAMEWORKS if is_available(f)], REFERENCE_BACKEND]
        missing = [f for f in FRAMEWORKS if not is_available(f)]
    else:
        names = requested
        unavailable = [n for n in names if not is_available(n)]
        if unavailable:
            raise SpecError("; ".join(backend_status(n).detail for n in unavailable))
    if len(names) < 2:
        raise SpecError(f"a check needs at least two backends, got {names}")
    return names, missing


def install_hint(frameworks: list[str]) -> str:
    """The pip command that installs ``frameworks`` (their manifests' extras)."""
    extras = ",".join(REGISTRY[f].extra or f for f in frameworks)
    return f"pip install 'gan-backends[{extras}]'"


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
    """Every quantity of ``a`` against ``b``'s, judged at the fixed tolerance of its kind (the
    judges of :mod:`.verdicts` then look again at the rows that miss it)."""
    rows = []
    for quantity, (kind, va) in qa.items():
        rel, max_abs, note = compare(va, qb[quantity][1], (a, b))
        limit = tol.for_kind(kind)
        rows.append(Row(quantity, kind, rel, max_abs, limit, bool(math.isfinite(rel) and rel <= limit), note))
    return PairReport(a, b, rows)


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
            if inputs.buffers:
                backend.set_buffers(inputs.buffers)
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
                if inputs64.buffers:  # the float32 run's starting buffers (spectral norm's u, v rounded), upcast
                    controls[name].set_buffers(inputs64.buffers)
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
        if inputs64.buffers:
            source.set_buffers(inputs64.buffers)
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

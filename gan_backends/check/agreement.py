"""The agreement check: same parameters, same inputs, every backend, every pair compared.

Inputs are drawn once with NumPy (the frameworks' RNGs differ) and fed to every backend. The
quantities compared per pair: G(z), D(x), D(G(z)), the four loss terms, every gradient, and each
network's parameters after 1 and after ``steps`` training steps from the same start.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend, TrainBatch, get_backend
from ..losses import LOSS_TERMS
from ..params import init_params, param_shapes
from ..spec import NETWORKS, GANSpec, Numerics
from .tolerances import Tolerance, tolerance

#: How far two float32 trajectories may part, in units of float32's own drift from float64.
DRIFT_FACTOR = 3.0


Quantities = dict[str, tuple[str, np.ndarray]]


@dataclass(frozen=True)
class CheckInputs:
    """Everything a check feeds the backends, drawn from one NumPy seed."""

    params: dict[str, np.ndarray]
    z: np.ndarray
    real: np.ndarray
    batches: tuple[TrainBatch, ...]

    def astype(self, dtype: str) -> CheckInputs:
        """The same numbers in another dtype (float32 values upcast exactly to float64)."""
        cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
        return CheckInputs(
            params={k: cast(v) for k, v in self.params.items()},
            z=cast(self.z),
            real=cast(self.real),
            batches=tuple(TrainBatch(cast(b.real), cast(b.z_d), cast(b.z_g)) for b in self.batches),
        )


def draw_inputs(spec: GANSpec, *, batch_size: int, steps: int, seed: int) -> CheckInputs:
    """Parameters from ``seed``; noise ~ N(0, 1); "real" data ~ U(-1, 1), the tanh range."""
    rng = np.random.default_rng([seed, 1])
    dtype = np.dtype(spec.numerics.dtype)

    def noise(*lead: int) -> np.ndarray:
        return rng.standard_normal((*lead, batch_size, spec.latent_dim)).astype(dtype)

    def data(*lead: int) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, (*lead, batch_size, *spec.data_shape)).astype(dtype)

    batches = tuple(TrainBatch(real=data(spec.n_critic), z_d=noise(spec.n_critic), z_g=noise()) for _ in range(steps))
    return CheckInputs(params=init_params(spec, seed), z=noise(), real=data(), batches=batches)


@dataclass
class Row:
    quantity: str
    kind: str
    rel: float
    max_abs: float
    tol: float
    passed: bool
    note: str = ""


@dataclass
class PairReport:
    a: str
    b: str
    rows: list[Row]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def worst(self) -> Row:
        return max(self.rows, key=lambda r: math.inf if not r.passed and not math.isfinite(r.rel) else r.rel / r.tol)


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

    @property
    def passed(self) -> bool:
        return all(b.error is None for b in self.backends) and all(p.passed for p in self.pairs) and bool(self.pairs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "gan-backends/check-v1",
            "passed": self.passed,
            "spec": self.spec.to_dict(),
            "settings": self.settings,
            "backends": [asdict(b) for b in self.backends],
            "pairs": [
                {"a": p.a, "b": p.b, "passed": p.passed, "rows": [_json_row(r) for r in p.rows]} for p in self.pairs
            ],
        }


def _json_row(row: Row) -> dict[str, Any]:
    """A row as strict JSON: NaN (a non-finite result) becomes null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(row).items()}


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str]:
    """``(||a-b|| / ||b||, max|a-b|, note)`` in float64; NaN/Inf anywhere gives NaN and a note."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.nan, math.nan, f"shape {a.shape} vs {b.shape}"
    bad = [side for side, x in (("first", a), ("second", b)) if not np.all(np.isfinite(x))]
    if bad:
        return math.nan, math.nan, f"non-finite values in the {' and '.join(bad)} backend"
    diff = a - b
    norm_b = float(np.linalg.norm(b))
    err = float(np.linalg.norm(diff))
    rel = err / norm_b if norm_b > 0 else err
    return rel, float(np.max(np.abs(diff))) if diff.size else 0.0, ""


def collect_values(backend: Backend, inputs: CheckInputs) -> Quantities:
    """Forward outputs, loss terms and gradients at the starting parameters."""
    out: Quantities = {}
    fake = backend.generate(inputs.z)
    out["G(z)"] = ("value", fake)
    out["D(x)"] = ("value", backend.discriminate(inputs.real))
    out["D(G(z))"] = ("value", backend.discriminate(fake))
    terms, grads = backend.gradients(inputs.real, inputs.z)
    for term in LOSS_TERMS:
        out[f"loss {term}"] = ("loss", np.asarray(terms[term]))
    for name, grad in grads.items():
        out[f"grad {name}"] = ("grad", grad)
    return out


def collect_trajectory(backend: Backend, inputs: CheckInputs) -> Quantities:
    """Each network's parameters (flattened) after the first and the last training step."""
    out: Quantities = {}
    steps = len(inputs.batches)
    for step, batch in enumerate(inputs.batches, start=1):
        backend.train_step(batch)
        if step in (1, steps):
            params = backend.get_params()
            for net in NETWORKS:
                flat = np.concatenate([v.ravel().astype(np.float64) for k, v in params.items() if k.startswith(net)])
                out[f"{net} params after {step} step{'s' if step > 1 else ''}"] = ("param", flat)
    return out


def compare_pair(a: str, b: str, qa: Quantities, qb: Quantities, tol: Tolerance) -> PairReport:
    rows = []
    for quantity, (kind, va) in qa.items():
        rel, max_abs, note = compare(va, qb[quantity][1])
        limit = tol.for_kind(kind)
        rows.append(Row(quantity, kind, rel, max_abs, limit, bool(math.isfinite(rel) and rel <= limit), note))
    return PairReport(a, b, rows)


def judge_by_drift(pair: PairReport, drift: dict[str, Quantities], control: PairReport | None) -> None:
    """Re-judge a float32 pair's trajectory rows against float32's own drift.

    Training a GAN amplifies rounding: a pre-activation within float32 rounding of a LeakyReLU
    kink lands on either side in two stacks, and Adam turns the resulting tiny gradient
    differences into lr-sized steps. So a trajectory row that misses the fixed tolerance passes
    when (1) the same two backends, run in float64 from the same numbers, agree within the
    float64 tolerance (the computations are the same), and (2) the float32 difference is at most
    ``DRIFT_FACTOR`` times the larger of the two backends' own float32-vs-float64 drift.
    """
    if control is None:
        return
    control_rows = {r.quantity: r for r in control.rows}
    for row in pair.rows:
        if row.kind != "param" or row.passed or not math.isfinite(row.rel):
            continue
        own = max(drift[name].get(row.quantity, (row.kind, 0.0))[1] for name in (pair.a, pair.b))
        f64 = control_rows[row.quantity]
        bound = DRIFT_FACTOR * float(own)
        if f64.passed and row.rel <= bound:
            row.passed = True
            row.tol = bound
            row.note = f"within {DRIFT_FACTOR}x float32's own drift ({own:.1e}); float64 runs agree to {f64.rel:.1e}"
        else:
            row.note = f"float32 drift {own:.1e}; float64 runs part by {f64.rel:.1e}"


def run_check(
    spec: GANSpec,
    backends: list[str],
    *,
    steps: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    modes: dict[str, str] | None = None,
    device: str | None = None,
) -> CheckReport:
    """Run every backend on the same inputs and compare every pair.

    A backend that fails to build or run is recorded with its error (the report then fails)
    while the others are still compared.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be at least 1")
    modes = modes or {}
    inputs = draw_inputs(spec, batch_size=batch_size, steps=steps, seed=seed)
    settings = {
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "device": device or "auto",
        "n_params": int(sum(math.prod(s) for s in param_shapes(spec).values())),
    }
    report = CheckReport(spec=spec, settings=settings, backends=[])
    results: dict[str, Quantities] = {}
    dtypes: dict[str, str] = {}
    built: dict[str, type[Backend]] = {}
    for name in backends:
        try:
            cls = get_backend(name)
            backend = cls(spec, inputs.params, mode=modes.get(cls.name), device=None if cls.host_only else device)
            info = BackendInfo(cls.name, backend.mode, backend.device, cls.framework_version(), str(backend.dtype))
            results[cls.name] = {**collect_values(backend, inputs), **collect_trajectory(backend, inputs)}
            dtypes[cls.name] = str(backend.dtype)
            built[cls.name] = cls
        except Exception as exc:  # recorded, reported, and the check fails; other backends go on
            info = BackendInfo(
                name, modes.get(name, "?"), device or "?", "?", "?", error=f"{type(exc).__name__}: {exc}"
            )
        report.backends.append(info)

    # The float64 control: the same trajectory from the same numbers, in float64.
    control: dict[str, Quantities] = {}
    drift: dict[str, Quantities] = {}
    if spec.numerics.dtype != "float64":
        spec64 = spec.replace(numerics=Numerics(dtype="float64", matmul_precision=spec.numerics.matmul_precision))
        inputs64 = inputs.astype("float64")
        for name, cls in built.items():
            if dtypes[name] == "float64":
                control[name] = {k: v for k, v in results[name].items() if v[0] == "param"}
            else:
                backend = cls(spec64, inputs64.params, mode=modes.get(name), device=None if cls.host_only else device)
                control[name] = collect_trajectory(backend, inputs64)
            drift[name] = {q: ("param", compare(results[name][q][1], control[name][q][1])[0]) for q in control[name]}
        report.settings["float32_drift"] = {n: {q: v[1] for q, v in d.items()} for n, d in drift.items()}

    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            # The reference (float64) is always the second member of a pair: errors are relative to it.
            first, second = (b, a) if dtypes[a] == "float64" and dtypes[b] != "float64" else (a, b)
            tol = tolerance(dtypes[first], dtypes[second], spec.numerics.matmul_precision)
            pair = compare_pair(first, second, results[first], results[second], tol)
            if control:
                tol64 = tolerance("float64", "float64", spec.numerics.matmul_precision)
                judge_by_drift(pair, drift, compare_pair(first, second, control[first], control[second], tol64))
            report.pairs.append(pair)
    return report

"""Training trajectories, measured two ways.

**Free-running**: every backend trains ``K`` steps from the same parameters on the same batches,
and after each step the pairs' parameters are compared. GAN training is chaotic: a float32
rounding that flips a LeakyReLU kink is amplified by Adam, so two correct stacks part over the
steps. The yardstick is each backend's *own drift*: the same backend run in float64 from the same
numbers. Two stacks should not part faster than float32 parts from float64; the report gives
the ratio ``cross-stack divergence / max(own drift of either)`` per step.

**Lock-step**: before every step, each backend is set to the float64 reference's parameters and
optimiser state at that step; it takes one step, and its update ``Δ = p_after - p_before`` is
compared with the reference's. Each step's disagreement is measured alone, with no
accumulation, so a lock-step error is a bug or rounding, never chaos.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend, TrainBatch
from ..spec import NETWORKS
from .measures import EMA_KEY, compare, flatten_state, tracked

Pair = tuple[str, str]


@dataclass
class Series:
    """One error measure after each step: ``rel`` and ``max_abs`` (NaN once non-finite)."""

    rel: list[float] = field(default_factory=list)
    max_abs: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, measured: tuple[float, float, str]) -> None:
        rel, max_abs, note = measured
        self.rel.append(rel)
        self.max_abs.append(max_abs)
        if note and not self.note:
            self.note = f"step {len(self.rel)}: {note}"


def _per_network(keys: tuple[str, ...] = NETWORKS) -> dict[str, Series]:
    """One series per network (and per G's moving average where ``keys`` has it)."""
    return {net: Series() for net in keys}


@dataclass
class FreeRun:
    """Free-running divergence. ``cross[(a, b)][net]``: a vs b; ``drift[name][net]``: a
    float32 backend vs its own float64 run; ``control[(a, b)][net]``: the float64 runs of a and
    b compared (they must agree to float64 precision, or the computations differ)."""

    steps: int
    cross: dict[Pair, dict[str, Series]]
    drift: dict[str, dict[str, Series]]
    control: dict[Pair, dict[str, Series]]
    failed: dict[str, str] = field(default_factory=dict)

    def ratio(self, pair: Pair, net: str) -> list[float | None]:
        """Cross-stack divergence over the larger of the two backends' own drift, per step."""
        out: list[float | None] = []
        for k, rel in enumerate(self.cross[pair][net].rel):
            own = max((self.drift[n][net].rel[k] for n in pair if n in self.drift), default=0.0)
            out.append(rel / own if own > 0 and math.isfinite(rel) and math.isfinite(own) else None)
        return out


@dataclass
class LockStep:
    """Lock-step update errors against the reference: ``update[name][net]`` per step, and the
    size of a one-ulp rounding flip ``floor[net]`` relative to each step's update (see
    :func:`update_floor`)."""

    steps: int
    reference: str
    update: dict[str, dict[str, Series]]
    floor: dict[str, list[float]]
    #: ``control[name][net][k]``: at a step whose float32 update missed ``explain_above``, the
    #: same backend's float64 update from the same state, against the reference (rel error).
    control: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    #: ``buffers[name]``: BatchNorm running statistics after each step against the reference's
    #: (empty series when the spec has none).
    buffers: dict[str, Series] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: str = ""


def update_floor(p_after: np.ndarray, delta: np.ndarray, dtype: np.dtype) -> float:
    """One unit in the last place of the largest parameter, relative to the update: ``max
    spacing(p) / ||Δ||`` in ``dtype``.

    The lock-step compares a backend's stored update with the reference update rounded the way
    an exact implementation in ``dtype`` stores it (``fl(p + Δ) - p``). Where the backend's
    update sits within rounding of a half-way point, its ``p + Δ`` rounds one ulp the other way:
    a flip of that size is rounding, not disagreement, and tolerances allow a couple of them.
    """
    norm = float(np.linalg.norm(delta))
    ulp = float(np.max(np.spacing(np.abs(p_after).astype(dtype)))) if p_after.size else 0.0
    return ulp / norm if norm > 0 else 0.0


def free_running(
    backends: dict[str, Backend],
    controls: dict[str, Backend],
    batches: tuple[TrainBatch, ...],
    batches64: tuple[TrainBatch, ...],
    pairs: list[Pair],
    on_step: Callable[[int], None] | None = None,
) -> FreeRun:
    """Step every backend (and every float64 control) through ``batches`` side by side.

    ``controls`` holds a float64 twin of each float32 backend; a backend that already computes
    in float64 is its own float64 run. A backend that raises is dropped from later steps and
    named in ``failed``; its series stop.
    """
    native64 = {n for n, b in backends.items() if np.dtype(b.dtype) == np.float64}
    with64 = native64 | set(controls)
    keys = tracked(next(iter(backends.values())).spec) if backends else NETWORKS
    run = FreeRun(
        steps=len(batches),
        cross={p: _per_network(keys) for p in pairs},
        drift={n: _per_network(keys) for n in controls},
        control={p: _per_network(keys) for p in pairs if all(n in with64 for n in p)},
    )
    live = dict(backends)
    live_controls = dict(controls)
    for k, batch in enumerate(batches):
        params = _step_all(live, batch, run.failed)
        params64 = {
            **{n: params[n] for n in native64 if n in params},
            **_step_all(live_controls, batches64[k], run.failed),
        }
        for a, b in pairs:
            if a in params and b in params:
                for net in keys:
                    run.cross[(a, b)][net].add(compare(params[a][net], params[b][net], (a, b)))
            if (a, b) in run.control and a in params64 and b in params64:
                for net in keys:
                    run.control[(a, b)][net].add(compare(params64[a][net], params64[b][net], (a, b)))
        for name in run.drift:
            if name in params and name in params64:
                for net in keys:
                    run.drift[name][net].add(compare(params[name][net], params64[name][net]))
        live = {n: b for n, b in live.items() if n not in run.failed}
        live_controls = {n: b for n, b in live_controls.items() if n not in run.failed}
        if on_step:
            on_step(k + 1)
    return run


def _step_all(backends: dict[str, Backend], batch: TrainBatch, failed: dict[str, str]) -> dict[str, dict]:
    out = {}
    for name, backend in backends.items():
        try:
            backend.train_step(batch)
            out[name] = flatten_state(backend)
        except Exception as exc:  # recorded; the other backends go on
            failed.setdefault(name, f"step failed: {type(exc).__name__}: {exc}")
    return out


def lock_step(
    source: Backend,
    backends: dict[str, Backend],
    batches: tuple[TrainBatch, ...],
    batches64: tuple[TrainBatch, ...],
    controls: dict[str, Backend] | None = None,
    explain_above: dict[str, float] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> LockStep:
    """Each step: every backend is set to ``source``'s state, steps once, and its update is
    compared with ``source``'s update from the same state, as the backend's dtype stores it.

    Where a backend's error exceeds ``explain_above[name]``, its float64 twin in ``controls``
    takes the same step from the same state: if that agrees with the reference, the code
    computes the same math and the float32 outlier is rounding (a kink crossed, amplified by
    Adam's normalisation), which :func:`~gan_backends.check.verdicts.lock_rows` then judges.
    """
    controls = controls or {}
    explain_above = explain_above or {}
    keys = tracked(source.spec)
    run = LockStep(
        steps=len(batches),
        reference=source.name,
        update={n: _per_network(keys) for n in backends},
        floor={net: [] for net in keys},
        control={n: {net: {} for net in keys} for n in controls},
    )
    run.buffers = {n: Series() for n in backends}
    live = dict(backends)
    for k, batch in enumerate(batches):
        params, opt_state, buffers = source.get_params(), source.get_optimizer_state(), source.get_buffers()
        ema = source.get_ema() if source.spec.ema is not None else None
        before = flatten_state(source)
        try:
            source.train_step(batches64[k])
        except Exception as exc:  # without the reference there is nothing to step against
            run.skipped = f"the {source.name} reference failed at step {k + 1}: {type(exc).__name__}: {exc}"
            break
        after = flatten_state(source)
        buffers_ref = source.get_buffers()
        delta_ref = {net: after[net] - before[net] for net in keys}
        dtypes = {np.dtype(b.dtype) for b in live.values()} or {np.dtype(np.float64)}
        coarsest = max(dtypes, key=lambda d: np.finfo(d).eps)
        for net in keys:
            run.floor[net].append(update_floor(after[net], delta_ref[net], coarsest))
        for name, backend in live.items():
            try:
                end, buffers_after, start = _step_from(backend, params, opt_state, buffers, batch, ema)
            except Exception as exc:
                run.failed.setdefault(name, f"lock-step failed: {type(exc).__name__}: {exc}")
                continue
            if buffers_ref:
                run.buffers[name].add(compare(_concat(buffers_after), _concat(buffers_ref), (name, source.name)))
            for net in keys:
                # What an exact update stores in the backend's dtype: the rounding of p + Δ is
                # then no disagreement, only a different Δ is.
                if net == EMA_KEY:
                    stored = _ema_stored(source, ema, end, start, backend.dtype)
                else:
                    stored = (start[net] + delta_ref[net]).astype(backend.dtype).astype(np.float64) - start[net]
                run.update[name][net].add(compare(end[net] - start[net], stored, (name, source.name)))
            rels = [run.update[name][net].rel[-1] for net in keys]
            if name in controls and not all(r <= explain_above.get(name, np.inf) for r in rels):
                state = (params, opt_state, buffers, ema)
                _control_step(run, name, controls[name], state, batches64[k], before, delta_ref, k)
        live = {n: b for n, b in live.items() if n not in run.failed}
        if on_step:
            on_step(k + 1)
    return run


def _ema_stored(source: Backend, ema: Any, end: dict, start: dict, dtype: np.dtype) -> np.ndarray:
    """The EMA update an exact implementation stores for a backend's step: ``ē₀ + w_t·(θ₁ - ē₀)``
    rounded to the backend's dtype, minus ``ē₀``; ``w_t`` from the spec's formula and the
    reference's count, itself rounded to the dtype (float32 code lerps by ``fl(0.1)``), ``θ₁``
    the backend's own new G parameters (judged against the reference by the generator's row),
    ``ē₀`` the average it was given.

    Not the reference's own update: a float32 average moves by ``w_t·Δθ``, a few hundred ulps of
    itself at decay 0.9 and fewer at 0.999, so the ulp flips of its rounding that G's update
    error causes are ``1/sqrt(w_t)`` times larger relative to it than to G's update. Both IEEE
    roundings of the lerp are correct code: fused (torch's ``lerp_``, XLA where LLVM contracts
    to an FMA) and the product rounded before the sum (TensorFlow's kernels, XLA at LLVM -O0);
    per entry the one nearer the backend's is taken. A wrong ``w_t``, count, copy or lerp then
    shows whole; correct code agrees to rounding."""
    w = float(np.asarray(source.spec.ema.weight(int(ema.steps) + 1), dtype=dtype))
    e0, theta = start[EMA_KEY], end["generator"]
    if w == 1.0:
        return theta - e0
    fused = (e0 + w * (theta - e0)).astype(dtype).astype(np.float64)
    e0_, d_ = e0.astype(dtype), (theta.astype(dtype) - e0.astype(dtype))
    apart = (e0_ + (np.asarray(w, dtype) * d_).astype(dtype)).astype(np.float64)
    got = end[EMA_KEY]
    return np.where(np.abs(got - fused) <= np.abs(got - apart), fused, apart) - e0


def _cast(tree: dict[str, np.ndarray], dtype: np.dtype) -> dict[str, np.ndarray]:
    # Always a copy (see OptimizerState.astype): the same state goes to every backend.
    return {k: np.array(v, dtype=dtype) for k, v in tree.items()}


def _concat(tree: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(tree[k]) for k in sorted(tree)]) if tree else np.zeros(0)


def _step_from(backend: Backend, params, opt_state, buffers, batch: TrainBatch, ema=None) -> tuple[dict, dict, dict]:
    """Set ``backend`` to a state (cast to its dtype; ``ema`` G's moving average, set after the
    parameters, which reset it), take one step; its parameters per network (and its average)
    and its buffers after, and the tracked state it started from."""
    backend.set_params(_cast(params, backend.dtype))
    backend.set_optimizer_state(opt_state.astype(backend.dtype))
    backend.set_buffers(_cast(buffers, backend.dtype))
    if ema is not None:
        backend.set_ema(ema.astype(backend.dtype))
    start = flatten_state(backend)
    backend.train_step(batch)
    return flatten_state(backend), backend.get_buffers(), start


def _control_step(run: LockStep, name: str, control: Backend, state, batch64, before, delta_ref, k) -> None:
    try:
        end, _, _ = _step_from(control, *state[:3], batch64, state[3])
    except Exception as exc:
        run.failed.setdefault(name, f"float64 lock-step failed: {type(exc).__name__}: {exc}")
        return
    for net in run.control[name]:
        run.control[name][net][k] = compare(end[net] - before[net], delta_ref[net])[0]

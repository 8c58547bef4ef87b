"""The timing core: first step apart, warm-up, then blocks of steps timed between two syncs.

A training step is handed over as two callables: ``step()`` launches one step on inputs that
already live on the device and returns the framework's outputs *without reading them on the
host*; ``sync(out)`` blocks until the device has finished the work that produced ``out``
(``torch.cuda.synchronize``, ``jax.block_until_ready``, TensorFlow's ``sync_devices``). The clock
is read only after a sync, never inside a block, so no host synchronisation enters the timed
loop:

    sync; t0 = clock(); out = step() × k; sync(out); t1 = clock();   per-step time = (t1 - t0) / k

The first call is timed alone (tracing and compilation: ``first_step_s``); ``warmup`` more calls
are run and thrown away; they also estimate the step time, from which ``k`` is chosen so that a
block lasts ``min_block_s`` (timer resolution and launch jitter vanish in the mean of a block).
The steady state is ``repeats`` blocks, summarised by median, quartiles, min and max.

The host's share, :func:`time_dispatch`: ``dispatch_calls`` single steps, each started on an
idle device (``sync; t0; out = step(); t1; sync(out); t2``); ``t1 - t0`` is how long the host
takes to hand one step over (Python, the framework's dispatch, kernel launches) and ``t2 - t0``
the same step synchronised. Where the framework executes synchronously (torch and TensorFlow on
a CPU run the kernels in the calling thread) the call returns when the work is done and the
two are equal: the dispatch cost is then not separable by a clock and reads as the whole step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Step = Callable[[], Any]
Sync = Callable[[Any], None]


@dataclass(frozen=True)
class TimingPlan:
    """How a step is timed. ``warmup``: steps run after the first and discarded (CUDA-graph
    modes record during their first calls: keep it ≥ 3); ``repeats``: timed blocks;
    ``min_block_s``: the least duration of a block, which sets the steps per block;
    ``max_steps_per_block`` caps it for very fast steps."""

    warmup: int = 5
    repeats: int = 7
    min_block_s: float = 0.2
    max_steps_per_block: int = 1000
    #: single steps timed for the host's dispatch cost (:func:`time_dispatch`); 0: none.
    dispatch_calls: int = 7

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_block_s) or self.min_block_s <= 0:  # NaN compares false to everything
            raise ValueError(f"the timing plan's min_block_s must be finite seconds > 0, got {self.min_block_s}")
        if self.warmup < 1 or self.repeats < 1 or self.max_steps_per_block < 1:
            raise ValueError(f"TimingPlan needs warmup ≥ 1, repeats ≥ 1, min_block_s > 0, max_steps ≥ 1: {self}")
        if self.dispatch_calls < 0:
            raise ValueError(f"TimingPlan needs dispatch_calls ≥ 0: {self}")

    def steps_per_block(self, step_estimate_s: float) -> int:
        if step_estimate_s <= 0:
            return self.max_steps_per_block
        return max(1, min(self.max_steps_per_block, math.ceil(self.min_block_s / step_estimate_s)))


@dataclass(frozen=True)
class Spread:
    """Median with quartiles and extremes of per-step times (seconds)."""

    median: float
    q1: float
    q3: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        a = np.asarray(values, dtype=np.float64)
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        return cls(float(med), float(q1), float(q3), float(a.min()), float(a.max()))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


@dataclass
class Timing:
    """One step's timing: the first call alone, the warm-up, and the steady-state blocks."""

    first_step_s: float
    warmup_steps: int
    warmup_s: float
    steps_per_block: int
    block_step_s: list[float] = field(default_factory=list)  # per-step seconds of each block

    @property
    def steady(self) -> Spread:
        return Spread.of(self.block_step_s)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steady": asdict(self.steady)}


def _block(step: Step, sync: Sync, k: int, clock: Callable[[], float], last: Any) -> tuple[float, Any]:
    """``k`` steps between two syncs; the seconds per step and the last outputs."""
    sync(last)
    t0 = clock()
    out = last
    for _ in range(k):
        out = step()
    sync(out)
    return (clock() - t0) / k, out


def time_step(
    step: Step,
    sync: Sync,
    plan: TimingPlan = TimingPlan(),
    clock: Callable[[], float] = time.perf_counter,
    agree: Callable[[int], int] | None = None,
    blocks: Callable[[], AbstractContextManager[Any]] | None = None,
) -> Timing:
    """Time ``step`` by ``plan`` (see the module docstring). ``agree``: turns this process's
    steps per block into the count every process of a data-parallel group uses (torch ranks
    run collectives in every step: all must make the same number of calls). ``blocks``: a
    context entered right before the first timed block and left right after the last (the
    contention watch, :mod:`.contention`), so that what it reads spans the blocks alone."""
    return time_interleaved({"step": (step, sync)}, plan, clock, agree, blocks)["step"]


def time_interleaved(
    steps: dict[str, tuple[Step, Sync]],
    plan: TimingPlan = TimingPlan(),
    clock: Callable[[], float] = time.perf_counter,
    agree: Callable[[int], int] | None = None,
    blocks: Callable[[], AbstractContextManager[Any]] | None = None,
) -> dict[str, Timing]:
    """Time several steps side by side, their blocks interleaved (A B C A B C ...), so that a
    noisy neighbour on a shared machine slows them alike and their ratio stays honest. Each
    step gets its own first call, warm-up and block size, as in :func:`time_step`; ``blocks``
    spans all of their timed blocks."""
    outs: dict[str, Any] = {}
    timings: dict[str, Timing] = {}
    for name, (step, sync) in steps.items():
        t0 = clock()
        out = step()
        sync(out)
        first = clock() - t0
        t0 = clock()
        for _ in range(plan.warmup):
            out = step()
        sync(out)
        warmup_s = clock() - t0
        k = plan.steps_per_block(warmup_s / plan.warmup)
        timings[name] = Timing(first, plan.warmup, warmup_s, agree(k) if agree else k)
        outs[name] = out
    with (blocks or nullcontext)():
        for _ in range(plan.repeats):
            for name, (step, sync) in steps.items():
                per_step, outs[name] = _block(step, sync, timings[name].steps_per_block, clock, outs[name])
                timings[name].block_step_s.append(per_step)
    return timings


@dataclass(frozen=True)
class Dispatch:
    """Single steps started on an idle device: ``call`` is the time for ``step()`` to return
    (the host's dispatch), ``synced`` the same steps until the device finished. Per step,
    ``call ≤ synced``, hence also for their medians; ``fraction`` is the median of the per-step
    ratios ``call / synced`` (1.0: the framework ran synchronously, nothing to separate)."""

    call: Spread
    synced: Spread
    fraction: float
    calls: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "call": asdict(self.call), "synced": asdict(self.synced)}


def time_dispatch(
    step: Step, sync: Sync, calls: int, last: Any = None, clock: Callable[[], float] = time.perf_counter
) -> Dispatch | None:
    """Time ``calls`` single steps, each on an idle device (see the module docstring); None
    for ``calls == 0``. ``last``: outputs of the latest step, synchronised before the first."""
    if calls < 1:
        return None
    out, call, synced = last, [], []
    for _ in range(calls):
        sync(out)
        t0 = clock()
        out = step()
        t1 = clock()
        sync(out)
        t2 = clock()
        call.append(t1 - t0)
        synced.append(t2 - t0)
    ratios = [c / s if s > 0 else 1.0 for c, s in zip(call, synced)]
    return Dispatch(Spread.of(call), Spread.of(synced), float(np.median(ratios)), calls)

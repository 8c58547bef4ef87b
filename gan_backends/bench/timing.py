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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
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

    def __post_init__(self) -> None:
        if self.warmup < 1 or self.repeats < 1 or self.min_block_s <= 0 or self.max_steps_per_block < 1:
            raise ValueError(f"TimingPlan needs warmup ≥ 1, repeats ≥ 1, min_block_s > 0, max_steps ≥ 1: {self}")

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
    step: Step, sync: Sync, plan: TimingPlan = TimingPlan(), clock: Callable[[], float] = time.perf_counter
) -> Timing:
    """Time ``step`` by ``plan`` (see the module docstring)."""
    return time_interleaved({"step": (step, sync)}, plan, clock)["step"]


def time_interleaved(
    steps: dict[str, tuple[Step, Sync]],
    plan: TimingPlan = TimingPlan(),
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time several steps side by side, their blocks interleaved (A B C A B C ...), so that a
    noisy neighbour on a shared machine slows them alike and their ratio stays honest. Each
    step gets its own first call, warm-up and block size, as in :func:`time_step`."""
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
        timings[name] = Timing(first, plan.warmup, warmup_s, plan.steps_per_block(warmup_s / plan.warmup))
        outs[name] = out
    for _ in range(plan.repeats):
        for name, (step, sync) in steps.items():
            per_step, outs[name] = _block(step, sync, timings[name].steps_per_block, clock, outs[name])
            timings[name].block_step_s.append(per_step)
    return timings

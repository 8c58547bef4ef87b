"""The GPU proof's plan: what runs, in which order, and how many seconds each part may take.

The plan is ordered by value, so that what a deadline cuts is the least useful:

1. the agreement check (``gan-backends check``'s :func:`~gan_backends.check.run_check`) of
   every framework against the float64 NumPy reference, ``mlp`` and ``dcgan-small`` at strict
   float32, TF32 and bf16; one process per framework (JAX and torch each reserve device memory),
   the frameworks' processes side by side: an agreement is not a timing, sharing the device
   changes none of its numbers;
2. the step table (the bench worker, one process per run, one run at a time): the launch-bound
   configurations (batch 64) at TF32 and the throughput-bound ones (mlp 4096, dcgan 512) at
   bf16 first, then the complementary precision of each, torch ``eager`` and ``cuda-graph`` and
   JAX ``jit``;
3. the compile-heavy runs (torch ``compile-cudagraphs``, then ``compile``: a cold Inductor
   compile costs tens of seconds per run) in the same order, last.

Every part has a stated budget (:data:`PROCESS_S`, :data:`CHECK_S`, :data:`STEP_S`): a part is
started only if its budget ends before the deadline (:class:`Deadline`), and it is stopped at
:data:`OVERRUN` × its budget or at the deadline, whichever comes first. :func:`schedule` lays
the plan out as if every part took exactly its budget: what it admits is what the plan promises
within the deadline (tests hold the GPU plan to 300 s with it). Parts it does not admit are not
dropped: they run when the ones before them finish early, as they usually do, since the budgets
are upper estimates. The GPU figures are estimates from the CPU measurements below and the
frameworks' usual start-up and compile costs, not yet measured on a GPU: every row the proof
writes holds its seconds beside its budget, so its first run on a device calibrates them.
The module imports no framework.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gan_backends.backends import is_available, manifest
from gan_backends.bench.config import PRECISIONS, RunConfig
from gan_backends.bench.timing import TimingPlan

#: Seconds kept at the end of the deadline for the summary and the last rewrite of the files.
RESERVE_S = 3.0
#: A part is stopped when it runs this many times past its budget (or at the deadline).
OVERRUN = 2.0
#: Seconds for a fresh process to reach its first check or step: the interpreter, the framework's
#: import, the device's context (on a GPU, CUDA's or XLA's client start). On the CPU 10 s: torch starts
#: in 3-5 s on this 2-core machine, twice that beside a test suite's other worker.
PROCESS_S = {"cuda": 10.0, "cpu": 10.0}
#: Seconds per agreement check, once its process started, for a backend whose default mode runs
#: eagerly (torch), by spec. Measured on this project's 2-core CPU: mlp at batch 16, 2 steps,
#: 2-5 s; at batch 64, 10 steps, 7 s idle and 28 s under load; dcgan-small 5-10 s.
CHECK_S = {"cuda": {"mlp": 6.0, "dcgan-small": 8.0}, "cpu": {"mlp": 10.0, "dcgan-small": 15.0}}
#: A default mode that traces and compiles every function it is handed (jax.jit, tf.function)
#: costs this many times more per check: a JAX mlp check compiles about 110 programs (measured
#: on CPU: 10-14 s against torch's 2-5 s).
TRACED_CHECK_FACTOR = 2.5
#: Seconds of one step run once its process started (build, first step with its compile,
#: warm-up, the timed blocks, the dispatch calls), by mode; torch.compile's cold Inductor and
#: Triton compile dominates its runs (15-25 s for the mlp on this CPU).
STEP_S = {
    "cuda": {"eager": 4.0, "cuda-graph": 5.0, "jit": 6.0, "compile": 45.0, "compile-cudagraphs": 50.0},
    "cpu": {"eager": 4.0, "cuda-graph": 5.0, "jit": 6.0, "compile": 40.0, "compile-cudagraphs": 45.0},
}
#: dcgan's runs cost more than the mlp's: cuDNN's algorithm search, bigger programs to compile.
SPEC_FACTOR = {"mlp": 1.0, "dcgan": 1.5, "dcgan-small": 1.0}
#: The modes whose runs compile for tens of seconds: run last.
COMPILE_HEAVY = ("compile-cudagraphs", "compile")


@dataclass(frozen=True)
class Check:
    """One agreement check: ``framework`` against the float64 reference on ``spec``."""

    framework: str
    spec: str
    precision: str  # a bench precision: float32, tf32, bf16
    steps: int
    batch_size: int
    budget_s: float

    @property
    def key(self) -> str:
        return f"check/{self.framework}/{self.spec}/{self.precision}"

    @property
    def matmul_precision(self) -> str:
        """The spec's ``numerics.matmul_precision`` (``check --precision``) of this check."""
        return PRECISIONS[self.precision]

    def to_dict(self) -> dict[str, Any]:
        return {"framework": self.framework, "spec": self.spec, "precision": self.precision,
                "steps": self.steps, "batch_size": self.batch_size, "budget_s": self.budget_s}  # fmt: skip


@dataclass(frozen=True)
class CheckGroup:
    """One framework's checks, run in one process; its budget includes the process's start."""

    framework: str
    checks: tuple[Check, ...]
    process_s: float

    @property
    def budget_s(self) -> float:
        return self.process_s + sum(c.budget_s for c in self.checks)


@dataclass(frozen=True)
class Step:
    """One bench run and its budget (its process's start included)."""

    run: RunConfig
    budget_s: float
    stage: str  # "steps" or "compile-heavy"


@dataclass(frozen=True)
class Plan:
    name: str
    device: str
    groups: tuple[CheckGroup, ...]
    steps: tuple[Step, ...]
    #: CPU threads of every framework process (None: each framework's own default).
    threads: int | None = None

    def stage_budgets(self) -> dict[str, float]:
        """Each stage's stated budget: the check processes run side by side (the longest one's),
        the step runs one after the other (their sum); parts that cannot run on the plan's
        device (CUDA graphs, TF32 on a CPU) cost nothing."""
        from gan_backends.bench.sweep import known_unavailable

        checks = [
            g.process_s + sum(c.budget_s for c in g.checks if not check_unavailable(c, self.device))
            for g in self.groups
        ]
        out = {"checks": max(checks, default=0.0)}
        for stage in ("steps", "compile-heavy"):
            out[stage] = sum(s.budget_s for s in self.steps if s.stage == stage and not known_unavailable(s.run))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": self.device,
            "stage_budgets_s": self.stage_budgets(),
            "checks": [{**c.to_dict(), "key": c.key} for g in self.groups for c in g.checks],
            "check_processes": [{"framework": g.framework, "budget_s": g.budget_s} for g in self.groups],
            "steps": [{"key": s.run.key, "budget_s": s.budget_s, "stage": s.stage} for s in self.steps],
        }


class Deadline:
    """The proof's clock: seconds since the start, and whether a part of ``budget_s`` still ends
    ``RESERVE_S`` before the deadline."""

    def __init__(self, deadline_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline_s = deadline_s
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float:
        return self.deadline_s - RESERVE_S - self.elapsed()

    def fits(self, budget_s: float) -> bool:
        return budget_s <= self.remaining()

    def timeout_for(self, budget_s: float) -> float:
        """When a part started now is stopped: at OVERRUN × its budget, or at the deadline."""
        return max(0.1, min(OVERRUN * budget_s, self.remaining()))

    @staticmethod
    def stop_cause(timeout_s: float, budget_s: float) -> str:
        """What a part's limit of ``timeout_s`` was set by: the deadline, or its overrun."""
        return "the deadline" if timeout_s < OVERRUN * budget_s else f"{OVERRUN:g} × its budget"

    def skip_reason(self, budget_s: float) -> str:
        return (
            f"deadline: its budget of {budget_s:.0f} s would end past the deadline "
            f"({max(0.0, self.remaining()):.0f} s left of {self.deadline_s:g} s)"
        )


def traced_default(framework: str) -> bool:
    """Whether ``framework``'s default mode (the one a check runs) traces and compiles."""
    return manifest(framework).modes[0] != "eager"


def check_budget(framework: str, spec: str, device: str) -> float:
    base = CHECK_S[device][spec]
    return base * TRACED_CHECK_FACTOR if traced_default(framework) else base


def step_budget(run: RunConfig, device: str) -> float:
    return PROCESS_S[device] + STEP_S[device][run.mode] * SPEC_FACTOR[run.spec]


#: What each plan measures: check specs and precisions, the check's steps and batch, the step
#: table's (spec, batch, precision) in order of value, the modes, the timing plan, CPU threads.
PLANS: dict[str, dict[str, Any]] = {
    "gpu": {
        "frameworks": ("torch", "jax", "tensorflow"),  # TensorFlow: absent on the lent GPU machine
        "check_specs": ("mlp", "dcgan-small"),
        "check_precisions": ("float32", "tf32", "bf16"),
        "check_steps": 10,  # the check's defaults: comparable with benchmarks/results/agreement/h100-*
        "check_batch": 64,
        "configs": (  # launch-bound at TF32, throughput-bound at bf16, then the other precision
            ("mlp", 64, "tf32"),
            ("dcgan", 64, "tf32"),
            ("mlp", 4096, "bf16"),
            ("dcgan", 512, "bf16"),
            ("mlp", 64, "bf16"),
            ("dcgan", 64, "bf16"),
            ("mlp", 4096, "tf32"),
            ("dcgan", 512, "tf32"),
        ),  # fmt: skip
        "modes": {"torch": ("eager", "cuda-graph", "compile-cudagraphs", "compile"), "jax": ("jit",)},
        "timing": TimingPlan(warmup=5, repeats=5, min_block_s=0.05, max_steps_per_block=1000, dispatch_calls=5),
        "threads": None,
    },
    "tiny": {  # the CPU rehearsal: every stage, one configuration, in well under a minute
        "frameworks": ("torch", "jax"),
        "check_specs": ("mlp",),
        "check_precisions": ("float32",),
        "check_steps": 2,
        "check_batch": 16,
        "configs": (("mlp", 16, "float32"),),
        # torch.compile stays out: its cold compile alone takes 15-25 s on this CPU. So does a
        # JAX step run (8-12 s with the CPU's GEMM peak its worker measures): the step stage's
        # machinery is the same for every backend, and torch eager exercises it.
        "modes": {"torch": ("eager", "cuda-graph", "compile-cudagraphs")},
        "timing": TimingPlan(warmup=3, repeats=3, min_block_s=0.02, max_steps_per_block=100, dispatch_calls=3),
        # One thread per framework: on a shared 2-core machine OpenMP pools of 2 wait on each other.
        "threads": 1,
    },
}


def build_plan(name: str, device: str) -> Plan:
    """The plan ``name`` (:data:`PLANS`) on ``device`` (``cuda`` or ``cpu``)."""
    p = PLANS[name]
    groups = tuple(
        CheckGroup(
            fw,
            tuple(
                Check(fw, spec, prec, p["check_steps"], p["check_batch"], check_budget(fw, spec, device))
                for spec in p["check_specs"]
                for prec in p["check_precisions"]
            ),
            PROCESS_S[device],
        )
        for fw in p["frameworks"]
    )
    fast, heavy = [], []
    for heavy_stage in (False, True):
        for spec, batch, precision in p["configs"]:
            for backend, modes in p["modes"].items():
                for mode in modes:
                    if (mode in COMPILE_HEAVY) != heavy_stage:
                        continue
                    run = RunConfig(backend, mode, spec, batch, precision, None, device, p["threads"], 0, p["timing"])
                    stage = "compile-heavy" if heavy_stage else "steps"
                    (heavy if heavy_stage else fast).append(Step(run, step_budget(run, device), stage))
    return Plan(name, device, groups, (*fast, *heavy), p["threads"])


def absent_reason(framework: str) -> str | None:
    """Why ``framework`` cannot run here (not installed), or None."""
    if is_available(framework):
        return None
    return f"{framework} is not installed here (pip install 'gan-backends[{manifest(framework).extra}]')"


def check_unavailable(check: Check, device: str) -> str | None:
    """Why a check cannot mean anything on ``device``: TF32 on a CPU would repeat float32
    (every framework ignores the switch there) at a looser tolerance."""
    if check.precision == "tf32" and device == "cpu":
        return "no TF32 on a CPU: the check would repeat float32 at a looser tolerance"
    return None


def schedule(
    plan: Plan, deadline_s: float, available: Callable[[str], bool] = lambda f: absent_reason(f) is None
) -> dict[str, Any]:
    """Lay ``plan`` out as if every part took exactly its budget: the parts admitted before the
    deadline (by the same rule as the proof: :class:`Deadline`), the others, and when the
    admitted ones would end. Absent frameworks and unavailable parts cost nothing."""
    from gan_backends.bench.sweep import known_unavailable

    now = [0.0]
    deadline = Deadline(deadline_s, clock=lambda: now[0])
    admitted: list[str] = []
    beyond: list[str] = []
    stage_end = 0.0
    for group in plan.groups:  # side by side: each from the stage's start
        if not available(group.framework):
            continue
        t = PROCESS_S[plan.device]
        for check in group.checks:
            if check_unavailable(check, plan.device):
                continue
            if check.budget_s + t <= deadline.remaining():
                admitted.append(check.key)
                t += check.budget_s
            else:
                beyond.append(check.key)
        stage_end = max(stage_end, t)
    now[0] = stage_end
    for step in plan.steps:
        if not available(step.run.backend) or known_unavailable(step.run):
            continue
        if deadline.fits(step.budget_s):
            admitted.append(step.run.key)
            now[0] += step.budget_s
        else:
            beyond.append(step.run.key)
    return {"admitted": admitted, "beyond": beyond, "ends_s": now[0], "deadline_s": deadline_s}


__all__ = ["PLANS", "Check", "CheckGroup", "Deadline", "Plan", "Step", "build_plan", "schedule"]

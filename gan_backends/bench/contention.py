r"""What competed with a benchmark run, and the rule that calls a run *disturbed*.

On a shared machine a single busy process can slow a CPU step several times over (OpenMP
threads wait at every barrier for a sibling the scheduler has taken off its core), and nothing in
the timing itself says so. Every timed run therefore records, from its own process:

- ``load_before`` / ``load_after``: the machine's load averages (1, 5, 15 min) just before the
  first step and just after the timed blocks, and ``others_running_before`` / ``_after``: the
  machine's runnable tasks at those moments (``/proc/loadavg``) less this run's own running
  threads;
- over the timed blocks alone (sampled right before the first block and right after the last,
  outside any block's clock): ``wall_s``, the run's CPU time ``cpu_s`` (all threads) and
  ``cpu_per_wall``; its ``voluntary`` and ``involuntary`` context switches (``getrusage``), per
  step and per second; ``others_cpu_s``, the CPU time the run's cores spent on anything but
  this run (their busy time in ``/proc/stat`` less the CPU time of this process and its live
  descendants, e.g. DDP ranks) and ``others_share``, that as a share of the cores' wall time;
  ``steal_share``, the share of the cores' time the hypervisor gave to other machines.

**Disturbed** (:func:`judge`) when, during the timed blocks, either

- other processes took more than :data:`OTHERS_SHARE_LIMIT` of the run's cores
  (``others_share``), or the hypervisor stole more than :data:`OTHERS_SHARE_LIMIT` of them
  (``steal_share``), or
- the run was preempted more than :data:`INVOLUNTARY_PER_S_LIMIT` times per second
  (``involuntary_per_s``: a thread descheduled while it still wanted its core), or
- the 1-minute load average after the blocks exceeded the run's own threads (its cores) by more
  than :data:`LOAD_MARGIN`.

The thresholds were chosen from runs on this project's 2-core machine (``benchmarks/README.md``,
"Contention"): a torch step at 2 threads with the machine otherwise quiet showed others' share
≤ 3% and ≤ 40 involuntary switches/s, while one busy process beside it gave a share of 30–50% and
hundreds of switches per second. ``cpu_per_wall`` is recorded but not judged: it depends on the
framework (TensorFlow's and XLA's pools sleep, OpenMP spins) more than on the neighbours.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: Share of the run's cores' time that other processes (or the hypervisor) may take in the
#: timed blocks before the run is disturbed.
OTHERS_SHARE_LIMIT = 0.10
#: Involuntary context switches per second of timed blocks (all the run's threads together).
INVOLUNTARY_PER_S_LIMIT = 200.0
#: The 1-minute load average after the blocks may exceed the run's cores by this much.
LOAD_MARGIN = 1.0

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True)
class Sample:
    """One reading of the process's and the machine's counters (None: not readable here)."""

    wall_s: float
    cpu_s: float  # this process, all threads: user + system
    voluntary: int
    involuntary: int
    tree_cpu_s: float | None  # this process and its live descendants, in /proc's clock ticks
    cores_busy_s: float | None  # the cores' busy time (user, nice, system, irq, softirq)
    cores_steal_s: float | None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cores_time(cores: Sequence[int]) -> tuple[float, float] | None:
    """(busy, steal) seconds of ``cores`` since boot, from ``/proc/stat``'s per-CPU lines."""
    text = _read("/proc/stat")
    if text is None:
        return None
    wanted = {f"cpu{c}" for c in cores}
    busy = steal = 0
    for line in text.splitlines():
        name, *values = line.split()
        if name in wanted:
            v = [int(x) for x in values[:8]]  # user nice system idle iowait irq softirq steal
            busy += v[0] + v[1] + v[2] + v[5] + v[6]
            steal += v[7]
    return busy * _TICK_S, steal * _TICK_S


def _proc_stat_fields(pid: int | str) -> list[str] | None:
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    return text[text.rfind(")") + 2 :].split()  # after the command name, which may hold spaces


def _tree_cpu_s(root: int) -> float | None:
    """CPU seconds (user + system) of ``root`` and its live descendants: a data-parallel
    run's other ranks are its own work, not a neighbour's."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    parent, ticks = {}, {}
    for pid in pids:
        fields = _proc_stat_fields(pid)
        if fields is None:  # gone meanwhile
            continue
        parent[int(pid)] = int(fields[1])  # fields from the state on: state ppid ... utime(11) stime(12)
        ticks[int(pid)] = int(fields[11]) + int(fields[12])
    if root not in ticks:
        return None
    tree, frontier = {root}, [root]
    while frontier:
        children = [p for p, pp in parent.items() if pp in frontier and p not in tree]
        tree.update(children)
        frontier = children
    return sum(ticks[p] for p in tree) * _TICK_S


def own_running_threads() -> int:
    """How many of this process's threads are running or runnable now."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    return sum(1 for t in tasks if (_proc_stat_fields(f"self/task/{t}") or ["?"])[0] == "R")


def others_running() -> int | None:
    """The machine's runnable tasks (``/proc/loadavg``) less this process's own."""
    text = _read("/proc/loadavg")
    if text is None:
        return None
    return max(0, int(text.split()[3].split("/")[0]) - own_running_threads())


def sample(cores: Sequence[int]) -> Sample:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cores_time = _cores_time(cores)
    return Sample(
        wall_s=time.perf_counter(),
        cpu_s=usage.ru_utime + usage.ru_stime,
        voluntary=usage.ru_nvcsw,
        involuntary=usage.ru_nivcsw,
        tree_cpu_s=_tree_cpu_s(os.getpid()),
        cores_busy_s=None if cores_time is None else cores_time[0],
        cores_steal_s=None if cores_time is None else cores_time[1],
    )


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


@dataclass
class Watch:
    """Reads the counters before the first step (:meth:`begin`), around the timed blocks
    (:meth:`blocks`, a context manager handed to the timer) and after them; then
    :meth:`figures`."""

    cores: list[int] = field(default_factory=_cores)
    load_before: list[float] | None = None
    others_running_before: int | None = None
    start: Sample | None = None
    end: Sample | None = None
    load_after: list[float] | None = None
    others_running_after: int | None = None

    def begin(self) -> None:
        self.load_before, self.others_running_before = _load(), others_running()

    @contextmanager
    def blocks(self) -> Iterator[None]:
        self.start = sample(self.cores)
        yield
        self.end = sample(self.cores)
        self.load_after, self.others_running_after = _load(), others_running()

    def figures(self, steps: int) -> dict[str, Any]:
        """The record's ``contention``: the figures over ``steps`` timed steps and the verdict."""
        if self.start is None or self.end is None:
            raise RuntimeError("the timed blocks were not watched")
        figures = blocks_figures(self.start, self.end, steps, len(self.cores))
        figures.update(
            cores=self.cores,
            load_before=self.load_before,
            load_after=self.load_after,
            others_running_before=self.others_running_before,
            others_running_after=self.others_running_after,
        )
        disturbed, reasons = judge(figures)
        return {**figures, "disturbed": disturbed, "reasons": reasons}


def blocks_figures(start: Sample, end: Sample, steps: int, n_cores: int) -> dict[str, Any]:
    """The figures of the interval from ``start`` to ``end`` (module docstring)."""
    wall = end.wall_s - start.wall_s
    cpu = end.cpu_s - start.cpu_s
    involuntary = end.involuntary - start.involuntary
    others = share = steal = None
    if None not in (start.cores_busy_s, end.cores_busy_s, start.tree_cpu_s, end.tree_cpu_s):
        busy = end.cores_busy_s - start.cores_busy_s  # type: ignore[operator]
        ours = end.tree_cpu_s - start.tree_cpu_s  # type: ignore[operator]
        others = max(0.0, busy - ours)  # both in clock ticks: their rounding can make it negative
        share = others / (wall * n_cores) if wall > 0 else None
    if None not in (start.cores_steal_s, end.cores_steal_s) and wall > 0:
        steal = (end.cores_steal_s - start.cores_steal_s) / (wall * n_cores)  # type: ignore[operator]
    return {
        "steps": steps,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_per_wall": cpu / wall if wall > 0 else None,
        "voluntary": end.voluntary - start.voluntary,
        "involuntary": involuntary,
        "involuntary_per_step": involuntary / steps if steps else None,
        "involuntary_per_s": involuntary / wall if wall > 0 else None,
        "others_cpu_s": others,
        "others_share": share,
        "steal_share": steal,
    }


def judge(figures: dict[str, Any]) -> tuple[bool, list[str]]:
    """The rule of the module docstring on a record's contention figures: (disturbed, reasons).
    A figure that could not be read (None) is no evidence either way."""
    reasons = []
    share, steal = figures.get("others_share"), figures.get("steal_share")
    if share is not None and share > OTHERS_SHARE_LIMIT:
        reasons.append(f"other processes took {share:.0%} of the run's cores (limit {OTHERS_SHARE_LIMIT:.0%})")
    if steal is not None and steal > OTHERS_SHARE_LIMIT:
        reasons.append(f"the hypervisor stole {steal:.0%} of the run's cores (limit {OTHERS_SHARE_LIMIT:.0%})")
    rate = figures.get("involuntary_per_s")
    if rate is not None and rate > INVOLUNTARY_PER_S_LIMIT:
        reasons.append(f"{rate:.0f} involuntary context switches/s (limit {INVOLUNTARY_PER_S_LIMIT:.0f})")
    load, cores = figures.get("load_after"), figures.get("cores")
    if load and cores and load[0] > len(cores) + LOAD_MARGIN:
        reasons.append(f"1-min load {load[0]:.2f} after the blocks on {len(cores)} cores (limit +{LOAD_MARGIN:g})")
    return bool(reasons), reasons


def is_disturbed(record: dict[str, Any]) -> bool:
    """A record whose timed blocks were judged disturbed (records from before this field: no)."""
    return bool((record.get("contention") or {}).get("disturbed"))

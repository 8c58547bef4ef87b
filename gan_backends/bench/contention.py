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

**Disturbed** (:func:`judge`) when, during the timed blocks, other processes took more than
:data:`OTHERS_SHARE_LIMIT` of the run's cores (``others_share``), or the hypervisor stole more
than that share of them (``steal_share``).

The rule was chosen from torch ``eager`` and JAX ``jit`` runs of the MLP GAN at batch 64 on 2
threads on this project's 2-core machine (``benchmarks/README.md``, "Contention"), with other
sessions' test suites running beside them (load average 4.5–8):

- run with their scheduling group raised above the rest (the machine as good as quiet for
  them): torch 17.5–18.4 ms per step, ``others_share`` 0.028–0.036, ``cpu_per_wall`` 1.94;
  JAX 16.8 ms, 0.073, 1.85;
- the same, one busy-looping process competing on equal terms: torch 46.8 ms (2.6×),
  ``others_share`` 0.35, ``cpu_per_wall`` 1.30;
- at ordinary priority among the other sessions' suites: torch 58–1760 ms, ``others_share``
  0.46–0.88 in all 22 runs, ``cpu_per_wall`` 0.22–1.1.

So the limit, 0.15, lies at twice the quietest runs' worst and under half the mildest disturbed
one. The other figures are recorded but not judged, because the measurements show they do not
separate the cases: involuntary switches were 67–226 per second in the quiet runs (JAX's own
thread pool preempts itself: 226/s, with 1,085 voluntary switches) and 62–393 in the disturbed
ones, fewer the more a run is starved (it gets fewer, longer slices); the load average stayed
at 5.3–5.5 through the quiet runs (the other sessions' tasks waited, runnable, without taking
the run's cores) and is a minute's average besides; ``cpu_per_wall`` depends on how a
framework's pools wait (spinning or sleeping) as much as on the neighbours.
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
#: timed blocks before the run is disturbed (the measurements behind it: module docstring).
OTHERS_SHARE_LIMIT = 0.15

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
    return bool(reasons), reasons


def is_disturbed(record: dict[str, Any]) -> bool:
    """A record whose timed blocks were judged disturbed (records from before this field: no)."""
    return bool((record.get("contention") or {}).get("disturbed"))

"""Contention made visible: the disturbed rule on figures whose verdict is known, the figures
from two counter readings, the watch spanning the timed blocks alone, the marker and footnote in
the reports, and ``--rerun-disturbed`` choosing exactly the disturbed records (no real runs)."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager

import pytest
from test_bench_batch import step_record
from test_bench_timing import AsyncDevice, steps_with

from gan_backends.bench import sweep as sweep_module
from gan_backends.bench.config import RunConfig
from gan_backends.bench.contention import (
    OTHERS_SHARE_LIMIT,
    Sample,
    Watch,
    blocks_figures,
    is_disturbed,
    judge,
)
from gan_backends.bench.report import markdown, progress_line, render, table_rows
from gan_backends.bench.sweep import RESULTS, append_record, run_sweep
from gan_backends.bench.timing import TimingPlan, time_step

QUIET = {
    "others_share": 0.02,
    "steal_share": 0.0,
    "involuntary_per_s": 20.0,
    "load_after": [1.9, 1.5, 1.2],
    "cores": [0, 1],
}


def test_the_rule_on_synthetic_figures():
    """Only the share of the run's cores others took (or the hypervisor stole) decides; the
    switches and the load average are recorded, not judged (the measurements: contention.py)."""
    assert judge(QUIET) == (False, [])
    assert OTHERS_SHARE_LIMIT == 0.15
    disturbed, reasons = judge({**QUIET, "others_share": 0.16})
    assert disturbed and reasons == ["other processes took 16% of the run's cores (limit 15%)"]
    disturbed, reasons = judge({**QUIET, "steal_share": 0.3})
    assert disturbed and reasons == ["the hypervisor stole 30% of the run's cores (limit 15%)"]
    assert judge({**QUIET, "others_share": OTHERS_SHARE_LIMIT}) == (False, [])  # the limit is allowed
    busy_but_calm = {**QUIET, "involuntary_per_s": 400.0, "load_after": [5.4, 5.0, 4.0]}
    assert judge(busy_but_calm) == (False, [])  # a quiet JAX run's own pool, others waiting unserved
    unreadable = dict.fromkeys(("others_share", "steal_share", "involuntary_per_s", "load_after", "cores"))
    assert judge(unreadable) == (False, [])  # no evidence either way
    both = judge({**QUIET, "others_share": 0.5, "steal_share": 0.2})
    assert both[0] and len(both[1]) == 2


def test_figures_from_two_readings():
    """2 cores for 2 s: 4 core-seconds. Ours 2.5 s of CPU (3.0 s with a child rank), the cores
    busy 3.5 s: others 0.5 s, 12.5%; 0.4 s stolen: 10%; 300 preemptions in 2 s over 10 steps."""
    start = Sample(10.0, 1.0, 5, 100, 20.0, 100.0, 7.0)
    end = Sample(12.0, 3.5, 9, 400, 23.0, 103.5, 7.4)
    f = blocks_figures(start, end, steps=10, n_cores=2)
    assert f["wall_s"] == 2.0 and f["cpu_s"] == 2.5 and f["cpu_per_wall"] == 1.25
    assert (f["voluntary"], f["involuntary"], f["involuntary_per_step"], f["involuntary_per_s"]) == (4, 300, 30, 150)
    assert f["others_cpu_s"] == pytest.approx(0.5) and f["others_share"] == pytest.approx(0.125)
    assert f["steal_share"] == pytest.approx(0.1)
    rounding = Sample(12.0, 3.5, 9, 400, 23.02, 103.0, 7.4)  # ours counted a tick past the cores' busy time
    assert blocks_figures(start, rounding, 10, 2)["others_cpu_s"] == 0.0
    blind = Sample(12.0, 3.5, 9, 400, None, None, None)  # no /proc
    assert blocks_figures(start, blind, 10, 2)["others_share"] is None


def test_the_watch_spans_the_timed_blocks_alone():
    device = AsyncDevice()

    @contextmanager
    def blocks():
        device.events.append("enter")
        yield
        device.events.append("exit")

    plan = TimingPlan(warmup=2, repeats=3, min_block_s=0.02)
    time_step(steps_with(device, 1.0, 0.01, 0.01, 2), device.sync, plan, device.clock, blocks=blocks)
    events = device.events
    enter, leave = events.index("enter"), events.index("exit")
    assert events[:enter].count("step") == 3  # the first step and the warm-up, outside
    assert events[enter + 1 : enter + 3] == ["sync", "clock"]  # then the first block begins
    assert events[leave - 2 : leave] == ["sync", "clock"] and leave == len(events) - 1
    assert events[enter:].count("step") == 3 * 2  # every timed step inside


def test_a_real_watch_reads_this_process():
    watch = Watch()
    watch.begin()
    with watch.blocks():
        sum(i * i for i in range(200_000))  # a little CPU
    f = watch.figures(steps=4)
    assert f["wall_s"] > 0 and f["cpu_s"] >= 0 and f["steps"] == 4
    assert f["cores"] and f["load_before"] is not None and len(f["load_after"]) == 3
    assert f["others_share"] is not None and 0 <= f["others_share"]
    assert isinstance(f["disturbed"], bool) and isinstance(f["reasons"], list)


def disturbed(record: dict, why: str = "other processes took 40% of the run's cores (limit 10%)") -> dict:
    return {**record, "contention": {**QUIET, "others_share": 0.4, "disturbed": True, "reasons": [why]}}


def test_disturbed_rows_are_marked_with_a_footnote():
    calm = {**step_record("jax", "jit", 64, 10.0), "contention": {**QUIET, "disturbed": False, "reasons": []}}
    busy = disturbed(step_record("torch", "eager", 64, 20.0))
    old = step_record("tensorflow", "xla", 64, 30.0)  # a record from before the field
    md = markdown([calm, busy, old], {"plan": {"repeats": 5}})
    assert "| 1 | jax | jit | 10.00" in md and "| 2 | torch | eager ⚠ disturbed | 20.00" in md
    assert "| 3 | tensorflow | xla | 30.00" in md
    assert "⚠ disturbed: another process competed" in md and "--rerun-disturbed" in md
    assert "- `torch/eager`: other processes took 40% of the run's cores (limit 10%)" in md
    rows = {r["backend"]: r for r in table_rows([calm, busy, old])}
    assert [rows[b]["disturbed"] for b in ("jax", "torch", "tensorflow")] == [False, True, None]
    assert rows["torch"]["others_share"] == 0.4
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100)
    render([calm, busy], console)
    out = console.file.getvalue()
    assert "eager ⚠" in out and "1 run competed with another process" in out
    assert "⚠ disturbed" not in markdown([calm, old], {})  # no footnote without one
    assert "⚠ disturbed[/] (other processes took 40%" in progress_line(busy, skipped=False)
    assert "disturbed" not in progress_line(calm, skipped=False)


def test_rerun_disturbed_runs_exactly_the_disturbed_records(tmp_path, monkeypatch):
    runs = [RunConfig("torch", "eager", "mlp", b) for b in (1, 2, 3, 4)]

    def recorded(run: RunConfig, status: str = "ok") -> dict:
        return {"key": run.key, "config": run.to_dict(), "status": status, "reason": None}

    for record in (
        recorded(runs[0]) | {"contention": {"disturbed": False, "reasons": []}},
        disturbed(recorded(runs[1])),
        recorded(runs[2], "error"),
        recorded(runs[3]),  # from before the field: never taken for disturbed
    ):
        append_record(tmp_path / RESULTS, record)
    ran: list[int] = []

    def fake_run_one(run: RunConfig, timeout_s: float, worker=None) -> dict:
        ran.append(run.batch_size)
        return recorded(run)

    monkeypatch.setattr(sweep_module, "run_one", fake_run_one)
    assert [is_disturbed(r) for r in map(json.loads, (tmp_path / RESULTS).read_text().splitlines())] == [
        False, True, False, False,
    ]  # fmt: skip
    run_sweep(runs, tmp_path, timeout_s=5, rerun_disturbed=True)
    assert ran == [2]
    run_sweep(runs, tmp_path, timeout_s=5, rerun_disturbed=True)  # its new record is calm
    assert ran == [2]
    run_sweep(runs, tmp_path, timeout_s=5, retry_failed=True)
    assert ran == [2, 3]

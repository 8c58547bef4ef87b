"""The timing core against a simulated asynchronous device, whose clock only moves when the host
waits: a timer that read the clock without synchronising would measure nothing."""

from __future__ import annotations

import pytest

from gan_backends.bench.timing import Spread, TimingPlan, time_interleaved, time_step


class AsyncDevice:
    """Steps are queued (``launch``) and take ``duration`` seconds of device time; the host's
    clock advances only in ``sync``, to the end of the queued work, as a CUDA stream behaves
    when the host does nothing but launch."""

    def __init__(self) -> None:
        self.now = 0.0  # host clock
        self.busy_until = 0.0
        self.events: list[str] = []

    def clock(self) -> float:
        self.events.append("clock")
        return self.now

    def launch(self, duration: float) -> int:
        self.busy_until = max(self.busy_until, self.now) + duration
        self.events.append("step")
        return len(self.events)

    def sync(self, _out) -> None:
        self.now = max(self.now, self.busy_until)
        self.events.append("sync")


def steps_with(device: AsyncDevice, first: float, warm: float, steady: float, warmup: int):
    """A step taking ``first`` seconds on its first call (compilation), ``warm`` for the warm-up
    calls and ``steady`` afterwards."""
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        n = calls["n"]
        return device.launch(first if n == 1 else warm if n <= 1 + warmup else steady)

    return step


def test_steady_state_excludes_first_step_and_warmup():
    device = AsyncDevice()
    plan = TimingPlan(warmup=3, repeats=5, min_block_s=0.05)
    timing = time_step(steps_with(device, first=20.0, warm=0.5, steady=0.01, warmup=3), device.sync, plan, device.clock)
    assert timing.first_step_s == pytest.approx(20.0)
    assert timing.warmup_s == pytest.approx(1.5)
    assert len(timing.block_step_s) == 5
    # Every block is steady steps only: exactly 0.01 s each, whatever the compile and warm-up cost.
    assert timing.steady.median == pytest.approx(0.01)
    assert timing.steady.max == pytest.approx(0.01)


def test_the_clock_is_read_only_after_a_sync():
    device = AsyncDevice()
    time_step(steps_with(device, 1.0, 0.01, 0.01, 2), device.sync, TimingPlan(warmup=2, repeats=3), device.clock)
    for i, event in enumerate(device.events):
        if event == "clock" and "step" in device.events[:i]:
            previous = [e for e in device.events[:i] if e != "clock"][-1]
            assert previous == "sync", f"clock read after {previous!r} at event {i}: {device.events[: i + 1]}"


def test_no_sync_inside_a_block():
    device = AsyncDevice()
    plan = TimingPlan(warmup=1, repeats=2, min_block_s=0.1)
    timing = time_step(steps_with(device, 1.0, 0.01, 0.01, 1), device.sync, plan, device.clock)
    assert timing.steps_per_block == 10  # 0.1 s / 0.01 s per warm-up step
    # Last block: sync, clock, 10 steps, sync, clock.
    tail = device.events[-14:]
    assert tail == ["sync", "clock", *["step"] * 10, "sync", "clock"]


def test_without_sync_a_timer_would_see_nothing():
    """The simulated device is a real test of the discipline: skipping the sync reads zero."""
    device = AsyncDevice()
    timing = time_step(steps_with(device, 1.0, 0.01, 0.01, 1), lambda out: None, TimingPlan(1, 2), device.clock)
    assert timing.steady.median == 0.0


def test_steps_per_block_from_the_warmup_estimate():
    plan = TimingPlan(min_block_s=0.2, max_steps_per_block=1000)
    assert plan.steps_per_block(0.02) == 10
    assert plan.steps_per_block(0.3) == 1
    assert plan.steps_per_block(1e-7) == 1000
    with pytest.raises(ValueError):
        TimingPlan(warmup=0)


def test_interleaved_blocks_alternate():
    device = AsyncDevice()
    order: list[str] = []

    def tagged(name: str, duration: float):
        def step():
            order.append(name)
            return device.launch(duration)

        return step

    plan = TimingPlan(warmup=1, repeats=3, min_block_s=0.025)
    timings = time_interleaved(
        {"a": (tagged("a", 0.01), device.sync), "b": (tagged("b", 0.03), device.sync)}, plan, device.clock
    )
    assert timings["a"].steady.median == pytest.approx(0.01)
    assert timings["b"].steady.median == pytest.approx(0.03)
    assert (timings["a"].steps_per_block, timings["b"].steps_per_block) == (3, 1)
    # After each one's first step and warm-up (a a b b), their blocks alternate.
    assert "".join(order) == "aabb" + "aaab" * 3


def test_spread_quartiles():
    s = Spread.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.q1, s.q3, s.min, s.max) == (3.0, 2.0, 4.0, 1.0, 5.0)
    assert s.iqr == 2.0

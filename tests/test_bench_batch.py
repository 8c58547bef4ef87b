"""Batch sweeps: FLOP floor, crossover and n½ on records whose answer is derived by hand; the
dispatch clock against a simulated device; the built-in sweep files; one tiny real sweep with its
peak run, dispatch fields, summary and plot."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gan_backends.bench.batch import crossovers
from gan_backends.bench.config import PEAK, RunConfig, Sweep, default_sweep
from gan_backends.bench.plot import plot_throughput
from gan_backends.bench.report import markdown, table_rows
from gan_backends.bench.timing import time_dispatch
from gan_backends.cli import app

BATCHES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
PEAK_TFLOPS = 0.1  # 1e11 FLOP/s
FLOPS_PER_SAMPLE = 10_000_000  # matmul FLOPs: floor_ms(B) = B · 1e7 / 1e11 · 1e3 = 0.1 · B ms


def peak_record(tflops: float = PEAK_TFLOPS) -> dict:
    config = RunConfig(PEAK, "gemm", "gemm", 2048, "float32", None, "cpu", 2).to_dict()
    return {
        "key": "peak",
        "config": config,
        "status": "ok",
        "reason": None,
        "device": "cpu",
        "peak_tflops": tflops,
        "peak_source": "measured in this sweep: best float32 GEMM 2048x2048 (numpy)",
    }


def step_record(backend: str, mode: str, batch: int, step_ms: float, own_peak: float = 0.05) -> dict:
    """A timed run of a step taking ``step_ms``; ``own_peak``: the run's own CPU GEMM measurement
    (lower than the peak run's unless a test says otherwise)."""
    s = step_ms / 1e3
    return {
        "key": f"{backend}/{mode}/b{batch}",
        "config": RunConfig(backend, mode, "mlp", batch, "float32", None, "cpu", 2).to_dict(),
        "status": "ok",
        "reason": None,
        "device": "cpu",
        "timing": {"steady": {"median": s, "q1": s, "q3": s, "min": s, "max": s}, "first_step_s": 1.0},
        "dispatch": {"call": {"median": s / 2}, "synced": {"median": s}, "fraction": 0.5, "calls": 3},
        "samples_per_s": batch / s,
        "flops_per_step": {"matmul": batch * FLOPS_PER_SAMPLE},
        "achieved_tflops": batch * FLOPS_PER_SAMPLE / s / 1e12,
        "peak_tflops": own_peak,
        "peak_source": "measured: float32 GEMM 2048² in NumPy's BLAS",
        "memory": {"peak_device_bytes": None, "host_peak_rss_bytes": 2**30},
    }


def affine(backend: str, mode: str, t0_ms: float, per_sample_ms: float) -> list[dict]:
    """t(B) = t0 + B · c: a fixed per-step overhead and a per-sample cost."""
    return [step_record(backend, mode, b, t0_ms + b * per_sample_ms) for b in BATCHES]


def synthetic() -> list[dict]:
    """Three modes against floor(B) = 0.1·B ms (peak 0.1 TFLOP/s, 1e7 FLOPs per sample):

    - fast: t = 10 + 0.15·B. Crossover: 10 + 0.15·B ≤ 0.2·B ⟺ B ≥ 200 → 256, where
      step/floor = (10 + 38.4) / 25.6 = 1.890625. Throughput B / (10 + 0.15·B) per ms; best at
      4096: 4096 / 624.4 = 6.5599, half 3.2799; B / (10 + 0.15·B) ≥ 3.2799 ⟺ B ≥ 64.56 → n½ = 128;
      last doubling 2048 → 4096: 6.4566 → 6.5599, +1.6% < 10%: saturated.
    - slow: t = 1 + 0.25·B; step/floor = 2.5 + 10/B > 2: not reached. Best 4096 / 1025 = 3.9961,
      half 1.9980; B / (1 + 0.25·B) ≥ 1.9980 ⟺ B ≥ 3.99 → n½ = 16, saturated.
    - bound: t = 1000 + 0.15·B; step/floor ≤ 2 needs B ≥ 20000: not reached. Best 4096 / 1614.4 =
      2.5372, half 1.2686; B ≥ 1566.7 → 2048; 2048 → 4096: 1.5667 → 2.5372, +62%: n½ ≥ 2048.
    """
    return [
        peak_record(),
        *affine("torch", "fast", 10.0, 0.15),
        *affine("jax", "slow", 1.0, 0.25),
        *affine("tensorflow", "bound", 1000.0, 0.15),
    ]


def test_floor_uses_the_sweeps_peak_run():
    rows = {(r["backend"], r["batch_size"]): r for r in table_rows(synthetic())}
    assert len(rows) == 3 * len(BATCHES)  # the peak run is no row of its own
    row = rows[("torch", 256)]
    assert row["peak_tflops"] == PEAK_TFLOPS  # not the run's own, lower, measurement (0.05)
    assert row["floor_ms"] == pytest.approx(25.6)
    assert row["step_over_floor"] == pytest.approx(48.4 / 25.6)
    assert row["utilisation"] == pytest.approx(25.6 / 48.4)
    assert row["dispatch_ms"] == pytest.approx(24.2) and row["dispatch_fraction"] == 0.5


def test_a_runs_own_higher_cpu_measurement_raises_the_peak():
    records = [peak_record(0.1), step_record("torch", "eager", 64, 10.0, own_peak=0.2)]
    (row,) = table_rows(records)
    assert row["peak_tflops"] == 0.2
    assert row["floor_ms"] == pytest.approx(64 * 1e7 / 0.2e12 * 1e3)  # 3.2 ms


def test_crossover_and_n_half_against_hand_derived_answers():
    found = {c.mode: c for c in crossovers(table_rows(synthetic()))}
    fast, slow, bound = found["fast"], found["slow"], found["bound"]
    assert (fast.crossover, fast.n_half, fast.saturated) == (256, 128, True)
    assert fast.ratio_at_crossover == pytest.approx(1.890625)
    assert fast.best_batch == 4096 and fast.best_samples_per_s == pytest.approx(4096 / 0.6244)
    assert (slow.crossover, slow.n_half, slow.saturated) == (None, 16, True)
    assert (bound.crossover, bound.n_half, bound.saturated) == (None, 2048, False)


def test_crossover_in_the_summary():
    md = markdown(synthetic(), {"plan": {"repeats": 5}})
    assert "## Batch sweep: overhead-bound → compute-bound" in md
    assert "| torch | fast | 16–4096 | 256 | 1.89 | 128 | 6,560 (4096) |" in md
    assert "| jax | slow | 16–4096 | not reached | – | 16 |" in md
    assert "| tensorflow | bound | 16–4096 | not reached | – | ≥ 2048 |" in md
    assert "**0.1 TFLOP/s**" in md  # the peaks section


def test_no_batch_section_for_two_batch_sizes():
    records = [peak_record(), step_record("torch", "eager", 64, 10.0), step_record("torch", "eager", 256, 30.0)]
    assert crossovers(table_rows(records)) == []
    assert "Batch sweep" not in markdown(records, {})


def test_the_plot_is_written(tmp_path):
    path = tmp_path / "throughput.png"
    plot_throughput(synthetic(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class HostAndDevice:
    """A step costs the host ``host_s`` to launch and the device ``device_s`` to run, queued
    behind earlier work; the clock moves with the host, and to the queue's end in ``sync``."""

    def __init__(self, host_s: float, device_s: float) -> None:
        self.now = self.busy_until = 0.0
        self.host_s, self.device_s = host_s, device_s

    def clock(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += self.host_s
        self.busy_until = max(self.busy_until, self.now) + self.device_s

    def sync(self, _out) -> None:
        self.now = max(self.now, self.busy_until)


def test_dispatch_is_the_hosts_share_of_a_step():
    device = HostAndDevice(host_s=0.001, device_s=0.010)
    d = time_dispatch(device.step, device.sync, 4, clock=device.clock)
    assert d.call.median == pytest.approx(0.001) and d.synced.median == pytest.approx(0.011)
    assert d.fraction == pytest.approx(1 / 11) and d.calls == 4
    sync_device = HostAndDevice(host_s=0.010, device_s=0.0)  # a framework computing in the call
    assert time_dispatch(sync_device.step, sync_device.sync, 3, clock=sync_device.clock).fraction == 1.0
    assert time_dispatch(device.step, device.sync, 0, clock=device.clock) is None


def test_built_in_batch_sweeps():
    cpu, gpu = default_sweep("batch-cpu"), Sweep.load("batch-gpu")  # a built-in by name
    for sweep in (cpu, gpu):
        assert sweep.batch_sizes == tuple(2**k for k in range(4, 13))  # 16 … 4096
        assert sweep.measure_peak and sweep.runs()[0].is_peak
    assert cpu.runs()[0].key == "peak/gemm2048/float32/cpu/t2"
    assert "cuda-graph" in gpu.modes["torch"] and "compile-cudagraphs" in gpu.modes["torch"]
    with pytest.raises(Exception, match="built-in sweeps"):
        default_sweep("no-such")


@pytest.mark.long
def test_a_tiny_batch_sweep_end_to_end(tmp_path):
    """The real worker: a peak run (a 256² GEMM: 2·256³ = 33,554,432 FLOPs), torch eager at three
    batch sizes with the dispatch clock, and torch's CUDA-graph modes, unavailable on a CPU."""
    from conftest import require_backend

    require_backend("torch")
    graphs, sweep, out = tmp_path / "graphs.toml", tmp_path / "tiny.toml", tmp_path / "out"
    graphs.write_text(
        'specs = ["mlp"]\nbatch_sizes = [8]\ndevice = "cpu"\nthreads = 1\n[modes]\n'
        'torch = ["cuda-graph", "compile-cudagraphs"]\n'
    )
    result = CliRunner().invoke(app, ["bench", "--sweep", str(graphs), "--out", str(out)])
    assert result.exit_code == 0, result.output  # unavailable is no failure
    assert (out / "summary.md").read_text().count("CUDA graphs need a CUDA device") == 2
    sweep.write_text(
        'specs = ["mlp"]\nbatch_sizes = [8, 16, 32]\ndevice = "cpu"\nthreads = 1\nmeasure_peak = true\n'
        'peak_size = 256\n[modes]\ntorch = ["eager"]\n'
        "[plan]\nwarmup = 1\nrepeats = 2\nmin_block_s = 0.01\ndispatch_calls = 3\n"
    )
    result = CliRunner().invoke(app, ["bench", "--sweep", str(sweep), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = {r["key"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}

    peak = records["peak/gemm256/float32/cpu/t1"]
    assert peak["status"] == "ok" and peak["gemm"]["flops"] == 33_554_432 and peak["peak_tflops"] > 0
    for mode in ("cuda-graph", "compile-cudagraphs"):
        skipped = records[f"torch/{mode}/mlp/b8/float32/cpu/t1"]
        assert skipped["status"] == "unavailable"
        assert "CUDA graphs need a CUDA device" in skipped["reason"]
    timed = [records[f"torch/eager/mlp/b{b}/float32/cpu/t1"] for b in (8, 16, 32)]
    for record in timed:
        d = record["dispatch"]
        assert d["calls"] == 3 and 0 < d["call"]["median"] <= d["synced"]["median"]
        assert 0 < d["fraction"] <= 1.0
    rows = {r["batch_size"]: r for r in table_rows(list(records.values())) if r["status"] == "ok"}
    for record in timed:
        row = rows[record["config"]["batch_size"]]
        peak_flops = row["peak_tflops"] * 1e12
        assert peak_flops >= peak["peak_tflops"] * 1e12  # the peak run's, or a run's own higher one
        assert row["floor_ms"] == pytest.approx(record["flops_per_step"]["matmul"] / peak_flops * 1e3)
    derived = {r["key"]: r.get("derived") for r in json.loads((out / "results.json").read_text())["results"]}
    assert derived["torch/eager/mlp/b8/float32/cpu/t1"]["floor_ms"] == pytest.approx(rows[8]["floor_ms"])
    md = (out / "summary.md").read_text()
    assert "## Peaks measured in this sweep" in md and "## Batch sweep" in md
    assert "| torch | eager | 8–32 |" in md
    assert (out / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

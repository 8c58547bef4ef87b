"""Data-parallel scaling reports: strong and weak efficiency on hand-built records whose answers
are derived by hand; the device count in the ranking tables, the summary, the JSON and the plots;
records from before data parallelism read as one device."""

from __future__ import annotations

import json

import pytest

from gan_backends.bench.plot import plot_first_step, plot_scaling, plot_throughput
from gan_backends.bench.report import (
    config_key,
    config_title,
    flat_row,
    markdown,
    progress_line,
    ranked,
    table_rows,
    write_csv,
    write_json,
)
from gan_backends.bench.scaling import CPU_NOTE, ScalingPoint, markdown_section, scaling_points

PNG = b"\x89PNG\r\n\x1a\n"


def record(
    backend: str,
    mode: str,
    batch: int,
    samples_per_s: float,
    devices: int | None = 1,
    precision: str = "float32",
    device: str = "cpu",
    status: str = "ok",
) -> dict:
    """A run of global batch ``batch`` at ``samples_per_s`` (its step time follows); ``devices``
    None: a record from before data parallelism, with no such field."""
    config = {
        "backend": backend,
        "mode": mode,
        "spec": "mlp",
        "loss": None,
        "batch_size": batch,
        "precision": precision,
        "device": device,
        "threads": 2,
        "inputs": "device",
    }
    out: dict = {"key": f"{backend}/{mode}/b{batch}/d{devices}", "config": config, "status": status, "reason": None}
    if devices is not None:
        config["devices"] = devices
        if devices > 1:
            out["parallel"] = {
                "engine": "test",
                "devices": [f"{device}:{k}" for k in range(devices)],
                "batchnorm": "sync",
            }
    if status != "ok":
        return {**out, "reason": "RuntimeError: boom"}
    s = batch / samples_per_s
    return {
        **out,
        "device": device,
        "timing": {"steady": {"median": s, "q1": s, "q3": s, "min": s, "max": s}, "first_step_s": 1.0},
        "samples_per_s": samples_per_s,
        "memory": {"peak_device_bytes": None, "host_peak_rss_bytes": 2**30},
    }


def sweep() -> list[dict]:
    """torch eager on the CPU:

    - 1 device: 1000 samples/s at batch 64, 1500 at 128.
    - 2 devices at global 64: 1600 → strong S = 1600 / 1000 = 1.6, E = 0.8; weak needs 1 device
      at 32, not run: no weak point.
    - 2 devices at global 128: 1800 → strong S = 1800 / 1500 = 1.2, E = 0.6; weak against 1 device
      at 64: 1800 / (2 · 1000) = 0.9 (S = 1.8).
    - 4 devices at global 256: 2000 → no 1-device run at 256 (strong), weak against 64:
      2000 / (4 · 1000) = 0.5 (S = 2.0).

    And rows that must not be mixed in: jax jit at 2 devices with no 1-device run of its own
    mode, a bfloat16 torch run at 2 devices with no bfloat16 baseline, a failed 2-device run.
    """
    return [
        record("torch", "eager", 64, 1000.0),
        record("torch", "eager", 128, 1500.0),
        record("torch", "eager", 64, 1600.0, devices=2),
        record("torch", "eager", 128, 1800.0, devices=2),
        record("torch", "eager", 256, 2000.0, devices=4),
        record("jax", "jit", 64, 3000.0, devices=2),
        record("jax", "other", 64, 100.0),
        record("torch", "eager", 64, 5000.0, devices=2, precision="bfloat16"),
        record("tensorflow", "graph", 128, 0.0, devices=2, status="crashed"),
        record("tensorflow", "graph", 128, 1000.0),
    ]


def points_by(records: list[dict]) -> dict[tuple, ScalingPoint]:
    return {
        (p.kind, p.backend, p.mode, p.precision, p.devices, p.global_batch): p
        for p in scaling_points(table_rows(records))
    }


def test_strong_and_weak_against_hand_derived_answers():
    points = points_by(sweep())
    assert set(points) == {
        ("strong", "torch", "eager", "float32", 2, 64),
        ("strong", "torch", "eager", "float32", 2, 128),
        ("weak", "torch", "eager", "float32", 2, 128),
        ("weak", "torch", "eager", "float32", 4, 256),
    }
    strong64 = points[("strong", "torch", "eager", "float32", 2, 64)]
    assert (strong64.speedup, strong64.efficiency) == (pytest.approx(1.6), pytest.approx(0.8))
    assert (strong64.per_device_batch, strong64.baseline_batch, strong64.baseline_samples_per_s) == (32, 64, 1000.0)
    strong128 = points[("strong", "torch", "eager", "float32", 2, 128)]
    assert (strong128.speedup, strong128.efficiency) == (pytest.approx(1.2), pytest.approx(0.6))
    weak128 = points[("weak", "torch", "eager", "float32", 2, 128)]
    assert (weak128.speedup, weak128.efficiency) == (pytest.approx(1.8), pytest.approx(0.9))
    assert (weak128.per_device_batch, weak128.baseline_batch, weak128.samples_per_s) == (64, 64, 1800.0)
    weak256 = points[("weak", "torch", "eager", "float32", 4, 256)]
    assert (weak256.speedup, weak256.efficiency) == (pytest.approx(2.0), pytest.approx(0.5))
    assert [p.kind for p in scaling_points(table_rows(sweep()))] == ["strong", "strong", "weak", "weak"]


def test_a_missing_baseline_gives_no_point():
    # only the 2-device run: nothing to hold it against
    assert scaling_points(table_rows([record("torch", "eager", 64, 1600.0, devices=2)])) == []
    # a failed baseline is no baseline
    failed = [record("torch", "eager", 64, 0.0, status="crashed"), record("torch", "eager", 64, 1600.0, devices=2)]
    assert scaling_points(table_rows(failed)) == []
    # weak scaling needs N to divide the global batch: 3 devices at 64 has no per-device baseline
    odd = [record("torch", "eager", 64, 1000.0), record("torch", "eager", 64, 1500.0, devices=3)]
    (point,) = scaling_points(table_rows(odd))
    assert point.kind == "strong" and point.per_device_batch == pytest.approx(64 / 3)


def test_other_modes_precisions_and_devices_are_not_mixed():
    points = scaling_points(table_rows(sweep()))
    assert {(p.backend, p.mode, p.precision) for p in points} == {("torch", "eager", "float32")}
    # a 1-device float32 run is no baseline for bfloat16, nor a CPU run for a GPU one
    gpu = [record("torch", "eager", 64, 1000.0), record("torch", "eager", 64, 9000.0, devices=2, device="cuda")]
    assert scaling_points(table_rows(gpu)) == []


def test_summary_tables_and_the_cpu_note():
    md = markdown(sweep(), {"plan": {"repeats": 5}})
    assert "## Strong scaling (global batch fixed)" in md and "## Weak scaling (per-device batch fixed)" in md
    assert md.index("## Strong scaling") < md.index("## Weak scaling")
    assert "### float32, cpu, 2 threads" in md
    assert "| torch | eager | mlp | 2 | 64 | 32 | 1,600 | 1,000 (b64) | 1.60 | 0.80 |" in md
    assert "| torch | eager | mlp | 2 | 128 | 64 | 1,800 | 1,500 (b128) | 1.20 | 0.60 |" in md
    assert "| torch | eager | mlp | 2 | 128 | 64 | 1,800 | 1,000 (b64) | 1.80 | 0.90 |" in md
    assert "| torch | eager | mlp | 4 | 256 | 64 | 2,000 | 1,000 (b64) | 2.00 | 0.50 |" in md
    assert md.count(CPU_NOTE) == 1 and "logical partitions of one CPU's cores" in CPU_NOTE
    # the ranking tables: 2 devices at 64 apart from 1 device at 64
    assert "## mlp, batch 64 over 2 devices (32 each), float32, cpu, 2 threads" in md
    assert "## mlp, batch 64, float32, cpu, 2 threads" in md
    assert "`tensorflow/graph` mlp b128 on 2 devices float32: **crashed**" in md


def test_no_cpu_note_on_gpus_and_no_section_without_multi_device_rows():
    gpu = [record("torch", "eager", 64, 1000.0, device="cuda"), record("torch", "eager", 64, 1900.0, 2, device="cuda")]
    lines = markdown_section(table_rows(gpu))
    assert "## Strong scaling (global batch fixed)" in lines and CPU_NOTE not in lines
    assert not any("Weak scaling" in line for line in lines)
    single = [record("torch", "eager", 64, 1000.0), record("torch", "eager", 128, 1500.0)]
    assert markdown_section(table_rows(single)) == []
    assert "scaling" not in markdown(single, {}).lower()
    # multi-device rows without any baseline: a short note, no tables
    lonely = markdown_section(table_rows([record("torch", "eager", 64, 1600.0, devices=2)]))
    assert lonely[0] == "## Data-parallel scaling" and CPU_NOTE in lonely


def test_config_key_separates_device_counts():
    one, two = flat_row(record("torch", "eager", 64, 1000.0)), flat_row(record("torch", "eager", 64, 1600.0, 2))
    assert config_key(one) != config_key(two)
    assert "devices" not in config_title(config_key(one)) and "2 devices" in config_title(config_key(two))
    groups = ranked([record("torch", "eager", 64, 1000.0), record("jax", "jit", 64, 500.0, devices=2)])
    assert [[(r["backend"], r["ratio"]) for r in rows] for rows in groups.values()] == [
        [("torch", 1.0)],
        [("jax", 1.0)],
    ]


def test_old_records_read_as_one_device(tmp_path):
    old = record("torch", "eager", 64, 1000.0, devices=None)
    assert "devices" not in old["config"]
    assert flat_row(old)["devices"] == 1
    assert config_key(flat_row(old)) == config_key(flat_row(record("torch", "eager", 64, 1000.0)))
    (point,) = scaling_points(table_rows([old, record("torch", "eager", 64, 1600.0, devices=2)]))
    assert point.efficiency == pytest.approx(0.8)
    assert "devices" not in progress_line(old, skipped=False)
    assert "b64 on 2 devices" in progress_line(record("torch", "eager", 64, 1600.0, 2), skipped=False)
    write_csv([old], tmp_path / "results.csv")
    header, row = (tmp_path / "results.csv").read_text().splitlines()
    assert row.split(",")[header.split(",").index("devices")] == "1"


def test_json_carries_the_scaling_points(tmp_path):
    path = tmp_path / "results.json"
    write_json(sweep(), path, {"schema": "test"})
    data = json.loads(path.read_text())
    assert len(data["results"]) == len(sweep())
    weak = [p for p in data["scaling"] if p["kind"] == "weak" and p["devices"] == 2]
    assert len(weak) == 1 and weak[0]["efficiency"] == pytest.approx(0.9) and weak[0]["global_batch"] == 128
    write_json([record("torch", "eager", 64, 1000.0)], path, {})
    assert json.loads(path.read_text())["scaling"] == []


def legends(monkeypatch, draw, records: list[dict], path) -> list[list[str]]:
    """Each panel's legend entries of the figure ``draw`` saves (the PNG itself is written too)."""
    import gan_backends.bench.plot as plot

    figures = []
    save = plot._save
    monkeypatch.setattr(plot, "_save", lambda fig, p: (figures.append(fig), save(fig, p)))
    draw(records, path)
    monkeypatch.undo()
    (fig,) = figures
    return [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]


def test_plot_lines(monkeypatch, tmp_path):
    (scaling,) = legends(monkeypatch, plot_scaling, sweep(), tmp_path / "scaling.png")
    assert scaling == [
        "torch eager, strong (B = 64)",
        "torch eager, strong (B = 128)",
        "torch eager, weak (b = 64)",
        "perfect scaling",
    ]
    bfloat16, float32 = legends(monkeypatch, plot_throughput, sweep(), tmp_path / "throughput.png")
    assert bfloat16 == ["torch eager, 2 devices"]
    assert "torch eager" in float32 and "torch eager, 2 devices" in float32 and "torch eager, 4 devices" in float32


def test_plots(tmp_path):
    plot_scaling(sweep(), tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="more than one device"):
        plot_scaling([record("torch", "eager", 64, 1000.0)], tmp_path / "none.png")
    with pytest.raises(ValueError, match="one-device run"):
        plot_scaling([record("torch", "eager", 64, 1600.0, devices=2)], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    # 1- and 2-device runs in one sweep: lines of their own, the plots still drawn
    plot_throughput(sweep(), tmp_path / "throughput.png")
    plot_first_step(sweep(), tmp_path / "first_step.png")
    assert (tmp_path / "throughput.png").read_bytes()[:8] == PNG
    assert (tmp_path / "first_step.png").read_bytes()[:8] == PNG


def test_the_batch_section_follows_one_device_count():
    """1 device: 500, 1000, 1500 samples/s at 32, 64, 128: best 1500 at 128, half 750 → n½ 64,
    still rising by 50% over the last doubling → "≥ 64". The 2-device runs (64, 128, 256) must
    not join that line, or it would span 32–256."""
    records = [record("torch", "eager", b, s) for b, s in ((32, 500.0), (64, 1000.0), (128, 1500.0))]
    records += [record("torch", "eager", b, s, devices=2) for b, s in ((64, 1600.0), (128, 1800.0), (256, 2000.0))]
    md = markdown(records, {})
    assert "| torch | eager | 32–128 | no peak measured | – | ≥ 64 | 1,500 (128) |" in md
    assert "32–256" not in md


def test_an_n_gpu_run_is_read_against_n_peaks_and_logical_cpus_against_one():
    """Data-sheet peak 50 TFLOP/s per GPU; each run does 1 TFLOP per step (hand-set). One GPU at
    0.1 s per step: 10 TFLOP/s, utilisation 0.2. Two GPUs at 0.05 s per step: 20 TFLOP/s against
    2 × 50: 0.2 too (not 0.4). Two logical CPUs share one CPU's 0.2 TFLOP/s."""

    def with_flops(rec: dict, peak_tflops: float, step_s: float) -> dict:
        rec["timing"]["steady"] = {k: step_s for k in ("median", "q1", "q3", "min", "max")}
        flops = 1e12
        return {
            **rec,
            "achieved_tflops": flops / step_s / 1e12,
            "peak_tflops": peak_tflops,
            "flops_per_step": {"matmul": flops},
        }

    gpu = [
        with_flops(record("torch", "eager", 64, 640.0, devices=1, device="cuda"), 50.0, 0.1),
        with_flops(record("torch", "eager", 64, 1280.0, devices=2, device="cuda"), 100.0, 0.05),
    ]
    rows = {r["devices"]: r for r in table_rows(gpu)}
    assert rows[1]["utilisation"] == pytest.approx(0.2) and rows[2]["utilisation"] == pytest.approx(0.2)
    assert rows[2]["floor_ms"] == pytest.approx(1e12 / 100e12 * 1e3)
    cpu = [
        with_flops(record("torch", "eager", 64, 640.0, devices=1), 0.2, 10.0),
        with_flops(record("torch", "eager", 64, 1280.0, devices=2), 0.2, 5.0),
    ]
    rows = {r["devices"]: r for r in table_rows(cpu)}
    assert rows[1]["utilisation"] == pytest.approx(0.5) and rows[2]["utilisation"] == pytest.approx(1.0)

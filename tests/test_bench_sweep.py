"""The sweep runner: isolation, failures recorded, the sweep going on, atomic records, resume.

A stand-in worker script behaves per run (by its batch size) as a real one can: a result, a
Python error, a hard crash, a hang. The real worker is exercised in tests/test_bench_cli.py.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from gan_backends.bench.config import RunConfig, Sweep, default_sweep
from gan_backends.bench.sweep import RESULTS, append_record, read_records, run_one, run_sweep
from gan_backends.spec import SpecError

FAKE_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    run_path, out_path = sys.argv[1:]
    run = json.load(open(run_path))
    b = run["batch_size"]
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(f"{b}\\n")
    if b == 2:  # a crash: no result file
        os.abort()
    if b == 3:  # a hang
        time.sleep(60)
    status = "error" if b == 4 else "ok"
    record = {"schema": "gan-backends/bench-v1", "key": "", "config": run, "status": status,
              "reason": "ValueError: bad" if status == "error" else None}
    print("about to fail", file=sys.stderr)
    json.dump(record, open(out_path, "w"))
    """
)


@pytest.fixture
def fake_worker(tmp_path, monkeypatch):
    script = tmp_path / "worker.py"
    script.write_text(FAKE_WORKER)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    return [sys.executable, str(script)], log


def runs(*batch_sizes: int) -> list[RunConfig]:
    return [RunConfig("torch", "eager", "mlp", b) for b in batch_sizes]


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path, fake_worker):
    worker, log = fake_worker
    records = run_sweep(runs(1, 2, 3, 4, 5), tmp_path, timeout_s=3, worker=worker)
    statuses = [r["status"] for r in records]
    assert statuses == ["ok", "crashed", "timeout", "error", "ok"]
    assert "signal 6" in records[1]["reason"]  # SIGABRT
    assert "3 s" in records[2]["reason"]
    assert records[3]["reason"] == "ValueError: bad" and "about to fail" in records[3]["log"]
    on_disk = read_records(tmp_path / RESULTS)
    assert sorted(r["config"]["batch_size"] for r in on_disk) == [1, 2, 3, 4, 5]
    assert log.read_text().split() == ["1", "2", "3", "4", "5"]


def test_a_rerun_resumes_and_can_retry_failures(tmp_path, fake_worker):
    worker, log = fake_worker
    run_sweep(runs(1, 4), tmp_path, timeout_s=5, worker=worker)
    seen = []
    run_sweep(runs(1, 4, 5), tmp_path, timeout_s=5, worker=worker, on_record=lambda r, skipped: seen.append(skipped))
    assert seen == [True, True, False]
    assert log.read_text().split() == ["1", "4", "5"]  # only the new configuration ran
    run_sweep(runs(1, 4, 5), tmp_path, timeout_s=5, worker=worker, retry_failed=True)
    assert log.read_text().split() == ["1", "4", "5", "4"]  # the failed one, again


def test_a_torn_last_line_loses_only_itself(tmp_path):
    path = tmp_path / RESULTS
    append_record(path, {"key": "a", "status": "ok"})
    append_record(path, {"key": "b", "status": "ok"})
    with open(path, "a") as f:
        f.write('{"key": "c", "sta')  # killed mid-write
    assert [r["key"] for r in read_records(path)] == ["a", "b"]
    append_record(path, {"key": "a", "status": "error"})  # a retry supersedes
    assert {r["key"]: r["status"] for r in read_records(path)} == {"a": "error", "b": "ok"}


def test_run_one_with_the_real_worker_records_an_unknown_spec_as_error(tmp_path):
    record = run_one(RunConfig("torch", "eager", "no-such-preset", 8), timeout_s=120)
    assert record["status"] == "error"
    assert "no-such-preset" in record["reason"]


def test_a_diverging_run_is_recorded_as_nan(tmp_path):
    from conftest import require_backend

    from gan_backends import get_preset
    from gan_backends.bench.timing import TimingPlan
    from gan_backends.spec import AdamSpec

    require_backend("torch")
    wild = AdamSpec(lr=1e30, beta1=0.5, beta2=0.999, eps=1e-8)  # one step sends every weight to ±1e30
    spec_file = tmp_path / "wild.json"
    spec_file.write_text(get_preset("mlp").replace(g_optimizer=wild, d_optimizer=wild).to_json())
    record = run_one(RunConfig("torch", "eager", str(spec_file), 8, threads=1, plan=TimingPlan(1, 2, 0.01)), 120)
    assert record["status"] == "nan"
    assert "d_loss=nan" in record["reason"]
    assert record["process"]["cpu_affinity"] == [min(os.sched_getaffinity(0))]


def test_sweep_files_are_validated(tmp_path):
    good = tmp_path / "s.toml"
    good.write_text('specs = ["mlp", "dcgan"]\nbatch_sizes = [8, 16]\ndevice = "cpu"\n[modes]\njax = ["jit"]\n')
    sweep = Sweep.load(good)
    assert [(r.spec, r.batch_size, r.backend, r.mode) for r in sweep.runs()] == [
        ("mlp", 8, "jax", "jit"),
        ("mlp", 16, "jax", "jit"),
        ("dcgan", 8, "jax", "jit"),
        ("dcgan", 16, "jax", "jit"),
    ]
    for text, message in [
        ("batch_size = [8]\n", r"unknown key\(s\) batch_size"),
        ('precisions = ["fp8"]\n', "unknown precision 'fp8'"),
        ('[modes]\ntorch = ["graphs"]\n', "no mode 'graphs'"),
        ("specs = [\n", "sweep file"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(SpecError, match=message):
            Sweep.load(bad)


def test_default_cpu_sweep_is_small_and_pins_threads():
    sweep = default_sweep("cpu")
    assert sweep.device == "cpu" and sweep.threads == 2
    assert len(sweep.runs()) <= 16
    assert json.loads(json.dumps(sweep.to_dict()))["specs"] == ["mlp"]


def test_every_shipped_sweep_file_loads():
    from pathlib import Path

    from gan_backends.bench.config import SWEEPS
    from gan_backends.presets import load_spec

    files = sorted(Path(__file__).resolve().parents[1].joinpath("benchmarks", "sweeps").glob("*.toml"))
    assert files, "benchmarks/sweeps/ holds the sweep files"
    for path in [*files, *sorted(SWEEPS.glob("*.toml"))]:
        sweep = Sweep.load(path)
        assert sweep.runs(), path
        for name in sweep.specs:
            load_spec(name, sweep.loss)


def test_a_resume_refuses_records_of_another_plan_or_spec_content(tmp_path, fake_worker):
    """An --out measured with another timing plan, or with another content of a spec file of the
    same name, is not taken as this sweep's: the new plan would be printed over old numbers."""
    from dataclasses import replace

    from gan_backends.bench.timing import TimingPlan
    from gan_backends.presets import get_preset

    worker, log = fake_worker
    spec_file = tmp_path / "mine.json"
    spec_file.write_text(get_preset("tiny").to_json())
    first = [RunConfig("torch", "eager", str(spec_file), 1)]
    run_sweep(first, tmp_path, timeout_s=5, worker=worker)
    other_plan = [replace(first[0], plan=TimingPlan(warmup=2))]
    with pytest.raises(SpecError, match=r"another timing plan \(warmup 5 -> 2\); pass --fresh"):
        run_sweep(other_plan, tmp_path, timeout_s=5, worker=worker)
    spec_file.write_text(get_preset("tiny", dtype="float64").to_json())  # edited, same name
    with pytest.raises(SpecError, match="on another content of spec"):
        run_sweep(first, tmp_path, timeout_s=5, worker=worker)
    assert log.read_text().split() == ["1"]  # nothing ran again
    run_sweep(first, tmp_path, timeout_s=5, worker=worker, resume=False)  # --fresh: measured anew
    assert log.read_text().split() == ["1", "1"]


@pytest.mark.parametrize("option, value", [("--timeout", "0"), ("--min-block", "nan"), ("--timeout", "inf")])
def test_settings_that_cannot_measure_are_refused_not_recorded(tmp_path, option, value):
    from typer.testing import CliRunner

    from gan_backends.cli import app

    result = CliRunner().invoke(app, ["bench", "--spec", "tiny", "--out", str(tmp_path), option, value])
    assert result.exit_code == 2, result.output
    assert "finite" in result.output
    assert not (tmp_path / RESULTS).exists()

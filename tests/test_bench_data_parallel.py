"""``gan-backends bench --devices``: which runs a scaling sweep makes, and each framework's
data-parallel run timed end to end (two logical CPU devices), read against its one-device run."""

from __future__ import annotations

import json

import pytest
from conftest import require_backend
from typer.testing import CliRunner

from gan_backends.bench.config import RunConfig, Sweep
from gan_backends.bench.timing import TimingPlan, time_step
from gan_backends.cli import app
from gan_backends.spec import SpecError

runner = CliRunner()
ENGINES = {"torch": "DistributedDataParallel", "tensorflow": "MirroredStrategy", "jax": "jax.jit + NamedSharding"}
FAST_MODE = {"torch": "eager", "tensorflow": "function", "jax": "jit"}

pytestmark = pytest.mark.long  # launched engines and CLI processes: tens of seconds each


def _runs(**fields) -> list[tuple[int, int]]:
    sweep = Sweep(specs=("mlp",), modes={"torch": ("eager",)}, **fields)
    return [(r.devices, r.batch_size) for r in sweep.runs()]


def test_strong_scaling_keeps_the_global_batch_and_weak_scaling_the_batch_per_device():
    # batch 64: one device; 2 and 4 devices at 64 (strong) and at 128, 256 (weak)
    assert _runs(batch_sizes=(64,), devices=(1, 2, 4)) == [(1, 64), (2, 64), (2, 128), (4, 64), (4, 256)]
    assert _runs(batch_sizes=(64,), devices=(1, 2), scaling=("strong",)) == [(1, 64), (2, 64)]
    assert _runs(batch_sizes=(64,), devices=(1, 2), scaling=("weak",)) == [(1, 64), (2, 128)]
    # weak at 32 and strong at 64 over 2 devices are the same run: made once
    assert _runs(batch_sizes=(32, 64), devices=(1, 2)) == [(1, 32), (2, 32), (2, 64), (1, 64), (2, 128)]
    # 3 does not divide 64: no strong run, the weak one stays
    assert _runs(batch_sizes=(64,), devices=(1, 3)) == [(1, 64), (3, 192)]


def test_a_multi_device_run_is_its_own_result_and_bad_counts_are_refused():
    one, two = (RunConfig("torch", "eager", "mlp", 64, devices=n) for n in (1, 2))
    assert one.key != two.key and "/x2/" in two.key and "/x" not in one.key
    with pytest.raises(SpecError, match="does not split over 3 devices"):
        RunConfig("torch", "eager", "mlp", 64, devices=3)
    with pytest.raises(SpecError, match="needs 1 beside"):
        Sweep(devices=(2, 4))
    with pytest.raises(SpecError, match="scaling must be among"):
        Sweep(devices=(1, 2), scaling=("linear",))


def test_every_process_of_a_group_times_the_same_number_of_steps():
    calls = []
    timing = time_step(lambda: calls.append(1), lambda out: None, TimingPlan(warmup=1, repeats=2), agree=lambda k: 7)
    assert timing.steps_per_block == 7 and len(calls) == 1 + 1 + 2 * 7


def test_bench_over_two_devices_end_to_end(framework, tmp_path):
    args = ["bench", "--backends", framework, "--mode", f"{framework}={FAST_MODE[framework]}", "--spec", "mlp"]
    args += ["--batch-sizes", "16", "--devices", "1,2", "--scaling", "strong", "--out", str(tmp_path)]
    args += ["--warmup", "1", "--repeats", "2", "--min-block", "0.01", "--device", "cpu", "--threads", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    records = {r["config"]["devices"]: r for r in data["results"]}
    assert sorted(records) == [1, 2] and all(r["status"] == "ok" for r in records.values()), data["results"]
    two = records[2]
    assert two["config"]["batch_size"] == 16 and two["samples_per_s"] == 16 / two["step_s"]
    assert two["parallel"]["engine"].startswith(ENGINES[framework])
    assert all(abs(v) < 1e3 for v in two["losses_after"].values())
    # the scaling point, recomputed here from the two records
    (point,) = data["scaling"]
    assert point["kind"] == "strong" and point["devices"] == 2 and point["per_device_batch"] == 8
    expected = two["samples_per_s"] / (2 * records[1]["samples_per_s"])
    assert point["efficiency"] == pytest.approx(expected, rel=1e-12)
    md = (tmp_path / "summary.md").read_text()
    assert "## Strong scaling" in md and "logical partitions of one CPU" in md
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_data_parallel_run_in_another_mode_is_unavailable_not_faked():
    """DDP wraps the eager modules: a torch.compile data-parallel run would time something else."""
    require_backend("torch")
    from gan_backends.bench.worker import measure

    record = measure(RunConfig("torch", "compile", "mlp", 16, device="cpu", devices=2))
    assert record["status"] == "unavailable" and "eager" in record["reason"]

"""``gan-backends bench`` end to end with the real worker (one tiny run per framework), and the
reports' ranking on records whose numbers are known."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gan_backends.bench.report import markdown, ranked
from gan_backends.cli import app

runner = CliRunner()
FAST_MODE = {"torch": "eager", "tensorflow": "function", "jax": "jit"}
#: One batch size each: the sweep over batch sizes (one record and one worker process each,
#: ranked, interrupted, resumed) is framework-free and runs over two in
#: tests/test_faults_processes.py::test_bench_interrupted_writes_what_finished_and_the_same_command_resumes;
#: here each framework's worker is checked once.
BATCHES = {"torch": (8,), "tensorflow": (8,), "jax": (8,)}
#: The count each framework's fast mode gives of one step (torch's profiler, JAX's compiled XLA
#: program, TensorFlow's traced graph).
ANATOMY_COUNT = {"torch": "aten_ops", "tensorflow": "compute_ops", "jax": "launched"}
TINY = ["--warmup", "1", "--repeats", "2", "--min-block", "0.01", "--device", "cpu", "--threads", "1"]


def mlp_matmul_flops_per_sample() -> int:
    """One training step of the MLP GAN, by hand: 2 FLOPs per multiply-add, 1 per bias add (in
    the forward and in the bias gradient). A D update: G forward, D forward on real and fake,
    D backward for both (weight grads; input grads for all but D's first layer). The G update:
    G forward, D forward, D input grads through every layer (no D weight grads), G backward
    (weight grads; input grads for all but G's first layer)."""
    g = [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    d = [(784, 512), (512, 256), (256, 1)]

    def fwd(layers):  # also the cost of the weight and bias gradients
        return sum(2 * i * o + o for i, o in layers)

    def input_grads(layers):
        return sum(2 * i * o for i, o in layers)

    d_update = fwd(g) + 2 * fwd(d) + 2 * (fwd(d) + input_grads(d[1:]))
    g_update = fwd(g) + fwd(d) + input_grads(d) + fwd(g) + input_grads(g[1:])
    assert d_update + g_update == 7_760_404 + 10_988_321  # the sums written out once by hand
    return d_update + g_update


@pytest.mark.long
def test_bench_end_to_end(framework, tmp_path):
    batches = BATCHES[framework]
    args = ["bench", "--backends", framework, "--mode", f"{framework}={FAST_MODE[framework]}"]
    args += ["--spec", "mlp", "--batch-sizes", ",".join(map(str, batches)), "--out", str(tmp_path), *TINY]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    records = data["results"]
    assert [r["status"] for r in records] == ["ok"] * len(batches), [r.get("reason") for r in records]
    for record, batch in zip(records, batches):
        assert record["config"]["batch_size"] == batch and record["threads"] is not None
        assert record["process"]["cpu_affinity"] is not None and len(record["process"]["cpu_affinity"]) == 1
        timing = record["timing"]
        assert len(timing["block_step_s"]) == 2 and timing["warmup_steps"] == 1
        assert record["samples_per_s"] == batch / record["step_s"]
        assert record["flops_per_step"]["matmul"] == batch * mlp_matmul_flops_per_sample()
        assert record["environment"]["cpu_model"] and record["environment"]["backends"][0]["available"]
        contention = record["contention"]  # what competed with the timed blocks, and the verdict
        assert contention["steps"] == 2 * timing["steps_per_block"] and contention["wall_s"] > 0
        assert contention["cores"] == record["process"]["cpu_affinity"] and len(contention["load_after"]) == 3
        assert contention["disturbed"] == bool(contention["reasons"])
        anatomy = record["anatomy"]  # counted once after the clocks, by the framework's own tools
        assert anatomy["ops"][ANATOMY_COUNT[framework]] > 0, anatomy["ops"]
        assert anatomy["memory_bytes"] > 0 and anatomy["memory_floor_ms"] > 0
    md = (tmp_path / "summary.md").read_text()
    assert framework in md and "× fastest" in md and "## Anatomy of a step" in md
    assert (tmp_path / "results.csv").read_text().count("\n") == 1 + len(batches)
    for png in ("throughput.png", "first_step.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(app, args)  # resumes: nothing runs again
    assert again.exit_code == 0 and again.output.count("already recorded") == len(batches)


def test_bench_rejects_bad_input_before_running(tmp_path):
    for args, message in [
        (["--spec", "no-such"], "no-such"),
        (["--precisions", "fp8"], "fp8"),
        (["--mode", "torch=graphs"], "graphs"),
    ]:
        result = runner.invoke(app, ["bench", "--out", str(tmp_path), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert not (tmp_path / "results.jsonl").exists()


def record(backend: str, mode: str, step_s: float | None, status: str = "ok", peak: float = 20.0) -> dict:
    config = {
        "backend": backend,
        "mode": mode,
        "spec": "mlp",
        "loss": None,
        "batch_size": 64,
        "precision": "float32",
        "device": "cpu",
        "threads": 2,
    }
    if step_s is None:
        return {"key": f"{backend}/{mode}", "config": config, "status": status, "reason": "RuntimeError: boom"}
    steady = {"median": step_s, "q1": step_s * 0.9, "q3": step_s * 1.1, "min": step_s * 0.8, "max": step_s * 1.2}
    return {
        "key": f"{backend}/{mode}",
        "config": config,
        "status": status,
        "reason": None,
        "device": "cpu",
        "timing": {"steady": steady, "first_step_s": 1.0},
        "samples_per_s": 64 / step_s,
        "achieved_tflops": 0.1 / step_s,
        "utilisation": 0.5,
        "peak_tflops": peak,
        "peak_source": "measured",
        "memory": {"peak_device_bytes": None, "host_peak_rss_bytes": 2**30},
    }


def test_ranking_and_ratios():
    records = [
        record("jax", "jit", 0.025),
        record("torch", "eager", 0.010),
        record("tensorflow", "xla", None, "crashed"),
    ]
    (rows,) = ranked(records).values()
    assert [(r["backend"], r["ratio"]) for r in rows] == [("torch", 1.0), ("jax", 2.5), ("tensorflow", None)]
    md = markdown(records, {"plan": {"repeats": 7}})
    assert "| 1 | torch | eager | 10.00 (2.00) | 1.00 |" in md
    assert "| 2 | jax | jit | 25.00 (5.00) | 2.50 |" in md
    assert "**crashed** — RuntimeError: boom" in md

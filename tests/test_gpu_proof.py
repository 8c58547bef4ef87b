"""The GPU proof (``benchmarks/gpu/prove.py``): its CPU rehearsal for real, its deadline, its plan.

One real rehearsal (``--device cpu --plan tiny``, a subprocess as on the lent machine) is shared
by the assertions on its files; the deadline is tested with a real proof whose deadline admits
nothing, with stand-in workers that overrun (stopped at their limit), and on the GPU plan's
stated budgets, laid out without running anything (they fit 300 s by construction).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require_backend

from benchmarks.gpu import plan as planning
from benchmarks.gpu import prove
from gan_backends.backends import manifest
from gan_backends.bench.config import RunConfig
from gan_backends.bench.sweep import known_unavailable
from gan_backends.bench.timing import TimingPlan
from gan_backends.bench.worker import NO_TF32_ON_CPU

ROOT = Path(__file__).resolve().parents[1]


def proof(out: Path, *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    command = [sys.executable, "-m", "benchmarks.gpu.prove", "--out", str(out), "--device", "cpu", *args]
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - t0


def rows(path: Path) -> dict[str, dict]:
    out = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)  # every line whole
        out[row["key"]] = row
    return out


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess, float]:
    require_backend("torch")
    require_backend("jax")
    out = tmp_path_factory.mktemp("proof")
    done, seconds = proof(out, "--plan", "tiny")
    return out, done, seconds


@pytest.mark.long
def test_rehearsal_runs_every_stage_and_leaves_its_files(rehearsal) -> None:
    out, done, seconds = rehearsal
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert seconds < 60
    assert sorted(p.name for p in out.iterdir()) == sorted(prove.FILES)  # at most 8 files come back
    env = json.loads((out / "env.json").read_text())
    assert env["proof"]["state"] == "done" and env["proof"]["exit_code"] == 0
    assert env["plan"]["stage_budgets_s"]["checks"] > 0
    checks = rows(out / "check.jsonl")
    for framework in ("torch", "jax"):
        row = checks[f"check/{framework}/mlp/float32"]
        assert row["status"] == "passed", row.get("reason")
        assert row["report"]["schema"] == "gan-backends/check-v2" and row["report"]["passed"]
        assert {b["name"] for b in row["backends"]} == {framework, "numpy"}
        assert checks[f"environment/{framework}"]["environment"]["backends"][0]["available"]
    steps = rows(out / "steps.jsonl")
    started = [r for r in steps.values() if r["status"] in ("ok", "timeout")]
    assert [(r["config"]["backend"], r["config"]["mode"]) for r in started] == [("torch", "eager")]
    (eager,) = started
    # Its budget is the GPU's estimate; on this 2-core machine beside a loaded suite the run can pass
    # OVERRUN x budget and be stopped, which is the deadline's machinery working, not a failure.
    assert eager["proof"]["seconds"] <= planning.OVERRUN * eager["proof"]["budget_s"] + 5
    if eager["status"] == "ok":
        assert eager["step_s"] > 0
    else:
        assert "stopped at" in eager["reason"], eager["reason"]
    cuda_only = manifest("torch").cuda_only_modes
    for mode, why in cuda_only.items():
        row = steps[RunConfig("torch", mode, "mlp", 16, "float32", None, "cpu", 1, 0, _tiny_timing()).key]
        assert row["status"] == "unavailable" and why in row["reason"]
    summary = (out / "summary.md").read_text()
    eager_row = f"| torch | eager | {eager['status']} |"
    assert "| jax | mlp | float32 | passed |" in summary and eager_row in summary
    assert eager_row in done.stdout  # the final table on stdout
    assert "check process jax: exit 0" in (out / "log.txt").read_text()


def _tiny_timing() -> TimingPlan:
    return planning.PLANS["tiny"]["timing"]


def test_a_deadline_that_admits_nothing_skips_every_run_and_exits_cleanly(tmp_path: Path) -> None:
    done, seconds = proof(tmp_path, "--plan", "tiny", "--deadline", "2", timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert seconds < 15  # nothing started: no framework was imported
    records = [*rows(tmp_path / "check.jsonl").values(), *rows(tmp_path / "steps.jsonl").values()]
    assert records and all(r["status"] in ("skipped", "unavailable", "absent") for r in records)
    skipped = [r for r in records if r["status"] == "skipped"]
    assert skipped and all(r["reason"].startswith("deadline: its budget of") for r in skipped)
    assert json.loads((tmp_path / "env.json").read_text())["proof"]["state"] == "done"


def test_a_terminated_proof_stops_its_processes_keeps_its_files_and_exits_130(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "benchmarks.gpu.prove",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
        "--plan",
        "tiny",
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "log.txt"
    t0 = time.monotonic()
    while not (log.exists() and "checks of" in log.read_text()) and time.monotonic() - t0 < 20:
        time.sleep(0.05)
    proc.terminate()  # SIGTERM, as a scheduler stops it
    assert proc.wait(timeout=20) == prove.EXIT_INTERRUPTED, proc.stderr.read() if proc.stderr else ""
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["proof"]["state"] == "interrupted" and env["proof"]["exit_code"] == prove.EXIT_INTERRUPTED
    checks, steps = rows(tmp_path / "check.jsonl"), rows(tmp_path / "steps.jsonl")
    statuses = {checks[f"check/{f}/mlp/float32"]["status"] for f in ("torch", "jax")}
    assert statuses <= {"passed", "timeout", "skipped", "absent"}
    assert steps and all(r["status"] in ("skipped", "unavailable") for r in steps.values())
    assert "interrupted" in (tmp_path / "summary.md").read_text()


def test_an_earlier_proof_is_never_written_over(tmp_path: Path) -> None:
    (tmp_path / "steps.jsonl").write_text("{}\n")
    assert prove.main(["--out", str(tmp_path), "--device", "cpu", "--plan", "tiny"]) == prove.EXIT_USAGE
    assert (tmp_path / "steps.jsonl").read_text() == "{}\n"


def test_a_missing_framework_is_absent_not_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planning, "absent_reason", lambda name: f"{name} is not installed here")
    assert prove.main(["--out", str(tmp_path), "--device", "cpu", "--plan", "tiny"]) == prove.EXIT_DONE
    records = [*rows(tmp_path / "check.jsonl").values(), *rows(tmp_path / "steps.jsonl").values()]
    assert {r["status"] for r in records} == {"absent"}


def _proof_of(tmp_path: Path, plan: planning.Plan, deadline_s: float) -> prove.Proof:
    return prove.Proof(tmp_path, plan, planning.Deadline(deadline_s), [])


def test_an_overrunning_run_is_stopped_and_later_runs_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step run is stopped at OVERRUN × its budget; a run whose budget would end past the
    deadline is not started; a check process past its limit is stopped and its checks named."""
    hang = [
        sys.executable,
        "-c",
        "import sys, time; print('check torch mlp float32: started', flush=True); time.sleep(60)",
    ]
    monkeypatch.setattr(prove, "CHECK_WORKER", hang)
    monkeypatch.setattr(prove, "run_one", lambda run, timeout: _run_hanging(run, timeout))
    run = RunConfig("torch", "eager", "mlp", 16, "float32", None, "cpu", 1, 0, _tiny_timing())
    late = RunConfig("jax", "jit", "mlp", 16, "float32", None, "cpu", 1, 0, _tiny_timing())
    checks = (planning.Check("torch", "mlp", "float32", 2, 16, 0.3), planning.Check("torch", "mlp", "bf16", 2, 16, 0.3))
    plan = planning.Plan(
        "test", "cpu", (planning.CheckGroup("torch", checks, 0.2),),
        (planning.Step(run, 0.5, "steps"), planning.Step(late, 100.0, "steps")),
    )  # fmt: skip
    p = _proof_of(tmp_path, plan, deadline_s=20)
    t0 = time.monotonic()
    prove.run_checks(p)
    prove.run_steps(p)
    assert time.monotonic() - t0 < 10
    first, second = p.checks["check/torch/mlp/float32"], p.checks["check/torch/mlp/bf16"]
    assert first["status"] == "timeout" and "stopped at 2 s" in first["reason"]
    assert second["status"] == "skipped" and "before it began" in second["reason"]
    stopped, skipped = p.steps[run.key], p.steps[late.key]
    assert stopped["status"] == "timeout" and stopped["reason"].endswith(f"{planning.OVERRUN:g} × its budget")
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("deadline:")
    assert set(rows(tmp_path / "steps.jsonl")) == {run.key, late.key}  # each written as it came


def _run_hanging(run: RunConfig, timeout: float) -> dict:
    from gan_backends.bench.sweep import run_one

    return run_one(run, timeout, worker=[sys.executable, "-c", "import time; time.sleep(60)"])


def test_the_gpu_plan_fits_300_s_by_construction() -> None:
    plan = planning.build_plan("gpu", "cuda")
    laid = planning.schedule(plan, 300.0, available=lambda name: name != "tensorflow")  # the lent machine
    assert laid["ends_s"] <= 300.0 - planning.RESERVE_S
    admitted = laid["admitted"]
    for framework in ("torch", "jax"):  # stage 1 whole
        for spec in ("mlp", "dcgan-small"):
            for precision in ("float32", "tf32", "bf16"):
                assert f"check/{framework}/{spec}/{precision}" in admitted
    assert not any(k.startswith("check/tensorflow") for k in admitted + laid["beyond"])
    launch_bound = [s.run.key for s in plan.steps if s.run.batch_size == 64 and s.run.precision == "tf32"]
    assert [k for k in launch_bound if "compile" not in k] == [k for k in admitted if k in launch_bound]
    stages = [s.stage for s in plan.steps]  # compile-heavy runs last
    assert stages == sorted(stages, key=lambda s: s == "compile-heavy") and "compile-heavy" in stages
    assert {s.run.mode for s in plan.steps if s.stage == "compile-heavy"} == set(planning.COMPILE_HEAVY)
    assert all(s.budget_s > 0 for s in plan.steps) and all(g.budget_s > 0 for g in plan.groups)
    # What the deadline leaves out is named, never dropped: each part is admitted or beyond.
    runnable = [s.run.key for s in plan.steps if "cuda" in s.run.device]
    assert set(runnable) <= set(admitted) | set(laid["beyond"])


def test_a_longer_deadline_admits_more_in_the_same_order() -> None:
    plan = planning.build_plan("gpu", "cuda")
    short, long = (planning.schedule(plan, d, available=lambda n: n != "tensorflow") for d in (300.0, 600.0))
    assert short["admitted"] == long["admitted"][: len(short["admitted"])]
    assert len(long["admitted"]) > len(short["admitted"])


def test_cuda_only_modes_and_tf32_on_a_cpu_are_known_without_a_process() -> None:
    plan = planning.build_plan("gpu", "cpu")
    laid = planning.schedule(plan, 1e6, available=lambda name: name != "tensorflow")
    cuda_only = manifest("torch").cuda_only_modes
    ran = {k.split("/")[1] for k in laid["admitted"] if not k.startswith("check/")}
    assert ran.isdisjoint(cuda_only) and "eager" in ran
    assert not any("/tf32/" in k or k.endswith("/tf32") for k in laid["admitted"])
    tf32 = known_unavailable(RunConfig("jax", "jit", "mlp", 64, "tf32", None, "cpu"))
    assert tf32 is not None and tf32["reason"] == NO_TF32_ON_CPU  # bench's own rule, before a process

"""The GPU proof in one call: the agreement check on the device, then the step table, in a deadline.

    python -m benchmarks.gpu.prove --out DIR [--deadline 300] [--device cuda|cpu] [--plan gpu|tiny]

(``bash benchmarks/gpu/prove.sh DIR`` on a lent GPU machine.) What runs, in which order and with
which budgets: :mod:`benchmarks.gpu.plan`. Every result is written the moment it exists, into
five files under ``--out``: ``env.json`` (the command, the machine, the plan with its budgets
and the schedule they promise; rewritten atomically at the start and at the end),
``check.jsonl`` (one row per check, appended by the check processes themselves),
``steps.jsonl`` (one bench record per step run, schema ``gan-backends/bench-v1`` with a
``proof`` field), ``log.txt`` (progress and the tail of every check process's output) and
``summary.md`` (the short tables, rewritten after every result). A proof stopped at any point
leaves all it measured.

Exit status, as every command of the project: 0 done (every part ran, or was skipped by the
deadline, unavailable or absent, each with its reason), 1 a check disagreed or a run failed,
2 bad usage, 3 an internal error (the traceback in ``log.txt``), 130 interrupted (SIGINT or
SIGTERM), each after writing what it has.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: the checkout's root on the path, as ``-m`` would have it
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.gpu import plan as planning  # noqa: E402
from benchmarks.gpu import report  # noqa: E402
from benchmarks.gpu.check_worker import ROW_SCHEMA, check_row  # noqa: E402
from gan_backends._io import atomic_write_text  # noqa: E402
from gan_backends.bench.sweep import append_record, known_unavailable, read_records, run_one  # noqa: E402
from gan_backends.bench.worker import SCHEMA as BENCH_SCHEMA  # noqa: E402
from gan_backends.bench.worker import process_environment  # noqa: E402
from gan_backends.environment import cpu_model, git_commit, git_dirty, nvidia_gpus  # noqa: E402
from gan_backends.interrupts import sigterm_as_interrupt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FILES = ("env.json", "check.jsonl", "steps.jsonl", "log.txt", "summary.md")
#: The command of a check process (run in the checkout; its job file is the last argument).
CHECK_WORKER = [sys.executable, "-m", "benchmarks.gpu.check_worker"]
EXIT_DONE, EXIT_NO, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine() -> dict[str, Any]:
    """What this machine is, read without importing a framework (the parent must not take device
    memory: each framework starts in its own process)."""
    from gan_backends import __version__
    from gan_backends.backends import FRAMEWORKS, manifest

    distributions = importlib.metadata.packages_distributions()  # tensorflow -> tensorflow-cpu

    def version(module: str) -> str | None:
        for name in distributions.get(module, [module]):
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    frameworks = {}
    for name in FRAMEWORKS:
        entry = manifest(name)
        frameworks[name] = {"installed": planning.absent_reason(name) is None,
                            "versions": {m: version(m) for m in entry.requires}}  # fmt: skip
    return {"gan_backends": __version__, "git_commit": git_commit(), "git_dirty": git_dirty(),
            "python": sys.version.split()[0], "platform": platform.platform(), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "gpus": nvidia_gpus(), "frameworks": frameworks}  # fmt: skip


class Proof:
    """The proof's state and its files; every result goes to its file as it comes."""

    def __init__(self, out: Path, plan: planning.Plan, deadline: planning.Deadline, argv: list[str]) -> None:
        self.out, self.plan, self.deadline = out, plan, deadline
        self.checks: dict[str, dict[str, Any]] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {
            "schema": ROW_SCHEMA,
            "proof": {
                "command": ["python", "-m", "benchmarks.gpu.prove", *argv],
                "plan": plan.name,
                "device": plan.device,
                "deadline_s": deadline.deadline_s,
                "started": now_utc(),
                "state": "running",
            },
            "machine": machine(),
            "plan": plan.describe(),
            "schedule": planning.schedule(plan, deadline.deadline_s),
        }

    def path(self, name: str) -> Path:
        return self.out / name

    def say(self, line: str) -> None:
        text = f"[{self.deadline.elapsed():6.1f} s] {line}"
        print(text, flush=True)
        with open(self.path("log.txt"), "a") as log:
            log.write(text + "\n")

    def write_env(self) -> None:
        atomic_write_text(self.path("env.json"), json.dumps(self.meta, indent=1, default=str) + "\n")

    def write_summary(self) -> None:
        atomic_write_text(self.path("summary.md"), self.summary())

    def summary(self) -> str:
        return report.markdown(self.meta, list(self.checks.values()), list(self.steps.values()))

    def add_check(self, row: dict[str, Any], write: bool = True) -> None:
        if write:
            append_record(self.path("check.jsonl"), row)
        self.checks[row["key"]] = row
        why = f": {row['reason']}" if row.get("reason") and row["status"] != "passed" else ""
        self.say(f"{row['key']}: {row['status']}{why}")
        self.write_summary()

    def add_step(self, record: dict[str, Any]) -> None:
        append_record(self.path("steps.jsonl"), record)
        self.steps[record["key"]] = record
        took = f" {record['step_s'] * 1e3:.3g} ms/step" if record.get("step_s") else ""
        why = f": {record['reason']}" if record.get("reason") else ""
        self.say(f"{record['key']}: {record['status']}{took}{why}")
        self.write_summary()

    def new_check_rows(self) -> None:
        """Take in the rows the check processes appended since the last look."""
        for row in read_records(self.path("check.jsonl")):
            if row["key"].startswith("check/") and self.checks.get(row["key"]) != row:
                self.add_check(row, write=False)


# -- stage 1: the agreement checks, one process per framework, side by side ----------------------


def _check_row(proof: Proof, check: planning.Check, status: str, reason: str) -> dict[str, Any]:
    return check_row({"framework": check.framework, "device": proof.plan.device}, check.to_dict(), status, reason)


class Running:
    """A check process: its group, the checks it was handed, its output file and its limit."""

    def __init__(
        self, proof: Proof, group: planning.CheckGroup, checks: list[planning.Check], threads: int | None
    ) -> None:
        self.group, self.checks = group, checks
        budget = group.process_s + sum(c.budget_s for c in checks)
        self.budget_s, self.timeout_s = budget, proof.deadline.timeout_for(budget)
        self.tmp = tempfile.TemporaryDirectory(prefix=f"gpu-proof-{group.framework}-")
        job = {
            "framework": group.framework,
            "device": proof.plan.device,
            "out": str(proof.path("check.jsonl")),
            "deadline_at": time.time() + proof.deadline.remaining(),  # the process's clock is wall time
            "checks": [c.to_dict() for c in checks],
        }
        job_path, self.log_path = Path(self.tmp.name, "job.json"), Path(self.tmp.name, "output.txt")
        job_path.write_text(json.dumps(job))
        self.started = time.monotonic()
        with open(self.log_path, "w") as output:
            # Its own session, so that a stop reaches whatever the framework started beside it.
            self.proc = subprocess.Popen(
                [*CHECK_WORKER, str(job_path)],
                cwd=ROOT,
                env={**os.environ, **process_environment(threads), "PYTHONPATH": _pythonpath()},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.stopped: str | None = None

    def overdue(self) -> bool:
        return time.monotonic() - self.started > self.timeout_s

    def stop(self, why: str) -> None:
        self.stopped = why
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _pythonpath() -> str:
    """The checkout first, so that a process started in it imports this checkout's code."""
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def check_threads(plan: planning.Plan, processes: int) -> int | None:
    """CPU threads of each check process: the plan's, or on a CPU an equal share of its cores:
    thread pools larger than that wait on each other's descheduled threads (a check of torch
    beside two others, each with a pool of every core, ran past 57 s instead of 8)."""
    if plan.threads is not None or plan.device != "cpu":
        return plan.threads
    return max(1, (os.cpu_count() or 1) // max(1, processes))


def run_checks(proof: Proof) -> None:
    launch: list[tuple[planning.CheckGroup, list[planning.Check]]] = []
    for group in proof.plan.groups:
        absent = planning.absent_reason(group.framework)
        todo = []
        for check in group.checks:
            why = absent or planning.check_unavailable(check, proof.plan.device)
            if why:
                proof.add_check(_check_row(proof, check, "absent" if absent else "unavailable", why))
            else:
                todo.append(check)
        if not todo:
            continue
        first = group.process_s + min(c.budget_s for c in todo)  # the process starts if one check fits
        if not proof.deadline.fits(first):
            reason = proof.deadline.skip_reason(first)
            for check in todo:
                proof.add_check(_check_row(proof, check, "skipped", reason))
            continue
        launch.append((group, todo))
    threads = check_threads(proof.plan, len(launch))
    running: list[Running] = []
    for group, todo in launch:
        budget = group.process_s + sum(c.budget_s for c in todo)
        proof.say(f"checks of {group.framework}: {len(todo)} in one process, budget {budget:.0f} s, threads {threads}")
        running.append(Running(proof, group, todo, threads))
    try:
        while running:
            time.sleep(0.2)
            proof.new_check_rows()
            for r in list(running):
                if r.proc.poll() is None and r.overdue():
                    r.stop(f"stopped at {r.timeout_s:.0f} s ({planning.Deadline.stop_cause(r.timeout_s, r.budget_s)})")
                if r.proc.poll() is not None:
                    running.remove(r)
                    finish_checks(proof, r)
    finally:
        for r in running:  # interrupted: stop them, keep what they wrote
            r.stop("interrupted")
            finish_checks(proof, r)


def finish_checks(proof: Proof, r: Running) -> None:
    """Log a check process's output; name each of its checks that left no row, and why."""
    proof.new_check_rows()
    text = r.output()
    tail = "\n".join(text.strip().splitlines()[-40:])
    with open(proof.path("log.txt"), "a") as log:
        log.write(f"--- check process {r.group.framework}: exit {r.proc.returncode}, last lines ---\n{tail}\n---\n")
    for check in r.checks:
        if check.key in proof.checks:
            continue
        started = f"check {check.framework} {check.spec} {check.precision}: started" in text
        if r.stopped:
            status = "timeout" if started else "skipped"
            reason = f"its process was {r.stopped}" + ("" if started else " before it began")
        else:
            status, reason = "crashed", f"its process ended (exit {r.proc.returncode}) without its row"
        proof.add_check(_check_row(proof, check, status, reason))
    r.tmp.cleanup()


# -- stages 2 and 3: the step table, one bench process per run, one at a time --------------------


def _step_record(step: planning.Step, status: str, reason: str) -> dict[str, Any]:
    return {"schema": BENCH_SCHEMA, "key": step.run.key, "config": step.run.to_dict(), "status": status,
            "reason": reason, "device": step.run.device}  # fmt: skip


def run_steps(proof: Proof) -> None:
    for step in proof.plan.steps:
        run = step.run
        proof_info: dict[str, Any] = {"stage": step.stage, "budget_s": step.budget_s}
        absent = planning.absent_reason(run.backend)
        record = _step_record(step, "absent", absent) if absent else known_unavailable(run)
        if record is None and not proof.deadline.fits(step.budget_s):
            record = _step_record(step, "skipped", proof.deadline.skip_reason(step.budget_s))
        if record is None:
            timeout = proof.deadline.timeout_for(step.budget_s)
            proof.say(f"{run.key}: started, budget {step.budget_s:.0f} s, stopped at {timeout:.0f} s")
            t0 = time.monotonic()
            record = run_one(run, timeout)
            proof_info.update(seconds=time.monotonic() - t0, timeout_s=timeout)
            if record["status"] == "timeout":
                record["reason"] += f": stopped at {planning.Deadline.stop_cause(timeout, step.budget_s)}"
        record.setdefault("finished", now_utc())
        proof.add_step({**record, "proof": proof_info})


def fill_missing(proof: Proof, status: str, reason: str) -> None:
    """Name every part of the plan that has no row yet (the proof stopped before it)."""
    for group in proof.plan.groups:
        for check in group.checks:
            if check.key not in proof.checks:
                proof.add_check(_check_row(proof, check, status, reason))
    for step in proof.plan.steps:
        if step.run.key not in proof.steps:
            info = {"stage": step.stage, "budget_s": step.budget_s}
            proof.add_step({**_step_record(step, status, reason), "proof": info})


# -- the command ---------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.prove", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the five result files")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds for the whole proof (default 300)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--plan", choices=tuple(planning.PLANS), default="gpu")
    args = parser.parse_args(argv)
    if not args.deadline > 0 or args.deadline == float("inf"):
        parser.error(f"--deadline must be a finite number of seconds > 0, got {args.deadline}")
    return args


def prepare_out(out: Path, device: str) -> str | None:
    """Why the proof cannot start (bad usage), or None: it never writes over an earlier proof."""
    if device == "cuda" and not nvidia_gpus():
        return "--device cuda: nvidia-smi sees no GPU here (the CPU rehearsal is --device cpu --plan tiny)"
    taken = [name for name in FILES if (out / name).exists()]
    if taken:
        return f"{out} already holds a proof ({', '.join(taken)}); choose another --out"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{out}: {exc.strerror or exc}"
    return None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    deadline = planning.Deadline(args.deadline)
    problem = prepare_out(args.out, args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    proof = Proof(args.out, planning.build_plan(args.plan, args.device), deadline, argv)
    proof.write_env()
    proof.write_summary()
    state, code = "done", EXIT_DONE
    try:
        with sigterm_as_interrupt():
            proof.say(f"plan {args.plan} on {args.device}, deadline {args.deadline:g} s: stage 1, the checks")
            run_checks(proof)
            proof.say("stages 2 and 3: the step table")
            run_steps(proof)
            code = EXIT_NO if report.failures(list(proof.checks.values()), list(proof.steps.values())) else EXIT_DONE
    except KeyboardInterrupt:
        state, code = "interrupted", EXIT_INTERRUPTED
        fill_missing(proof, "skipped", "interrupted: the proof was stopped (SIGINT/SIGTERM) before this part")
    except Exception as exc:  # the proof's own bug: the traceback kept, the parts named
        state, code = "internal error", EXIT_INTERNAL
        with open(proof.path("log.txt"), "a") as log:
            log.write(traceback.format_exc())
        print(f"internal error: {type(exc).__name__}: {exc} (traceback in {proof.path('log.txt')})", file=sys.stderr)
        fill_missing(proof, "skipped", f"not reached: the proof stopped on an internal error ({type(exc).__name__})")
    proof.meta["proof"].update(state=state, finished=now_utc(), wall_s=deadline.elapsed(), exit_code=code)
    proof.write_env()
    proof.write_summary()
    try:
        print("\n" + proof.summary(), flush=True)
    except BrokenPipeError:  # stdout closed early (| head): the files hold it all
        pass
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

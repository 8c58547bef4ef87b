"""One framework's agreement checks in one process: ``python -m benchmarks.gpu.check_worker JOB.json``.

The job (written by :mod:`benchmarks.gpu.prove`) names the framework, the device, the checks
with their budgets, the file to append rows to and the deadline as a wall-clock time. Each check
is :func:`gan_backends.check.run_check` of the framework against the float64 NumPy reference,
exactly what ``gan-backends check --backends FRAMEWORK,numpy --precision P`` runs, and its row
is appended the moment it exists (one O_APPEND write: a process killed at the deadline leaves
every finished row whole). A check whose budget would end past the deadline is recorded as
skipped instead of started. The process's environment (its framework, its device) is the first
row.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gan_backends.bench.sweep import append_record

#: The schema of a check row (``check.jsonl``) and of a step row's additions (``steps.jsonl``).
ROW_SCHEMA = "gan-backends/gpu-proof-v1"


def check_row(job: dict[str, Any], check: dict[str, Any], status: str, reason: str | None, **extra: Any) -> dict:
    key = f"check/{job['framework']}/{check['spec']}/{check['precision']}"
    return {"schema": ROW_SCHEMA, "key": key, "stage": "checks", "framework": job["framework"],
            "device": job["device"], **check, "status": status, "reason": reason, **extra}  # fmt: skip


def run_one(job: dict[str, Any], check: dict[str, Any]) -> dict[str, Any]:
    """One check, as the ``check`` command runs it (its ``--precision`` sets the spec's
    ``numerics.matmul_precision``; float32 storage), and its row: ``passed`` or ``failed`` (a
    pair disagreed), ``error`` (a backend did not build or run), with the worst row of every
    group and the whole report (schema ``gan-backends/check-v2``)."""
    from gan_backends.bench.config import PRECISIONS
    from gan_backends.check import run_check
    from gan_backends.check.summary import summarise
    from gan_backends.presets import load_spec
    from gan_backends.spec import Numerics

    spec = load_spec(check["spec"])
    spec = spec.replace(numerics=Numerics(dtype="float32", matmul_precision=PRECISIONS[check["precision"]]))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    report = run_check(
        spec, [job["framework"], "numpy"], steps=check["steps"], batch_size=check["batch_size"], device=job["device"]
    )
    seconds = time.perf_counter() - t0
    errors = [f"{b.name}: {b.error}" for b in report.backends if b.error]
    groups = [asdict(g) for g in summarise(report)]
    failing = [
        f"{g['pair']} {g['group']} ({g['worst']}: {g['rel']} > {g['tol']:.0e})" for g in groups if not g["passed"]
    ]
    if errors:
        status, reason = "error", "; ".join(errors)
    elif not report.passed:
        status, reason = "failed", "; ".join(failing) or "the report did not pass"
    else:
        status, reason = "passed", None
    return check_row(
        job,
        check,
        status,
        reason,
        seconds=seconds,
        backends=[asdict(b) for b in report.backends],
        groups=groups,
        report=report.to_dict(),
    )


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    out = Path(job["out"])
    from gan_backends.environment import environment

    append_record(out, {"schema": ROW_SCHEMA, "key": f"environment/{job['framework']}", "stage": "checks",
                        "status": "environment", "environment": environment([job["framework"]])})  # fmt: skip
    failed = False
    for check in job["checks"]:
        left = job["deadline_at"] - time.time()
        if check["budget_s"] > left:
            budget = check["budget_s"]
            reason = f"deadline: its budget of {budget:.0f} s would end past the deadline ({left:.0f} s left)"
            append_record(out, check_row(job, check, "skipped", reason))
            continue
        print(f"check {job['framework']} {check['spec']} {check['precision']}: started", flush=True)
        try:
            row = run_one(job, check)
        except Exception as exc:  # recorded, and the next check goes on
            why, trace = f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=-4)
            row = check_row(job, check, "error", why, traceback=trace)
        append_record(out, row)
        print(f"check {job['framework']} {check['spec']} {check['precision']}: {row['status']}", flush=True)
        failed |= row["status"] != "passed"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

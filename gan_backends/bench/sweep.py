"""Run a sweep: each configuration in its own subprocess, results appended as they come.

``results.jsonl`` in the output folder holds one JSON record per line, each appended with a
single ``write`` on an ``O_APPEND`` descriptor and flushed to disk, so a sweep killed at any point
leaves every finished record whole. Running the same sweep again resumes: a configuration whose
key already has a record is skipped (``retry_failed`` runs the failed ones again, and their new
record supersedes the old when results are read; ``rerun_disturbed`` does the same for runs whose
timed blocks another process competed with, :func:`~.contention.is_disturbed`). A run that
crashes, is killed for memory or passes ``timeout_s`` is recorded with its reason and the tail of
its output; the sweep goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..backends import manifest
from ..errors import parse_device
from ..spec import SpecError
from .config import RunConfig
from .contention import is_disturbed
from .worker import NO_TF32_ON_CPU, SCHEMA, cpu_cores, pinned, process_environment

RESULTS = "results.jsonl"
FAILED = ("error", "nan", "timeout", "crashed")


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line, whole or not at all (a single O_APPEND write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line from a killed sweep: end it
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of ``results.jsonl``, the latest per key (a torn last line is ignored)."""
    latest: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "key" in record:
            latest[record["key"]] = record
    return list(latest.values())


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _cold_caches(folder: str) -> dict[str, str]:
    """Compilation caches in the run's own empty folder, so that every first step is a cold
    compile: torch.compile keeps Inductor's and Triton's compiled kernels on disk between
    processes (a warm cache turns 20 s into 2 s), where jax.jit and XLA keep none by default."""
    return {"TORCHINDUCTOR_CACHE_DIR": str(Path(folder, "inductor")), "TRITON_CACHE_DIR": str(Path(folder, "triton"))}


def run_one(run: RunConfig, timeout_s: float, worker: list[str] | None = None) -> dict[str, Any]:
    """Run ``run`` in a fresh Python process and return its record (or the failure's)."""
    command = worker or [sys.executable, "-m", "gan_backends.bench.worker"]
    with tempfile.TemporaryDirectory(prefix="gan-bench-") as tmp:
        run_path, out_path = Path(tmp, "run.json"), Path(tmp, "out.json")
        run_path.write_text(json.dumps(run.to_dict()))
        base = {"schema": SCHEMA, "key": run.key, "config": run.to_dict()}
        try:
            proc = subprocess.run(
                pinned([*command, str(run_path), str(out_path)], cpu_cores(run.threads)),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env={**os.environ, **process_environment(run.threads), **_cold_caches(tmp)},
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return {**base, "status": "timeout", "reason": f"no result within {timeout_s:g} s", "log": _tail(out + err)}
        if out_path.exists():
            record = {**json.loads(out_path.read_text()), "key": run.key, "config": run.to_dict()}
            if record["status"] != "ok":
                record["log"] = _tail(proc.stderr)
            return record
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        return {
            **base,
            "status": "crashed",
            "reason": f"the run died without a result ({how})",
            "log": _tail(proc.stderr),
        }


def spec_digest(run: RunConfig) -> str | None:
    """SHA-256 of the spec a run measures, as JSON (its content: an edited spec file of the same
    name is another spec); None for a GEMM peak run."""
    if run.is_peak:
        return None
    from ..presets import load_spec

    return hashlib.sha256(load_spec(run.spec, run.loss).to_json(indent=None).encode()).hexdigest()


def refuse_other_measurement(path: Path, previous: dict[str, Any], run: RunConfig, digest: str | None) -> None:
    """A recorded result is this run's only if it was measured with this timing plan and this
    spec content; anything else would print this plan over another one's numbers."""
    recorded_plan = previous.get("config", {}).get("plan")
    plan = run.to_dict()["plan"]
    if recorded_plan != plan:
        changed = ", ".join(
            f"{k} {recorded_plan.get(k) if isinstance(recorded_plan, dict) else '?'} -> {v}"
            for k, v in plan.items()
            if not isinstance(recorded_plan, dict) or recorded_plan.get(k) != v
        )
        why = f"with another timing plan ({changed})"
    elif previous.get("spec_sha256", digest) != digest:
        why = f"on another content of spec {run.spec!r} (the file was edited since)"
    else:
        return
    raise SpecError(
        f"{path}: {run.key} was measured {why}; pass --fresh to start afresh (the old records are kept "
        "beside), or choose another --out"
    )


def known_unavailable(run: RunConfig) -> dict[str, Any] | None:
    """The record of a run that cannot happen, known without a process: a CUDA-only mode
    (the manifest's ``cuda_only_modes``), or TF32, on a device named as a CPU (the worker would
    say the same after starting its framework)."""
    if run.device is None or parse_device(run.device)[0] != "cpu":
        return None
    why = manifest(run.backend).cuda_only_modes.get(run.mode) if not run.is_peak else None
    if why is not None:
        reason = f"{run.backend} mode {run.mode!r}: {why}; this run's device is {run.device}"
    elif run.precision == "tf32" and not run.is_peak:
        reason = NO_TF32_ON_CPU
    else:
        return None
    return {"schema": SCHEMA, "key": run.key, "config": run.to_dict(), "status": "unavailable", "reason": reason,
            "device": run.device}  # fmt: skip


def runs_again(previous: dict[str, Any], retry_failed: bool, rerun_disturbed: bool) -> bool:
    """Whether a recorded run is measured again: a failure under ``retry_failed``, a timing
    another process competed with under ``rerun_disturbed``."""
    return (retry_failed and previous.get("status") in FAILED) or (rerun_disturbed and is_disturbed(previous))


def run_sweep(
    runs: list[RunConfig],
    out_dir: Path,
    *,
    timeout_s: float,
    resume: bool = True,
    retry_failed: bool = False,
    rerun_disturbed: bool = False,
    on_start: Callable[[RunConfig], None] | None = None,
    on_record: Callable[[dict[str, Any], bool], None] | None = None,
    worker: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run every configuration not already recorded in ``out_dir/results.jsonl``; call
    ``on_record(record, skipped)`` for each; return the records of this sweep's runs."""
    path = Path(out_dir) / RESULTS
    if not resume and path.exists():  # start afresh, keeping the earlier records beside
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        path.rename(path.with_name(f"results-{stamp}.jsonl"))
    done = {r["key"]: r for r in read_records(path)}
    contents = {run.key: spec_digest(run) for run in runs}
    for run in runs:  # all checked before anything runs
        if run.key in done:
            refuse_other_measurement(path, done[run.key], run, contents[run.key])
    records = []
    for run in runs:
        previous = done.get(run.key)
        if previous is not None and not runs_again(previous, retry_failed, rerun_disturbed):
            records.append(previous)
            if on_record:
                on_record(previous, True)
            continue
        if on_start:
            on_start(run)
        record = known_unavailable(run) or run_one(run, timeout_s, worker)
        record.setdefault("finished", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        record["spec_sha256"] = contents[run.key]
        append_record(path, record)
        records.append(record)
        if on_record:
            on_record(record, False)
    return records

"""What the fault tests share: the CLI in this process or in a real one, file digests, a run."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from gan_backends.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
RUN_SPEC = "mlp-2d"  # trains on the ring (2-D points)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_state(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with its content hash."""
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def invoke(*args: object):
    """The command in this process (typer's runner); ``args`` may be paths."""
    return runner.invoke(app, [str(a) for a in args])


def cli_process(*args: str) -> subprocess.Popen:
    """``gan-backends ARGS`` in a process of its own, this checkout on its path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "gan_backends.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``path`` exists, failing if the process ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def stop(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """Wait for the process to end; its stdout and stderr. One that does not end is killed,
    never left behind."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise

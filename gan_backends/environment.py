"""What ran where: versions, devices and availability, recorded with every result."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .backends import REGISTRY, BackendUnavailable, get_backend


@dataclass
class BackendStatus:
    name: str
    available: bool
    version: str
    default_device: str
    modes: list[str]
    detail: str  # the install hint when unavailable


def backend_status(name: str) -> BackendStatus:
    entry = REGISTRY[name]
    try:
        cls = get_backend(name)
    except BackendUnavailable as exc:
        return BackendStatus(name, False, "-", "-", [], str(exc))
    try:
        return BackendStatus(name, True, cls.framework_version(), cls.default_device(), list(cls.modes), "")
    except Exception as exc:  # a broken install: report it, never crash `info`
        return BackendStatus(
            name, False, "?", "?", list(cls.modes), f"{type(exc).__name__}: {exc} (extra: {entry.extra})"
        )


def git_dirty() -> bool | None:
    """Whether tracked files other than Markdown differ from the commit (results then come from
    uncommitted code; a README being edited around its own table does not count)."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)*.md"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU's marketing name (Linux ``/proc/cpuinfo``; the platform's processor elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_gpus() -> list[dict[str, str]]:
    """Each NVIDIA GPU's name, driver, memory and (where reported) CUDA version, from
    ``nvidia-smi``; empty where there is none."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.stdout.strip().splitlines():
        name, driver, memory = (part.strip() for part in line.split(","))
        gpus.append({"name": name, "driver": driver, "memory": memory})
    return gpus


def environment(backend_names: list[str] | None = None) -> dict[str, Any]:
    from . import __version__

    names = backend_names if backend_names is not None else list(REGISTRY)
    return {
        "gan_backends": __version__,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "gpus": nvidia_gpus(),
        "backends": [asdict(backend_status(n)) for n in names],
    }

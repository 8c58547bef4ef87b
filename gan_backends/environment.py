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


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(backend_names: list[str] | None = None) -> dict[str, Any]:
    from . import __version__

    names = backend_names if backend_names is not None else list(REGISTRY)
    return {
        "gan_backends": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "backends": [asdict(backend_status(n)) for n in names],
    }

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


#: Environment variables that change what XLA compiles or how its client behaves (TensorFlow's
#: ``jit_compile`` and JAX's ``jit`` are XLA programs; their launch overhead and fusion depend on these).
XLA_ENV = (
    "XLA_FLAGS",
    "TF_XLA_FLAGS",
    "TF_GPU_ALLOCATOR",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR",
    "JAX_PLATFORMS",
    "JAX_DEFAULT_MATMUL_PRECISION",
    "JAX_ENABLE_X64",
)
#: JAX configuration read back where JAX is loaded (its defaults can be changed without an
#: environment variable, e.g. ``jax.config.update``).
JAX_CONFIG = (
    "jax_default_matmul_precision",
    "jax_enable_x64",
    "jax_platforms",
    "jax_cpu_enable_async_dispatch",
    "jax_compilation_cache_dir",
)


def xla_settings() -> dict[str, Any]:
    """The XLA settings in force in this process: the variables of :data:`XLA_ENV` that are set,
    each ``--flag`` of ``XLA_FLAGS`` parsed out (``xla_gpu_enable_command_buffer`` is XLA's own
    CUDA-graph switch), JAX's configuration and TensorFlow's auto-jit setting where those
    frameworks are already imported (nothing is imported here)."""
    env = {k: os.environ[k] for k in XLA_ENV if k in os.environ}
    flags = {}
    for token in env.get("XLA_FLAGS", "").split():
        name, _, value = token.lstrip("-").partition("=")
        flags[name] = value if value else "true"
    out: dict[str, Any] = {"env": env, "xla_flags": flags}
    jax = sys.modules.get("jax")
    if jax is not None:
        config = {}
        values = getattr(jax.config, "values", {})  # every option, also those without an attribute
        for name in JAX_CONFIG:
            if name not in values and not hasattr(jax.config, name):
                continue
            value = values[name] if name in values else getattr(jax.config, name)
            config[name] = value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
        out["jax_config"] = config
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            out["tf_auto_jit"] = str(tf.config.optimizer.get_jit())
        except Exception:  # an odd build: the record goes on without it
            pass
    return out


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
        "xla": xla_settings(),
    }

"""Backends are parametrised over the installed frameworks.

A missing framework skips its tests with the reason, unless ``GAN_BACKENDS_REQUIRE`` (set in
CI) names it: then its tests fail, so a green CI run means every framework was tested.

JAX compiles each backend instance's functions anew (``jax.jit`` of its own closures), so the
suite, which builds many backends of the same spec, shares one persistent compilation cache for
the session (and its subprocesses, which inherit the environment): a program compiled once is
read back from disk instead of compiled again (dcgan-small's float64 step: ~20 s -> ~1 s).

XLA's CPU compiler spends most of a compile in LLVM's optimisation passes, and the suite
compiles hundreds of small programs that then run a few steps. The suite sets LLVM's level to 0
(JAX's and TensorFlow's XLA both read ``XLA_FLAGS``): XLA's own HLO passes (fusion,
simplification: what decides the arithmetic) are unchanged, and without fast-math LLVM keeps
IEEE results at every level, so only compile and run times change (the JAX check and bench
tests: 110 s -> 72 s, measured with ``pytest tests/test_check.py tests/test_bench_cli.py -k jax``).
A caller's own ``xla_backend_optimization_level`` is left alone.

This machine sets ``PYTHONDONTWRITEBYTECODE=1`` and the install runs ``pip --no-compile``, so
every process compiled the sources of torch, TensorFlow and JAX anew on import: 4.5 s of a 7.5 s
``gan-backends train`` of 2 steps, in each of the suite's xdist workers, CLI subprocesses,
launched ranks and engines. The suite gives itself a bytecode cache (:func:`_share_bytecode`):
the first process to import a module writes its bytecode, every later one reads it (that
``train``: 7.5 s -> 3.2 s). Bytecode is the same code: nothing a test measures changes.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

from gan_backends.backends import FRAMEWORKS, REGISTRY, is_available


def _required() -> set[str]:
    names = {n.strip() for n in os.environ.get("GAN_BACKENDS_REQUIRE", "").split(",") if n.strip()}
    unknown = names - set(REGISTRY)
    if unknown:
        raise pytest.UsageError(
            f"GAN_BACKENDS_REQUIRE names unknown backends {sorted(unknown)}; known: {list(REGISTRY)}"
        )
    return names


REQUIRED = _required()


def _share_jax_compilations() -> None:
    """A fresh cache directory for this session, every program cached (JAX's defaults skip those
    that compiled in under a second), removed at exit. Set before anything imports jax, which
    reads the environment once; a cache the caller configured is left alone."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    path = tempfile.mkdtemp(prefix="gan-backends-jax-cache-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


_share_jax_compilations()


def _share_bytecode() -> None:
    """A fresh ``PYTHONPYCACHEPREFIX`` for this session, written despite the environment's
    ``PYTHONDONTWRITEBYTECODE`` (inherited by the workers and subprocesses: they start after
    this module is imported), removed at exit. The prefix keeps the bytecode out of the
    source trees and the virtualenv; a prefix the caller configured is left alone."""
    if os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    path = tempfile.mkdtemp(prefix="gan-backends-pycache-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ["PYTHONPYCACHEPREFIX"] = path
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


_share_bytecode()


def _quick_xla_codegen() -> None:
    """LLVM optimisation level 0 for XLA's CPU code (see the module docstring), unless set."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        quick = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
        os.environ["XLA_FLAGS"] = f"{flags} {quick}".strip()


_quick_xla_codegen()
# Under pytest-xdist several processes share a GPU where there is one: JAX's default reserves
# 75% of its memory per process at start-up.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked ``long`` first (in their order), then the rest: two xdist workers that
    take the long ones early finish together instead of one idling while the other runs a
    launched engine at the end (measured on a fresh clone: the last 3% took two minutes)."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def require_backend(name: str) -> None:
    if not is_available(name):
        extra = REGISTRY[name].extra
        message = f"{name} is not installed (pip install 'gan-backends[{extra}]')"
        if name in REQUIRED:
            pytest.fail(f"GAN_BACKENDS_REQUIRE lists {name}, but {message}")
        pytest.skip(message)


def require_backend_module(name: str) -> None:
    """``require_backend`` for a whole test module, called before its framework imports."""
    if not is_available(name):
        message = f"{name} is not installed (pip install 'gan-backends[{REGISTRY[name].extra}]')"
        if name in REQUIRED:
            pytest.fail(f"GAN_BACKENDS_REQUIRE lists {name}, but {message}", pytrace=False)
        pytest.skip(message, allow_module_level=True)


@pytest.fixture(params=FRAMEWORKS)
def framework(request) -> str:
    """Each framework backend name; skipped (or failed, when required) if not installed."""
    require_backend(request.param)
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)

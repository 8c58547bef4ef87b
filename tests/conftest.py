"""Backends are parametrised over the installed frameworks.

A missing framework skips its tests with the reason, unless ``GAN_BACKENDS_REQUIRE`` (set in
CI) names it: then its tests fail, so a green CI run means every framework was tested.

JAX compiles each backend instance's functions anew (``jax.jit`` of its own closures), so the
suite, which builds many backends of the same spec, shares one persistent compilation cache for
the session (and its subprocesses, which inherit the environment): a program compiled once is
read back from disk instead of compiled again (dcgan-small's float64 step: ~20 s -> ~1 s).
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

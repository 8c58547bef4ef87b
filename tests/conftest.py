"""Backends are parametrised over the installed frameworks.

A missing framework skips its tests with the reason, unless ``GAN_BACKENDS_REQUIRE`` (set in
CI) names it: then its tests fail, so a green CI run means every framework was tested.
"""

from __future__ import annotations

import os

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

"""Backend registry: the framework packages' manifests, and their parts imported on first use.

Nothing here imports a framework. Each package under this one (``torch``, ``tensorflow``,
``jax``, ``numpy``) describes itself in a :class:`~.manifest.Manifest`; :func:`available_backends`
answers from ``importlib.util.find_spec``; :func:`get_backend` imports a backend's module on
first use and turns a missing framework into :class:`BackendUnavailable`, which names the extra
to install; :func:`load_part` does the same for a package's other parts (``parallel``,
``checkpoint``, ``losscheck``), which every package names alike.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..spec.base import SpecError
from . import jax as _jax
from . import numpy as _numpy
from . import tensorflow as _tensorflow
from . import torch as _torch
from .base import Backend, ModeUnavailable, TrainBatch
from .manifest import CheckpointKind, Manifest


class BackendUnavailable(ImportError):
    """The framework a backend needs is not installed."""


#: Every package's manifest, by registry name: the reference first, then the frameworks.
REGISTRY: dict[str, Manifest] = {
    m.name: m for m in (_numpy.MANIFEST, _torch.MANIFEST, _tensorflow.MANIFEST, _jax.MANIFEST)
}
#: The float64 ground truth every framework is held against.
REFERENCE = "numpy"
FRAMEWORKS: tuple[str, ...] = tuple(name for name in REGISTRY if name != REFERENCE)
ALIASES: dict[str, str] = {alias: REGISTRY[n].name for n in (*FRAMEWORKS, REFERENCE) for alias in REGISTRY[n].aliases}


def canonical_name(name: str) -> str:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in REGISTRY:
        known = ", ".join(list(REGISTRY) + [f"{a} (= {b})" for a, b in ALIASES.items()])
        raise SpecError(f"unknown backend {name!r}; known: {known}")
    return key


def manifest(name: str) -> Manifest:
    """The manifest of backend ``name`` (aliases accepted)."""
    return REGISTRY[canonical_name(name)]


def is_available(name: str) -> bool:
    return not manifest(name).missing()


def available_backends(frameworks_only: bool = False) -> list[str]:
    names = FRAMEWORKS if frameworks_only else tuple(REGISTRY)
    return [name for name in names if is_available(name)]


def get_backend(name: str) -> type[Backend]:
    """The backend class for ``name`` (importing its framework now)."""
    entry = manifest(name)
    module_name, _, cls_name = entry.backend.partition(":")
    return getattr(load_part(entry.name, module_name), cls_name)


def load_part(name: str, part: str) -> ModuleType:
    """Module ``part`` (``backend``, ``parallel``, ``checkpoint``, ``losscheck``) of backend
    ``name``'s package, imported now; a missing framework raises :class:`BackendUnavailable`."""
    entry = manifest(name)
    missing = entry.missing()
    if missing:
        raise BackendUnavailable(_install_hint(entry, missing))
    try:
        return importlib.import_module(f"{entry.package}.{part}")
    except ImportError as exc:
        if exc.name == f"{entry.package}.{part}":
            raise ValueError(f"backend {entry.name!r} has no {part!r} part") from None
        if (exc.name or "").startswith(f"{__package__.split('.')[0]}."):
            raise  # our own module is broken: an internal error, not a missing install
        raise BackendUnavailable(f"{_install_hint(entry, [exc.name or str(exc)])} (import failed: {exc})") from exc


def _install_hint(entry: Manifest, missing: list[str]) -> str:
    return (
        f"backend {entry.name!r} needs {', '.join(missing)}, which is not installed; "
        f"install it with: pip install 'gan-backends[{entry.extra}]'"
    )


__all__ = [
    "Backend",
    "BackendUnavailable",
    "CheckpointKind",
    "Manifest",
    "ModeUnavailable",
    "TrainBatch",
    "available_backends",
    "canonical_name",
    "get_backend",
    "is_available",
    "load_part",
    "manifest",
    "REGISTRY",
    "FRAMEWORKS",
    "REFERENCE",
]

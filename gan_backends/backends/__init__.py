"""Backend registry: names to lazily imported modules.

Nothing here imports a framework. :func:`available_backends` answers from
``importlib.util.find_spec``; :func:`get_backend` imports a backend's module on first use and
turns a missing framework into :class:`BackendUnavailable`, which names the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from .base import Backend, ModeUnavailable, TrainBatch


class BackendUnavailable(ImportError):
    """The framework a backend needs is not installed."""


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "module:Class"
    requires: tuple[str, ...]  # top-level modules that must be importable
    extra: str | None  # pip extra that installs them

    def missing(self) -> list[str]:
        return [mod for mod in self.requires if importlib.util.find_spec(mod) is None]


REGISTRY: dict[str, BackendEntry] = {
    "numpy": BackendEntry("numpy", "gan_backends.backends.numpy_reference:NumpyReference", ("numpy",), None),
    "torch": BackendEntry("torch", "gan_backends.backends.torch_backend:TorchBackend", ("torch",), "torch"),
    "tensorflow": BackendEntry(
        "tensorflow", "gan_backends.backends.tensorflow_backend:TensorFlowBackend", ("tensorflow",), "tensorflow"
    ),
    "jax": BackendEntry("jax", "gan_backends.backends.jax_backend:JaxBackend", ("jax", "flax", "optax"), "jax"),
}
ALIASES = {"pytorch": "torch", "tf": "tensorflow", "flax": "jax", "reference": "numpy"}
FRAMEWORKS: tuple[str, ...] = ("torch", "tensorflow", "jax")
#: The float64 ground truth every framework is held against.
REFERENCE = "numpy"


def canonical_name(name: str) -> str:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in REGISTRY:
        known = ", ".join(list(REGISTRY) + [f"{a} (= {b})" for a, b in ALIASES.items()])
        raise ValueError(f"unknown backend {name!r}; known: {known}")
    return key


def is_available(name: str) -> bool:
    return not REGISTRY[canonical_name(name)].missing()


def available_backends(frameworks_only: bool = False) -> list[str]:
    names = FRAMEWORKS if frameworks_only else tuple(REGISTRY)
    return [name for name in names if is_available(name)]


def get_backend(name: str) -> type[Backend]:
    """The backend class for ``name`` (importing its framework now)."""
    entry = REGISTRY[canonical_name(name)]
    missing = entry.missing()
    if missing:
        raise BackendUnavailable(_install_hint(entry, missing))
    module_name, cls_name = entry.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"{_install_hint(entry, [exc.name or str(exc)])} (import failed: {exc})") from exc
    return getattr(module, cls_name)


def _install_hint(entry: BackendEntry, missing: list[str]) -> str:
    return (
        f"backend {entry.name!r} needs {', '.join(missing)}, which is not installed; "
        f"install it with: pip install 'gan-backends[{entry.extra}]'"
    )


__all__ = [
    "Backend",
    "BackendUnavailable",
    "ModeUnavailable",
    "TrainBatch",
    "available_backends",
    "canonical_name",
    "get_backend",
    "is_available",
    "REGISTRY",
    "FRAMEWORKS",
    "REFERENCE",
]

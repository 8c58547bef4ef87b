"""What a framework package says about itself without importing its framework.

Each package under ``gan_backends/backends/`` (``torch``, ``tensorflow``, ``jax``, ``numpy``)
holds one :class:`Manifest` in its ``__init__.py``. The registry, ``bench``, ``parallel``,
``losscheck`` and ``port`` read the manifests instead of keeping tables keyed by framework
name: adding a framework is one package with one manifest.

A manifest names the package's parts by module (``"backend:TorchBackend"``, relative to the
package); :meth:`Manifest.load` imports a part on first use, so reading a manifest costs no
framework import.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckpointKind:
    """A native checkpoint form a package reads and writes.

    ``name``: the kind (``torch``, ``keras``, ``flax``); ``extensions``: file names that mean
    it (lowercase, matched with ``str.endswith``), most specific first; ``layout``: the layout
    its arrays are stored in (``torch``, ``flax``, ``canonical``); ``aliases``: other names a
    user may give for it (a framework name: ``--to tensorflow`` writes ``keras``);
    ``directory``: a directory is this kind (an orbax checkpoint); ``refused``: extensions that
    are recognised but not read, with the reason to print; ``suggested``: the extensions an
    error message advertises (default: all of them; the rarer ones are read, not advertised).
    """

    name: str
    extensions: tuple[str, ...]
    layout: str
    aliases: tuple[str, ...] = ()
    directory: bool = False
    refused: Mapping[str, str] = field(default_factory=dict)
    suggested: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """One framework package, described without importing the framework.

    ``name``: the registry key; ``package``: the package's module name; ``backend``: the
    :class:`~gan_backends.backends.base.Backend` class as ``"module:Class"`` in the package;
    ``requires``: top-level modules that must be importable; ``extra``: the pip extra that
    installs them; ``aliases``: other names for it (``pytorch``, ``tf``); ``modes``: the
    backend's execution modes, the default first; ``data_parallel_modes``: the modes its
    data-parallel engine runs (empty: none); ``checkpoint_kinds``: the native files its
    ``checkpoint`` module reads and writes; ``framework_defaults``: its own defaults for the
    values a spec states explicitly (``check --framework-defaults``); ``before_start``:
    ``prepare(devices, platform)``, what must be set before the framework's runtime starts
    (environment variables only: it runs before the framework is imported).
    """

    name: str
    package: str
    backend: str
    requires: tuple[str, ...]
    extra: str | None
    modes: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    data_parallel_modes: tuple[str, ...] = ()
    checkpoint_kinds: tuple[CheckpointKind, ...] = ()
    framework_defaults: Mapping[str, object] = field(default_factory=dict)
    before_start: Callable[[int, str | None], None] | None = None
    #: ``"module:attr"``: the :class:`~gan_backends.losses.LossOps` of the framework's default
    #: BCE where it takes probabilities (torch's ``BCELoss``, Keras' ``BinaryCrossentropy``).
    default_bce_ops: str | None = None
    #: Computes on the host CPU whatever device the other backends use (the reference).
    host_only: bool = False
    #: ``"module:TABLE"`` of every table keyed by spec layer type in the package (layer builders,
    #: the port's native-model builders): the coverage test names a layer type missing from one.
    layer_tables: tuple[str, ...] = ()
    #: ``"module:function"`` that times one large GEMM (``measure_gemm(device, precision, n,
    #: repeats, best_of)``): the measured peak of devices NumPy cannot reach.
    gemm_peak: str | None = None
    #: The order a default benchmark sweep runs the modes in (None: ``modes``).
    sweep_order: tuple[str, ...] | None = None
    #: Modes that run on a CUDA device only, with why: a run asking for them on a CPU is
    #: unavailable, known without starting the framework (the backend raises ModeUnavailable).
    cuda_only_modes: Mapping[str, str] = field(default_factory=dict)
    #: Top-level modules whose model objects (an ``nn.Module``, a Keras model, a Flax module)
    #: the package's ``introspect`` part reads into spec layers (``layers_of``), and the
    #: extensions of whole saved models it loads (``load_model``: Keras' ``.keras``).
    model_modules: tuple[str, ...] = ()
    model_files: tuple[str, ...] = ()

    @property
    def sweep_modes(self) -> tuple[str, ...]:
        return self.modes if self.sweep_order is None else self.sweep_order

    def missing(self) -> list[str]:
        """The required modules that cannot be imported here."""
        return [mod for mod in self.requires if importlib.util.find_spec(mod) is None]

    def load(self, target: str) -> Any:
        """The object ``"module:attr"`` of this package (``"module"``: the module), imported now."""
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(f"{self.package}.{module_name}")
        return getattr(module, attr) if attr else module


__all__ = ["CheckpointKind", "Manifest"]

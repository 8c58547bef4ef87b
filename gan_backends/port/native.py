"""Native tensors, checkpoint kinds, and reading and writing a kind through its package.

The kinds come from the framework packages' manifests (``checkpoint_kinds``: ``torch``,
``keras``, ``flax``) plus this package's own ``safetensors``, so a framework package that
declares a kind is all a new form needs: :data:`KINDS`, :data:`KIND_ALIASES`,
:data:`LAYOUT_OF_KIND`, :func:`detect_kind` and the dispatch of :func:`read_native` and
:func:`write_native` are derived from them. Each kind's reader, writer and runner is the
``checkpoint`` part of the package that declares it (reached through
:func:`~gan_backends.backends.load_part`, so nothing here imports a framework); ``safetensors``
is :mod:`.safetensors`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..backends import REGISTRY, load_part
from ..backends.manifest import CheckpointKind
from ..params import ParamTree, buffer_shapes, check_tree, init_buffers
from ..spec import NETWORKS, GANSpec, Layer, Shape, SpecError, walk

#: This project's own files (:func:`~gan_backends.params.save_params`, training checkpoints):
#: canonical names and layouts, read and written without a framework.
SAFETENSORS = CheckpointKind(
    "safetensors", (".safetensors",), layout="canonical", aliases=("ours", "numpy", "gan-backends")
)

#: Every kind, in detection order (the manifests' in registry order, then ``safetensors``).
CHECKPOINT_KINDS: dict[str, CheckpointKind] = {
    **{kind.name: kind for entry in REGISTRY.values() for kind in entry.checkpoint_kinds},
    SAFETENSORS.name: SAFETENSORS,
}
#: The framework package that reads and writes each kind (``None``: this package).
FRAMEWORK_OF_KIND: dict[str, str | None] = {
    **{kind.name: entry.name for entry in REGISTRY.values() for kind in entry.checkpoint_kinds},
    SAFETENSORS.name: None,
}
#: Native forms, and the names the command accepts for them.
KINDS: tuple[str, ...] = tuple(CHECKPOINT_KINDS)
KIND_ALIASES: dict[str, str] = {alias: kind.name for kind in CHECKPOINT_KINDS.values() for alias in kind.aliases}
#: The layout a source's arrays are in (per kind; Flax trees of this project's JAX backend are canonical).
LAYOUT_OF_KIND: dict[str, str] = {name: kind.layout for name, kind in CHECKPOINT_KINDS.items()}

#: Roles of a native tensor; ``skip`` is read and ignored (``num_batches_tracked``); ``sn_u`` and
#: ``sn_v`` are spectral norm's power-iteration vectors (:mod:`gan_backends.spec.spectral`).
ROLES: tuple[str, ...] = ("kernel", "bias", "scale", "running_mean", "running_var", "sn_u", "sn_v", "skip")
#: The order of a layer's tensors in every framework: weight (kernel or scale), bias, statistics.
ROLE_ORDER = {
    role: i for i, role in enumerate(("kernel", "scale", "bias", "running_mean", "running_var", "sn_u", "sn_v", "skip"))
}

# Container names, lower case without separators: ``netG``, ``net_G``, ``G_model``, ``model_g``, ...
_G_ALIASES = {"generator", "gen", "g", "netg", "gnet", "netgen", "generatormodel", "gmodel", "modelg"}
_D_ALIASES = {
    "discriminator",
    "disc",
    "d",
    "netd",
    "dnet",
    "netdisc",
    "critic",
    "netcritic",
    "discriminatormodel",
    "dmodel",
    "modeld",
}


class PortError(ValueError):
    """A native file that does not fit the spec; the message names the native tensors (names and
    shapes), the canonical names with their expected shapes, and the spec layers."""


@dataclass(frozen=True, eq=False)
class NativeTensor:
    """One array of a native file, as stored (native layout).

    ``name``: its key in the file (``0.weight``, ``layers/dense_1/vars/0``,
    ``params/Dense_0/kernel``); ``role``: one of :data:`ROLES`. The rest locates it:
    ``layer`` groups the tensors of one native layer; ``chain`` and ``rank`` say what order is
    known: layers of one chain are ordered by ``rank``, layers of different chains are not
    ordered with respect to each other (Keras classes, Flax module types); ``layer_type`` is
    the spec layer type the file names (``Dense``, ``Conv2D``, ``ConvTranspose2D``,
    ``BatchNorm``) or ``None``; ``network`` is set where the file says which network it belongs
    to; ``layout`` is ``torch``, ``flax`` or ``canonical``. ``derive`` is set on the ``sn_u``
    and ``sn_v`` of a spectral norm whose vectors are not the spec's pair: ``"flax"`` (``sn_u``
    holds ``nn.SpectralNorm``'s stored ``u``, ``sn_v`` a stand-in), turned into the spec's pair
    once the spec layer is known (its ``n_power_iterations``, ``eps``; :mod:`.spectral_vectors`).
    """

    name: str
    array: np.ndarray
    role: str
    layer: str = ""
    layer_type: str | None = None
    network: str | None = None
    chain: str = ""
    rank: float = 0
    layout: str = "canonical"
    derive: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"NativeTensor {self.name!r}: role must be one of {ROLES}, got {self.role!r}")

    @property
    def shape(self) -> Shape:
        return tuple(self.array.shape)


@dataclass(frozen=True)
class NativeRun:
    """What a checkpoint part's ``run(job)`` computes: each network of ``nets`` built from ``spec``
    in its framework, in inference mode, on ``inputs[net]``; its weights loaded the framework's
    own way from the native file ``path`` (as that part's ``write`` writes it) or, without a
    path, made from the canonical ``params`` and ``buffers``."""

    spec: GANSpec
    nets: tuple[str, ...]
    inputs: Mapping[str, np.ndarray]
    params: ParamTree = field(default_factory=dict)
    buffers: ParamTree = field(default_factory=dict)
    path: Path | None = None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec.numerics.dtype)

    def input(self, net: str) -> np.ndarray:
        """The input of ``net`` in the spec's dtype."""
        return np.asarray(self.inputs[net], self.dtype)


#: The roles of a network's parameters (what an optimiser updates); the rest are buffers.
PARAMETER_ROLES: tuple[str, ...] = ("kernel", "bias", "scale")


@dataclass
class NativeOptimizer:
    """One network's optimiser state as a framework stores it, read into canonical slot names.

    ``name``: ``adam``, ``rmsprop`` or ``sgd``; ``hyper``: its hyper-parameters under the spec's
    field names (``lr``, ``beta1``, ...), what the file says; ``steps``: the updates taken (None
    where the file does not count them: torch's SGD); a ``None`` array: no state yet (zeros);
    ``slots``: per canonical slot (``m``, ``v``, ``grad_avg``, ``momentum``), one array per
    parameter of the network, in the order of the network's parameter tensors in the file (the
    order the optimiser was given them), each in the file's native layout; ``key``: where it was
    found; ``flags``: options the spec has no field for, set (``amsgrad``, ``maximize``, ...)."""

    name: str
    hyper: dict[str, float | bool | str]
    steps: int | None
    slots: dict[str, list[np.ndarray | None]]
    key: str = ""
    flags: tuple[str, ...] = ()
    #: ``"file"``: the arrays follow the network's parameter tensors in the file, in its layout
    #: (torch); ``"spec"``: the spec's parameters of the network in order, canonical (Keras, whose
    #: optimiser follows the model's trainable variables while its file groups layers by class).
    order: str = "file"


@dataclass
class NativeCheckpoint:
    """What a reader found: the tensors in the file's layer order (as far as it is known), the
    form, the path and notes on how it was read (wrapper key used, how order was recovered);
    ``optimizers``: the optimisers' states the file holds, per network (a training script's
    ``{"net_G": ..., "optim_G": ...}``)."""

    kind: str
    path: str
    tensors: list[NativeTensor]
    notes: list[str] = field(default_factory=list)
    optimizers: dict[str, NativeOptimizer] = field(default_factory=dict)

    @property
    def layout(self) -> str:
        return LAYOUT_OF_KIND[self.kind]

    def __iter__(self) -> Iterator[NativeTensor]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)


# -- kinds -------------------------------------------------------------------------------------


def canonical_kind(kind: str) -> str:
    """One of :data:`KINDS` (``torch``, ``keras``, ``flax``, ``safetensors``) from a kind or backend name."""
    key = KIND_ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if key not in KINDS:
        raise PortError(f"unknown checkpoint kind {kind!r}; known: {', '.join(KINDS)} (or {', '.join(KIND_ALIASES)})")
    return key


def detect_kind(path: str | Path) -> str:
    """The native form of ``path`` from its name (a directory: the kind that is one, orbax's)."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        directories = [kind.name for kind in CHECKPOINT_KINDS.values() if kind.directory]
        if directories:
            return directories[0]
    for kind in CHECKPOINT_KINDS.values():
        if name.endswith(kind.extensions):
            return kind.name
    for kind in CHECKPOINT_KINDS.values():
        for extension, reason in kind.refused.items():
            if name.endswith(extension):
                raise PortError(f"{path}: {reason}")
    names = [_suggested(kind) for kind in CHECKPOINT_KINDS.values()]
    raise PortError(
        f"{path}: cannot tell its form from the name; name it {', '.join(names[:-1])} or {names[-1]}, or give the kind"
    )


def suggested_name(kind: str) -> str:
    """The file names a kind goes by, e.g. ``.pt/.pth/.bin``."""
    entry = CHECKPOINT_KINDS[canonical_kind(kind)]
    return " or ".join(entry.suggested or entry.extensions)


def _suggested(kind: CheckpointKind) -> str:
    names = "/".join(kind.suggested or kind.extensions)
    return names if names == f".{kind.name}" else f"{names} ({kind.name})"


def checkpoint_part(kind: str) -> ModuleType:
    """The module that reads, writes and runs ``kind``: ``read(path, **options)``,
    ``write(params, buffers, spec, path)``, ``run(job: NativeRun)``."""
    framework = FRAMEWORK_OF_KIND[canonical_kind(kind)]
    if framework is None:
        from . import safetensors  # it builds on this module, so it cannot be imported at the top

        return safetensors
    return load_part(framework, "checkpoint")


def read_native(path: str | Path, kind: str | None = None, **options: Any) -> NativeCheckpoint:
    """Read ``path`` with the reader of ``kind`` (detected from the name when ``None``)."""
    kind = detect_kind(path) if kind is None else canonical_kind(kind)
    if not Path(path).exists():
        raise PortError(f"{path} does not exist")
    return checkpoint_part(kind).read(path, **options)


def write_native(params: ParamTree, buffers: ParamTree | None, spec: GANSpec, kind: str, path: str | Path) -> list[str]:
    """Write the canonical ``params`` (and BatchNorm ``buffers``; ``None``: fresh statistics) of
    the networks they cover as a native file of ``kind``; returns notes on what was written."""
    kind = canonical_kind(kind)
    _, params, buffers = checked_trees(params, buffers, spec)
    return checkpoint_part(kind).write(params, buffers, spec, Path(path))


# -- shared by the readers and writers ---------------------------------------------------------


def network_hint(name: str) -> str | None:
    """``generator`` or ``discriminator`` where a container's name says so (``netG``, ``net_G``,
    ``D_1``, ``generator_state_dict``)."""
    key = re.sub(r"_\d+$", "", name.strip().lower())
    key = re.sub(r"[_-]?state[_-]?dict$", "", key).replace("_", "").replace("-", "")
    if key in _G_ALIASES:
        return "generator"
    if key in _D_ALIASES:
        return "discriminator"
    return None


def optimizer_hint(name: str) -> str | None:
    """The network an optimiser's container names (``optimizerG``, ``optim_D``, ``g_optimizer``,
    ``opt_gen_state_dict``), or None when the name is not an optimiser's."""
    key = re.sub(r"[_-]?state[_-]?dict$", "", name.strip().lower())
    rest = re.sub(r"optimi[sz]er|optim|opt", "", key, count=1)
    return network_hint(rest.strip("_-")) if rest != key and rest.strip("_-") else None


def natural_key(text: str) -> tuple:
    """Sorts ``fc2`` before ``fc10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def networks_of(tree: Mapping[str, Any]) -> tuple[str, ...]:
    """The networks a canonical tree has entries for, in spec order."""
    present = {name.split(".", 1)[0] for name in tree}
    return tuple(n for n in NETWORKS if n in present)


def state_layers(spec: GANSpec, net: str) -> Iterator[tuple[str, Layer, list[tuple[str, str, Shape]]]]:
    """``(path, layer, [(canonical name, role, shape)])`` of every layer of ``net`` with
    parameters or buffers: what a native file holds, in the spec's order. ``path`` is the
    layer's index (``"3"``), or its place inside a residual block (``"2.main.0"``: the block's
    layers in their order, main branch first, as torch's ``state_dict`` lists them)."""
    for prefix, layer, in_shape in walk(spec.layers(net), spec.input_shape(net), net):
        shapes = {**layer.param_shapes(in_shape), **layer.buffer_shapes(in_shape)}
        if shapes:
            yield (
                prefix.split(".", 1)[1],
                layer,
                [(f"{prefix}.{role}", role, shape) for role, shape in shapes.items()],
            )


def checked_trees(
    params: ParamTree, buffers: ParamTree | None, spec: GANSpec
) -> tuple[tuple[str, ...], ParamTree, ParamTree]:
    """``(networks, params, buffers)``: the trees checked against the spec for the networks
    ``params`` covers, the buffers cut to them (fresh statistics where none are given)."""
    nets = networks_of(params)
    if not nets:
        raise PortError("no parameters to write")
    try:
        check_tree(spec, params, nets)
    except SpecError as exc:
        raise PortError(str(exc)) from None
    expected = buffer_shapes(spec, nets)
    buffers = {k: v for k, v in (buffers or {}).items() if k.split(".", 1)[0] in nets}
    if not buffers:
        buffers = {k: v for k, v in init_buffers(spec).items() if k in expected}
    got = {k: tuple(np.shape(v)) for k, v in buffers.items()}
    if got != expected:
        raise PortError(f"buffers do not fit spec {spec.name!r} ({'+'.join(nets)}): expected {expected}, got {got}")
    return nets, params, buffers

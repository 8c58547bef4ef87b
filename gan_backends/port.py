"""Port checkpoints between stacks: read a framework's native file, match it to a spec, write another.

The converter behind ``gan-backends port SRC --spec SPEC --to BACKEND --out DST``. Four native
forms, read and written (framework imports happen inside the functions that need them):

``torch``
    A ``state_dict`` saved with ``torch.save`` (``.pt``, ``.pth``, ``.bin``), read with
    ``torch.load(path, map_location="cpu", weights_only=True)``. A dict wrapping state dicts
    under a usual key (``state_dict``, ``model``, ``generator``, ``netG``, ``G``, ...; the
    discriminator under ``discriminator``, ``netD``, ``D``, ...) is unwrapped, and the key used
    is reported. Order: the dict's order, which is module registration order; tensors of one
    module share its key prefix (``main.3.weight``). ``num_batches_tracked`` is skipped. A 1-D
    ``weight`` is a BatchNorm scale. Written as the ``state_dict`` of the ``nn.Sequential`` of
    the spec's layers: spec layer ``i`` is module ``i`` (activations, Reshape and Flatten take a
    position, as in ``nn.Sequential``), so keys are ``0.weight``, ``0.bias``, ``2.weight``,
    ``3.running_mean``, ``3.num_batches_tracked``; both networks as
    ``{"generator": state_dict, "discriminator": state_dict}``.

``keras``
    Keras 3 ``model.save_weights("x.weights.h5")``, read with h5py. The file's structure as
    written by Keras 3.15 (``keras/src/saving/saving_lib.py``)::

        layers/dense/vars            attrs {"name": "dense_12"}   (the layer's own name)
        layers/dense/vars/0          kernel (in, out)
        layers/dense/vars/1          bias
        layers/dense_1/vars/...      the model's 2nd Dense
        layers/batch_normalization/vars/0..3   gamma, beta, moving_mean, moving_variance
        layers/conv2d/vars/0         kernel HWIO;  layers/conv2d_transpose/vars/0  (kh, kw, out, in)
        layers/leaky_re_lu/vars      (empty: every layer gets a group)
        vars                         attrs {"name": "sequential"}  (the model's own variables)
        optimizer/vars/...           (a compiled, trained model's optimiser: skipped)

    Groups are NOT named after the layers' names (``dense_12`` above is filed as ``dense``) but
    after their class, snake-cased, with a counter per class and per container that follows the
    model's layer order (``dense``, ``dense_1``, ..., ``dense_10``). HDF5 lists groups
    alphabetically (``dense_10`` before ``dense_2``), so the order is recovered per class from
    the counter, and numerically for ``vars/0``, ``vars/10``. How classes interleave
    (``conv2d_transpose`` then ``batch_normalization`` then ...) is in no name; it is recovered
    by matching the spec's layer sequence (each spec layer type takes the next layer of its
    class), and if more than one interleaving fits, the error says so. Sub-models are containers
    of their own: a ``keras.Model`` holding ``self.generator`` and ``self.discriminator`` is
    filed as ``generator/layers/...`` and ``discriminator/layers/...``, which names the network.
    Keras 2's ``.h5`` (root attribute ``layer_names``, per-layer ``weight_names``) is read too;
    its order is explicit. Written by building the Keras ``Sequential`` of the spec's layers
    (integer paddings as ``ZeroPadding2D``/``Cropping2D``), setting its weights and calling
    ``save_weights``; both networks as a ``keras.Model`` with ``generator`` and
    ``discriminator`` attributes.

``flax``
    ``flax.serialization.msgpack_serialize`` of ``{"params": ..., "batch_stats": ...}`` (or of a
    bare params tree). Flax sorts dict keys, so ``Dense_10`` comes before ``Dense_2`` and
    ``BatchNorm_0`` before ``ConvTranspose_0``; auto names ``Dense_k``, ``Conv_k``,
    ``ConvTranspose_k``, ``BatchNorm_k`` give the order per module type only, and the
    interleaving is recovered from the spec as for Keras. ``nn.Sequential``'s ``layers_i`` and
    this project's JAX backend's ``"i"`` carry the full order. Other names are ordered
    naturally (``fc2`` before ``fc10``): a guess, said in the notes. Layouts: Dense ``(in,
    out)``, Conv HWIO as canonical; ``nn.ConvTranspose`` (``transpose_kernel=False``, the
    default) stores ``(kh, kw, in, out)`` and runs a plain correlation over the stride-dilated
    input, without the spatial flip of the adjoint convolution: its kernel is the canonical one
    flipped in both spatial axes with the channel axes swapped,
    ``canonical[::-1, ::-1].transpose(0, 1, 3, 2)`` (an involution), and the spec's crops
    ``(before, after)`` are its explicit padding ``(k - 1 - before, k - 1 - after)``. BatchNorm
    ``scale``, ``bias`` and ``batch_stats`` ``mean``, ``var``. Written with
    ``Dense_0``-style names as ``flax.linen`` gives them inside one ``@nn.compact`` module; both
    networks under ``generator`` and ``discriminator``. Orbax checkpoint directories are read
    with ``orbax.checkpoint.StandardCheckpointer().restore``.

``safetensors``
    This project's own files (:func:`~gan_backends.params.save_params`, or a training
    checkpoint's ``params/`` and ``buffers/``): canonical names and layouts already.

:func:`to_canonical` matches the native tensors to the spec's parameters and buffers by order
and shape, converting layouts; :func:`write_native` writes any of the four; :func:`verify` runs
the networks in the source's framework and in the target's (built from the spec, the target
loaded from the written file) on the same inputs; :func:`port` does all three.
"""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes
from .params import ParamTree, buffer_shapes, check_tree, init_buffers, load_params, param_shapes, save_params
from .spec import (
    NETWORKS,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    Layer,
    LeakyReLU,
    ReLU,
    Reshape,
    Shape,
    Sigmoid,
    SpecError,
    Tanh,
)

#: Native forms, and the names the command accepts for them.
KINDS: tuple[str, ...] = ("torch", "keras", "flax", "safetensors")
KIND_ALIASES: dict[str, str] = {
    "pytorch": "torch",
    "tensorflow": "keras",
    "tf": "keras",
    "jax": "flax",
    "ours": "safetensors",
    "numpy": "safetensors",
    "gan-backends": "safetensors",
}
#: Roles of a native tensor; ``skip`` is read and ignored (``num_batches_tracked``).
ROLES: tuple[str, ...] = ("kernel", "bias", "scale", "running_mean", "running_var", "skip")
#: The order of a layer's tensors in every framework: weight (kernel or scale), bias, statistics.
_ROLE_ORDER = {role: i for i, role in enumerate(("kernel", "scale", "bias", "running_mean", "running_var", "skip"))}
#: The layout a source's arrays are in (per kind; Flax trees of this project's JAX backend are canonical).
LAYOUT_OF_KIND: dict[str, str] = {"torch": "torch", "keras": "canonical", "flax": "flax", "safetensors": "canonical"}

_G_ALIASES = {"generator", "gen", "g", "netg", "g_net", "gnet", "generator_model", "g_model"}
_D_ALIASES = {"discriminator", "disc", "d", "netd", "d_net", "dnet", "critic", "discriminator_model", "d_model"}
#: torch wrapper keys, in the order they are tried.
TORCH_WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net", "params")
TORCH_G_KEYS: tuple[str, ...] = ("generator", "netG", "G", "gen", "g", "generator_state_dict", "netG_state_dict")
TORCH_D_KEYS: tuple[str, ...] = ("discriminator", "netD", "D", "disc", "critic", "discriminator_state_dict")

_KERAS_TYPES = {
    "dense": "Dense",
    "conv2d": "Conv2D",
    "conv2d_transpose": "ConvTranspose2D",
    "batch_normalization": "BatchNorm",
}
_KERAS_ROLES = {
    "kernel": "kernel",
    "bias": "bias",
    "gamma": "scale",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
_FLAX_TYPES = {"Dense": "Dense", "Conv": "Conv2D", "ConvTranspose": "ConvTranspose2D", "BatchNorm": "BatchNorm"}
_FLAX_NAMES = {v: k for k, v in _FLAX_TYPES.items()}
_FLAX_ROLES = {"kernel": "kernel", "bias": "bias", "scale": "scale", "mean": "running_mean", "var": "running_var"}
_FLAX_STATS = {"running_mean": "mean", "running_var": "var"}
ORBAX_UNSUPPORTED = "orbax checkpoints: not supported yet; export with flax.serialization.to_bytes"


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
    to; ``layout`` is ``torch``, ``flax`` or ``canonical``.
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

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"NativeTensor {self.name!r}: role must be one of {ROLES}, got {self.role!r}")

    @property
    def shape(self) -> Shape:
        return tuple(self.array.shape)


@dataclass
class NativeCheckpoint:
    """What a reader found: the tensors in the file's layer order (as far as it is known), the
    form, the path and notes on how it was read (wrapper key used, how order was recovered)."""

    kind: str
    path: str
    tensors: list[NativeTensor]
    notes: list[str] = field(default_factory=list)

    @property
    def layout(self) -> str:
        return LAYOUT_OF_KIND[self.kind]

    def __iter__(self):
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)


# -- kinds -------------------------------------------------------------------------------------


def canonical_kind(kind: str) -> str:
    """``torch``, ``keras``, ``flax`` or ``safetensors`` from a kind or backend name."""
    key = KIND_ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if key not in KINDS:
        raise PortError(f"unknown checkpoint kind {kind!r}; known: {', '.join(KINDS)} (or {', '.join(KIND_ALIASES)})")
    return key


def detect_kind(path: str | Path) -> str:
    """The native form of ``path`` from its name (and, for a directory, its contents)."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return "flax"  # orbax
    if name.endswith((".pt", ".pth", ".bin", ".ckpt", ".tar")):
        return "torch"
    if name.endswith((".weights.h5", ".h5", ".hdf5")):
        return "keras"
    if name.endswith((".msgpack", ".flax")):
        return "flax"
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".keras"):
        raise PortError(f"{path}: a whole .keras archive; save the weights with model.save_weights('x.weights.h5')")
    raise PortError(
        f"{path}: cannot tell its form from the name; name it .pt/.pth/.bin (torch), .weights.h5 (keras), "
        ".msgpack (flax) or .safetensors, or give the kind"
    )


def read_native(path: str | Path, kind: str | None = None, **options: Any) -> NativeCheckpoint:
    """Read ``path`` with the reader of ``kind`` (detected from the name when ``None``)."""
    kind = detect_kind(path) if kind is None else canonical_kind(kind)
    if not Path(path).exists():
        raise PortError(f"{path} does not exist")
    reader = {"torch": read_torch, "keras": read_keras, "flax": read_flax, "safetensors": read_safetensors}[kind]
    return reader(path, **options)


def _network_hint(name: str) -> str | None:
    key = re.sub(r"_\d+$", "", name.strip().lower())
    if key in _G_ALIASES:
        return "generator"
    if key in _D_ALIASES:
        return "discriminator"
    return None


def _natural_key(text: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor; bfloat16 has no NumPy dtype
        import torch

        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


# -- torch -------------------------------------------------------------------------------------


def _is_state_dict(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(isinstance(k, str) and hasattr(v, "shape") and hasattr(v, "detach") for k, v in obj.items())


def _torch_role(key: str, value: np.ndarray) -> str:
    last = key.rsplit(".", 1)[-1]
    if last == "num_batches_tracked":
        return "skip"
    if last == "weight":
        return "scale" if value.ndim == 1 else "kernel"
    if last in ("bias", "running_mean", "running_var"):
        return last
    raise PortError(
        f"torch tensor {key!r} {tuple(value.shape)}: not a weight, bias or BatchNorm statistic (spectral norm or "
        "another parametrisation? remove it before saving, e.g. torch.nn.utils.remove_spectral_norm)"
    )


def _torch_tensors(state: Mapping[str, Any], network: str | None, prefix: str = "") -> list[NativeTensor]:
    tensors: list[NativeTensor] = []
    modules: dict[str, int] = {}
    for key, value in state.items():
        array = _to_numpy(value)
        module = key.rsplit(".", 1)[0] if "." in key else ""
        rank = modules.setdefault(module, len(modules))
        tensors.append(
            NativeTensor(
                name=f"{prefix}{key}",
                array=array,
                role=_torch_role(key, array),
                layer=f"{prefix}{module}",
                network=network,
                chain=network or "",
                rank=rank,
                layout="torch",
            )
        )
    return tensors


def read_torch(path: str | Path) -> NativeCheckpoint:
    """A torch ``state_dict`` file (or a dict wrapping state dicts under the usual keys)."""
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, a non-torch file
        raise PortError(f"{path}: torch.load(weights_only=True) failed: {exc}") from exc
    if hasattr(obj, "state_dict") and not isinstance(obj, Mapping):
        raise PortError(f"{path}: holds a whole module; save its state_dict() instead")
    notes: list[str] = []
    if _is_state_dict(obj):
        parts = {key.split(".", 1)[0] for key in obj}
        hints = {part: _network_hint(part) for part in parts}
        if all(hints.values()) and "." in next(iter(obj)):
            notes.append(f"networks told by key prefixes {sorted(parts)}")
            tensors = []
            order = list(dict.fromkeys(key.split(".", 1)[0] for key in obj))
            for part in order:
                sub = {k[len(part) + 1 :]: v for k, v in obj.items() if k.split(".", 1)[0] == part}
                tensors += _torch_tensors(sub, hints[part], prefix=f"{part}.")
            return NativeCheckpoint("torch", str(path), tensors, notes)
        return NativeCheckpoint("torch", str(path), _torch_tensors(obj, None), notes)
    if not isinstance(obj, Mapping):
        raise PortError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    found: dict[str, tuple[str, Mapping]] = {}
    for network, keys in (("generator", TORCH_G_KEYS), ("discriminator", TORCH_D_KEYS)):
        for key in keys:
            if _is_state_dict(obj.get(key)):
                found[network] = (key, obj[key])
                break
    if found:
        tensors = []
        for network, (key, state) in found.items():
            notes.append(f"{network} state_dict read from key {key!r}")
            tensors += _torch_tensors(state, network, prefix=f"{key}/" if len(found) > 1 else "")
        return NativeCheckpoint("torch", str(path), tensors, notes)
    for key in TORCH_WRAPPER_KEYS:
        if _is_state_dict(obj.get(key)):
            notes.append(f"state_dict read from key {key!r}")
            return NativeCheckpoint("torch", str(path), _torch_tensors(obj[key], None), notes)
    raise PortError(
        f"{path}: a dict with keys {list(obj)[:12]}, and none of them holds a state_dict; tried "
        f"{', '.join(TORCH_WRAPPER_KEYS + TORCH_G_KEYS + TORCH_D_KEYS)}"
    )


# -- keras -------------------------------------------------------------------------------------

_KERAS_SKIP_TOP = {"optimizer", "metrics", "compile_metrics", "loss", "loss_tracker"}


def _keras_roles(layer_type: str | None, path: str, shapes: list[Shape]) -> list[str]:
    n = len(shapes)
    if layer_type in ("Dense", "Conv2D", "ConvTranspose2D") and n in (1, 2):
        return ["kernel", "bias"][:n]
    if layer_type == "BatchNorm" and n == 4:
        return ["scale", "bias", "running_mean", "running_var"]
    if layer_type == "BatchNorm" and n == 3:  # center=False or scale=False: cannot fit a spec BatchNorm
        return ["scale", "running_mean", "running_var"]
    if layer_type is None and n in (1, 2) and len(shapes[0]) >= 2 and all(len(s) == 1 for s in shapes[1:]):
        return ["kernel", "bias"][:n]
    raise PortError(f"keras layer {path}: {n} variables {shapes} are not a kernel/bias or a BatchNorm's four")


def read_keras(path: str | Path) -> NativeCheckpoint:
    """Keras 3 ``.weights.h5`` (or a Keras 2 ``.h5`` with ``layer_names``), read with h5py."""
    import h5py

    try:
        f = h5py.File(str(path), "r")
    except OSError as exc:
        raise PortError(f"{path}: not an HDF5 file: {exc}") from exc
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs:
            return _read_keras2(root, str(path))
        return _read_keras3(f, str(path))


def _read_keras2(root: Any, path: str) -> NativeCheckpoint:
    tensors: list[NativeTensor] = []
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs["layer_names"]]
    for rank, lname in enumerate(names):
        group = root[lname]
        wnames = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get("weight_names", [])]
        if not wnames:
            continue
        base = re.sub(r"_\d+$", "", lname)
        ltype = _KERAS_TYPES.get(base)
        for wname in wnames:
            short = wname.rsplit("/", 1)[-1].split(":")[0]
            role = _KERAS_ROLES.get(short)
            if role is None:
                raise PortError(f"keras layer {lname}: weight {wname!r} is not a kernel, bias or BatchNorm variable")
            array = np.asarray(group[wname])
            tensors.append(NativeTensor(f"{lname}/{wname}", array, role, lname, ltype, None, "", rank, "canonical"))
    notes = ["Keras 2 .h5: layer order from its layer_names attribute"]
    return NativeCheckpoint("keras", path, tensors, notes)


def _read_keras3(f: Any, path: str) -> NativeCheckpoint:
    import h5py

    groups: list[tuple[str, Any]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and name.rsplit("/", 1)[-1] == "vars" and len(obj):
            groups.append((name[: -len("/vars")] if name != "vars" else "", obj))

    f.visititems(visit)
    tensors: list[NativeTensor] = []
    notes: list[str] = []
    skipped = sorted({p.split("/", 1)[0] for p, _ in groups if p.split("/", 1)[0] in _KERAS_SKIP_TOP})
    if skipped:
        notes.append(f"skipped {', '.join(skipped)} (not layers)")
    renamed = ""
    for lpath, vars_group in groups:
        parts = lpath.split("/") if lpath else []
        if not parts or parts[0] in _KERAS_SKIP_TOP or "seed_generator" in parts:
            continue
        container, last = "/".join(parts[:-1]), parts[-1]
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", last)
        base, counter = match.group(1), int(match.group(2) or 0)
        ltype = _KERAS_TYPES.get(base)
        network = next((h for h in map(_network_hint, parts[:-1]) if h), None)
        keys = sorted(vars_group, key=int)
        arrays = [np.asarray(vars_group[k]) for k in keys]
        roles = _keras_roles(ltype, lpath, [a.shape for a in arrays])
        chain = f"{container}:{base}"
        display = vars_group.attrs.get("name", last)
        display = display.decode() if isinstance(display, bytes) else str(display)
        for key, array, role in zip(keys, arrays, roles):
            tensors.append(
                NativeTensor(f"{lpath}/vars/{key}", array, role, lpath, ltype, network, chain, counter, "canonical")
            )
        if display != last and not renamed:
            renamed = f"h5 groups are named by class and position, not by layer name ({lpath} holds {display!r})"
            notes.append(renamed)
    if len({t.chain for t in tensors}) > 1:
        notes.append(
            "Keras files group layers by class (dense, dense_1, ...; conv2d, ...): the order within a class is the "
            "counter's, the interleaving of classes is recovered by matching the spec's layer types"
        )
    tensors.sort(key=lambda t: (t.chain, t.rank, _ROLE_ORDER[t.role]))
    return NativeCheckpoint("keras", path, tensors, notes)


# -- flax --------------------------------------------------------------------------------------


def read_flax(path: str | Path, *, transpose_kernel: bool = False) -> NativeCheckpoint:
    """Flax variables serialised with msgpack (or an orbax directory).

    ``transpose_kernel``: the file's ``ConvTranspose`` modules were built with
    ``transpose_kernel=True`` (kernel ``(kh, kw, out, in)``, canonical as it is).
    """
    from flax import serialization

    path = Path(path)
    notes: list[str] = []
    if path.is_dir():
        tree = _read_orbax(path)
        notes.append("orbax checkpoint restored with StandardCheckpointer")
    else:
        try:
            tree = serialization.msgpack_restore(path.read_bytes())
        except Exception as exc:
            raise PortError(f"{path}: not a flax msgpack file: {exc}") from exc
    if not isinstance(tree, Mapping):
        raise PortError(f"{path}: holds a {type(tree).__name__}, not a dict of variables")
    if "params" in tree and isinstance(tree["params"], Mapping):
        collections = {"params": tree["params"], "batch_stats": tree.get("batch_stats", {})}
        ignored = sorted(set(tree) - {"params", "batch_stats"})
        if ignored:
            notes.append(f"ignored top-level entries {ignored}")
    else:
        collections = {"params": tree, "batch_stats": {}}
    layers: dict[tuple[str, ...], dict[str, tuple[str, np.ndarray]]] = {}
    for collection, sub in collections.items():
        for keys, value in _flatten(sub):
            module, leaf = keys[:-1], keys[-1]
            role = _FLAX_ROLES.get(leaf) if collection == "params" or leaf in ("mean", "var") else None
            if role is None or (collection == "params") != (role in ("kernel", "bias", "scale")):
                raise PortError(f"flax variable {collection}/{'/'.join(keys)} {np.shape(value)}: not understood")
            layers.setdefault(module, {})[role] = ("/".join((collection, *keys)), np.asarray(value))
    tensors: list[NativeTensor] = []
    guessed = False
    for module, entries in layers.items():
        container, last = "/".join(module[:-1]), module[-1] if module else ""
        network = next((h for h in map(_network_hint, module[:-1]) if h), None)
        auto = re.fullmatch(r"(Dense|Conv|ConvTranspose|BatchNorm)_(\d+)", last)
        layout = "flax"
        if auto:
            ltype, chain, rank = _FLAX_TYPES[auto.group(1)], f"{container}:{auto.group(1)}", int(auto.group(2))
            if ltype == "ConvTranspose2D" and transpose_kernel:
                layout = "canonical"
        elif re.fullmatch(r"(layers_)?\d+", last):
            ltype, chain, rank = None, f"{container}:seq", int(re.sub(r"\D", "", last))
            if last.isdigit():
                layout = "canonical"  # this project's JAX backend names its modules "0", "1", ...
        else:
            ltype, chain, rank, guessed = None, f"{container}:*", 0, True
        if ltype is None and "scale" in entries:
            ltype = "BatchNorm"
        elif ltype is None and entries.get("kernel", ("", np.zeros(0)))[1].ndim == 2:
            ltype = "Dense"
        for role in sorted(entries, key=_ROLE_ORDER.__getitem__):
            name, array = entries[role]
            tensors.append(NativeTensor(name, array, role, "/".join(module), ltype, network, chain, rank, layout))
    if guessed:
        custom = sorted({t.layer for t in tensors if t.chain.endswith(":*")}, key=_natural_key)
        order = {name: i for i, name in enumerate(custom)}
        tensors = [t if not t.chain.endswith(":*") else _with_rank(t, order[t.layer]) for t in tensors]
        notes.append(f"modules {custom} are not auto-named: their order is guessed from their names")
    if len({t.chain for t in tensors}) > 1:
        notes.append(
            "flax sorts module names and numbers each module type on its own (Dense_0, Conv_0, BatchNorm_0): the "
            "order within a type is the number's, the interleaving of types is recovered from the spec's layer types"
        )
    tensors.sort(key=lambda t: (t.chain, t.rank, _ROLE_ORDER[t.role]))
    return NativeCheckpoint("flax", str(path), tensors, notes)


def _with_rank(t: NativeTensor, rank: int) -> NativeTensor:
    return NativeTensor(t.name, t.array, t.role, t.layer, t.layer_type, t.network, t.chain, rank, t.layout)


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key)), value


def _read_orbax(path: Path) -> Any:
    markers = {"_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt", "checkpoint"}
    if not markers & {p.name for p in path.iterdir()}:
        steps = sorted((p.name for p in path.iterdir() if p.is_dir() and p.name.isdigit()), key=int)
        hint = f"; it holds steps {steps}: pass one of them" if steps else ""
        raise PortError(f"{path}: a directory but not an orbax checkpoint{hint}")
    try:
        import orbax.checkpoint as ocp

        return ocp.StandardCheckpointer().restore(str(path.resolve()))
    except Exception as exc:
        raise PortError(f"{path}: {ORBAX_UNSUPPORTED} ({type(exc).__name__}: {exc})") from exc


# -- safetensors -------------------------------------------------------------------------------


def read_safetensors(path: str | Path) -> NativeCheckpoint:
    """This project's parameter file (or a training checkpoint's ``params/`` and ``buffers/``)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata() or {}
        keys = list(f.keys())
        prefixed = all(k.split("/", 1)[0] in ("params", "buffers", "optimizer") for k in keys)
        tree = {k: f.get_tensor(k) for k in keys} if prefixed else None
    notes = []
    if prefixed:
        notes.append(f"training checkpoint ({metadata.get('format')}): params/ and buffers/ read, optimizer/ skipped")
        tree = {k.split("/", 1)[1]: v for k, v in tree.items() if not k.startswith("optimizer/")}
    else:
        try:
            tree, _ = load_params(path)
        except SpecError as exc:  # a partial tree or buffers beside a spec: take the file as it is
            notes.append(f"read without its spec check ({exc})")
            with safe_open(str(path), framework="numpy") as f:
                tree = {k: f.get_tensor(k) for k in f.keys()}
    tensors = []
    for name, array in tree.items():
        role = name.rsplit(".", 1)[-1]
        if role not in ROLES or role == "skip":
            raise PortError(f"{path}: tensor {name!r} is not a canonical parameter or buffer name")
        tensors.append(NativeTensor(name, array, role, name.rsplit(".", 1)[0], None, _network_hint(name.split(".")[0])))
    return NativeCheckpoint("safetensors", str(path), tensors, notes)


# -- layouts -----------------------------------------------------------------------------------


def from_native_layout(layout: str, layer: Layer, role: str, array: np.ndarray) -> np.ndarray:
    """A native array in canonical layout, for spec ``layer`` (see the module docstring)."""
    if role != "kernel":
        return array
    if layout == "torch":
        if array.ndim == 2:
            return array.T
        if array.ndim == 4:
            return array.transpose(2, 3, 1, 0)
    if layout == "flax" and isinstance(layer, ConvTranspose2D) and array.ndim == 4:
        return array[::-1, ::-1].transpose(0, 1, 3, 2)
    return array


def to_native_layout(layout: str, layer: Layer, role: str, array: np.ndarray) -> np.ndarray:
    """The inverse of :func:`from_native_layout`: a canonical array in ``layout``."""
    if role != "kernel":
        return array
    if layout == "torch":
        if array.ndim == 2:
            return array.T
        if array.ndim == 4:
            return array.transpose(3, 2, 0, 1)
    if layout == "flax" and isinstance(layer, ConvTranspose2D) and array.ndim == 4:
        return array[::-1, ::-1].transpose(0, 1, 3, 2)
    return array


# -- matching ----------------------------------------------------------------------------------


@dataclass
class _Target:
    """One spec layer with parameters or buffers: its canonical slots ``(name, role, shape)``."""

    net: str
    index: int
    layer: Layer
    slots: list[tuple[str, str, Shape]]

    @property
    def label(self) -> str:
        return f"{self.net} layer {self.index} {self.layer.describe()}"


@dataclass
class _NativeLayer:
    key: str
    chain: str
    rank: float
    layer_type: str | None
    network: str | None
    tensors: list[NativeTensor]

    @property
    def label(self) -> str:
        return f"native layer {self.key!r} [" + ", ".join(f"{t.name} {t.shape}" for t in self.tensors) + "]"


def _targets(spec: GANSpec, networks: Sequence[str]) -> list[_Target]:
    out = []
    for net in networks:
        for i, (layer, (in_shape, _)) in enumerate(zip(spec.layers(net), spec.layer_shapes(net))):
            shapes = {**layer.param_shapes(in_shape), **layer.buffer_shapes(in_shape)}
            if shapes:
                out.append(_Target(net, i, layer, [(f"{net}.{i}.{r}", r, s) for r, s in shapes.items()]))
    return out


def _tensor_problem(t: NativeTensor, target: _Target, slot: tuple[str, str, Shape]) -> str | None:
    name, _, shape = slot
    converted = from_native_layout(t.layout, target.layer, slot[1], t.array)
    if tuple(converted.shape) == tuple(shape):
        return None
    as_canonical = "" if converted.shape == t.array.shape else f" (canonical {tuple(converted.shape)})"
    return f"{t.name} {t.shape}{as_canonical} vs {name} expected {tuple(shape)} [{target.label}]"


def _problems(nl: _NativeLayer, target: _Target) -> list[str]:
    """Why native layer ``nl`` cannot be spec layer ``target`` (empty: it can)."""
    if nl.network is not None and nl.network != target.net:
        return [f"{nl.label} belongs to the {nl.network}, not to {target.label}"]
    if nl.layer_type is not None and nl.layer_type != target.layer.type_name:
        return [f"{nl.label} is a {nl.layer_type}, not {target.label}"]
    by_role = {t.role: t for t in nl.tensors}
    wanted = [slot[1] for slot in target.slots]
    if len(by_role) != len(nl.tensors) or sorted(by_role, key=_ROLE_ORDER.get) != sorted(wanted, key=_ROLE_ORDER.get):
        expected = ", ".join(f"{n} {s}" for n, _, s in target.slots)
        return [f"{nl.label} has roles {[t.role for t in nl.tensors]}; {target.label} needs {wanted}: {expected}"]
    return [p for slot in target.slots if (p := _tensor_problem(by_role[slot[1]], target, slot))]


def _native_layers(tensors: Sequence[NativeTensor]) -> list[list[_NativeLayer]]:
    """Native tensors grouped into layers, and the layers into chains ordered by rank."""
    layers: dict[tuple[str, str], _NativeLayer] = {}
    for t in tensors:
        key = (t.chain, t.layer)
        if key not in layers:
            layers[key] = _NativeLayer(t.layer, t.chain, t.rank, t.layer_type, t.network, [])
        layers[key].tensors.append(t)
    chains: dict[str, list[_NativeLayer]] = {}
    for nl in layers.values():
        chains.setdefault(nl.chain, []).append(nl)
    return [sorted(chain, key=lambda nl: nl.rank) for chain in chains.values()]


def _assign(
    chains: list[list[_NativeLayer]], targets: list[_Target], header: str
) -> list[tuple[_NativeLayer, _Target]]:
    """The one interleaving of the chains that fits the targets in order; PortError if none or several."""
    n_native = sum(len(c) for c in chains)
    fits: dict[tuple[int, int], bool] = {}

    def fit(c: int, p: int, j: int) -> bool:
        key = (id(chains[c][p]), j)
        if key not in fits:
            fits[key] = not _problems(chains[c][p], targets[j])
        return fits[key]

    @functools.cache
    def count(ptrs: tuple[int, ...]) -> int:
        j = sum(ptrs)
        if j == len(targets):
            return 1
        total = 0
        for c, p in enumerate(ptrs):
            if p < len(chains[c]) and fit(c, p, j):
                total += count(ptrs[:c] + (p + 1,) + ptrs[c + 1 :])
                if total >= 2:
                    return 2
        return total

    start = tuple(0 for _ in chains)
    solutions = count(start) if n_native == len(targets) else 0
    if solutions == 0:
        raise PortError(header + _diagnose(chains, targets))
    pairs: list[tuple[_NativeLayer, _Target]] = []
    ptrs = start
    for j, target in enumerate(targets):
        options = [
            c
            for c, p in enumerate(ptrs)
            if p < len(chains[c]) and fit(c, p, j) and count(ptrs[:c] + (p + 1,) + ptrs[c + 1 :])
        ]
        if solutions > 1 and len(options) > 1:
            alternatives = "; ".join(chains[c][ptrs[c]].label for c in options)
            raise PortError(
                f"{header}: the order is ambiguous: {target.label} could be any of: {alternatives}. "
                "Pass a mapping {native_name: canonical_name} for these tensors"
            )
        c = options[0]
        pairs.append((chains[c][ptrs[c]], target))
        ptrs = ptrs[:c] + (ptrs[c] + 1,) + ptrs[c + 1 :]
    return pairs


def _diagnose(chains: list[list[_NativeLayer]], targets: list[_Target]) -> str:
    """Every mismatch of the nearest alignment: native layers taken in order, a spec layer taking
    the next layer of its type where the file names types."""
    ptrs = [0] * len(chains)
    lines: list[str] = []
    for target in targets:
        heads = [c for c in range(len(chains)) if ptrs[c] < len(chains[c])]
        if not heads:
            names = ", ".join(f"{n} {s}" for n, _, s in target.slots)
            lines.append(f"nothing in the file for {target.label}: {names}")
            continue
        ranked = sorted(
            heads,
            key=lambda c: (
                bool(_problems(chains[c][ptrs[c]], target)),
                chains[c][ptrs[c]].layer_type not in (None, target.layer.type_name),
            ),
        )
        c = ranked[0]
        lines += _problems(chains[c][ptrs[c]], target)
        ptrs[c] += 1
    for c, chain in enumerate(chains):
        lines += [f"{nl.label}: no spec layer left for it" for nl in chain[ptrs[c] :]]
    n_native = sum(len(c) for c in chains)
    head = f": {n_native} native layers with tensors, {len(targets)} spec layers with parameters"
    if not lines:
        lines.append("no order of the native layers fits the spec's layer sequence")
    shown = lines[:40] + ([f"... and {len(lines) - 40} more"] if len(lines) > 40 else [])
    return head + "\n  - " + "\n  - ".join(shown)


def _normalise_networks(networks: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if networks is None:
        return None
    items = [networks] if isinstance(networks, str) else list(networks)
    out = []
    for item in items:
        net = _network_hint(item) if item not in NETWORKS else item
        if net is None:
            raise PortError(f"unknown network {item!r}; known: {', '.join(NETWORKS)}")
        out.append(net)
    return tuple(n for n in NETWORKS if n in out)


def _match(
    tensors: list[NativeTensor], spec: GANSpec, networks: tuple[str, ...], mapping: Mapping[str, str], source: str
) -> dict[str, np.ndarray]:
    targets = _targets(spec, networks)
    slots = {slot[0]: (target, slot) for target in targets for slot in target.slots}
    by_name = {t.name: t for t in tensors}
    header = f"{source} does not fit spec {spec.name!r} ({' + '.join(networks)})"
    out: dict[str, np.ndarray] = {}
    problems = []
    for native, canonical in mapping.items():
        if native not in by_name:
            raise PortError(f"mapping names {native!r}, which is not in {source}; its tensors: {list(by_name)[:20]}")
        if canonical not in slots:
            raise PortError(
                f"mapping sends {native!r} to {canonical!r}, which is not a parameter or buffer of spec "
                f"{spec.name!r} ({' + '.join(networks)}); expected names like {list(slots)[:6]}"
            )
        if canonical in out:
            raise PortError(f"mapping sends two native tensors to {canonical!r}")
        target, slot = slots[canonical]
        problem = _tensor_problem(by_name[native], target, slot)
        if problem:
            problems.append(f"mapped {problem}")
        out[canonical] = from_native_layout(by_name[native].layout, target.layer, slot[1], by_name[native].array)
    if problems:
        raise PortError(header + ":\n  - " + "\n  - ".join(problems))
    rest = [t for t in tensors if t.name not in mapping]
    remaining = []
    for target in targets:
        left = [slot for slot in target.slots if slot[0] not in out]
        if left:
            remaining.append(_Target(target.net, target.index, target.layer, left))
    for nl, target in _assign(_native_layers(rest), remaining, header):
        by_role = {t.role: t for t in nl.tensors}
        for name, role, _ in target.slots:
            out[name] = from_native_layout(by_role[role].layout, target.layer, role, by_role[role].array)
    return out


def to_canonical(
    tensors: NativeCheckpoint | Sequence[NativeTensor],
    spec: GANSpec,
    *,
    networks: str | Sequence[str] | None = None,
    mapping: Mapping[str, str] | None = None,
) -> tuple[ParamTree, ParamTree]:
    """``(params, buffers)``: canonical trees from native tensors, matched to the spec's layers.

    Native layers (tensors sharing a module) are matched in order to the spec's layers that have
    parameters or buffers, each by its roles and shapes after the layout conversion of its
    source; where a file knows order only per layer type (Keras, Flax), the interleaving that
    fits the spec is used, and an error says when more than one fits. Names that are canonical
    already (this project's files) are taken by name. ``networks``: ``None`` detects what the
    file holds (both, the generator only, the discriminator only; only those entries are
    returned), or ``"generator"``, ``("generator", "discriminator")``. ``mapping``:
    ``{native_name: canonical_name}`` for tensors whose order does not match; the rest are
    matched in order. Raises :class:`PortError` naming every mismatch.
    """
    source = tensors.path if isinstance(tensors, NativeCheckpoint) else "the native tensors"
    active = [t for t in tensors if t.role != "skip"]
    if not active:
        raise PortError(f"{source} holds no parameters")
    names = {t.name for t in active}
    if len(names) != len(active):
        raise PortError(f"{source}: native tensor names repeat")
    all_slots = {name for target in _targets(spec, NETWORKS) for name, _, _ in target.slots}
    full_mapping = {t.name: t.name for t in active if t.layout == "canonical" and t.name in all_slots}
    for native, canonical in (mapping or {}).items():
        if canonical not in all_slots:
            raise PortError(
                f"mapping sends {native!r} to {canonical!r}, which is not a parameter or buffer of spec "
                f"{spec.name!r}; names look like {sorted(all_slots)[:4]}"
            )
        full_mapping[native] = canonical
    chosen = _normalise_networks(networks)
    if chosen is not None:
        candidates = [chosen]
        active = [t for t in active if t.network is None or t.network in chosen]  # e.g. G out of a G+D file
        kept = {t.name for t in active} | set(mapping or {})
        full_mapping = {k: v for k, v in full_mapping.items() if k in kept}
    else:
        hinted = {t.network for t in active if t.network} | {c.split(".", 1)[0] for c in full_mapping.values()}
        if hinted and all(t.network or t.name in full_mapping for t in active):
            candidates = [tuple(n for n in NETWORKS if n in hinted)]
        else:
            candidates = [NETWORKS, ("generator",), ("discriminator",)]
            candidates = [c for c in candidates if hinted <= set(c)]
    fitted: list[tuple[tuple[str, ...], dict[str, np.ndarray]]] = []
    errors: list[tuple[tuple[str, ...], PortError]] = []
    for candidate in candidates:
        try:
            fitted.append((candidate, _match(active, spec, candidate, full_mapping, source)))
        except PortError as exc:
            errors.append((candidate, exc))
    if len(fitted) > 1:
        raise PortError(
            f"{source} fits spec {spec.name!r} as "
            + " and as ".join("+".join(c) for c, _ in fitted)
            + ": pass networks= to say which"
        )
    if not fitted:
        if len(errors) == 1:
            raise errors[0][1]
        n_layers = sum(len(c) for c in _native_layers(active))
        counts = {c: len(_targets(spec, c)) for c, _ in errors}
        best = min(errors, key=lambda e: (abs(counts[e[0]] - n_layers), len(e[0]) == 1 and e[0][0] != "generator"))
        sizes = ", ".join(f"{'+'.join(c)}: {n}" for c, n in counts.items())
        raise PortError(
            f"{source} ({n_layers} native layers) fits none of the spec's networks (layers with parameters: {sizes}); "
            f"nearest, {'+'.join(best[0])}: {best[1]}"
        )
    nets, tree = fitted[0]
    dtype = np.dtype(spec.numerics.dtype)
    params = {n: np.array(tree[n], dtype=dtype) for n in param_shapes(spec, nets)}
    buffers = {n: np.array(tree[n], dtype=dtype) for n in buffer_shapes(spec, nets)}
    return params, buffers


def networks_of(tree: Mapping[str, Any]) -> tuple[str, ...]:
    """The networks a canonical tree has entries for, in spec order."""
    present = {name.split(".", 1)[0] for name in tree}
    return tuple(n for n in NETWORKS if n in present)


# -- writers -----------------------------------------------------------------------------------


def _checked(
    params: ParamTree, buffers: ParamTree | None, spec: GANSpec
) -> tuple[tuple[str, ...], ParamTree, ParamTree]:
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


def _layers_with_state(spec: GANSpec, net: str) -> Iterable[tuple[int, Layer, list[tuple[str, str]]]]:
    """``(index, layer, [(canonical name, role)])`` of every layer with parameters or buffers."""
    for target in _targets(spec, (net,)):
        yield target.index, target.layer, [(name, role) for name, role, _ in target.slots]


def torch_state_dicts(params: ParamTree, buffers: ParamTree, spec: GANSpec) -> dict[str, dict[str, Any]]:
    """Per network, the ``state_dict`` of the ``nn.Sequential`` of the spec's layers."""
    import torch

    tree = {**params, **buffers}
    out: dict[str, dict[str, Any]] = {}
    for net in networks_of(params):
        state: dict[str, Any] = {}
        for i, layer, slots in _layers_with_state(spec, net):
            for name, role in slots:
                key = {"kernel": "weight", "scale": "weight"}.get(role, role)
                array = np.ascontiguousarray(to_native_layout("torch", layer, role, tree[name]))
                state[f"{i}.{key}"] = torch.from_numpy(array.copy())
            if isinstance(layer, BatchNorm):
                state[f"{i}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        out[net] = state
    return out


def flax_variables(params: ParamTree, buffers: ParamTree, spec: GANSpec) -> dict[str, dict[str, Any]]:
    """Per network, ``{"params": ..., "batch_stats": ...}`` with ``flax.linen`` auto names."""
    tree = {**params, **buffers}
    out: dict[str, dict[str, Any]] = {}
    for net in networks_of(params):
        variables: dict[str, dict[str, Any]] = {"params": {}, "batch_stats": {}}
        counters: dict[str, int] = {}
        for _, layer, slots in _layers_with_state(spec, net):
            kind = _FLAX_NAMES[layer.type_name]
            module = f"{kind}_{counters.get(kind, 0)}"
            counters[kind] = counters.get(kind, 0) + 1
            for name, role in slots:
                array = np.ascontiguousarray(to_native_layout("flax", layer, role, tree[name]))
                if role in _FLAX_STATS:
                    variables["batch_stats"].setdefault(module, {})[_FLAX_STATS[role]] = array
                else:
                    variables["params"].setdefault(module, {})[role] = array
        if not variables["batch_stats"]:
            del variables["batch_stats"]
        out[net] = variables
    return out


def write_native(params: ParamTree, buffers: ParamTree | None, spec: GANSpec, kind: str, path: str | Path) -> list[str]:
    """Write the canonical ``params`` (and BatchNorm ``buffers``; ``None``: fresh statistics) of
    the networks they cover as a native file of ``kind``; returns notes on what was written."""
    kind = canonical_kind(kind)
    nets, params, buffers = _checked(params, buffers, spec)
    path = Path(path)
    if kind == "torch":
        import torch

        states = torch_state_dicts(params, buffers, spec)
        obj = states[nets[0]] if len(nets) == 1 else states
        buf = io.BytesIO()
        torch.save(obj, buf)
        atomic_write_bytes(path, buf.getvalue())
        layout = "a state_dict" if len(nets) == 1 else "{'generator': state_dict, 'discriminator': state_dict}"
        return [f"torch: {layout} of nn.Sequential (keys like {next(iter(states[nets[0]]))})"]
    if kind == "flax":
        from flax import serialization

        per_net = flax_variables(params, buffers, spec)
        if len(nets) == 1:
            variables = per_net[nets[0]]
        else:
            variables = {"params": {net: v["params"] for net, v in per_net.items()}}
            stats = {net: v["batch_stats"] for net, v in per_net.items() if "batch_stats" in v}
            if stats:
                variables["batch_stats"] = stats
        atomic_write_bytes(path, serialization.msgpack_serialize(variables))
        return ["flax: msgpack of {'params', 'batch_stats'} with flax.linen auto names (Dense_0, ...)"]
    if kind == "keras":
        if not path.name.endswith(".weights.h5"):
            raise PortError(f"{path}: Keras 3 weight files must end in .weights.h5")
        model, _ = keras_model(spec, nets, params, buffers)
        tmp = path.with_name(f".{path.name[: -len('.weights.h5')]}.tmp.weights.h5")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            model.save_weights(str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return ["keras: save_weights of the Keras Sequential of the spec's layers"]
    tree = {**params, **buffers}
    full = set(params) == set(param_shapes(spec)) and not buffers
    save_params(path, tree, spec if full else None)
    note = "safetensors: canonical names" + ("" if full else " (no spec in the metadata: a partial tree or buffers)")
    return [note]


# -- native networks (verification) ------------------------------------------------------------


def _import_keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def _keras_layers(keras: Any, spec: GANSpec, net: str) -> list[tuple[int | None, Any]]:
    """``(spec layer index or None, keras layer)``: the spec's layers in Keras, with the padding
    and cropping layers that torch-style integer paddings need (those carry no weights)."""
    dtype = spec.numerics.dtype
    L = keras.layers
    out: list[tuple[int | None, Any]] = []
    for i, (layer, (in_shape, _)) in enumerate(zip(spec.layers(net), spec.layer_shapes(net))):
        if isinstance(layer, Dense):
            out.append((i, L.Dense(layer.units, use_bias=layer.use_bias, dtype=dtype)))
        elif isinstance(layer, Conv2D):
            padding = layer.padding if isinstance(layer.padding, str) else "valid"
            if not isinstance(layer.padding, str) and layer.padding:
                out.append((None, L.ZeroPadding2D(layer.pads(in_shape), dtype=dtype)))
            conv = L.Conv2D(layer.filters, layer.kernel, layer.stride, padding, use_bias=layer.use_bias, dtype=dtype)
            out.append((i, conv))
        elif isinstance(layer, ConvTranspose2D):
            if isinstance(layer.padding, str):
                args: dict[str, Any] = {"padding": layer.padding}
            else:
                args = {"padding": "valid", "output_padding": layer.output_padding}
            conv = L.Conv2DTranspose(
                layer.filters, layer.kernel, layer.stride, use_bias=layer.use_bias, dtype=dtype, **args
            )
            out.append((i, conv))
            if not isinstance(layer.padding, str) and layer.padding:
                p = layer.padding
                out.append((None, L.Cropping2D(((p, p), (p, p)), dtype=dtype)))
        elif isinstance(layer, BatchNorm):
            out.append((i, L.BatchNormalization(momentum=1.0 - layer.momentum, epsilon=layer.eps, dtype=dtype)))
        elif isinstance(layer, LeakyReLU):
            out.append((i, L.LeakyReLU(negative_slope=layer.slope, dtype=dtype)))
        elif isinstance(layer, ReLU):
            out.append((i, L.ReLU(dtype=dtype)))
        elif isinstance(layer, Tanh):
            out.append((i, L.Activation("tanh", dtype=dtype)))
        elif isinstance(layer, Sigmoid):
            out.append((i, L.Activation("sigmoid", dtype=dtype)))
        elif isinstance(layer, Reshape):
            out.append((i, L.Reshape(layer.shape, dtype=dtype)))
        elif isinstance(layer, Flatten):
            out.append((i, L.Flatten(dtype=dtype)))
        else:
            raise PortError(f"no Keras layer for {layer.describe()}")
    return out


def keras_model(
    spec: GANSpec, networks: Sequence[str], params: ParamTree | None = None, buffers: ParamTree | None = None
) -> tuple[Any, dict[str, Any]]:
    """``(model to save/load, {network: Sequential})``: one network's ``keras.Sequential``, or a
    ``keras.Model`` holding ``generator`` and ``discriminator``; weights set from the canonical
    trees when given."""
    keras = _import_keras()
    tree = {**(params or {}), **(buffers or {})}
    nets: dict[str, Any] = {}
    for net in networks:
        pairs = _keras_layers(keras, spec, net)
        model = keras.Sequential(
            [keras.Input(spec.input_shape(net), dtype=spec.numerics.dtype)] + [k for _, k in pairs], name=net
        )
        if tree:
            for i, layer in enumerate(spec.layers(net)):
                klayer = next(k for j, k in pairs if j == i)
                if klayer.weights:
                    in_shape = spec.layer_shapes(net)[i][0]
                    names = [*layer.param_shapes(in_shape), *layer.buffer_shapes(in_shape)]
                    klayer.set_weights([tree[f"{net}.{i}.{n}"] for n in names])
        nets[net] = model
    if len(networks) == 1:
        return nets[networks[0]], nets

    class KerasGAN(keras.Model):
        def __init__(self, generator: Any, discriminator: Any):
            super().__init__(name="gan")
            self.generator = generator
            self.discriminator = discriminator

    gan = KerasGAN(nets["generator"], nets["discriminator"])
    gan.built = True
    return gan, nets


def flax_module(spec: GANSpec, net: str) -> Any:
    """The spec's network as a ``flax.linen`` module with auto-named ``nn.Dense``, ``nn.Conv``,
    ``nn.ConvTranspose`` (``transpose_kernel=False``) and ``nn.BatchNorm`` (running averages)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    layers = tuple(spec.layers(net))
    shapes = spec.layer_shapes(net)
    dtype = jnp.dtype(spec.numerics.dtype)
    hi = jax.lax.Precision.HIGHEST

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            for layer, (in_shape, _) in zip(layers, shapes):
                if isinstance(layer, Dense):
                    x = nn.Dense(layer.units, use_bias=layer.use_bias, precision=hi, dtype=dtype, param_dtype=dtype)(x)
                elif isinstance(layer, Conv2D):
                    x = nn.Conv(
                        layer.filters,
                        (layer.kernel, layer.kernel),
                        (layer.stride, layer.stride),
                        padding=layer.pads(in_shape),
                        use_bias=layer.use_bias,
                        precision=hi,
                        dtype=dtype,
                        param_dtype=dtype,
                    )(x)
                elif isinstance(layer, ConvTranspose2D):
                    k = layer.kernel
                    x = nn.ConvTranspose(
                        layer.filters,
                        (k, k),
                        (layer.stride, layer.stride),
                        padding=tuple((k - 1 - lo, k - 1 - hi_) for lo, hi_ in layer.crops(in_shape)),
                        use_bias=layer.use_bias,
                        precision=hi,
                        dtype=dtype,
                        param_dtype=dtype,
                    )(x)
                elif isinstance(layer, BatchNorm):
                    x = nn.BatchNorm(
                        use_running_average=True, momentum=1.0 - layer.momentum, epsilon=layer.eps, dtype=dtype
                    )(x)
                elif isinstance(layer, LeakyReLU):
                    x = nn.leaky_relu(x, layer.slope)
                elif isinstance(layer, ReLU):
                    x = nn.relu(x)
                elif isinstance(layer, Tanh):
                    x = jnp.tanh(x)
                elif isinstance(layer, Sigmoid):
                    x = nn.sigmoid(x)
                elif isinstance(layer, (Reshape, Flatten)):
                    x = x.reshape(x.shape[0], *(layer.shape if isinstance(layer, Reshape) else (-1,)))
                else:
                    raise PortError(f"no flax module for {layer.describe()}")
            return x

    return Net()


def native_outputs(
    kind: str,
    spec: GANSpec,
    inputs: Mapping[str, np.ndarray],
    *,
    params: ParamTree | None = None,
    buffers: ParamTree | None = None,
    path: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Each network of ``inputs`` run in ``kind``'s framework, built from the spec, in inference
    mode; its weights loaded the framework's own way from the native file ``path`` (as
    :func:`write_native` writes it), or else from the canonical trees in that framework's
    layout. ``safetensors`` runs the float64 NumPy reference."""
    kind = canonical_kind(kind)
    nets = tuple(n for n in NETWORKS if n in inputs)
    dtype = np.dtype(spec.numerics.dtype)
    if path is None:
        if params is None:
            raise ValueError("native_outputs needs params or path")
        _, params, buffers = _checked(params, buffers, spec)
    if kind == "safetensors":
        from .backends.numpy_reference import Network

        if path is not None:
            params, buffers = to_canonical(read_safetensors(path), spec, networks=nets)
        tree = {**params, **(buffers or {})}
        return {net: Network(spec, net).forward(tree, np.asarray(inputs[net], np.float64))[0] for net in nets}
    if kind == "torch":
        import torch

        from .backends.torch_backend import CanonicalIO, build_network, is_image

        if path is not None:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
            states = {nets[0]: obj} if _is_state_dict(obj) else {net: obj[net] for net in nets}
        else:
            states = torch_state_dicts(params, buffers, spec)
        out = {}
        for net in nets:
            seq = build_network(spec, net).to(getattr(torch, dtype.name))
            seq.load_state_dict(states[net], strict=True)
            model = CanonicalIO(seq, is_image(spec.input_shape(net)), is_image(spec.layer_shapes(net)[-1][1])).eval()
            with torch.no_grad():
                out[net] = model(torch.from_numpy(np.ascontiguousarray(inputs[net], dtype))).numpy()
        return out
    if kind == "flax":
        import jax

        if dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        if path is not None:
            from flax import serialization

            restored = serialization.msgpack_restore(Path(path).read_bytes())
            if len(nets) == 1 and nets[0] not in restored["params"]:
                variables = {nets[0]: restored}
            else:
                variables = {
                    net: {
                        "params": restored["params"][net],
                        "batch_stats": restored.get("batch_stats", {}).get(net, {}),
                    }
                    for net in nets
                }
        else:
            variables = flax_variables(params, buffers, spec)
        return {
            net: np.asarray(flax_module(spec, net).apply(variables[net], np.asarray(inputs[net], dtype)))
            for net in nets
        }
    # keras
    model, per_net = keras_model(spec, nets, params if path is None else None, buffers if path is None else None)
    if path is not None:
        model.load_weights(str(path))
    return {net: np.asarray(per_net[net](np.asarray(inputs[net], dtype), training=False)) for net in nets}


@dataclass(frozen=True)
class Agreement:
    """One network run in the source's framework and in the target's on the same inputs."""

    network: str
    source: str
    target: str
    max_abs_diff: float
    max_abs_output: float

    def __str__(self) -> str:
        return (
            f"{self.network}: max |{self.source} - {self.target}| = {self.max_abs_diff:.3g} "
            f"(outputs up to {self.max_abs_output:.3g})"
        )


def verify(
    spec: GANSpec,
    params: ParamTree,
    buffers: ParamTree | None,
    source_kind: str,
    target_kind: str,
    target_path: str | Path,
    *,
    batch: int = 8,
    seed: int = 0,
) -> list[Agreement]:
    """Run G (and D, where ported) in the source's framework (the spec's network, holding the
    canonical tree in that framework's layout) and in the target's (loaded from the written
    file) on the same noise (G) and images (D, uniform in [-1, 1]); how far they differ.

    The source side holds exactly the source file's arrays: every layout conversion is a
    transpose or flip and :func:`to_native_layout` inverts :func:`from_native_layout`. A wrong
    conversion would therefore show as a difference here."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.numerics.dtype)
    nets = networks_of(params)
    inputs = {
        "generator": rng.standard_normal((batch, spec.latent_dim)).astype(dtype),
        "discriminator": rng.uniform(-1.0, 1.0, (batch, *spec.data_shape)).astype(dtype),
    }
    inputs = {net: inputs[net] for net in nets}
    source_kind, target_kind = canonical_kind(source_kind), canonical_kind(target_kind)
    src = native_outputs(source_kind, spec, inputs, params=params, buffers=buffers)
    dst = native_outputs(target_kind, spec, inputs, path=target_path)
    names = {"safetensors": "numpy reference"}
    out = []
    for net in nets:
        a, b = np.asarray(src[net], np.float64), np.asarray(dst[net], np.float64)
        out.append(
            Agreement(
                net,
                names.get(source_kind, source_kind),
                names.get(target_kind, target_kind),
                float(np.max(np.abs(a - b))),
                float(np.max(np.abs(a))),
            )
        )
    return out


@dataclass
class PortResult:
    """What :func:`port` did."""

    params: ParamTree
    buffers: ParamTree
    networks: tuple[str, ...]
    notes: list[str]
    agreement: list[Agreement]

    def summary(self) -> str:
        lines = [f"networks: {', '.join(self.networks)}; {len(self.params)} parameters, {len(self.buffers)} buffers"]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"agreement: {a}" for a in self.agreement]
        return "\n".join(lines)


def port(
    src: str | Path,
    spec: GANSpec,
    to: str,
    out: str | Path,
    *,
    kind: str | None = None,
    networks: str | Sequence[str] | None = None,
    mapping: Mapping[str, str] | None = None,
    check: bool = True,
    batch: int = 8,
    seed: int = 0,
) -> PortResult:
    """Read ``src`` (its ``kind`` detected from the name when ``None``), convert it to the
    canonical trees, write it as ``to`` at ``out`` and, with ``check``, run it in the source's
    and the target's framework on the same inputs (:func:`verify`)."""
    ckpt = read_native(src, kind)
    params, buffers = to_canonical(ckpt, spec, networks=networks, mapping=mapping)
    notes = list(ckpt.notes)
    notes += write_native(params, buffers, spec, to, out)
    agreement = verify(spec, params, buffers, ckpt.kind, to, out, batch=batch, seed=seed) if check else []
    return PortResult(params, buffers, networks_of(params), notes, agreement)

"""Flax variables: msgpack files and orbax directories read, msgpack written, and run.

The ``flax`` kind (manifest ``checkpoint_kinds``: ``.msgpack``, ``.flax``, or a directory).
``flax.serialization.msgpack_serialize`` of ``{"params": ..., "batch_stats": ...}`` (or of a
bare params tree). Flax sorts dict keys, so ``Dense_10`` comes before ``Dense_2`` and
``BatchNorm_0`` before ``ConvTranspose_0``; auto names ``Dense_k``, ``Conv_k``,
``ConvTranspose_k``, ``BatchNorm_k`` (``SpectralNormDense_k``, ``SpectralNormConv_k``: a
spectrally normalised layer, its ``sn_u``/``sn_v`` in ``batch_stats``) give the order per
module type only, and the interleaving is recovered from the spec as for Keras.
``nn.Sequential``'s ``layers_i`` and this project's JAX backend's ``"i"`` carry the full order.
Other names are ordered naturally (``fc2`` before ``fc10``): a guess, said in the notes.
Orbax checkpoint directories are read with ``orbax.checkpoint.StandardCheckpointer().restore``.
``flax.linen.SpectralNorm``'s ``u`` (``batch_stats/SpectralNorm_k/Conv_0/kernel/u``) joins the
layer it normalises (:mod:`.checkpoint_spectral`).

Layouts: Dense ``(in, out)``, Conv HWIO as canonical; ``nn.ConvTranspose``
(``transpose_kernel=False``, the default) stores ``(kh, kw, in, out)`` and runs a plain
correlation over the stride-dilated input, without the spatial flip of the adjoint
convolution: its kernel is the canonical one flipped in both spatial axes with the channel axes
swapped, ``canonical[::-1, ::-1].transpose(0, 1, 3, 2)`` (an involution,
:mod:`gan_backends.layouts`), and the spec's crops ``(before, after)`` are its explicit padding
``(k - 1 - before, k - 1 - after)``. BatchNorm ``scale``, ``bias`` and ``batch_stats``
``mean``, ``var``.

Written with ``Dense_0``-style names as ``flax.linen`` gives them inside one ``@nn.compact``
module (:class:`SpecModule`, built from :data:`FLAX_LAYERS`); both networks under
``generator`` and ``discriminator``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from ... import layouts
from ..._io import atomic_write_bytes
from ...params import ParamTree
from ...port.native import (
    ROLE_ORDER,
    NativeCheckpoint,
    NativeRun,
    NativeTensor,
    PortError,
    natural_key,
    network_hint,
    networks_of,
    state_layers,
)
from ...spec import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    GlobalSumPool,
    Layer,
    LeakyReLU,
    ReLU,
    Reshape,
    Residual,
    SelfAttention,
    Shape,
    Sigmoid,
    Tanh,
    Upsample,
)
from .attention import SelfAttentionModule
from .checkpoint_spectral import place, split_stats
from .layers import reshape
from .resample import avg_pool, global_sum_pool, upsample
from .spectral import SpectralNormed

_FLAX_TYPES = {"Dense": "Dense", "Conv": "Conv2D", "ConvTranspose": "ConvTranspose2D", "BatchNorm": "BatchNorm"}
_FLAX_NAMES = {v: k for k, v in _FLAX_TYPES.items()}
#: Spectrally normalised layers' module classes (:class:`SpectralNormDense`, :class:`SpectralNormConv`).
_FLAX_SN_TYPES = {"SpectralNormDense": "Dense", "SpectralNormConv": "Conv2D"}
_FLAX_SN_NAMES = {v: k for k, v in _FLAX_SN_TYPES.items()}
_FLAX_ROLES = {"kernel": "kernel", "bias": "bias", "scale": "scale", "mean": "running_mean", "var": "running_var"}
_FLAX_ROLES |= {"sn_u": "sn_u", "sn_v": "sn_v"}
_FLAX_STATS = {"running_mean": "mean", "running_var": "var", "sn_u": "sn_u", "sn_v": "sn_v"}
ORBAX_UNSUPPORTED = "orbax checkpoints: not supported yet; export with flax.serialization.to_bytes"

# -- reading -----------------------------------------------------------------------------------


def read(path: str | Path, *, transpose_kernel: bool = False) -> NativeCheckpoint:
    """Flax variables serialised with msgpack (or an orbax directory).

    ``transpose_kernel``: the file's ``ConvTranspose`` modules were built with
    ``transpose_kernel=True`` (kernel ``(kh, kw, out, in)``, canonical as it is).
    """
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
    collections["batch_stats"], found = split_stats(collections["batch_stats"])
    layers: dict[tuple[str, ...], dict[str, tuple[str, np.ndarray]]] = {}
    for collection, sub in collections.items():
        for keys, value in _flatten(sub):
            module, leaf = keys[:-1], keys[-1]
            role = _FLAX_ROLES.get(leaf) if collection == "params" or leaf in ("mean", "var", "sn_u", "sn_v") else None
            if role is None or (collection == "params") != (role in ("kernel", "bias", "scale")):
                raise PortError(f"flax variable {collection}/{'/'.join(keys)} {np.shape(value)}: not understood")
            layers.setdefault(module, {})[role] = ("/".join((collection, *keys)), np.asarray(value))
    flax_sn = place(found, collections["params"])
    for module, (name, u) in flax_sn.items():
        # Flax's u, and a stand-in v: both become the spec's pair once the spec layer is known
        fan_in = int(np.prod(layers[module]["kernel"][1].shape[:-1]))
        layers[module] |= {"sn_u": (name, u), "sn_v": (f"{name} (v: Flax's inference iteration)", np.zeros(fan_in))}
    if flax_sn:
        notes.append(
            "flax.linen.SpectralNorm: u read from batch_stats (sigma is not: inference iterates from u); the spec's "
            "sn_u, sn_v are the (u, v) of Flax's own inference iteration, with the spec's n_power_iterations and eps"
        )
    tensors: list[NativeTensor] = []
    guessed = False
    for module, entries in layers.items():
        container, last = "/".join(module[:-1]), module[-1] if module else ""
        network = next((h for h in map(network_hint, module[:-1]) if h), None)
        auto = re.fullmatch(r"(Dense|Conv|ConvTranspose|BatchNorm|SpectralNormDense|SpectralNormConv)_(\d+)", last)
        layout = "flax"
        if auto:
            ltype = {**_FLAX_TYPES, **_FLAX_SN_TYPES}[auto.group(1)]
            chain, rank = f"{container}:{auto.group(1)}", int(auto.group(2))
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
        elif ltype is None and module in flax_sn:
            ltype = "Conv2D"  # a 4-D kernel SpectralNorm wraps: the spec normalises Conv2D, not ConvTranspose2D
        for role in sorted(entries, key=ROLE_ORDER.__getitem__):
            name, array = entries[role]
            derive = "flax" if module in flax_sn and role in ("sn_u", "sn_v") else ""
            tensors.append(
                NativeTensor(name, array, role, "/".join(module), ltype, network, chain, rank, layout, derive)
            )
    if guessed:
        custom = sorted({t.layer for t in tensors if t.chain.endswith(":*")}, key=natural_key)
        order = {name: i for i, name in enumerate(custom)}
        tensors = [t if not t.chain.endswith(":*") else dataclasses.replace(t, rank=order[t.layer]) for t in tensors]
        notes.append(f"modules {custom} are not auto-named: their order is guessed from their names")
    if len({t.chain for t in tensors}) > 1:
        notes.append(
            "flax sorts module names and numbers each module type on its own (Dense_0, Conv_0, BatchNorm_0): the "
            "order within a type is the number's, the interleaving of types is recovered from the spec's layer types"
        )
    tensors.sort(key=lambda t: (t.chain, t.rank, ROLE_ORDER[t.role]))
    return NativeCheckpoint("flax", str(path), tensors, notes)


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
        import orbax.checkpoint as ocp  # optional: only orbax directories need it

        return ocp.StandardCheckpointer().restore(str(path.resolve()))
    except Exception as exc:
        raise PortError(f"{path}: {ORBAX_UNSUPPORTED} ({type(exc).__name__}: {exc})") from exc


# -- the flax.linen module of a spec -----------------------------------------------------------

#: ``(spec layer, input shape, dtype) -> x -> y``, called inside :class:`SpecModule`'s compact
#: ``__call__`` so that the submodules it makes get ``flax.linen``'s auto names (``Dense_0``).
FlaxBuilder = Callable[[Any, Shape, Any], Callable[[jax.Array], jax.Array]]
HI = jax.lax.Precision.HIGHEST


def _conv(layer: Conv2D, in_shape: Shape, dtype: Any) -> Callable[[jax.Array], jax.Array]:
    return nn.Conv(
        layer.filters,
        (layer.kernel, layer.kernel),
        (layer.stride, layer.stride),
        padding=layer.pads(in_shape),
        use_bias=layer.use_bias,
        precision=HI,
        dtype=dtype,
        param_dtype=dtype,
    )


def _conv_transpose(layer: ConvTranspose2D, in_shape: Shape, dtype: Any) -> Callable[[jax.Array], jax.Array]:
    k = layer.kernel
    return nn.ConvTranspose(
        layer.filters,
        (k, k),
        (layer.stride, layer.stride),
        padding=tuple((k - 1 - lo, k - 1 - hi) for lo, hi in layer.crops(in_shape)),
        use_bias=layer.use_bias,
        precision=HI,
        dtype=dtype,
        param_dtype=dtype,
    )


def _residual(layer: Residual, in_shape: Shape, dtype: Any) -> Callable[[jax.Array], jax.Array]:
    """``main(x) + shortcut(x)``, the branches' modules made in the calling module's scope (main
    first): a block's layers take the network's next auto names (``Conv_3``, ``Conv_4``) in the
    spec's walk order, which is the order :func:`flax_variables` numbers them in."""

    def apply(x: jax.Array) -> jax.Array:
        ends = []
        for branch, sub in layer.branches():
            h = x
            for sublayer, (sub_in, _) in zip(sub, layer.branch_shapes(in_shape, branch)):
                h = _builder(sublayer)(sublayer, sub_in, dtype)(h)  # spectral norm inside blocks too
            ends.append(h)
        return ends[0] + ends[1]

    return apply


FLAX_LAYERS: dict[type[Layer], FlaxBuilder] = {
    Dense: lambda layer, _, dtype: nn.Dense(
        layer.units, use_bias=layer.use_bias, precision=HI, dtype=dtype, param_dtype=dtype
    ),
    Conv2D: _conv,
    ConvTranspose2D: _conv_transpose,
    BatchNorm: lambda layer, _, dtype: nn.BatchNorm(
        use_running_average=True, momentum=1.0 - layer.momentum, epsilon=layer.eps, dtype=dtype
    ),
    LeakyReLU: lambda layer, _, __: lambda x: nn.leaky_relu(x, layer.slope),
    ReLU: lambda *_: nn.relu,
    Tanh: lambda *_: jnp.tanh,
    Sigmoid: lambda *_: nn.sigmoid,
    Reshape: lambda layer, _, __: lambda x: reshape(layer, x),
    Flatten: lambda *_: lambda x: x.reshape(x.shape[0], -1),
    # flax.linen.avg_pool with explicit padding and count_include_pad; jax.image.resize / repeat.
    Upsample: lambda layer, _, __: lambda x: upsample(layer, x),
    AvgPool2D: lambda layer, _, __: lambda x: avg_pool(layer, x),
    GlobalSumPool: lambda layer, _, __: lambda x: global_sum_pool(layer, x),
    # Canonical parameter names (query_kernel ... gamma) under the module's auto name.
    SelfAttention: lambda layer, _, dtype: SelfAttentionModule(layer, dtype),
    Residual: _residual,
}


class SpectralNormDense(SpectralNormed):
    """A spectrally normalised Dense (the spec's semantics, :mod:`.spectral`): ``params``
    ``kernel``, ``bias``; ``batch_stats`` ``sn_u``, ``sn_v``. A class of its own so that Flax's
    auto names (``SpectralNormDense_0``) say what the module is, as ``Dense_0`` does."""


class SpectralNormConv(SpectralNormed):
    """A spectrally normalised Conv2D, as :class:`SpectralNormDense`."""


def _spectral(layer: Dense | Conv2D, dtype: Any) -> Callable[[jax.Array], jax.Array]:
    """Inference: ``kernel / σ`` with ``σ = uᵀ W v`` from the stored ``sn_u``, ``sn_v``. Not
    ``flax.linen.SpectralNorm``, which iterates once more at inference (docs/framework-differences.md)."""
    cls = SpectralNormConv if isinstance(layer, Conv2D) else SpectralNormDense
    module = cls(layer, dtype, HI)
    return lambda x: module(x, False)


class SpecModule(nn.Module):
    """A spec network as ``flax.linen`` modules with auto names: ``nn.Dense``, ``nn.Conv``,
    ``nn.ConvTranspose`` (``transpose_kernel=False``) and ``nn.BatchNorm`` (running averages)."""

    layers: tuple[Layer, ...]
    shapes: tuple[tuple[Shape, Shape], ...]
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for layer, (in_shape, _) in zip(self.layers, self.shapes):
            x = _builder(layer)(layer, in_shape, self.dtype)(x)
        return x


def _builder(layer: Layer) -> FlaxBuilder:
    """The Flax builder of a spec layer: its type's, or the spectral-norm module's."""
    if getattr(layer, "spectral_norm", None) is not None:
        return lambda layer, _, dtype: _spectral(layer, dtype)
    builder = FLAX_LAYERS.get(type(layer))
    if builder is None:
        raise PortError(f"no flax module for {layer.describe()}")
    return builder


def flax_module(spec: GANSpec, net: str) -> SpecModule:
    """The spec's network ``net`` as a :class:`SpecModule`."""
    return SpecModule(tuple(spec.layers(net)), tuple(spec.layer_shapes(net)), jnp.dtype(spec.numerics.dtype))


# -- writing and running -----------------------------------------------------------------------


def flax_variables(params: ParamTree, buffers: ParamTree, spec: GANSpec) -> dict[str, dict[str, Any]]:
    """Per network, ``{"params": ..., "batch_stats": ...}`` with ``flax.linen`` auto names."""
    tree = {**params, **buffers}
    out: dict[str, dict[str, Any]] = {}
    for net in networks_of(params):
        variables: dict[str, dict[str, Any]] = {"params": {}, "batch_stats": {}}
        counters: dict[str, int] = {}
        for _, layer, slots in state_layers(spec, net):
            sn = getattr(layer, "spectral_norm", None) is not None
            kind = (_FLAX_SN_NAMES if sn else _FLAX_NAMES)[layer.type_name]
            module = f"{kind}_{counters.get(kind, 0)}"
            counters[kind] = counters.get(kind, 0) + 1
            for name, role, _ in slots:
                array = np.ascontiguousarray(layouts.to_native("flax", role, tree[name], layer))
                if role in _FLAX_STATS:
                    variables["batch_stats"].setdefault(module, {})[_FLAX_STATS[role]] = array
                else:
                    variables["params"].setdefault(module, {})[role] = array
        if not variables["batch_stats"]:
            del variables["batch_stats"]
        out[net] = variables
    return out


def write(params: ParamTree, buffers: ParamTree, spec: GANSpec, path: Path) -> list[str]:
    """One network's variables, or both with each collection split by network."""
    nets = networks_of(params)
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


def run(job: NativeRun) -> dict[str, np.ndarray]:
    """Each network as :func:`flax_module`, its variables restored from the msgpack file (as
    :func:`write` writes it) or made from the trees."""
    spec, nets = job.spec, job.nets
    if job.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    if job.path is not None:
        restored = serialization.msgpack_restore(job.path.read_bytes())
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
        variables = flax_variables(job.params, job.buffers, spec)
    return {net: np.asarray(flax_module(spec, net).apply(variables[net], job.input(net))) for net in nets}

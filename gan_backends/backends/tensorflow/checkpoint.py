"""Keras weight files: read with h5py, written and run through a Keras model of the spec.

The ``keras`` kind (manifest ``checkpoint_kinds``: ``.weights.h5``, ``.h5``, ``.hdf5``; a whole
``.keras`` archive is refused). Keras 3 ``model.save_weights("x.weights.h5")``, read with h5py.
The file's structure as written by Keras 3.15 (``keras/src/saving/saving_lib.py``)::

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
alphabetically (``dense_10`` before ``dense_2``), so the order is recovered per class from the
counter, and numerically for ``vars/0``, ``vars/10``. How classes interleave
(``conv2d_transpose`` then ``batch_normalization`` then ...) is in no name; it is recovered by
matching the spec's layer sequence (each spec layer type takes the next layer of its class),
and if more than one interleaving fits, the error says so. Sub-models are containers of their
own: a ``keras.Model`` holding ``self.generator`` and ``self.discriminator`` is filed as
``generator/layers/...`` and ``discriminator/layers/...``, which names the network. Keras 2's
``.h5`` (root attribute ``layer_names``, per-layer ``weight_names``) is read too; its order is
explicit. Layouts are the canonical ones.

Written by building the Keras ``Sequential`` of the spec's layers (:data:`KERAS_LAYERS`;
integer paddings as ``ZeroPadding2D``/``Cropping2D``; a spectrally normalised layer as
:class:`~.keras_spectral.SpectralNormDense`/``SpectralNormConv2D``, groups
``spectral_norm_dense``/``spectral_norm_conv2d`` holding kernel, bias, ``sn_u``, ``sn_v``),
setting its weights and calling ``save_weights``; both networks as a ``keras.Model`` with
``generator`` and ``discriminator`` attributes.
"""

from __future__ import annotations

import os

# TensorFlow's C++ logging drowns the port's output; keep warnings and errors unless the user set a level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import re  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from ...params import ParamTree  # noqa: E402
from ...port.native import (
    ROLE_ORDER,
    NativeCheckpoint,
    NativeRun,  # noqa: E402
    NativeTensor,
    PortError,
    network_hint,
    networks_of,
    state_layers,
)
from ...spec import (  # noqa: E402
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
    conv_pads,
)
from .attention import keras_self_attention  # noqa: E402
from .checkpoint_optim import keras_optimizers  # noqa: E402
from .keras_spectral import SpectralNormConv2D, SpectralNormDense, is_keras_wrapper, wrapper_tensors  # noqa: E402

_KERAS_TYPES = {
    "dense": "Dense",
    "conv2d": "Conv2D",
    "conv2d_transpose": "ConvTranspose2D",
    "batch_normalization": "BatchNorm",
}
#: Spectrally normalised layers (:mod:`.keras_spectral`): kernel, bias (if any), sn_u, sn_v.
_KERAS_SN_TYPES = {"spectral_norm_dense": "Dense", "spectral_norm_conv2d": "Conv2D"}
_KERAS_ROLES = {
    "kernel": "kernel",
    "bias": "bias",
    "gamma": "scale",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
_KERAS_SKIP_TOP = {"optimizer", "metrics", "compile_metrics", "loss", "loss_tracker"}

# -- reading -----------------------------------------------------------------------------------


def _keras_roles(layer_type: str | None, path: str, shapes: list[Shape], sn: bool = False) -> list[str]:
    n = len(shapes)
    if sn and n in (3, 4):
        return ["kernel", "bias", "sn_u", "sn_v"][: n - 2] + ["sn_u", "sn_v"]
    if layer_type in ("Dense", "Conv2D", "ConvTranspose2D") and n in (1, 2):
        return ["kernel", "bias"][:n]
    if layer_type == "BatchNorm" and n == 4:
        return ["scale", "bias", "running_mean", "running_var"]
    if layer_type == "BatchNorm" and n == 3:  # center=False or scale=False: cannot fit a spec BatchNorm
        return ["scale", "running_mean", "running_var"]
    if layer_type is None and n in (1, 2) and len(shapes[0]) >= 2 and all(len(s) == 1 for s in shapes[1:]):
        return ["kernel", "bias"][:n]
    raise PortError(f"keras layer {path}: {n} variables {shapes} are not a kernel/bias or a BatchNorm's four")


def read(path: str | Path) -> NativeCheckpoint:
    """Keras 3 ``.weights.h5`` (or a Keras 2 ``.h5`` with ``layer_names``), read with h5py."""
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
    groups: list[tuple[str, Any]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and name.rsplit("/", 1)[-1] == "vars" and len(obj):
            groups.append((name[: -len("/vars")] if name != "vars" else "", obj))

    f.visititems(visit)
    tensors: list[NativeTensor] = []
    optimizers, optimizer_tops, notes = keras_optimizers(f)
    skip_top = _KERAS_SKIP_TOP | optimizer_tops
    skipped = sorted({p.split("/", 1)[0] for p, _ in groups if p.split("/", 1)[0] in _KERAS_SKIP_TOP})
    if skipped:
        notes.append(f"skipped {', '.join(skipped)} (not layers)")
    renamed = ""
    by_path = dict(groups)
    wrappers = {p for p in by_path if is_keras_wrapper(p) and f"{p}/layer" in by_path}
    for lpath, vars_group in groups:
        parts = lpath.split("/") if lpath else []
        if not parts or parts[0] in skip_top or "seed_generator" in parts:
            continue
        if parts[-1] == "layer" and "/".join(parts[:-1]) in wrappers:
            continue  # a SpectralNormalization's wrapped layer: read with its wrapper
        container, last = "/".join(parts[:-1]), parts[-1]
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", last)
        base, counter = match.group(1), int(match.group(2) or 0)
        ltype = _KERAS_TYPES.get(base) or _KERAS_SN_TYPES.get(base)
        network = next((h for h in map(network_hint, parts[:-1]) if h), None)
        keys = sorted(vars_group, key=int)
        arrays = [np.asarray(vars_group[k]) for k in keys]
        if lpath in wrappers:
            inner = by_path[f"{lpath}/layer"]
            ltype, keys, arrays, roles = wrapper_tensors(
                lpath, arrays, [np.asarray(inner[k]) for k in sorted(inner, key=int)]
            )
            notes.append(f"{lpath}: keras.layers.SpectralNormalization read as {ltype} with the spec's spectral norm")
        else:
            roles = _keras_roles(ltype, lpath, [a.shape for a in arrays], base in _KERAS_SN_TYPES)
        chain = f"{container}:{base}"
        display = vars_group.attrs.get("name", last)
        display = display.decode() if isinstance(display, bytes) else str(display)
        for key, array, role in zip(keys, arrays, roles):
            name = f"{lpath}/{key}" if "/" in key else f"{lpath}/vars/{key}"  # a wrapper's keys are paths
            tensors.append(NativeTensor(name, array, role, lpath, ltype, network, chain, counter, "canonical"))
        if display != last and not renamed:
            renamed = f"h5 groups are named by class and position, not by layer name ({lpath} holds {display!r})"
            notes.append(renamed)
    if len({t.chain for t in tensors}) > 1:
        notes.append(
            "Keras files group layers by class (dense, dense_1, ...; conv2d, ...): the order within a class is the "
            "counter's, the interleaving of classes is recovered by matching the spec's layer types"
        )
    tensors.sort(key=lambda t: (t.chain, t.rank, ROLE_ORDER[t.role]))
    return NativeCheckpoint("keras", path, tensors, notes, optimizers)


# -- the Keras model of a spec -----------------------------------------------------------------

#: ``(spec layer, input shape, dtype) -> [(is the spec layer's own, keras layer)]``: the spec
#: layer's Keras layer, with the padding or cropping layers (no weights) it needs around it.
KerasBuilder = Callable[[Any, Shape, str], list[tuple[bool, keras.layers.Layer]]]
L = keras.layers


def _conv(layer: Conv2D, in_shape: Shape, dtype: str) -> list[tuple[bool, keras.layers.Layer]]:
    padding = layer.padding if isinstance(layer.padding, str) else "valid"
    out = []
    if not isinstance(layer.padding, str) and layer.padding:
        out.append((False, L.ZeroPadding2D(layer.pads(in_shape), dtype=dtype)))
    if layer.spectral_norm is not None:
        conv = SpectralNormConv2D(layer.filters, layer.kernel, layer.stride, padding, layer.use_bias, dtype=dtype)
    else:
        conv = L.Conv2D(layer.filters, layer.kernel, layer.stride, padding, use_bias=layer.use_bias, dtype=dtype)
    return [*out, (True, conv)]


def _dense(layer: Dense, dtype: str) -> keras.layers.Layer:
    if layer.spectral_norm is not None:
        return SpectralNormDense(layer.units, layer.use_bias, dtype=dtype)
    return L.Dense(layer.units, use_bias=layer.use_bias, dtype=dtype)


def _conv_transpose(layer: ConvTranspose2D, in_shape: Shape, dtype: str) -> list[tuple[bool, keras.layers.Layer]]:
    if isinstance(layer.padding, str):
        args: dict[str, Any] = {"padding": layer.padding}
    else:
        args = {"padding": "valid", "output_padding": layer.output_padding}
    conv = L.Conv2DTranspose(layer.filters, layer.kernel, layer.stride, use_bias=layer.use_bias, dtype=dtype, **args)
    out = [(True, conv)]
    if not isinstance(layer.padding, str) and layer.padding:
        p = layer.padding
        out.append((False, L.Cropping2D(((p, p), (p, p)), dtype=dtype)))
    return out


def _upsample(layer: Upsample, in_shape: Shape, dtype: str) -> list[tuple[bool, keras.layers.Layer]]:
    # UpSampling2D's 'bilinear' is tf.image.resize's half-pixel centres (computed in float32
    # even for float64 layers); Keras has no align_corners.
    if layer.align_corners:
        raise PortError(f"no Keras layer for {layer.describe()}: Keras' UpSampling2D has no align_corners")
    return [(True, L.UpSampling2D(layer.factor, interpolation=layer.method, dtype=dtype))]


def _avg_pool(layer: AvgPool2D, in_shape: Shape, dtype: str) -> list[tuple[bool, keras.layers.Layer]]:
    """Keras' 'same' average pooling does not count the padded zeros; ZeroPadding2D then 'valid'
    does (count_include_pad=True). Other paddings without counting the zeros have no Keras layer."""
    pads = layer.pads(in_shape)
    same = tuple(conv_pads(n, layer.pool, layer.stride, "same") for n in in_shape[:2])  # type: ignore[arg-type]
    if not any(p for pair in pads for p in pair):
        return [(True, L.AveragePooling2D(layer.pool, layer.stride, "valid", dtype=dtype))]
    if layer.count_include_pad:
        return [
            (False, L.ZeroPadding2D(pads, dtype=dtype)),
            (True, L.AveragePooling2D(layer.pool, layer.stride, "valid", dtype=dtype)),
        ]
    if pads == same:
        return [(True, L.AveragePooling2D(layer.pool, layer.stride, "same", dtype=dtype))]
    raise PortError(f"no Keras layer for {layer.describe()}: padding {pads} not counted is not Keras' 'same'")


@keras.saving.register_keras_serializable(package="gan_backends")
class GlobalSumPooling2D(keras.layers.Layer):
    """``(N, H, W, C) -> (N, C)``, the sum over the spatial axes (Keras has global average and max only)."""

    def call(self, x: Any) -> Any:
        return keras.ops.sum(x, axis=(1, 2))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], input_shape[3])


def _own(make: Callable[[Any, str], keras.layers.Layer]) -> KerasBuilder:
    """A builder of one Keras layer and nothing around it."""
    return lambda layer, _, dtype: [(True, make(layer, dtype))]


KERAS_LAYERS: dict[type[Layer], KerasBuilder] = {
    Dense: _own(_dense),  # spectral_norm: keras_spectral.py (inference layers with torch's σ)
    Conv2D: _conv,
    ConvTranspose2D: _conv_transpose,
    BatchNorm: _own(lambda bn, dtype: L.BatchNormalization(momentum=1.0 - bn.momentum, epsilon=bn.eps, dtype=dtype)),
    LeakyReLU: _own(lambda layer, dtype: L.LeakyReLU(negative_slope=layer.slope, dtype=dtype)),
    ReLU: _own(lambda _, dtype: L.ReLU(dtype=dtype)),
    Tanh: _own(lambda _, dtype: L.Activation("tanh", dtype=dtype)),
    Sigmoid: _own(lambda _, dtype: L.Activation("sigmoid", dtype=dtype)),
    Reshape: lambda layer, _, dtype: (
        [(False, L.Reshape(layer.read_shape, dtype=dtype)), (True, L.Permute((2, 3, 1), dtype=dtype))]
        if layer.order  # (C, H, W) features: read as such, then channels last
        else [(True, L.Reshape(layer.shape, dtype=dtype))]
    ),
    Flatten: _own(lambda _, dtype: L.Flatten(dtype=dtype)),
    Upsample: _upsample,
    AvgPool2D: _avg_pool,
    GlobalSumPool: _own(lambda _, dtype: GlobalSumPooling2D(dtype=dtype)),
    SelfAttention: lambda layer, in_shape, dtype: [(True, keras_self_attention(layer, in_shape, dtype))],
    # A residual block's own Keras layer is the Add of its branches' outputs; the branches are
    # built before it by _functional, which makes a network holding a block a functional model.
    Residual: _own(lambda _, dtype: L.Add(dtype=dtype)),
}


def _functional(
    layers: Sequence[Layer], shapes: Sequence[tuple[Shape, Shape]], x: Any, dtype: str, prefix: str, owned: dict
) -> Any:
    """``x`` through ``layers`` in the Keras functional API, a block as ``Add()([main(x),
    shortcut(x)])`` (an empty shortcut: ``x`` itself); ``owned[path]`` is the Keras layer of the
    spec layer at ``path`` (``"2.main.0"``). Layers are made in the spec's walk order (a block's
    main branch, then its shortcut), which is the order Keras numbers them per class in the file."""
    for i, (layer, (in_shape, _)) in enumerate(zip(layers, shapes)):
        path = f"{prefix}{i}"
        builder = KERAS_LAYERS.get(type(layer))
        if builder is None:
            raise PortError(f"no Keras layer for {layer.describe()}")
        if isinstance(layer, Residual):
            ends = [
                _functional(sub, layer.branch_shapes(in_shape, b), x, dtype, f"{path}.{b}.", owned)
                for b, sub in layer.branches()
            ]
            x = builder(layer, in_shape, dtype)[0][1](ends)
            continue
        for own, klayer in builder(layer, in_shape, dtype):
            x = klayer(x)
            if own:
                owned[path] = klayer
    return x


def _keras_layers(spec: GANSpec, net: str) -> list[tuple[int | None, keras.layers.Layer]]:
    """``(spec layer index or None, keras layer)``: the spec's layers in Keras, with the padding
    and cropping layers that torch-style integer paddings need (those carry no weights)."""
    dtype = spec.numerics.dtype
    out: list[tuple[int | None, keras.layers.Layer]] = []
    for i, (layer, (in_shape, _)) in enumerate(zip(spec.layers(net), spec.layer_shapes(net))):
        builder = KERAS_LAYERS.get(type(layer))
        if builder is None:
            raise PortError(f"no Keras layer for {layer.describe()}")
        out += [(i if own else None, klayer) for own, klayer in builder(layer, in_shape, dtype)]
    return out


def keras_model(
    spec: GANSpec, networks: Sequence[str], params: ParamTree | None = None, buffers: ParamTree | None = None
) -> tuple[keras.Model, dict[str, keras.Sequential]]:
    """``(model to save/load, {network: Sequential})``: one network's ``keras.Sequential``, or a
    ``keras.Model`` holding ``generator`` and ``discriminator``; weights set from the canonical
    trees when given."""
    tree = {**(params or {}), **(buffers or {})}
    nets: dict[str, keras.Sequential] = {}
    for net in networks:
        if any(isinstance(layer, Residual) for layer in spec.layers(net)):
            nets[net] = _functional_model(spec, net, tree)
            continue
        pairs = _keras_layers(spec, net)
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
    gan = _KerasGAN(nets["generator"], nets["discriminator"])
    gan.built = True
    return gan, nets


def _functional_model(spec: GANSpec, net: str, tree: ParamTree) -> keras.Model:
    """A network with residual blocks as a functional ``keras.Model`` (:func:`_functional`),
    weights set from ``tree`` layer by layer when it is not empty."""
    inputs = keras.Input(spec.input_shape(net), dtype=spec.numerics.dtype)
    owned: dict[str, keras.layers.Layer] = {}
    dtype = spec.numerics.dtype
    model = keras.Model(
        inputs, _functional(spec.layers(net), spec.layer_shapes(net), inputs, dtype, "", owned), name=net
    )
    if tree:
        for path, _, slots in state_layers(spec, net):
            owned[path].set_weights([tree[name] for name, _, _ in slots])
    return model


class _KerasGAN(keras.Model):
    """Both networks as sub-models: the file files them under ``generator/`` and ``discriminator/``."""

    def __init__(self, generator: keras.Sequential, discriminator: keras.Sequential):
        super().__init__(name="gan")
        self.generator = generator
        self.discriminator = discriminator


# -- writing and running -----------------------------------------------------------------------


def write(params: ParamTree, buffers: ParamTree, spec: GANSpec, path: Path) -> list[str]:
    """``save_weights`` of :func:`keras_model`, through a temporary file renamed into place."""
    if not path.name.endswith(".weights.h5"):
        raise PortError(f"{path}: Keras 3 weight files must end in .weights.h5")
    model, _ = keras_model(spec, networks_of(params), params, buffers)
    tmp = path.with_name(f".{path.name[: -len('.weights.h5')]}.tmp.weights.h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ["keras: save_weights of the Keras Sequential of the spec's layers"]


def run(job: NativeRun) -> dict[str, np.ndarray]:
    """Each network as :func:`keras_model` in inference mode, its weights loaded with
    ``load_weights`` from the file or set from the trees."""
    from_file = job.path is not None
    model, per_net = keras_model(
        job.spec, job.nets, None if from_file else job.params, None if from_file else job.buffers
    )
    if from_file:
        model.load_weights(str(job.path))
    return {net: np.asarray(per_net[net](job.input(net), training=False)) for net in job.nets}

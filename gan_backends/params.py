"""Canonical parameters: the one framework-free currency every backend imports and exports.

A parameter tree is an ordered ``dict[str, np.ndarray]``. Names are
``"{network}.{layer_index}.{param}"``, e.g. ``generator.0.kernel``, where ``layer_index`` is the
layer's position in the spec's sequence (activations included, as in ``nn.Sequential``); a
layer inside a residual block nests under it, ``discriminator.2.main.0.kernel``
(:mod:`gan_backends.spec.blocks`).
Layouts are canonical (see ``docs/layouts.md``): Dense kernel ``(in, out)``, bias ``(out,)``;
images channels-last. Backends convert at their boundary (torch's ``nn.Linear`` keeps
``(out, in)``).

Weights are drawn once, here, in NumPy from a seed, so every backend starts from the same
arrays. Checkpoints are safetensors files carrying the spec as JSON metadata; never pickle.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from ._io import atomic_write_bytes
from .spec import NETWORKS, GANSpec, Shape, SpecError, layer_at
from .spec.spectral import initial_vector

ParamTree = dict[str, np.ndarray]


def param_shapes(spec: GANSpec, networks: tuple[str, ...] = NETWORKS) -> dict[str, Shape]:
    """Canonical name -> shape of every trainable parameter, in spec order."""
    shapes: dict[str, Shape] = {}
    for net in networks:
        for i, (layer, (in_shape, _)) in enumerate(zip(spec.layers(net), spec.layer_shapes(net))):
            for pname, shape in layer.param_shapes(in_shape).items():
                shapes[f"{net}.{i}.{pname}"] = shape
    return shapes


def buffer_shapes(spec: GANSpec, networks: tuple[str, ...] = NETWORKS) -> dict[str, Shape]:
    """Canonical name -> shape of every buffer (BatchNorm ``running_mean``/``running_var``)."""
    shapes: dict[str, Shape] = {}
    for net in networks:
        for i, (layer, (in_shape, _)) in enumerate(zip(spec.layers(net), spec.layer_shapes(net))):
            for bname, shape in layer.buffer_shapes(in_shape).items():
                shapes[f"{net}.{i}.{bname}"] = shape
    return shapes


def init_buffers(spec: GANSpec, seed: int = 0) -> ParamTree:
    """Fresh buffers: running statistics as every framework starts them (mean 0, variance 1);
    spectral-norm vectors ``sn_u``/``sn_v`` N(0, 1) normalised, drawn in float64 from ``seed``
    and the buffer's name (its own stream: the parameters' draws do not move when a layer gains
    the option), then cast."""
    dtype = np.dtype(spec.numerics.dtype)
    tree: ParamTree = {}
    for name, shape in buffer_shapes(spec).items():
        if name.endswith((".sn_u", ".sn_v")):
            net, *path, _ = name.split(".")  # a layer inside a block: 2.main.0
            layer = layer_at(spec.layers(net), path)
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            tree[name] = initial_vector(rng, shape[0], layer.spectral_norm.eps).astype(dtype)
        else:
            tree[name] = (np.ones if name.endswith("running_var") else np.zeros)(shape, dtype)
    return tree


def network_of(name: str) -> str:
    return name.split(".", 1)[0]


def split_tree(tree: ParamTree) -> dict[str, ParamTree]:
    """``{"generator": {...}, "discriminator": {...}}`` from a flat tree."""
    out: dict[str, ParamTree] = {net: {} for net in NETWORKS}
    for name, value in tree.items():
        out[network_of(name)][name] = value
    return out


#: Standard deviation of a unit normal truncated to [-2, 2]; variance scaling divides by it.
TRUNCATED_NORMAL_STD = 0.87962566103423978


def _truncated_normal(rng: np.random.Generator, std: float, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, std^2) truncated at ±2 std, by redrawing what falls outside."""
    value = rng.standard_normal(shape)
    outside = np.abs(value) > 2.0
    while outside.any():
        value[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(value) > 2.0
    return value * std


def init_params(spec: GANSpec, seed: int = 0) -> ParamTree:
    """Draw every parameter in float64 NumPy from ``seed``, then cast to ``spec.numerics.dtype``.

    ``torch_default`` reproduces ``nn.Linear.reset_parameters``: kernel and bias both
    ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5) gives that bound).
    ``normal``: kernel ~ N(0, std^2), bias 0. ``glorot_uniform`` and ``lecun_normal`` are
    Keras' and Flax's defaults (see :class:`~gan_backends.spec.InitSpec`).

    A spec whose parameters cannot fit in memory is refused first, naming its largest layer
    (:func:`~gan_backends.sizing.check_fits`).

    Fans follow each framework's rule for its own layout, which the canonical layouts share:
    Dense ``(in, out)``; Conv2D HWIO: fan_in = kh·kw·in, fan_out = kh·kw·out; ConvTranspose2D
    ``(kh, kw, out, in)``: fan_in = kh·kw·out, as torch computes it from its ``(in, out, kh,
    kw)`` weight and Keras from its ``(kh, kw, out, in)`` kernel. BatchNorm: scale 1, bias 0;
    under ``normal`` the scale is N(1, std^2) (the PyTorch DCGAN tutorial's ``weights_init``).
    """
    from .sizing import check_fits

    check_fits(spec)
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.numerics.dtype)
    shapes = param_shapes(spec)
    tree: ParamTree = {}
    for name, shape in shapes.items():
        layer, kind = name.rsplit(".", 1)
        if kind == "gamma":  # SelfAttention's residual weight: 0 under every scheme (the block starts as the identity)
            tree[name] = np.zeros(shape, dtype)
            continue
        if kind == "scale" or f"{layer}.scale" in shapes:  # BatchNorm
            if kind == "scale" and spec.init.scheme == "normal":
                value = rng.normal(1.0, spec.init.std, size=shape)
            else:
                value = np.ones(shape) if kind == "scale" else np.zeros(shape)
            tree[name] = value.astype(dtype)
            continue
        # A bias shares its layer's kernel fans (SelfAttention's ``query_bias`` its ``query_kernel``).
        is_kernel = kind.endswith("kernel")
        part = kind[: -len("kernel")] if is_kernel else kind[: -len("bias")]
        kernel = shapes[f"{layer}.{part}kernel"]
        receptive = int(np.prod(kernel[:-2]))
        fan_in, fan_out = receptive * int(kernel[-2]), receptive * int(kernel[-1])
        if spec.init.scheme == "torch_default":
            bound = 1.0 / np.sqrt(fan_in)
            value = rng.uniform(-bound, bound, size=shape)
        elif not is_kernel:
            value = np.zeros(shape)
        elif spec.init.scheme == "normal":
            value = rng.normal(0.0, spec.init.std, size=shape)
        elif spec.init.scheme == "glorot_uniform":
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-bound, bound, size=shape)
        else:  # lecun_normal
            value = _truncated_normal(rng, np.sqrt(1.0 / fan_in) / TRUNCATED_NORMAL_STD, shape)
        tree[name] = value.astype(dtype)
    return tree


def check_tree(spec: GANSpec, tree: ParamTree, networks: tuple[str, ...] = NETWORKS) -> None:
    """Raise :class:`SpecError` naming every missing, extra or wrongly shaped parameter."""
    expected = param_shapes(spec, networks)
    problems = []
    for name, shape in expected.items():
        if name not in tree:
            problems.append(f"missing {name} {shape}")
        elif tuple(tree[name].shape) != shape:
            problems.append(f"{name}: expected shape {shape}, got {tuple(tree[name].shape)}")
    for name in tree:
        if name not in expected:
            problems.append(f"unexpected parameter {name} {tuple(tree[name].shape)}")
    if problems:
        raise SpecError(f"parameters do not fit spec {spec.name!r}: " + "; ".join(problems))


def check_buffers(spec: GANSpec, buffers: ParamTree) -> None:
    """Raise ``ValueError`` naming every missing, extra or wrongly shaped buffer (running
    statistics) of ``spec``: what every backend's ``set_buffers`` checks before loading."""
    expected = buffer_shapes(spec)
    problems = [f"missing {n}" for n in expected if n not in buffers]
    problems += [f"unexpected buffer {n}" for n in buffers if n not in expected]
    problems += [
        f"{n}: expected shape {s}, got {tuple(buffers[n].shape)}"
        for n, s in expected.items()
        if n in buffers and tuple(buffers[n].shape) != s
    ]
    if problems:
        raise ValueError(f"buffers do not fit spec {spec.name!r}: " + "; ".join(problems))


def save_params(path: str | Path, tree: ParamTree, spec: GANSpec | None = None) -> None:
    """Write ``tree`` as safetensors (atomically), with the spec JSON in the metadata."""
    from safetensors.numpy import save

    metadata = {"format": "gan-backends/params-v1"}
    if spec is not None:
        metadata["spec"] = spec.to_json(indent=None)
    data = save({k: np.ascontiguousarray(v) for k, v in tree.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def nonfinite_tensors(tree: ParamTree) -> list[str]:
    """``name (3 NaN, 1 Inf of 256)`` for each tensor of ``tree`` that is not all finite."""
    found = []
    for name, value in tree.items():
        array = np.asarray(value)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
            found.append(f"{name} ({nan} NaN, {inf} Inf of {array.size})")
    return found


def read_safetensors(path: str | Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The metadata and every tensor of a safetensors file. A file that is missing, a folder,
    truncated or not safetensors at all is a :class:`SpecError` naming it (safetensors' own
    error would read as ours: ``header too large``)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {}), {key: f.get_tensor(key) for key in f.keys()}
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - SafetensorError, and what its header parser raises
        raise SpecError(f"{path}: not a readable safetensors file ({exc})") from None


def load_params(path: str | Path) -> tuple[ParamTree, GANSpec | None]:
    """Read a safetensors parameter file; return the tree and its spec if stored.

    With a spec, the tree is checked against it for the networks it holds (both, or one as
    ``port`` writes a published generator), BatchNorm statistics included where present, and
    put in the spec's order (safetensors sorts keys)."""
    metadata, tree = read_safetensors(path)
    spec = GANSpec.from_json(metadata["spec"]) if "spec" in metadata else None
    if spec is not None:
        nets = tuple(n for n in NETWORKS if any(name.split(".", 1)[0] == n for name in tree))
        stats = buffer_shapes(spec, nets)
        check_tree(spec, {k: v for k, v in tree.items() if k not in stats}, nets or NETWORKS)
        bad = [
            f"{k}: expected shape {s}, got {tuple(tree[k].shape)}"
            for k, s in stats.items()
            if k in tree and tuple(tree[k].shape) != s
        ]
        if bad:
            raise SpecError(f"{path}: BatchNorm statistics do not fit spec {spec.name!r}: " + "; ".join(bad))
        order = [*param_shapes(spec, nets), *stats]
        tree = {name: tree[name] for name in order if name in tree}
    return tree, spec

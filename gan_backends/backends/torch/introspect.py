"""A user's ``nn.Module`` read into spec layers, in call order, every torch default explicit.

The module is traced with ``torch.fx`` (``nn.Sequential``, the tutorials' wrappers with a
``main`` Sequential, and any forward without data-dependent control flow), so functional calls
(``F.relu``, ``torch.tanh``, ``x.view``) are read too, not only submodules. Each node maps to one
spec layer; what the spec cannot express (dropout, dilation, groups, a cumulative BatchNorm,
a channels-first view of a Dense's features) is a
:class:`~gan_backends.port.spec_from.NotExpressible` naming the node's position and class.

Layouts: torch computes images as NCHW, the spec describes them channels-last. A view to
``(C, H, W)`` and a flatten of an image are the same as the spec's ``Reshape``/``Flatten`` only
when ``C == 1`` or ``H == W == 1`` (the feature order differs otherwise), which covers the MLP
GANs and the DCGAN tutorial (a ``(N, nz, 1, 1)`` input, a ``(N, 1, 1, 1)`` logit).
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ...port.spec_from import NotExpressible, ReadNetwork, not_expressible
from ...spec import (
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    Layer,
    LeakyReLU,
    ReLU,
    Reshape,
    Residual,
    Shape,
    Sigmoid,
    SpecError,
    Tanh,
    layer_at,
    walk,
)
from . import introspect_resample
from .introspect_blocks import Block, GraphReader, Item, Op, is_add, is_meta
from .introspect_spectral import spectral_norm_of

_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.leaky_relu: "leaky_relu", torch.tanh: "tanh", F.tanh: "tanh"}
_FUNCTIONS |= {torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.flatten: "flatten", torch.reshape: "reshape"}
_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "flatten": "flatten", "view": "reshape"}
_METHODS |= {"reshape": "reshape"}


def _square(value: Any, what: str) -> int:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if pair[0] != pair[1]:
        raise ValueError(f"{what} {pair} differs between height and width; the spec's is one number")
    return int(pair[0])


def _conv(module: nn.Module, transpose: bool) -> Layer:
    if _square(module.dilation, "dilation") != 1 or module.groups != 1:
        raise ValueError("dilation and groups other than 1 have no spec field")
    if module.padding_mode != "zeros":
        raise ValueError(f"padding_mode {module.padding_mode!r}: the spec pads with zeros")
    padding = module.padding if isinstance(module.padding, str) else _square(module.padding, "padding")
    common = {
        "filters": module.out_channels,
        "kernel": _square(module.kernel_size, "kernel_size"),
        "stride": _square(module.stride, "stride"),
        "padding": padding,
        "use_bias": module.bias is not None,
    }
    sn = spectral_norm_of(module)  # either torch API: introspect_spectral.py
    if transpose:
        if sn is not None:
            raise ValueError("spectral norm on a ConvTranspose2d: the spec has it on Linear and Conv2d only")
        return ConvTranspose2D(**common, output_padding=_square(module.output_padding, "output_padding"))
    return Conv2D(**common, spectral_norm=sn)


def _batchnorm(module: nn.modules.batchnorm._BatchNorm) -> Layer:
    if module.momentum is None:
        raise ValueError("momentum=None (a cumulative average of every batch) has no spec field")
    if not module.affine or not module.track_running_stats:
        raise ValueError("affine=False or track_running_stats=False: the spec's BatchNorm has both")
    convention = "torch" if module.momentum > 0.5 else None
    return BatchNorm(momentum=module.momentum, eps=module.eps, running_var="unbiased", momentum_convention=convention)


def _from_module(module: nn.Module) -> Layer | str:
    """The spec layer of a leaf module, or an op name (``flatten``, ``reshape``) to resolve with shapes."""
    if isinstance(module, nn.Linear):
        sn = spectral_norm_of(module)  # either torch API: introspect_spectral.py
        return Dense(units=module.out_features, use_bias=module.bias is not None, spectral_norm=sn)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return _conv(module, isinstance(module, nn.ConvTranspose2d))
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _batchnorm(module)
    simple = {nn.ReLU: ReLU, nn.Tanh: Tanh, nn.Sigmoid: Sigmoid}
    if type(module) in simple:
        return simple[type(module)]()
    if isinstance(module, nn.LeakyReLU):
        return LeakyReLU(slope=module.negative_slope)
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise ValueError(f"Flatten({module.start_dim}, {module.end_dim}): the spec flattens all but the batch axis")
        return "flatten"
    if isinstance(module, nn.Unflatten):
        if module.dim != 1:
            raise ValueError("an Unflatten of another axis than 1")
        return f"reshape:{','.join(map(str, module.unflattened_size))}"
    if isinstance(module, nn.Identity):
        return "identity"
    resample = introspect_resample.from_module(module)  # nn.Upsample, nn.AvgPool2d
    if resample is not None:
        return resample
    raise ValueError("no spec layer for it (the spec has Linear, Conv2d, ConvTranspose2d, BatchNorm, activations)")


def _from_call(node: torch.fx.Node) -> Layer | str:
    """The spec layer of a functional or method call node."""
    resample = introspect_resample.from_call(node)  # F.interpolate, F.avg_pool2d, torch.sum over (2, 3)
    if resample is not None:
        return resample
    op = _FUNCTIONS.get(node.target) if node.op == "call_function" else _METHODS.get(node.target)
    if op is None:
        raise ValueError("no spec layer for it")
    if op == "leaky_relu":
        slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
        return LeakyReLU(slope=float(slope))
    if op in ("relu", "tanh", "sigmoid"):
        return {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid}[op]()
    if op == "flatten":
        start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
        if start != 1:
            raise ValueError(f"flatten from axis {start}: the spec flattens all but the batch axis")
        return "flatten"
    sizes = node.args[1:] if op == "reshape" and node.op == "call_method" else node.args[1]
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else tuple(sizes)
    if any(not isinstance(s, int) for s in sizes[1:]):
        raise ValueError(f"a view to {sizes}: sizes computed at run time")
    return f"reshape:{','.join(map(str, sizes[1:]))}"


def _resolve(op: Layer | str, shape: Shape) -> Layer | None:
    """A ``flatten``/``reshape`` op as the spec's layer at ``shape`` (canonical), where the feature
    orders of NCHW and channels-last agree; ``None`` for an identity."""
    if isinstance(op, Layer):
        return op
    if op == "identity":
        return None
    if op == "flatten":
        if len(shape) == 3 and shape[2] > 1 and shape[0] * shape[1] > 1:
            raise ValueError(f"a flatten of a {shape} image orders features C, H, W; the spec's Flatten orders H, W, C")
        return Flatten()
    sizes = tuple(int(s) for s in op.split(":", 1)[1].split(","))
    if -1 in sizes:
        total = 1
        for s in shape:
            total *= s
        known = -1 * int(torch.tensor(sizes).prod())
        sizes = tuple(total // known if s == -1 else s for s in sizes)
    if len(sizes) == 3:
        c, h, w = sizes
        if len(shape) != 1 and c > 1 and h * w > 1:
            raise ValueError(f"a view of a {shape} value to (C, H, W) = {sizes}: the spec reads flat features only")
        # torch's view reads the features C-major: the spec's Reshape says so where it matters
        order = "channels_first" if c > 1 and h * w > 1 else None
        return Reshape(shape=(h, w, c), order=order)
    return Reshape(shape=sizes)


def layers_of(model: nn.Module, input_shape: Shape | None = None) -> ReadNetwork:
    """The spec layers of ``model`` in call order, with the per-sample shapes it maps between.

    ``input_shape`` (canonical) is needed where the model does not tell it: a generator that
    starts with ``nn.Linear`` takes ``(in_features,)``; one that starts with a ConvTranspose2d on
    the tutorials' ``(N, nz, 1, 1)`` noise takes ``(nz,)``, reshaped to ``(1, 1, nz)`` first."""
    return _read(model, input_shape)[0]


def _read(
    model: nn.Module, input_shape: Shape | None, paths: dict[str, str] | None = None
) -> tuple[ReadNetwork, list[str | None], torch.fx.GraphModule]:
    """:func:`layers_of`, with the fx node behind each layer (``None``: the input reshape)."""
    where = type(model).__name__
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types on untraceable code
        raise SpecError(
            f"{where}: torch.fx cannot trace its forward ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "write the network as nn.Sequential or without data-dependent control flow"
        ) from None
    modules = dict(model.named_modules())
    reads: dict[torch.fx.Node, tuple[str, Layer | str]] = {}
    nodes = [n for n in traced.graph.nodes if n.op not in ("placeholder", "output") and not is_meta(n)]
    for index, node in enumerate(nodes):  # in call order: the first layer that cannot be read is named
        if is_add(node):
            continue
        if node.op == "call_function" and node.target is operator.getitem:
            raise SpecError(f"{where}: indexing a tensor (node {node.name}) has no spec layer")
        label = type(modules[node.target]).__name__ if node.op == "call_module" else str(node.target)
        label = getattr(node.target, "__name__", label) if node.op == "call_function" else label
        try:
            reads[node] = (label, _from_module(modules[node.target]) if node.op == "call_module" else _from_call(node))
        except (ValueError, SpecError) as exc:
            raise not_expressible(where, index, label, str(exc)) from None
    items = GraphReader(traced, modules, where, reads.__getitem__).items()  # residual adds: introspect_blocks.py
    read, kept = _shaped(model, where, items, input_shape, paths)
    return read, kept, traced


def state_modules(model: nn.Module, input_shape: Shape | None = None) -> dict[str, tuple[str, Layer]]:
    """``{module path: (canonical layer path, spec layer)}`` of every module of ``model`` read as
    a layer (``"block2.c1": ("2.main.3", Conv2D(...))``): the key of each ``state_dict`` tensor
    by its module, so a port matches by name where registration order is not call order
    (Mimicry's ``GBlock`` registers ``c1, c2, b1, b2``, calls ``b1, c1, b2, c2``). A module
    called twice (shared weights) is left out: it has no one place in the spec."""
    paths: dict[str, str] = {}
    read, _, traced = _read(model, input_shape, paths)
    calls: dict[str, list[str]] = {}
    for node in traced.graph.nodes:
        if node.op == "call_module" and node.name in paths:
            calls.setdefault(str(node.target), []).append(paths[node.name])
    return {m: (p[0], layer_at(read.layers, p[0])) for m, p in calls.items() if len(p) == 1}


def _shaped(
    model: nn.Module, where: str, items: list[Item], given: Shape | None, paths: dict[str, str] | None = None
) -> tuple[ReadNetwork, list[str | None]]:
    notes: list[str] = []
    if not items:
        raise SpecError(f"{where}: no layers found in its forward")
    first = items[0].op if isinstance(items[0], Op) else None
    if isinstance(first, Dense):
        in_features = next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features
        shape: Shape = (in_features,)
    elif isinstance(first, ConvTranspose2D) and (given is None or len(given) == 1):
        conv = next(m for m in model.modules() if isinstance(m, nn.ConvTranspose2d))
        shape = (conv.in_channels,)
        items.insert(0, Op("input", Reshape(shape=(1, 1, conv.in_channels)), None))  # type: ignore[arg-type]
        notes.append(f"input (N, {conv.in_channels}, 1, 1) as the DCGAN tutorial draws it: the spec takes (N, "
                     f"{conv.in_channels}) and reshapes it to (1, 1, {conv.in_channels})")  # fmt: skip
    elif given is not None:
        shape = tuple(given)
    else:
        label = items[0].label
        raise SpecError(f"{where}: starts with {label}, which does not tell its input shape; give it")
    if given is not None and len(given) == len(shape) and tuple(given) != shape:
        raise SpecError(f"{where} takes {shape} per sample, not {tuple(given)}")
    input_shape = shape
    layers, shape, kept = _resolved(items, shape, where, paths if paths is not None else {})
    walked = [layer for _, layer, _ in walk(layers, input_shape, "")]
    for layer in walked:
        if isinstance(layer, LeakyReLU):
            notes.append(f"LeakyReLU slope {layer.slope:g} (torch's default is 0.01)")
            break
    if any(getattr(layer, "spectral_norm", None) is not None for layer in walked):
        notes.append(
            "spectral norm read from the layers' hook or parametrization (n_power_iterations, eps); in eval mode "
            "σ = uᵀWv from the stored u, v, as the spec computes it"
        )
    if any(isinstance(layer, Residual) for layer in layers):
        notes.append("residual blocks read from the adds of its forward (main: the add's first operand)")
    _check_output(model, where, input_shape, shape)
    return ReadNetwork(tuple(layers), input_shape, shape, notes), kept


def _resolved(
    items: list[Item], shape: Shape, where: str, paths: dict[str, str] | None = None, prefix: str = ""
) -> tuple[list[Layer], Shape, list[str | None]]:
    """The spec layers of ``items`` from ``shape`` on, their output shape, and the node of each;
    ``paths`` gets each leaf layer's node name -> its canonical path (``2.main.3``)."""
    layers: list[Layer] = []
    kept: list[str | None] = []
    paths = {} if paths is None else paths
    for index, item in enumerate(items):
        try:
            at = f"{prefix}{len(layers)}"
            if isinstance(item, Block):
                main, _, _ = _resolved(item.main, shape, where, paths, f"{at}.main.")
                shortcut, _, _ = _resolved(item.shortcut, shape, where, paths, f"{at}.shortcut.")
                layer: Layer | None = Residual(main=tuple(main), shortcut=tuple(shortcut))
            else:
                layer = _resolve(item.op, shape)
                if layer is not None and item.node is not None:
                    paths[item.node] = at
            if layer is not None:
                shape = layer.output_shape(shape)
                layers.append(layer)
                kept.append(item.node)
        except (ValueError, SpecError) as exc:
            if isinstance(exc, NotExpressible):
                raise
            raise not_expressible(where, index, item.label, str(exc)) from None
    return layers, shape, kept


def _model_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Canonical inputs as the model takes them: NCHW images, the tutorials' (N, nz, 1, 1) noise."""
    if x.ndim == 4:
        return x.permute(0, 3, 1, 2)
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))), None)
    return x[:, :, None, None] if isinstance(first, nn.ConvTranspose2d) else x


def _canonical(y: torch.Tensor) -> np.ndarray:
    y = y.detach()
    return (y.permute(0, 2, 3, 1) if y.ndim == 4 else y).numpy()


def _check_output(model: nn.Module, where: str, input_shape: Shape, output_shape: Shape) -> None:
    """The model's own output shape on a dummy batch (eval mode, no gradients) is the spec's."""
    x = _model_input(model, torch.zeros((2, *input_shape)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            y = model(x)
    except Exception as exc:
        raise SpecError(f"{where}: running it on a batch shaped {tuple(x.shape)} failed: {exc}") from None
    finally:
        model.train(was_training)
    got = tuple(y.shape[1:])
    canonical = (got[1], got[2], got[0]) if len(got) == 3 else got
    if canonical != tuple(output_shape):
        raise SpecError(f"{where}: its output per sample is {got}, the read layers give {output_shape}")


def run_model(model: nn.Module, source: str | Path, net: str, x: np.ndarray) -> list[np.ndarray]:
    """The user's own model with the weights of ``source`` (its state_dict, loaded by the
    model's own keys, strictly: the reading of the file by order and shape plays no part), in
    eval mode on the canonical inputs ``x``: the output of each layer of :func:`layers_of`, in
    the canonical layout, the model's output last."""
    from .checkpoint import _is_state_dict, load_tensors_only, network_states

    obj = load_tensors_only(source)
    state = obj if _is_state_dict(obj) else network_states(obj).get(net, (None, None))[1]
    if state is None:
        raise SpecError(f"{source}: holds no state_dict for the {net} to load into {type(model).__name__}")
    model.load_state_dict(state, strict=True)
    model.eval()
    _, nodes, traced = _read(model, tuple(x.shape[1:]))
    seen: dict[str, torch.Tensor] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node: torch.fx.Node) -> Any:
            out = super().run_node(node)
            # a copy: the next node may work in place (the tutorials' nn.ReLU(True))
            seen[node.name] = out.clone() if isinstance(out, torch.Tensor) else out
            return out

    inputs = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    with torch.no_grad():
        Recorder(traced).run(_model_input(model, inputs))
    # the input reshape the spec adds before the tutorials' ConvTranspose2d: canonical (N, 1, 1, nz)
    return [np.asarray(x, np.float32).reshape(len(x), 1, 1, -1) if n is None else _canonical(seen[n]) for n in nodes]

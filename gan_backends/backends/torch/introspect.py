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

from ...port.spec_from import ReadNetwork, not_expressible
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
    Shape,
    Sigmoid,
    SpecError,
    Tanh,
)
from . import introspect_resample
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
        if c > 1 and h * w > 1:
            raise ValueError(f"a view to (C, H, W) = {sizes} orders features C-major; the spec's Reshape is (H, W, C)")
        return Reshape(shape=(h, w, c))
    return Reshape(shape=sizes)


def layers_of(model: nn.Module, input_shape: Shape | None = None) -> ReadNetwork:
    """The spec layers of ``model`` in call order, with the per-sample shapes it maps between.

    ``input_shape`` (canonical) is needed where the model does not tell it: a generator that
    starts with ``nn.Linear`` takes ``(in_features,)``; one that starts with a ConvTranspose2d on
    the tutorials' ``(N, nz, 1, 1)`` noise takes ``(nz,)``, reshaped to ``(1, 1, nz)`` first."""
    return _read(model, input_shape)[0]


def _read(model: nn.Module, input_shape: Shape | None) -> tuple[ReadNetwork, list[str | None], torch.fx.GraphModule]:
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
    ops: list[tuple[str, Layer | str]] = []
    nodes: list[str | None] = []
    for node in traced.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op == "call_function" and node.target is operator.getitem:
            raise SpecError(f"{where}: indexing a tensor (node {node.name}) has no spec layer")
        label = type(modules[node.target]).__name__ if node.op == "call_module" else str(node.target)
        label = getattr(node.target, "__name__", label) if node.op == "call_function" else label
        try:
            op = _from_module(modules[node.target]) if node.op == "call_module" else _from_call(node)
        except (ValueError, SpecError) as exc:
            raise not_expressible(where, len(ops), label, str(exc)) from None
        ops.append((label, op))
        nodes.append(node.name)
    read, kept = _shaped(model, where, ops, nodes, input_shape)
    return read, kept, traced


def _shaped(
    model: nn.Module, where: str, ops: list[tuple[str, Layer | str]], nodes: list[str | None], given: Shape | None
) -> tuple[ReadNetwork, list[str | None]]:
    notes: list[str] = []
    if not ops:
        raise SpecError(f"{where}: no layers found in its forward")
    first = ops[0][1]
    if isinstance(first, Dense):
        in_features = next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features
        shape: Shape = (in_features,)
    elif isinstance(first, ConvTranspose2D) and (given is None or len(given) == 1):
        conv = next(m for m in model.modules() if isinstance(m, nn.ConvTranspose2d))
        shape = (conv.in_channels,)
        ops.insert(0, ("input", Reshape(shape=(1, 1, conv.in_channels))))
        nodes.insert(0, None)
        notes.append(f"input (N, {conv.in_channels}, 1, 1) as the DCGAN tutorial draws it: the spec takes (N, "
                     f"{conv.in_channels}) and reshapes it to (1, 1, {conv.in_channels})")  # fmt: skip
    elif given is not None:
        shape = tuple(given)
    else:
        raise SpecError(f"{where}: starts with {ops[0][0]}, which does not tell its input shape; give it")
    if given is not None and len(given) == len(shape) and tuple(given) != shape:
        raise SpecError(f"{where} takes {shape} per sample, not {tuple(given)}")
    input_shape, layers, kept = shape, [], []
    for index, (label, op) in enumerate(ops):
        try:
            layer = _resolve(op, shape)
            if layer is not None:
                shape = layer.output_shape(shape)
                layers.append(layer)
                kept.append(nodes[index])
        except (ValueError, SpecError) as exc:
            raise not_expressible(where, index, label, str(exc)) from None
    for layer in layers:
        if isinstance(layer, LeakyReLU):
            notes.append(f"LeakyReLU slope {layer.slope:g} (torch's default is 0.01)")
            break
    if any(getattr(layer, "spectral_norm", None) is not None for layer in layers):
        notes.append(
            "spectral norm read from the layers' hook or parametrization (n_power_iterations, eps); in eval mode "
            "σ = uᵀWv from the stored u, v, as the spec computes it"
        )
    _check_output(model, where, input_shape, shape)
    return ReadNetwork(tuple(layers), input_shape, shape, notes), kept


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

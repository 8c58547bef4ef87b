"""The resampling and pooling calls of a user's torch model read into spec layers (for
:mod:`.introspect`): ``nn.Upsample`` (and ``UpsamplingNearest2d``/``UpsamplingBilinear2d``) or
``F.interpolate``, ``nn.AvgPool2d`` or ``F.avg_pool2d``, ``torch.sum(x, dim=(2, 3))`` or
``x.sum((2, 3))``; every torch default made explicit (``nn.UpsamplingBilinear2d`` means
``align_corners=True``; ``count_include_pad`` is torch's True wherever it pads). ``None``: not one
of them; a ``ValueError`` says what the spec cannot express."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ...spec import AvgPool2D, GlobalSumPool, Layer, Upsample


def _one(value: Any, what: str) -> Any:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if pair[0] != pair[1]:
        raise ValueError(f"{what} {pair} differs between height and width; the spec's is one number")
    return pair[0]


def _upsample(size: Any, scale_factor: Any, mode: str, align_corners: Any, antialias: bool = False) -> Layer:
    if size is not None or scale_factor is None:
        raise ValueError("an output size: the spec's Upsample takes an integer scale_factor")
    factor = _one(scale_factor, "scale_factor")
    if float(factor) != int(factor) or int(factor) < 1:
        raise ValueError(f"scale_factor {factor}: the spec's Upsample takes an integer factor")
    if mode not in ("nearest", "nearest-exact", "bilinear") or antialias:
        raise ValueError(f"mode {mode!r}{' with antialias' if antialias else ''}: the spec has nearest and bilinear")
    method = "bilinear" if mode == "bilinear" else "nearest"  # nearest-exact = nearest at an integer factor
    return Upsample(factor=int(factor), method=method, align_corners=bool(align_corners) and method == "bilinear")


def _avg_pool(kernel: Any, stride: Any, padding: Any, ceil_mode: bool, include: bool, divisor: Any) -> Layer:
    if ceil_mode or divisor is not None:
        raise ValueError("ceil_mode or divisor_override: the spec's AvgPool2D has neither")
    pool = int(_one(kernel, "kernel_size"))
    stride = pool if stride is None or stride == [] else int(_one(stride, "stride"))
    pad = int(_one(padding, "padding"))
    return AvgPool2D(pool=pool, stride=stride, padding=pad, count_include_pad=bool(include) if pad else None)


def from_module(module: nn.Module) -> Layer | None:
    """The spec layer of a resampling or pooling module, or ``None``."""
    if isinstance(module, nn.Upsample):
        return _upsample(module.size, module.scale_factor, module.mode, module.align_corners)
    if isinstance(module, nn.AvgPool2d):
        return _avg_pool(
            module.kernel_size,
            module.stride,
            module.padding,
            module.ceil_mode,
            module.count_include_pad,
            module.divisor_override,
        )
    return None


def _arg(node: torch.fx.Node, index: int, name: str, default: Any) -> Any:
    return node.kwargs.get(name, node.args[index] if len(node.args) > index else default)


def from_call(node: torch.fx.Node) -> Layer | None:
    """The spec layer of a functional or method call node, or ``None``."""
    if node.op == "call_function" and node.target is F.interpolate:
        size, scale = _arg(node, 1, "size", None), _arg(node, 2, "scale_factor", None)
        mode, corners = _arg(node, 3, "mode", "nearest"), _arg(node, 4, "align_corners", None)
        return _upsample(size, scale, mode, corners, bool(node.kwargs.get("antialias", False)))
    if node.op == "call_function" and node.target is F.avg_pool2d:
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        values = [_arg(node, i + 1, n, d) for i, (n, d) in enumerate(zip(names, (None, None, 0, False, True, None)))]
        return _avg_pool(*values)
    is_sum = (node.op == "call_function" and node.target is torch.sum) or (
        node.op == "call_method" and node.target == "sum"
    )
    if is_sum:
        dim = _arg(node, 1, "dim", None)
        if _arg(node, 2, "keepdim", False) or dim is None or sorted(d % 4 for d in dim) != [2, 3]:
            raise ValueError(f"a sum over dim={dim}: the spec's GlobalSumPool sums the spatial axes (2, 3) of NCHW")
        return GlobalSumPool()
    return None

"""PyTorch layers: the spec's layer types as ``nn.Module``s, one builder per type, and the networks.

Layouts: ``nn.Linear`` stores its weight ``(out, in)``; the canonical kernel is ``(in, out)``,
so the weight is the kernel transposed at the boundary. ``nn.Conv2d`` stores OIHW, canonical is
HWIO; ``nn.ConvTranspose2d`` stores ``(in, out, kh, kw)``, canonical is ``(kh, kw, out, in)``:
both are ``kernel.transpose(3, 2, 0, 1)``. BatchNorm's ``weight`` is the canonical ``scale``.
Images are NCHW inside torch and NHWC (canonical) outside: permuted at the network's input and
output, at a ``Reshape`` to an image and at a ``Flatten`` of an image. The ``nn.Sequential``
index of every layer equals its index in the spec, so ``state_dict`` keys (``0.weight``,
``3.running_mean``, ``2.main.0.weight`` inside a residual block: :mod:`.blocks`) line up with
canonical names (``generator.0.kernel``, ``generator.3.running_mean``, ``generator.2.main.0.kernel``).

:data:`LAYER_BUILDERS` maps each spec layer type to the function that builds its module, so a
new layer type is one entry here (and a missing one is named by :func:`build_layer`). Kept apart
from the backend because the port (``state_dict`` files run as the user's module would be) and
the data-parallel engine (BatchNorm over the global batch) build and use these modules without
a :class:`~gan_backends.backends.torch.backend.TorchBackend`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ... import layouts
from ...params import ParamTree
from ...spec import (
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
    Residual,
    Sigmoid,
    Tanh,
    layer_at,
)
from .attention import ATTENTION_BUILDERS
from .blocks import build_residual
from .resample import RESAMPLE_BUILDERS
from .spectral import BUFFER_NAMES as SN_BUFFER_NAMES
from .spectral import apply_spectral_norm

Shape = tuple[int, ...]

# -- layouts ---------------------------------------------------------------------------------


def is_image(shape: Shape) -> bool:
    """A 3-D per-sample shape is an image: ``(H, W, C)`` canonically, ``(C, H, W)`` in torch."""
    return len(shape) == 3


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    # contiguous: every conv then sees the standard NCHW memory format, so the algorithm (and
    # its rounding) does not depend on where the tensor came from.
    return x.permute(0, 3, 1, 2).contiguous()


def nchw_to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


# -- layers ----------------------------------------------------------------------------------


class Unflatten(nn.Module):
    """Reshape each sample to ``shape``, row-major over the canonical channels-last order: an
    image input is taken back to NHWC first, an image output is handed on as NCHW."""

    def __init__(self, shape: Shape, in_image: bool = False, channels_first: bool = False):
        super().__init__()
        self.shape = tuple(shape)
        self.in_image = in_image
        self.channels_first = channels_first  # Reshape(order="channels_first"): torch's own view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_image:
            x = nchw_to_nhwc(x)
        if self.channels_first:
            h, w, c = self.shape
            return x.reshape(x.shape[0], c, h, w)
        x = x.reshape(x.shape[0], *self.shape)
        return nhwc_to_nchw(x) if is_image(self.shape) else x

    def extra_repr(self) -> str:
        return f"shape={self.shape}, in_image={self.in_image}, channels_first={self.channels_first}"


class FlattenImage(nn.Module):
    """Flatten an NCHW image in the canonical ``(H, W, C)`` order (``nn.Flatten`` would give
    ``(C, H, W)``, the classic porting bug of a discriminator's last Linear)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nchw_to_nhwc(x).reshape(x.shape[0], -1)


class BF16Linear(nn.Linear):
    """``nn.Linear`` with the spec's bf16 matmul: operands and product in bfloat16, bias in
    float32 (see :class:`~gan_backends.spec.Numerics`). Same parameters, same state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.bfloat16() @ self.weight.bfloat16().T).to(x.dtype)
        return y if self.bias is None else y + self.bias


def _bf16_values(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to bfloat16, kept in its dtype; the backward rounds the gradient the same
    way, as the native bfloat16 path does."""
    return x.bfloat16().to(x.dtype)


def _add_channel_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return y if bias is None else y + bias.view(1, -1, 1, 1)


class PaddedConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters) after an explicit, possibly asymmetric, zero padding
    ``(left, right, top, bottom)``: TensorFlow's 'same' with stride > 1 pads the odd pixel at the
    bottom/right only, which torch's ``padding=`` cannot express. With ``bf16`` the operands and
    the product are bfloat16, the bias float32."""

    def __init__(self, *args, pads: tuple[int, int, int, int], bf16: bool = False, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.pads = pads
        self.bf16 = bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads)
        if not self.bf16:
            return self._conv_forward(x, self.weight, self.bias)
        y = F.conv2d(x.bfloat16(), self.weight.bfloat16(), None, self.stride).to(x.dtype)
        return _add_channel_bias(y, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pads={self.pads}, bf16={self.bf16}"


class CroppedConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters) computing the full output (padding 0), then
    cropping ``(left, right, top, bottom)`` from it (a negative amount appends zero rows, as
    torch's ``output_padding`` does), then adding the bias everywhere. Used where torch's
    ``padding``/``output_padding`` cannot express the crop (TF 'same' with odd ``k - s`` crops one
    pixel more at the end than at the start) and for bf16."""

    def __init__(self, *args, crops: tuple[int, int, int, int], bf16: bool = False, **kwargs):
        super().__init__(*args, padding=0, output_padding=0, **kwargs)
        self.crops = crops
        self.bf16 = bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        w = self.weight
        if not self.bf16:
            y = F.conv_transpose2d(x, w, None, self.stride)
        elif x.is_cuda:  # cuDNN accumulates bf16 convs in float32 (not yet measured on a GPU here)
            y = F.conv_transpose2d(x.bfloat16(), w.bfloat16(), None, self.stride).to(x.dtype)
        else:
            # The CPU kernel scatters overlapping windows in bfloat16 (col2im), rounding every
            # partial sum (3.7e-3 off the spec). The operands' products are exact in float32, so
            # a float32 transposed conv of the rounded operands, rounded once, is the spec.
            y = F.conv_transpose2d(_bf16_values(x), _bf16_values(w), None, self.stride)
            y = y.bfloat16().to(x.dtype)
        if any(self.crops):
            y = F.pad(y, tuple(-c for c in self.crops))  # negative F.pad crops, positive pads zeros
        return _add_channel_bias(y, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, crops={self.crops}, bf16={self.bf16}"


def update_running_stats(bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """The core's :meth:`~gan_backends.spec.BatchNorm.running_update` after a training call whose
    batch mean is ``mean`` and biased variance ``var`` over ``n`` values per channel, written in
    place (``mul_``/``add_``): the buffers are the tensors a captured CUDA graph and the
    data-parallel engine hold. The variance factor is the spec layer's
    (``bn.spec_layer``, set by :func:`build_batchnorm`). Call under ``torch.no_grad()``."""
    m, factor = bn.momentum, bn.spec_layer.variance_factor(n)
    bn.running_mean.mul_(1.0 - m).add_(mean, alpha=m)
    bn.running_var.mul_(1.0 - m).add_(var * factor, alpha=m)
    bn.num_batches_tracked.add_(1)


class BiasedRunningVar:
    """Mixin for torch BatchNorm: the running variance tracks the biased batch variance (Keras,
    Flax) instead of torch's ``n/(n-1)`` one. Normalisation, parameters, buffers and state_dict
    are torch's; only the training-mode running update is written out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)  # type: ignore[misc]
        # Batch statistics without touching the buffers (running stats None), as torch does.
        y = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            dims = [d for d in range(x.ndim) if d != 1]
            h = x.detach()
            mean = h.mean(dims, keepdim=True)
            var = (h - mean).square().mean(dims)  # two-pass, biased (1/n)
            update_running_stats(self, mean.flatten(), var, h.numel() // h.shape[1])  # type: ignore[arg-type]
        return y


class ChannelsLast:
    """Mixin for ``nn.BatchNorm1d`` on per-sample shapes ``(..., C)`` that are neither flat nor
    images (kept canonical in torch): moved to ``(N, C, L)`` and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[-1]
        y = super().forward(x.reshape(n, -1, c).transpose(1, 2))  # type: ignore[misc]
        return y.transpose(1, 2).reshape(x.shape)


class BiasedBatchNorm1d(BiasedRunningVar, nn.BatchNorm1d):
    pass


class BiasedBatchNorm2d(BiasedRunningVar, nn.BatchNorm2d):
    pass


class ChannelsLastBatchNorm(ChannelsLast, nn.BatchNorm1d):
    pass


class ChannelsLastBiasedBatchNorm(ChannelsLast, BiasedRunningVar, nn.BatchNorm1d):
    pass


def build_batchnorm(layer: BatchNorm, in_shape: Shape) -> nn.Module:
    """torch's own BatchNorm1d/2d where the spec is torch's convention (momentum = weight of the
    new statistic, unbiased running variance); the biased variance by a mixin."""
    biased = layer.running_var == "biased"
    if len(in_shape) == 1:
        cls = BiasedBatchNorm1d if biased else nn.BatchNorm1d
    elif is_image(in_shape):
        cls = BiasedBatchNorm2d if biased else nn.BatchNorm2d
    else:
        cls = ChannelsLastBiasedBatchNorm if biased else ChannelsLastBatchNorm
    module = cls(in_shape[-1], eps=layer.eps, momentum=layer.momentum)
    # The spec layer, whose variance_factor the written-out running updates use (the biased
    # mixin here, AllReduceBatchNorm in parallel.py); not a parameter or buffer: no state_dict entry.
    module.spec_layer = layer
    return module


def build_conv(layer: Conv2D, in_shape: Shape, bf16: bool) -> nn.Module:
    (top, bottom), (left, right) = layer.pads(in_shape)
    args = (in_shape[2], layer.filters, layer.kernel, layer.stride)
    if top == bottom and left == right and not bf16:
        return nn.Conv2d(*args, padding=(top, left), bias=layer.use_bias)
    return PaddedConv2d(*args, pads=(left, right, top, bottom), bf16=bf16, bias=layer.use_bias)


def build_conv_transpose(layer: ConvTranspose2D, in_shape: Shape, bf16: bool) -> nn.Module:
    (top, bottom), (left, right) = layer.crops(in_shape)
    args = (in_shape[2], layer.filters, layer.kernel, layer.stride)
    # torch keeps rows [p, full - p + output_padding): top = p, bottom = p - output_padding.
    out_pad = (top - bottom, left - right)
    if not bf16 and all(0 <= op < layer.stride for op in out_pad):
        return nn.ConvTranspose2d(*args, padding=(top, left), output_padding=out_pad, bias=layer.use_bias)
    return CroppedConvTranspose2d(*args, crops=(left, right, top, bottom), bf16=bf16, bias=layer.use_bias)


# -- the builder table -----------------------------------------------------------------------

#: A builder: ``(spec layer, canonical per-sample input shape, bf16 matmuls) -> nn.Module``.
Builder = Callable[..., nn.Module]


def build_dense(layer: Dense, in_shape: Shape, bf16: bool) -> nn.Module:
    return (BF16Linear if bf16 else nn.Linear)(in_shape[0], layer.units, bias=layer.use_bias)


def _batchnorm(layer: BatchNorm, in_shape: Shape, bf16: bool) -> nn.Module:
    return build_batchnorm(layer, in_shape)  # no matmul: bf16 does not apply


def _leaky_relu(layer: LeakyReLU, in_shape: Shape, bf16: bool) -> nn.Module:
    return nn.LeakyReLU(negative_slope=layer.slope)


def _stateless(cls: type[nn.Module]) -> Builder:
    """The builder of a parameter-free activation: ``cls()`` whatever the layer and shape."""

    def build(layer: Layer, in_shape: Shape, bf16: bool) -> nn.Module:
        return cls()

    return build


def _reshape(layer: Reshape, in_shape: Shape, bf16: bool) -> nn.Module:
    return Unflatten(layer.shape, in_image=is_image(in_shape), channels_first=layer.order == "channels_first")


def _flatten(layer: Flatten, in_shape: Shape, bf16: bool) -> nn.Module:
    return FlattenImage() if is_image(in_shape) else nn.Flatten()


#: Spec layer type -> its builder: one entry per type of :data:`gan_backends.spec.LAYER_TYPES`.
LAYER_BUILDERS: dict[type[Layer], Builder] = {
    Dense: build_dense,
    Conv2D: build_conv,
    ConvTranspose2D: build_conv_transpose,
    BatchNorm: _batchnorm,
    ReLU: _stateless(nn.ReLU),
    LeakyReLU: _leaky_relu,
    Tanh: _stateless(nn.Tanh),
    Sigmoid: _stateless(nn.Sigmoid),
    Reshape: _reshape,
    Flatten: _flatten,
    **RESAMPLE_BUILDERS,  # Upsample, AvgPool2D, GlobalSumPool (resample.py)
    **ATTENTION_BUILDERS,  # SelfAttention (attention.py)
    Residual: build_residual,
}


def build_layer(layer: Layer, in_shape: Shape, bf16: bool = False) -> nn.Module:
    """The module of one spec layer with canonical per-sample input shape ``in_shape``, by the
    builder of its type (or of the nearest base class that has one, as the isinstance chain
    this table replaced did); a type with no builder is named in a ``NotImplementedError``."""
    builder = next((LAYER_BUILDERS[cls] for cls in type(layer).__mro__ if cls in LAYER_BUILDERS), None)
    if builder is None:
        raise NotImplementedError(f"torch has no builder for layer type {type(layer).__name__}")
    # A kernel layer's spectral_norm option, when set: torch's spectral_norm rearrangement.
    return apply_spectral_norm(builder(layer, in_shape, bf16), getattr(layer, "spectral_norm", None))


# -- networks --------------------------------------------------------------------------------


def build_network(spec: GANSpec, net: str) -> nn.Sequential:
    """The spec's ``net`` as ``nn.Sequential``, module ``i`` built from spec layer ``i`` (so that
    ``state_dict`` keys line up with canonical names); NCHW images inside, see :class:`CanonicalIO`."""
    bf16 = spec.numerics.matmul_precision == "bf16"
    return nn.Sequential(
        *(build_layer(layer, s[0], bf16) for layer, s in zip(spec.layers(net), spec.layer_shapes(net)))
    )


class CanonicalIO(nn.Module):
    """A network with canonical NHWC images at its input and output (NCHW inside). Holds the
    ``nn.Sequential`` whose ``state_dict`` is the user-facing one."""

    def __init__(self, net: nn.Sequential, in_image: bool, out_image: bool):
        super().__init__()
        self.net = net
        self.in_image, self.out_image = in_image, out_image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(nhwc_to_nchw(x) if self.in_image else x)
        return nchw_to_nhwc(y) if self.out_image else y


def to_torch_layout(name: str, value: np.ndarray) -> np.ndarray:
    """Canonical array ``name`` -> torch layout (:mod:`gan_backends.layouts`)."""
    return layouts.to_native("torch", layouts.role_of(name), value)


def from_torch_layout(name: str, value: np.ndarray) -> np.ndarray:
    """Torch layout -> canonical (the inverse of :func:`to_torch_layout`)."""
    return layouts.from_native("torch", layouts.role_of(name), value)


# -- canonical names -------------------------------------------------------------------------


def _canonical_short(module: nn.Module, layers, tname: str) -> tuple[str, str]:
    """(layer path, canonical short name) of the torch parameter ``tname``: the path of the spec
    layer that owns it (``2`` or ``2.main.0`` inside a residual block) and its short name, which a
    module of several parameters (attention.py) names itself through ``canonical_name``."""
    parts = tname.split(".")
    for k in range(1, len(parts)):
        owner = module.get_submodule(".".join(parts[:k]))
        if hasattr(owner, "canonical_name"):
            return ".".join(parts[:k]), owner.canonical_name(".".join(parts[k:]))
    path, attr = tname.rsplit(".", 1)
    short = "bias" if attr == "bias" else "scale" if isinstance(layer_at(layers, path), BatchNorm) else "kernel"
    return path, short


def canonical_parameters(spec: GANSpec, net: str, module: nn.Sequential) -> dict[str, nn.Parameter]:
    """Canonical name (``generator.0.kernel``) -> parameter of ``module``, the spec's ``net`` as
    :func:`build_network` makes it: ``weight`` is a BatchNorm's ``scale``, every other layer's ``kernel``."""
    layers = spec.layers(net)
    out = {}
    for tname, param in module.named_parameters():
        path, short = _canonical_short(module, layers, tname)
        out[f"{net}.{path}.{short}"] = param
    return out


def canonical_buffers(net: str, module: nn.Sequential) -> dict[str, torch.Tensor]:
    """Canonical name -> BatchNorm running statistic (``num_batches_tracked`` is unused) or
    spectral-norm vector (``weight_u`` -> ``sn_u``; ``weight_v`` in torch's order, see
    :mod:`.spectral`) of ``module``."""
    out = {}
    for tname, buf in module.named_buffers():
        path, attr = tname.rsplit(".", 1)
        if attr in ("running_mean", "running_var"):
            out[f"{net}.{path}.{attr}"] = buf
        elif attr in SN_BUFFER_NAMES:
            out[f"{net}.{path}.{SN_BUFFER_NAMES[attr]}"] = buf
    return out


def canonical_tree(tensors: dict[str, torch.Tensor]) -> ParamTree:
    """Canonical name -> torch tensor, as a canonical tree of NumPy arrays (canonical layouts)."""
    # A copy: on the CPU, .numpy() shares memory with the live parameter or buffer, and an
    # exported tree must not change under the caller when training goes on.
    return {name: np.array(from_torch_layout(name, t.detach().cpu().numpy()), order="C") for name, t in tensors.items()}


def copy_canonical(tensors: dict[str, torch.Tensor], tree: ParamTree, dtype: np.dtype) -> None:
    """Copy the arrays of the canonical ``tree`` (cast to ``dtype``) into ``tensors`` (canonical
    name -> parameter or buffer) in place, in torch layout: the inverse of :func:`canonical_tree`."""
    with torch.no_grad():
        for name, t in tensors.items():
            t.copy_(torch.from_numpy(np.ascontiguousarray(to_torch_layout(name, tree[name]), dtype=dtype)))

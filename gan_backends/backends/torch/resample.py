"""PyTorch modules of the resampling and pooling layers (``Upsample``, ``AvgPool2D``,
``GlobalSumPool``): :data:`RESAMPLE_BUILDERS`, merged into ``layers.LAYER_BUILDERS``. NCHW inside,
as every torch layer of the suite.

torch's own modules wherever they mean the spec: ``nn.Upsample`` (its ``scale_factor`` k gives
the source coordinate ``(o + 0.5)/k - 0.5``, the spec's, for an integer factor), ``nn.AvgPool2d``
for symmetric padding of at most half the window (torch refuses more). TensorFlow's 'same'
pads the odd pixel at the bottom/right only, which ``padding=`` cannot say: then ``F.pad`` and an
unpadded pool, and without ``count_include_pad`` the window sums are divided by the count of real
pixels, pooled from ones the same way (Flax's own ``avg_pool`` does the same).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...spec import AvgPool2D, GlobalSumPool, Layer, Upsample

Shape = tuple[int, ...]


def build_upsample(layer: Upsample, in_shape: Shape, bf16: bool) -> nn.Module:
    # mode and align_corners always explicit: nn.Upsample defaults to nearest.
    align = layer.align_corners if layer.method == "bilinear" else None
    return nn.Upsample(scale_factor=layer.factor, mode=layer.method, align_corners=align)


class PaddedAvgPool2d(nn.Module):
    """``F.pad`` with ``(left, right, top, bottom)``, a ``pool × pool`` average with divisor
    ``pool²``, and without ``count_include_pad`` the average over the real pixels only:
    ``avg(pad(x)) / avg(pad(1))``."""

    def __init__(self, pool: int, stride: int, pads: tuple[int, int, int, int], count_include_pad: bool):
        super().__init__()
        self.pool, self.stride, self.pads, self.count_include_pad = pool, stride, pads, count_include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(F.pad(x, self.pads), self.pool, self.stride)
        if self.count_include_pad:
            return y
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        return y / F.avg_pool2d(F.pad(ones, self.pads), self.pool, self.stride)

    def extra_repr(self) -> str:
        return f"pool={self.pool}, stride={self.stride}, pads={self.pads}, count_include_pad={self.count_include_pad}"


def build_avg_pool(layer: AvgPool2D, in_shape: Shape, bf16: bool) -> nn.Module:
    (top, bottom), (left, right) = layer.pads(in_shape)
    include = bool(layer.count_include_pad)  # None only where nothing is padded: then it does not matter
    if top == bottom and left == right and 2 * max(top, left) <= layer.pool:
        return nn.AvgPool2d(layer.pool, layer.stride, padding=(top, left), count_include_pad=include)
    return PaddedAvgPool2d(layer.pool, layer.stride, (left, right, top, bottom), include)  # type: ignore[arg-type]


class SumPool2d(nn.Module):
    """``(N, C, H, W) -> (N, C)``: ``torch.sum(x, dim=(2, 3))``, SNGAN's discriminator head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(x, dim=(2, 3))


def build_global_sum_pool(layer: GlobalSumPool, in_shape: Shape, bf16: bool) -> nn.Module:
    return SumPool2d()


#: Spec layer type -> builder ``(layer, canonical input shape, bf16) -> nn.Module`` (no matmul: bf16 does not apply).
RESAMPLE_BUILDERS: dict[type[Layer], Callable[..., nn.Module]] = {
    Upsample: build_upsample,
    AvgPool2D: build_avg_pool,
    GlobalSumPool: build_global_sum_pool,
}

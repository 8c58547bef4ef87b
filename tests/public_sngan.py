"""SNGAN's CIFAR-10 ResNet as Mimicry writes it (kwotsin/mimicry, ``torch_mimicry/nets/sngan/
sngan_32.py`` and ``torch_mimicry/modules/resblocks.py``), for the port tests: a public PyTorch
implementation that people train and save with its own ``state_dict``.

Rewritten here (no dependency on the package) keeping what a port depends on: the module
names and their registration order (``c1, c2, b1, b2, c_sc`` in a ``GBlock``: not the call
order), the forward as written (Python branches on ``self.upsample``/``self.learnable_sc``,
``self._residual(x) + self._shortcut(x)``, one shared ``nn.ReLU(True)`` per block working in
place, bilinear upsampling with ``align_corners=False``, ``F.avg_pool2d(h, 2)``, the global sum
``torch.sum(h, dim=(2, 3))``), the spectral-norm wrappers (``torch.nn.utils.spectral_norm``),
conv biases everywhere (also before BatchNorm) and Mimicry's Xavier-uniform initialisation
(gain √2 in the blocks' 3×3 convolutions). The sizes are parameters so that tests run at
``sngan-small`` size: ``n_blocks`` up-blocks (Mimicry: 3, from 4×4 to 32×32). Conditional
batch norm (``num_classes``) is left out: the SNGAN-32 networks do not use it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def SNConv2d(*args, **kwargs) -> nn.Module:  # noqa: N802 (Mimicry's name)
    return nn.utils.spectral_norm(nn.Conv2d(*args, **kwargs))


def SNLinear(*args, **kwargs) -> nn.Module:  # noqa: N802
    return nn.utils.spectral_norm(nn.Linear(*args, **kwargs))


class GBlock(nn.Module):
    """Generator block: ``BN, ReLU, up, conv3, BN, ReLU, conv3`` plus ``up, conv1`` (learnable)."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int | None = None, upsample: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels = hidden_channels if hidden_channels is not None else out_channels
        self.learnable_sc = in_channels != out_channels or upsample
        self.upsample = upsample
        self.c1 = nn.Conv2d(self.in_channels, self.hidden_channels, 3, 1, padding=1)
        self.c2 = nn.Conv2d(self.hidden_channels, self.out_channels, 3, 1, padding=1)
        self.b1 = nn.BatchNorm2d(self.in_channels)
        self.b2 = nn.BatchNorm2d(self.hidden_channels)
        self.activation = nn.ReLU(True)
        nn.init.xavier_uniform_(self.c1.weight.data, math.sqrt(2.0))
        nn.init.xavier_uniform_(self.c2.weight.data, math.sqrt(2.0))
        if self.learnable_sc:
            self.c_sc = nn.Conv2d(in_channels, out_channels, 1, 1, padding=0)
            nn.init.xavier_uniform_(self.c_sc.weight.data, 1.0)

    def _upsample_conv(self, x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
        return conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(self.b1(x))
        h = self._upsample_conv(h, self.c1) if self.upsample else self.c1(h)
        h = self.activation(self.b2(h))
        return self.c2(h)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.learnable_sc:
            return self._upsample_conv(x, self.c_sc) if self.upsample else self.c_sc(x)
        return x

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            return self._residual(x) + self._shortcut(x)
        raise NotImplementedError("conditional batch norm: not part of SNGAN-32")


class DBlock(nn.Module):
    """Discriminator block: ``ReLU, conv3, ReLU, conv3 (, pool)`` plus ``conv1 (, pool)`` or the
    identity. Its first ReLU works in place on the block's input, so the shortcut sees it too."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int | None = None, downsample=False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels = hidden_channels if hidden_channels is not None else in_channels
        self.downsample = downsample
        self.learnable_sc = (in_channels != out_channels) or downsample
        self.c1 = SNConv2d(self.in_channels, self.hidden_channels, 3, 1, 1)
        self.c2 = SNConv2d(self.hidden_channels, self.out_channels, 3, 1, 1)
        self.activation = nn.ReLU(True)
        nn.init.xavier_uniform_(self.c1.weight.data, math.sqrt(2.0))
        nn.init.xavier_uniform_(self.c2.weight.data, math.sqrt(2.0))
        if self.learnable_sc:
            self.c_sc = SNConv2d(in_channels, out_channels, 1, 1, 0)
            nn.init.xavier_uniform_(self.c_sc.weight.data, 1.0)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(self.activation(x))
        h = self.c2(self.activation(h))
        return F.avg_pool2d(h, 2) if self.downsample else h

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.learnable_sc:
            x = self.c_sc(x)
            return F.avg_pool2d(x, 2) if self.downsample else x
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._residual(x) + self._shortcut(x)


class DBlockOptimized(nn.Module):
    """The first D block: ``conv3, ReLU, conv3, pool`` plus ``pool, conv1``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.c1 = SNConv2d(self.in_channels, self.out_channels, 3, 1, 1)
        self.c2 = SNConv2d(self.out_channels, self.out_channels, 3, 1, 1)
        self.c_sc = SNConv2d(self.in_channels, self.out_channels, 1, 1, 0)
        self.activation = nn.ReLU(True)
        nn.init.xavier_uniform_(self.c1.weight.data, math.sqrt(2.0))
        nn.init.xavier_uniform_(self.c2.weight.data, math.sqrt(2.0))
        nn.init.xavier_uniform_(self.c_sc.weight.data, 1.0)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c2(self.activation(self.c1(x)))
        return F.avg_pool2d(h, 2)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_sc(F.avg_pool2d(x, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._residual(x) + self._shortcut(x)


class SNGANGenerator32(nn.Module):
    """``l1 -> view(N, ngf, 4, 4) -> block2..blockN -> b5, ReLU, c5, tanh`` (Mimicry's
    ``SNGANGenerator32`` with ``n_blocks`` up-blocks; 3 there)."""

    def __init__(self, nz: int = 128, ngf: int = 256, bottom_width: int = 4, n_blocks: int = 3):
        super().__init__()
        self.nz, self.ngf, self.bottom_width = nz, ngf, bottom_width
        self.l1 = nn.Linear(self.nz, (self.bottom_width**2) * self.ngf)
        for i in range(n_blocks):
            setattr(self, f"block{i + 2}", GBlock(self.ngf, self.ngf, upsample=True))
        self.n_blocks = n_blocks
        self.b5 = nn.BatchNorm2d(self.ngf)
        self.c5 = nn.Conv2d(self.ngf, 3, 3, 1, padding=1)
        self.activation = nn.ReLU(True)
        nn.init.xavier_uniform_(self.l1.weight.data, 1.0)
        nn.init.xavier_uniform_(self.c5.weight.data, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.l1(x)
        h = h.view(x.shape[0], -1, self.bottom_width, self.bottom_width)
        for i in range(self.n_blocks):
            h = getattr(self, f"block{i + 2}")(h)
        h = self.b5(h)
        h = self.activation(h)
        return torch.tanh(self.c5(h))


class SNGANDiscriminator32(nn.Module):
    """``block1 (optimised) -> block2 (down) -> block3, block4 -> ReLU -> sum over positions ->
    l5`` (Mimicry's ``SNGANDiscriminator32``)."""

    def __init__(self, ndf: int = 128):
        super().__init__()
        self.ndf = ndf
        self.block1 = DBlockOptimized(3, self.ndf)
        self.block2 = DBlock(self.ndf, self.ndf, downsample=True)
        self.block3 = DBlock(self.ndf, self.ndf, downsample=False)
        self.block4 = DBlock(self.ndf, self.ndf, downsample=False)
        self.l5 = SNLinear(self.ndf, 1)
        self.activation = nn.ReLU(True)
        nn.init.xavier_uniform_(self.l5.weight.data, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        h = self.block2(h)
        h = self.block3(h)
        h = self.block4(h)
        h = self.activation(h)
        h = torch.sum(h, dim=(2, 3))
        return self.l5(h)

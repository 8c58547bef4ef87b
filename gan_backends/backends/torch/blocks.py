"""The residual block in torch: an ``nn.Module`` with ``main`` and ``shortcut`` ``nn.Sequential``
children, ``forward(x) = main(x) + shortcut(x)`` (semantics: :mod:`gan_backends.spec.blocks`).

Each branch is built layer by layer as a network is (:func:`~.layers.build_layer`, from the
canonical input shape of each sublayer), so images stay NCHW between the branch's layers and a
``Reshape``/``Flatten`` inside a branch permutes to the canonical ``(H, W, C)`` order as it does
in a network; both branches end in the same layout, so their sum needs no permutation. The
``state_dict`` keys read ``2.main.0.weight``, ``2.shortcut.0.bias``: the canonical names
``discriminator.2.main.0.kernel``, ``discriminator.2.shortcut.0.bias``. An empty shortcut is an
empty ``nn.Sequential``, which returns its input.
"""

from __future__ import annotations

import torch
from torch import nn

from ...spec import Residual, Shape


class ResidualBlock(nn.Module):
    """``main(x) + shortcut(x)``."""

    def __init__(self, main: nn.Sequential, shortcut: nn.Sequential):
        super().__init__()
        self.main, self.shortcut = main, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


def build_residual(layer: Residual, in_shape: Shape, bf16: bool) -> nn.Module:
    """The block of ``layer`` on canonical per-sample input ``in_shape``."""
    from .layers import build_layer  # layers.py's table holds this builder

    def branch(name: str) -> nn.Sequential:
        shapes = layer.branch_shapes(in_shape, name)
        return nn.Sequential(*(build_layer(sub, s[0], bf16) for sub, s in zip(getattr(layer, name), shapes)))

    return ResidualBlock(branch("main"), branch("shortcut"))

"""PyTorch module of SAGAN's self-attention block (:class:`~gan_backends.spec.SelfAttention`):
:data:`ATTENTION_BUILDERS`, merged into ``layers.LAYER_BUILDERS``. NCHW inside.

Written as the public SAGAN code writes it (``heykeetae/Self-Attention-GAN``'s ``Self_Attn``):
1×1 ``nn.Conv2d`` projections, the pixels viewed as ``(B, C, N)``, ``torch.bmm`` for the scores
and the weighted values, ``softmax(dim=-1)`` over the key positions. The children are named
``query``, ``key``, ``value`` (and ``out``), so the state_dict keys read ``3.query.weight``,
``3.gamma``; :meth:`SelfAttention2d.canonical_name` maps them to the canonical short names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ...spec import Layer, SelfAttention

Shape = tuple[int, ...]


class SelfAttention2d(nn.Module):
    """``y = x + γ·W_o(softmax_j(f gᵀ) h)`` on an NCHW batch (the spec's docstring)."""

    def __init__(self, layer: SelfAttention, in_shape: Shape):
        super().__init__()
        convs = layer.conv_shapes(in_shape)
        self.query, self.key, self.value = (nn.Conv2d(*convs[p], 1, bias=layer.use_bias) for p in convs if p != "out")
        self.out = nn.Conv2d(*convs["out"], 1, bias=layer.use_bias) if "out" in convs else None
        self.gamma = nn.Parameter(torch.zeros(1))

    @staticmethod
    def canonical_name(attr: str) -> str:
        """``query.weight`` -> ``query_kernel``, ``query.bias`` -> ``query_bias``, ``gamma`` -> ``gamma``."""
        if attr == "gamma":
            return attr
        part, kind = attr.split(".")
        return f"{part}_{'kernel' if kind == 'weight' else 'bias'}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        f = self.query(x).view(b, -1, h * w).permute(0, 2, 1)  # (B, N, K)
        g = self.key(x).view(b, -1, h * w)  # (B, K, N)
        beta = torch.softmax(torch.bmm(f, g), dim=-1)  # (B, N, N): row i over the key positions j
        v = self.value(x).view(b, -1, h * w)  # (B, V, N)
        o = torch.bmm(v, beta.permute(0, 2, 1)).view(b, -1, h, w)  # o[:, :, i] = Σ_j β[i, j] v[:, :, j]
        if self.out is not None:
            o = self.out(o)
        return x + self.gamma * o


def build_self_attention(layer: SelfAttention, in_shape: Shape, bf16: bool) -> nn.Module:
    # bf16 does not apply: the block computes in the spec dtype (docs/conv-gans.md).
    return SelfAttention2d(layer, in_shape)


#: Spec layer type -> builder ``(layer, canonical input shape, bf16) -> nn.Module``.
ATTENTION_BUILDERS: dict[type[Layer], Callable[..., nn.Module]] = {SelfAttention: build_self_attention}

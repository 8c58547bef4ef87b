"""SAGAN's self-attention block (Zhang et al. 2019, "Self-Attention Generative Adversarial
Networks") as one spec layer type, :class:`SelfAttention`; registered in
:data:`~gan_backends.spec.layers.LAYER_TYPES` on import (the package imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Shape, SpecError, _require_bool, _require_positive_int
from .layers import LAYER_TYPES, Layer, _require_image
from .spectral import SpectralNormSpec, parse_spectral_norm

#: The 1×1 convolutions of the block, in parameter order: ``query`` (f), ``key`` (g), ``value``
#: (h) and, when ``value_channels != C``, ``out`` (W_o).
PROJECTIONS: tuple[str, ...] = ("query", "key", "value", "out")


@dataclass(frozen=True, kw_only=True)
class SelfAttention(Layer):
    """Self-attention over the ``N = H·W`` positions of a channels-last ``(H, W, C)`` image,
    shape-preserving. With ``x`` the ``(N, C)`` matrix of one sample's pixels (row-major over
    ``(H, W)``), ``K = key_channels`` and ``V = value_channels`` (default ``C``)::

        f = x W_q + b_q          (N, K)   query   1×1 conv, kernel (1, 1, C, K)
        g = x W_k + b_k          (N, K)   key     1×1 conv, kernel (1, 1, C, K)
        h = x W_v + b_v          (N, V)   value   1×1 conv, kernel (1, 1, C, V)
        s = f gᵀ                 (N, N)   s[i, j]: query position i against key position j
        β = softmax_j(s)         (N, N)   each row sums to 1 over the key positions j (max subtracted)
        o = β h                  (N, V)
        o = o W_o + b_o          (N, C)   only when V != C (the output 1×1 conv)
        y = x + γ·o                       γ a learnable scalar, initialised 0 by every init scheme

    so the block starts as the identity and learns how much non-local evidence to mix in (the
    paper's reason for γ = 0). No 1/√K scaling of ``s`` (SAGAN has none, unlike a transformer).
    The key bias ``b_k`` adds ``f_i·b_k`` to every score of row ``i``, which the softmax cancels:
    it has no effect and its gradient is 0 (up to rounding); kept because SAGAN's ``key_conv``
    has it (ported weights carry it).

    This is the original SAGAN form (``heykeetae/Self-Attention-GAN``'s ``Self_Attn``, the
    paper's Figure 2: no pooling, biases on the convs, ``value`` C → C, no output conv; there
    ``K = C/8``, and its ``energy = bmm(proj_query, proj_key)`` with ``proj_query`` ``(B, N, K)``
    is the ``s`` above, ``softmax(dim=-1)`` over the key positions, ``out = bmm(value, βᵀ)``).
    Variants not written here: BigGAN-PyTorch's and PyTorch-StudioGAN's ``Attention`` max-pool
    ``phi`` (key) and ``g`` (value) 2×2 (N/4 key positions), use ``K = C/8``, ``V = C/2`` with an
    output conv ``o`` V → C, no biases (``use_bias=False`` gives that form without the pooling)
    and spectral norm on every conv. With ``V != C`` here the output conv is always present.

    Parameters (canonical names, HWIO kernels as ``Conv2D``'s): ``query_kernel``
    ``(1, 1, C, K)``, ``query_bias`` ``(K,)``, ``key_kernel``, ``key_bias``, ``value_kernel``
    ``(1, 1, C, V)``, ``value_bias``, [``out_kernel`` ``(1, 1, V, C)``, ``out_bias``], ``gamma``
    ``(1,)``. torch's state_dict keys are those of an ``nn.Module`` with ``query``, ``key``,
    ``value``, ``out`` ``Conv2d`` children and a ``gamma`` parameter (``query.weight`` ...).

    ``spectral_norm`` on the block's convolutions (SAGAN applies it to every conv) is refused
    for now: its four sets of ``u``/``v`` buffers have no canonical names yet.
    """

    type_name: ClassVar[str] = "SelfAttention"
    key_channels: int
    value_channels: int | None = None
    use_bias: bool = True
    spectral_norm: SpectralNormSpec | None = None

    def __post_init__(self) -> None:
        _require_positive_int("SelfAttention.key_channels", self.key_channels)
        if self.value_channels is not None:
            _require_positive_int("SelfAttention.value_channels", self.value_channels)
        _require_bool("SelfAttention.use_bias", self.use_bias)
        if parse_spectral_norm("SelfAttention", self.spectral_norm) is not None:
            raise SpecError(
                "SelfAttention.spectral_norm is not supported yet: the block's four 1×1 convolutions would each need "
                "their own sn_u/sn_v buffers, which have no canonical names; apply spectral_norm to the Conv2D "
                "layers around the block, or leave it off here"
            )

    def channels(self, input_shape: Shape) -> tuple[int, int, int]:
        """``(C, K, V)`` for this input: ``V = value_channels`` or ``C``."""
        c = input_shape[2]
        return c, self.key_channels, c if self.value_channels is None else self.value_channels

    def has_out(self, input_shape: Shape) -> bool:
        """Whether the block has the output 1×1 conv ``W_o`` (``V != C``)."""
        c, _, v = self.channels(input_shape)
        return v != c

    def output_shape(self, input_shape: Shape) -> Shape:
        _require_image("SelfAttention", input_shape)
        return tuple(input_shape)

    def conv_shapes(self, input_shape: Shape) -> dict[str, tuple[int, int]]:
        """``(in, out)`` channels of each 1×1 convolution the block has, in parameter order."""
        c, k, v = self.channels(input_shape)
        shapes = {"query": (c, k), "key": (c, k), "value": (c, v)}
        if v != c:
            shapes["out"] = (v, c)
        return shapes

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        _require_image("SelfAttention", input_shape)
        shapes: dict[str, Shape] = {}
        for part, (cin, cout) in self.conv_shapes(input_shape).items():
            shapes[f"{part}_kernel"] = (1, 1, cin, cout)
            if self.use_bias:
                shapes[f"{part}_bias"] = (cout,)
        shapes["gamma"] = (1,)  # as SAGAN's public code keeps it: nn.Parameter(torch.zeros(1))
        return shapes


LAYER_TYPES[SelfAttention.type_name] = SelfAttention

__all__ = ["PROJECTIONS", "SelfAttention"]

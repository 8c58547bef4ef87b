"""SAGAN's self-attention block (:class:`~gan_backends.spec.SelfAttention`) in Flax:
:data:`ATTENTION_BUILDERS`, merged into ``layers.LAYER_BUILDERS``, and :func:`self_attention`,
the plain function the port's native Flax model uses too. NHWC; ``jnp.einsum`` with an explicit
precision (the default may run TF32 on a GPU), ``jax.nn.softmax`` over the key positions (it
subtracts the row maximum)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ...spec import Layer, SelfAttention

HIGHEST = jax.lax.Precision.HIGHEST


def self_attention(layer: SelfAttention, p: dict[str, jax.Array], x: jax.Array, precision: Any = HIGHEST) -> jax.Array:
    """``y = x + γ·W_o(softmax_j(f gᵀ) h)`` of an NHWC batch, parameters by canonical short name."""
    b, h, w, c = x.shape
    xs = x.reshape(b, h * w, c)

    def project(part: str, v: jax.Array) -> jax.Array:
        y = jnp.einsum("bnc,ck->bnk", v, p[f"{part}_kernel"][0, 0], precision=precision)
        return y + p[f"{part}_bias"] if layer.use_bias else y

    f, g, v = (project(part, xs) for part in ("query", "key", "value"))
    beta = jax.nn.softmax(jnp.einsum("bik,bjk->bij", f, g, precision=precision), axis=-1)
    o = jnp.einsum("bij,bjv->biv", beta, v, precision=precision)
    if layer.has_out(x.shape[1:]):
        o = project("out", o)
    return (xs + p["gamma"] * o).reshape(x.shape)


class SelfAttentionModule(nn.Module):
    """The block's parameters under their canonical short names (``query_kernel`` ... ``gamma``)."""

    layer: SelfAttention
    dtype: Any
    precision: Any = HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shapes = self.layer.param_shapes(x.shape[1:])
        p = {name: self.param(name, nn.initializers.zeros, shape, self.dtype) for name, shape in shapes.items()}
        return self_attention(self.layer, p, x, self.precision)


def _build(layer: SelfAttention, net: Any, name: str) -> Callable[[jax.Array, bool], jax.Array]:
    # bf16 does not apply (the block computes in the spec dtype): then HIGHEST, as for 'highest'.
    precision = HIGHEST if net.precision == "bf16" else net.precision
    module = SelfAttentionModule(layer, net.dtype, precision, name=name)
    return lambda x, training: module(x)


#: Spec layer type -> builder ``(layer, net, name) -> (x, training) -> y``.
ATTENTION_BUILDERS: dict[type[Layer], Callable[..., Callable[[jax.Array, bool], jax.Array]]] = {SelfAttention: _build}

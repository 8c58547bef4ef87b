"""Spectral normalisation in Flax, written out (semantics: :mod:`gan_backends.spec.spectral`).

Not ``flax.linen.SpectralNorm``: that one normalises with ``x·rsqrt(Σx² + eps)`` (eps inside
the root), stores ``u`` ``(1, out)`` and ``sigma`` but no ``v``, and iterates once more in every
call, ``update_stats=False`` included, so its inference σ is not torch's ``uᵀ W v`` from the
stored vectors (docs/framework-differences.md). :class:`SpectralNormed` keeps the kernel (and
bias) under ``params/{i}`` as the plain layer does and ``sn_u``/``sn_v`` under
``batch_stats/{i}``, next to BatchNorm's statistics, so they travel the same way: stored only
when ``batch_stats`` is mutable (``train_step``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ...spec import Conv2D, Dense
from ...spec.spectral import matrix_shape

HIGHEST = jax.lax.Precision.HIGHEST


def _normalize(x: jax.Array, eps: float) -> jax.Array:
    """``x / max(‖x‖, eps)`` (torch's ``F.normalize``)."""
    return x / jnp.maximum(jnp.sqrt(jnp.sum(x * x)), eps)


class SpectralNormed(nn.Module):
    """A Dense or Conv2D layer of the spec whose kernel is divided by σ before
    :func:`~.layers.product` applies it (the spec's precision policy), then the bias."""

    layer: Dense | Conv2D
    dtype: Any
    precision: Any

    @nn.compact
    def __call__(self, x: jax.Array, training: bool) -> jax.Array:
        from .layers import IMAGE_DIMS, dot, product  # layers imports this module

        shapes = self.layer.param_shapes(x.shape[1:])
        kernel = self.param("kernel", nn.initializers.zeros, shapes["kernel"], self.dtype)
        out, fan_in = matrix_shape(shapes["kernel"])
        u_var = self.variable("batch_stats", "sn_u", jnp.zeros, (out,), self.dtype)
        v_var = self.variable("batch_stats", "sn_v", jnp.zeros, (fan_in,), self.dtype)
        sn = self.layer.spectral_norm
        w = kernel.reshape(-1, out).T  # (out, fan_in)
        u, v = u_var.value, v_var.value
        if training:
            held = jax.lax.stop_gradient(w)  # u and v are constants of the gradient
            for _ in range(sn.n_power_iterations):
                v = _normalize(jnp.dot(held.T, u, precision=HIGHEST), sn.eps)
                u = _normalize(jnp.dot(held, v, precision=HIGHEST), sn.eps)
            if self.is_mutable_collection("batch_stats"):
                u_var.value, v_var.value = u, v
        sigma = jnp.dot(u, jnp.dot(w, v, precision=HIGHEST), precision=HIGHEST)
        if isinstance(self.layer, Conv2D):
            stride, pads = (self.layer.stride,) * 2, self.layer.pads(x.shape[1:])

            def op(lhs: jax.Array, rhs: jax.Array, precision: Any, out: Any) -> jax.Array:
                dims, out_type = IMAGE_DIMS, out
                return jax.lax.conv_general_dilated(
                    lhs, rhs, stride, pads, dimension_numbers=dims, precision=precision, preferred_element_type=out_type
                )
        else:
            op = dot
        y = product(op, x, kernel / sigma, self.precision)
        if self.layer.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, shapes["bias"], self.dtype)
        return y

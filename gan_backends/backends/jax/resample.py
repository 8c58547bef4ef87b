"""The resampling and pooling layers (``Upsample``, ``AvgPool2D``, ``GlobalSumPool``) in JAX/Flax:
:data:`RESAMPLE_BUILDERS`, merged into ``layers.LAYER_BUILDERS``, and the plain functions
:func:`upsample`, :func:`avg_pool`, :func:`global_sum_pool` the port's native Flax model uses too.

- ``Upsample``: nearest is ``jnp.repeat`` (= ``jax.image.resize(method='nearest')`` for an integer
  factor); bilinear with half-pixel centres is ``jax.image.resize(method='bilinear',
  antialias=False)`` (its default ``antialias=True`` widens the kernel when *down*sampling; for
  upsampling it changes nothing, and it is set explicitly all the same). JAX has no
  ``align_corners``: that mapping ``src = o·(n - 1)/(n·k - 1)`` is ``jax.image.scale_and_translate``
  with ``scale = (n·k - 1)/(n - 1)`` and ``translation = (1 - scale)/2`` (its coordinate is
  ``(o + 0.5 - t)/scale - 0.5``); an axis of one pixel is a repeat.
- ``AvgPool2D``: ``flax.linen.avg_pool`` with the spec's explicit padding pairs and
  ``count_include_pad`` always passed (Flax's default counts the padded zeros, as torch's).
- ``GlobalSumPool``: ``jnp.sum`` over the spatial axes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ...spec import AvgPool2D, GlobalSumPool, Layer, Upsample


def upsample(layer: Upsample, x: jax.Array) -> jax.Array:
    """The spec's :class:`~gan_backends.spec.Upsample` of an NHWC batch."""
    n, h, w, c = x.shape
    k = layer.factor
    if layer.method == "nearest":
        return jnp.repeat(jnp.repeat(x, k, axis=1), k, axis=2)
    shape = (n, h * k, w * k, c)
    if not layer.align_corners:
        return jax.image.resize(x, shape, method="bilinear", antialias=False, precision=jax.lax.Precision.HIGHEST)
    if h == 1 or w == 1:  # one pixel along an axis: every output is it; resample the other axis alone
        x = jnp.repeat(x, k, axis=1) if h == 1 else x
        x = jnp.repeat(x, k, axis=2) if w == 1 else x
        if h == 1 and w == 1:
            return x
        axis, size = (2, w) if h == 1 else (1, h)
        scale = jnp.asarray([(size * k - 1) / (size - 1)], x.dtype)
        return jax.image.scale_and_translate(
            x, shape, (axis,), scale, (1 - scale) / 2, method="linear", antialias=False,
            precision=jax.lax.Precision.HIGHEST,
        )  # fmt: skip
    scale = jnp.asarray([(h * k - 1) / (h - 1), (w * k - 1) / (w - 1)], x.dtype)
    return jax.image.scale_and_translate(
        x, shape, (1, 2), scale, (1 - scale) / 2, method="linear", antialias=False, precision=jax.lax.Precision.HIGHEST
    )


def avg_pool(layer: AvgPool2D, x: jax.Array) -> jax.Array:
    """The spec's :class:`~gan_backends.spec.AvgPool2D` of an NHWC batch (``flax.linen.avg_pool``)."""
    k, s = layer.pool, layer.stride
    # count_include_pad is None only where nothing is padded (the spec refuses it otherwise).
    include = bool(layer.count_include_pad)
    return nn.avg_pool(x, (k, k), (s, s), padding=layer.pads(x.shape[1:]), count_include_pad=include)


def global_sum_pool(layer: GlobalSumPool, x: jax.Array) -> jax.Array:
    """``(N, H, W, C) -> (N, C)``."""
    return jnp.sum(x, axis=(1, 2))


def _stateless(fn: Callable[[Any, jax.Array], jax.Array]) -> Callable[..., Callable[[jax.Array, bool], jax.Array]]:
    return lambda layer, net, name: lambda x, training: fn(layer, x)


#: Spec layer type -> builder ``(layer, net, name) -> (x, training) -> y`` (no submodule: no parameters).
RESAMPLE_BUILDERS: dict[type[Layer], Callable[..., Callable[[jax.Array, bool], jax.Array]]] = {
    Upsample: _stateless(upsample),
    AvgPool2D: _stateless(avg_pool),
    GlobalSumPool: _stateless(global_sum_pool),
}

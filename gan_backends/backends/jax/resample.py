"""The resampling and pooling layers (``Upsample``, ``AvgPool2D``, ``GlobalSumPool``) in JAX/Flax:
:data:`RESAMPLE_BUILDERS`, merged into ``layers.LAYER_BUILDERS``, and the plain functions
:func:`upsample`, :func:`avg_pool`, :func:`global_sum_pool` the port's native Flax model uses too.

- ``Upsample``: nearest is ``jnp.repeat`` (= ``jax.image.resize(method='nearest')`` for an integer
  factor); bilinear with half-pixel centres is ``jax.image.resize(method='bilinear',
  antialias=False)`` (its default ``antialias=True`` widens the kernel when *down*sampling; for
  upsampling it changes nothing, and it is set explicitly all the same). JAX has no
  ``align_corners``: that mapping ``src = o·(n - 1)/(n·k - 1)`` is written as the spec's
  separable linear map, constant per-axis interpolation matrices from
  :meth:`~gan_backends.spec.Upsample.taps` in one ``einsum`` (``jax.image.scale_and_translate``
  with ``scale = (n·k - 1)/(n - 1)``, ``translation = (1 - scale)/2`` computes the same, shown in
  tests/test_framework_differences_resample.py, but compiles three times slower on XLA's CPU and
  needs a case for one-pixel axes).
- ``AvgPool2D``: ``flax.linen.avg_pool`` with the spec's explicit padding pairs and
  ``count_include_pad`` always passed (Flax's default counts the padded zeros, as torch's), its
  result cast back to the input's dtype (see :func:`avg_pool`).
- ``GlobalSumPool``: ``jnp.sum`` over the spatial axes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ...spec import AvgPool2D, GlobalSumPool, Layer, Upsample


def _matrix(layer: Upsample, size: int, dtype: Any) -> jax.Array:
    """``(size·k, size)`` interpolation weights of one axis from the spec's taps (a constant)."""
    a = np.zeros((size * layer.factor, size))
    for o, (i0, i1, lam) in enumerate(layer.taps(size)):
        a[o, i0] += 1.0 - lam
        a[o, i1] += lam
    return jnp.asarray(a, dtype)


def upsample(layer: Upsample, x: jax.Array) -> jax.Array:
    """The spec's :class:`~gan_backends.spec.Upsample` of an NHWC batch."""
    n, h, w, c = x.shape
    k = layer.factor
    if layer.method == "nearest":
        return jnp.repeat(jnp.repeat(x, k, axis=1), k, axis=2)
    if not layer.align_corners:
        shape = (n, h * k, w * k, c)
        return jax.image.resize(x, shape, method="bilinear", antialias=False, precision=jax.lax.Precision.HIGHEST)
    a_h, a_w = _matrix(layer, h, x.dtype), _matrix(layer, w, x.dtype)
    return jnp.einsum("oh,nhwc,pw->nopc", a_h, x, a_w, precision=jax.lax.Precision.HIGHEST)


def avg_pool(layer: AvgPool2D, x: jax.Array) -> jax.Array:
    """The spec's :class:`~gan_backends.spec.AvgPool2D` of an NHWC batch (``flax.linen.avg_pool``)."""
    k, s = layer.pool, layer.stride
    # count_include_pad is None only where nothing is padded (the spec refuses it otherwise).
    include = bool(layer.count_include_pad)
    y = nn.avg_pool(x, (k, k), (s, s), padding=layer.pads(x.shape[1:]), count_include_pad=include)
    # Without count_include_pad Flax divides by a pool of jnp.ones(), float64 once x64 is on
    # (as after any float64 run in the process): a float32 input would come back float64.
    return y.astype(x.dtype)


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

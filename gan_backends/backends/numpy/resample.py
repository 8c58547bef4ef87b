"""The reference's resampling and pooling layers (``Upsample``, ``AvgPool2D``, ``GlobalSumPool``):
float64 forward, hand-written backward and forward tangent, in :data:`RESAMPLE_MATH` and
:data:`RESAMPLE_TANGENTS`, which ``layers.py`` merges into ``LAYER_MATH`` and ``PIECEWISE_LINEAR``.

Each layer is linear in its input, so its backward is its transpose and its tangent is its
forward (no bias), and a gradient penalty's second-order gradient goes through it exactly.

- ``Upsample`` is written as the separable linear map of its spec: per-axis interpolation
  matrices ``A_h`` (``H·k × H``) and ``A_w`` built from :meth:`~gan_backends.spec.Upsample.taps`,
  ``y[n, :, :, c] = A_h x[n, :, :, c] A_wᵀ``; backward ``dx = A_hᵀ dy A_w``.
- ``AvgPool2D``: window sums of the zero-padded input divided by the spec's per-pixel
  :meth:`~gan_backends.spec.AvgPool2D.divisors`; backward spreads ``dy / divisor`` back over
  every window's pixels and drops the padding.
- ``GlobalSumPool``: ``Σ_{h,w}``; backward broadcasts ``dy`` to every pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...spec import AvgPool2D, GlobalSumPool, Upsample

F64 = np.float64


def interpolation_matrix(layer: Upsample, size: int) -> np.ndarray:
    """``(size·k, size)``: row ``o`` holds ``1 - lam`` at ``i0`` and ``lam`` at ``i1`` (summed when equal)."""
    taps = layer.taps(size)
    a = np.zeros((len(taps), size), F64)
    for o, (i0, i1, lam) in enumerate(taps):
        a[o, i0] += 1.0 - lam
        a[o, i1] += lam
    return a


def _upsample_apply(layer: Upsample, x: np.ndarray) -> np.ndarray:
    a_h, a_w = interpolation_matrix(layer, x.shape[1]), interpolation_matrix(layer, x.shape[2])
    return np.einsum("oh,nhwc,pw->nopc", a_h, x, a_w)


def _upsample_fwd(layer: Upsample, p, x, *, training: bool = False):
    return _upsample_apply(layer, x), x.shape


def _upsample_bwd(layer: Upsample, p, in_shape, dy):
    a_h, a_w = interpolation_matrix(layer, in_shape[1]), interpolation_matrix(layer, in_shape[2])
    return np.einsum("oh,nopc,pw->nhwc", a_h, dy, a_w), {}


def _divisors(layer: AvgPool2D, in_shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(layer.divisors(in_shape), F64)[None, :, :, None]  # (1, Ho, Wo, 1)


def _avg_pool_apply(layer: AvgPool2D, x: np.ndarray) -> np.ndarray:
    pads = layer.pads(x.shape[1:])
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    s = layer.stride
    windows = sliding_window_view(xp, (layer.pool, layer.pool), axis=(1, 2))[:, ::s, ::s]  # (N, Ho, Wo, C, k, k)
    return windows.sum(axis=(4, 5)) / _divisors(layer, x.shape[1:])


def _avg_pool_fwd(layer: AvgPool2D, p, x, *, training: bool = False):
    return _avg_pool_apply(layer, x), x.shape


def _avg_pool_bwd(layer: AvgPool2D, p, in_shape, dy):
    (top, bottom), (left, right) = layer.pads(in_shape[1:])
    k, s = layer.pool, layer.stride
    share = dy / _divisors(layer, in_shape[1:])
    n, ho, wo, c = dy.shape
    dxp = np.zeros((n, in_shape[1] + top + bottom, in_shape[2] + left + right, c), F64)
    for i in range(k):
        for j in range(k):
            dxp[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s] += share
    return dxp[:, top : top + in_shape[1], left : left + in_shape[2]], {}


def _global_sum_fwd(layer: GlobalSumPool, p, x, *, training: bool = False):
    return x.sum(axis=(1, 2)), x.shape


def _global_sum_bwd(layer: GlobalSumPool, p, in_shape, dy):
    return np.broadcast_to(dy[:, None, None, :], in_shape).copy(), {}


#: ``(forward, backward)`` per layer type, the ``LAYER_MATH`` convention (caches: the input shape).
RESAMPLE_MATH: dict[type, tuple[Any, Any]] = {
    Upsample: (_upsample_fwd, _upsample_bwd),
    AvgPool2D: (_avg_pool_fwd, _avg_pool_bwd),
    GlobalSumPool: (_global_sum_fwd, _global_sum_bwd),
}

#: Forward tangents: each layer is linear (no bias), so its tangent is its forward.
RESAMPLE_TANGENTS: dict[type, Any] = {
    Upsample: lambda layer, p, cache, t: _upsample_apply(layer, t),
    AvgPool2D: lambda layer, p, cache, t: _avg_pool_apply(layer, t),
    GlobalSumPool: lambda layer, p, cache, t: t.sum(axis=(1, 2)),
}

"""Each spec layer's float64 forward and hand-written backward, and the table that picks them.

``LAYER_MATH`` maps a spec layer type to its ``(forward, backward)`` pair: the reference's one
place that knows what a layer computes, so :class:`~.network.Network` never branches on layer
types and a new layer type is one entry here. ``PIECEWISE_LINEAR`` holds the forward tangents of
the layers that are piecewise linear in their input, which the gradient penalties' exact
second-order parameter gradient is written for. The convolutions are one im2col formulation
(with its adjoint col2im and the padding/crop helpers) shared by Conv2D and ConvTranspose2D.
BatchNorm's running-statistics update is the core's rule (:meth:`~gan_backends.spec.BatchNorm.running_update`),
applied here to the batch statistics the forward kept. NumPy only, everything in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...losses import sigmoid
from ...spec import (
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    Layer,
    LeakyReLU,
    ReLU,
    Reshape,
    Residual,
    Sigmoid,
    Tanh,
)
from .attention import ATTENTION_MATH
from .blocks import residual_math
from .resample import RESAMPLE_MATH, RESAMPLE_TANGENTS
from .spectral import spectral

#: The reference's one dtype: it computes in float64 whatever the spec's dtype is.
F64 = np.float64
Pairs = tuple[tuple[int, int], tuple[int, int]]


# Each layer: forward(layer, params, x, training=...) -> (y, cache);
# backward(layer, params, cache, dy) -> (dx, grads). ``params`` holds the layer's parameters and
# buffers by short name (``kernel``, ``running_mean``...).
Forward = Callable[..., tuple[np.ndarray, Any]]
Backward = Callable[[Any, dict[str, np.ndarray], Any, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]


def _affine(apply: Callable[[Any, np.ndarray, np.ndarray], np.ndarray]) -> Forward:
    """The forward of a layer that is ``apply(layer, kernel, x)`` plus its bias (cache: ``x``)."""

    def forward(layer, p, x, *, training: bool = False):
        y = apply(layer, p["kernel"], x)
        return (y + p["bias"] if layer.use_bias else y), x

    return forward


def _dense_apply(layer: Dense, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ kernel


def _dense_bwd(layer: Dense, p, x, dy):
    grads = {"kernel": x.T @ dy}
    if layer.use_bias:
        grads["bias"] = dy.sum(axis=0)
    return dy @ p["kernel"].T, grads


def _leaky_fwd(layer: LeakyReLU, p, x, *, training: bool = False):
    return np.where(x > 0, x, layer.slope * x), x


def _leaky_bwd(layer: LeakyReLU, p, x, dy):
    return np.where(x > 0, dy, layer.slope * dy), {}


def _relu_fwd(layer, p, x, *, training: bool = False):
    return np.maximum(x, 0.0), x


def _relu_bwd(layer, p, x, dy):
    return np.where(x > 0, dy, 0.0), {}


def _tanh_fwd(layer, p, x, *, training: bool = False):
    y = np.tanh(x)
    return y, y


def _tanh_bwd(layer, p, y, dy):
    return dy * (1.0 - y * y), {}


def _sigmoid_fwd(layer, p, x, *, training: bool = False):
    y = sigmoid(x)
    return y, y


def _sigmoid_bwd(layer, p, y, dy):
    return dy * y * (1.0 - y), {}


def _reshape_fwd(layer: Reshape | Flatten, p, x, *, training: bool = False):
    out = layer.read_shape if isinstance(layer, Reshape) else (-1,)
    y = x.reshape(x.shape[0], *out)
    return (y.transpose(0, 2, 3, 1) if getattr(layer, "order", None) else y), x.shape


def _reshape_bwd(layer, p, in_shape, dy):
    return (dy.transpose(0, 3, 1, 2) if getattr(layer, "order", None) else dy).reshape(in_shape), {}


# -- convolutions ------------------------------------------------------------------------------
# One im2col formulation for everything: a VALID stride-s correlation of a (N, H, W, C) input
# with an HWIO kernel is ``im2col(x) @ kernel.reshape(k*k*C, O)``, whose rows are the k x k
# windows in (kh, kw, C) order. Its adjoint w.r.t. the input (col2im) adds every window row back
# where it came from; that is both Conv2D's input gradient and ConvTranspose2D's forward.


def _im2col(xp: np.ndarray, k: int, s: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The ``(N*Ho*Wo, k*k*C)`` window rows of a VALID stride-``s`` correlation of ``xp``."""
    win = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::s, ::s]  # (N, Ho, Wo, C, kh, kw), a view
    n, ho, wo, c = win.shape[:4]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, k * k * c), (ho, wo)


def _col2im(cols: np.ndarray, n: int, out_hw: tuple[int, int], k: int, s: int, size_hw: tuple[int, int]) -> np.ndarray:
    """The adjoint of :func:`_im2col`: ``(N*Ho*Wo, k*k*C)`` rows summed into an ``(N, *size_hw, C)`` image."""
    ho, wo = out_hw
    c = cols.shape[1] // (k * k)
    cols = cols.reshape(n, ho, wo, k, k, c)
    out = np.zeros((n, *size_hw, c), F64)
    for i in range(k):
        for j in range(k):
            out[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s] += cols[:, :, :, i, j]
    return out


def _pad(x: np.ndarray, pads: Pairs) -> np.ndarray:
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _crop(full: np.ndarray, crops: Pairs) -> np.ndarray:
    """Keep rows ``[top, H - bottom)`` (and columns alike); a negative bottom/right appends zeros."""
    (top, bottom), (left, right) = crops
    h, w = full.shape[1:3]
    kept = full[:, top : h - max(bottom, 0), left : w - max(right, 0)]
    return np.pad(kept, ((0, 0), (0, max(-bottom, 0)), (0, max(-right, 0)), (0, 0)))


def _uncrop(dy: np.ndarray, crops: Pairs, full_hw: tuple[int, int]) -> np.ndarray:
    """The adjoint of :func:`_crop`: the kept rows back in place, zeros elsewhere (appended rows reach nothing)."""
    (top, bottom), (left, right) = crops
    rows, cols = full_hw[0] - max(bottom, 0) - top, full_hw[1] - max(right, 0) - left
    out = np.zeros((dy.shape[0], *full_hw, dy.shape[3]), F64)
    out[:, top : top + rows, left : left + cols] = dy[:, :rows, :cols]
    return out


def _conv_apply(layer: Conv2D, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Conv2D without its bias: zero padding ``layer.pads``, then the VALID stride-s correlation."""
    cols, (ho, wo) = _im2col(_pad(x, layer.pads(x.shape[1:])), layer.kernel, layer.stride)
    return (cols @ kernel.reshape(-1, kernel.shape[-1])).reshape(x.shape[0], ho, wo, kernel.shape[-1])


def _conv_bwd(layer: Conv2D, p, x, dy):
    kernel = p["kernel"]
    (top, _), (left, _) = pads = layer.pads(x.shape[1:])
    xp = _pad(x, pads)
    cols, out_hw = _im2col(xp, layer.kernel, layer.stride)
    dy2 = dy.reshape(-1, kernel.shape[-1])
    grads = {"kernel": (cols.T @ dy2).reshape(kernel.shape)}
    if layer.use_bias:
        grads["bias"] = dy2.sum(axis=0)
    dxp = _col2im(
        dy2 @ kernel.reshape(-1, kernel.shape[-1]).T, x.shape[0], out_hw, layer.kernel, layer.stride, xp.shape[1:3]
    )
    return dxp[:, top : top + x.shape[1], left : left + x.shape[2]], grads


def _full_hw(layer: ConvTranspose2D, x: np.ndarray) -> tuple[int, int]:
    """Rows and columns of a transposed convolution's uncropped output, ``(H - 1)·s + k``."""
    return tuple((n - 1) * layer.stride + layer.kernel for n in x.shape[1:3])  # type: ignore[return-value]


def _conv_transpose_apply(layer: ConvTranspose2D, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ConvTranspose2D without its bias: the input-adjoint of the VALID stride-s Conv2D whose
    HWIO kernel is ``kernel`` (I = out, O = in), then the crops."""
    n, h, w, c_in = x.shape
    cols = x.reshape(-1, c_in) @ kernel.reshape(-1, c_in).T  # (N*H*W, k*k*out)
    full = _col2im(cols, n, (h, w), layer.kernel, layer.stride, _full_hw(layer, x))
    return _crop(full, layer.crops(x.shape[1:]))


def _conv_transpose_bwd(layer: ConvTranspose2D, p, x, dy):
    # The layer is y = crop(A^T x) with A the VALID conv; so dx = A uncrop(dy), a forward conv,
    # and the kernel gradient is the conv kernel gradient with input uncrop(dy), output grad x.
    kernel = p["kernel"]
    c_in = x.shape[3]
    cols, _ = _im2col(_uncrop(dy, layer.crops(x.shape[1:]), _full_hw(layer, x)), layer.kernel, layer.stride)
    grads = {"kernel": (cols.T @ x.reshape(-1, c_in)).reshape(kernel.shape)}
    if layer.use_bias:
        grads["bias"] = dy.sum(axis=(0, 1, 2))
    return (cols @ kernel.reshape(-1, c_in)).reshape(x.shape), grads


# -- BatchNorm -----------------------------------------------------------------------------------


@dataclass
class _BNCache:
    """What BatchNorm's backward (and the running update) needs from its forward."""

    training: bool
    xhat: np.ndarray
    inv_std: np.ndarray
    scale: np.ndarray
    mean: np.ndarray | None = None  # batch statistics, training only
    var: np.ndarray | None = None  # biased (1/n)
    count: int = 0  # values per channel


def _bn_fwd(layer: BatchNorm, p, x, *, training: bool = False):
    axes = tuple(range(x.ndim - 1))
    if training:
        mean = x.mean(axis=axes)
        centred = x - mean
        var = (centred * centred).mean(axis=axes)  # two-pass, biased
        inv_std = 1.0 / np.sqrt(var + layer.eps)
        cache = _BNCache(True, centred * inv_std, inv_std, p["scale"], mean, var, x.size // x.shape[-1])
    else:
        inv_std = 1.0 / np.sqrt(p["running_var"] + layer.eps)
        cache = _BNCache(False, (x - p["running_mean"]) * inv_std, inv_std, p["scale"])
    return cache.xhat * p["scale"] + p["bias"], cache


def _bn_bwd(layer: BatchNorm, p, cache: _BNCache, dy):
    axes = tuple(range(dy.ndim - 1))
    grads = {"scale": (dy * cache.xhat).sum(axis=axes), "bias": dy.sum(axis=axes)}
    dxhat = dy * cache.scale
    if not cache.training:  # running statistics are constants
        return dxhat * cache.inv_std, grads
    # Through the batch mean and variance: dx = (dxhat - mean(dxhat) - xhat·mean(dxhat·xhat)) / std.
    dx = cache.inv_std * (dxhat - dxhat.mean(axis=axes) - cache.xhat * (dxhat * cache.xhat).mean(axis=axes))
    return dx, grads


def bn_running_update(layer: BatchNorm, buffers: dict[str, np.ndarray], cache: _BNCache) -> dict[str, np.ndarray]:
    """New running statistics from one training call's cache, by the core's rule
    (:meth:`~gan_backends.spec.BatchNorm.running_update`: ``momentum`` is the weight of the new
    batch statistic, torch's; the unbiased variance needs more than one value per channel)."""
    mean, var = layer.running_update(
        buffers["running_mean"], buffers["running_var"], cache.mean, cache.var, cache.count
    )
    return {"running_mean": mean, "running_var": var}


LAYER_MATH: dict[type[Layer], tuple[Forward, Backward]] = {
    Dense: spectral(_affine(_dense_apply), _dense_bwd),  # spectral_norm, when set: spectral.py
    Conv2D: spectral(_affine(_conv_apply), _conv_bwd),
    ConvTranspose2D: (_affine(_conv_transpose_apply), _conv_transpose_bwd),
    BatchNorm: (_bn_fwd, _bn_bwd),
    LeakyReLU: (_leaky_fwd, _leaky_bwd),
    ReLU: (_relu_fwd, _relu_bwd),
    Tanh: (_tanh_fwd, _tanh_bwd),
    Sigmoid: (_sigmoid_fwd, _sigmoid_bwd),
    Reshape: (_reshape_fwd, _reshape_bwd),
    Flatten: (_reshape_fwd, _reshape_bwd),
    **RESAMPLE_MATH,  # Upsample, AvgPool2D, GlobalSumPool (resample.py)
    **ATTENTION_MATH,  # SelfAttention (attention.py): not piecewise linear, no tangent below
}

# Forward tangents (Jacobian-vector products) with biases dropped, for the layers that are
# piecewise linear in their input: tangent(layer, params, cache, t) -> J t. The elementwise
# masks are diagonal, so their tangent is their backward.
Tangent = Callable[[Any, dict[str, np.ndarray], Any, np.ndarray], np.ndarray]
PIECEWISE_LINEAR: dict[type[Layer], Tangent] = {
    Dense: lambda layer, p, cache, t: _dense_apply(layer, p["kernel"], t),
    Conv2D: lambda layer, p, cache, t: _conv_apply(layer, p["kernel"], t),
    ConvTranspose2D: lambda layer, p, cache, t: _conv_transpose_apply(layer, p["kernel"], t),
    LeakyReLU: lambda layer, p, cache, t: _leaky_bwd(layer, p, cache, t)[0],
    ReLU: lambda layer, p, cache, t: _relu_bwd(layer, p, cache, t)[0],
    Reshape: lambda layer, p, cache, t: _reshape_fwd(layer, p, t)[0],
    Flatten: lambda layer, p, cache, t: _reshape_fwd(layer, p, t)[0],
    **RESAMPLE_TANGENTS,  # linear layers: their forward
}

# The residual block walks its branches through these same two tables (blocks.py); it is in
# PIECEWISE_LINEAR, and Network.not_piecewise_linear looks inside it (a block is piecewise linear
# when all its sublayers are).
_RESIDUAL = residual_math(LAYER_MATH, PIECEWISE_LINEAR)
LAYER_MATH[Residual] = _RESIDUAL[:2]
PIECEWISE_LINEAR[Residual] = _RESIDUAL[2]

"""TensorFlow modules of the resampling and pooling layers (``Upsample``, ``AvgPool2D``,
``GlobalSumPool``): :data:`RESAMPLE_BUILDERS`, merged into ``layers.LAYER_BUILDERS``. NHWC.

Bilinear upsampling is written as the spec's separable form (two ``tf.gather`` and a lerp per
axis, :meth:`~gan_backends.spec.Upsample.taps`) rather than ``tf.image.resize``: the latter (and
Keras' ``UpSampling2D(interpolation='bilinear')``, built on it) computes in float32 whatever the
input dtype (1.7e-7 off a float64 reference), and TF2 has no ``align_corners``. Nearest is
``tf.repeat`` (exact). Average pooling is ``tf.nn.avg_pool2d``: 'SAME' is TensorFlow's own
meaning (padded zeros not counted); other paddings are ``tf.pad`` then 'VALID', whose divisor
``pool²`` counts the zeros, rescaled by ``pool² / divisor`` where the spec does not count them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ...spec import AvgPool2D, GlobalSumPool, Layer, Shape, Upsample


class UpsampleLayer(tf.Module):
    """The spec's :class:`~gan_backends.spec.Upsample`: per spatial axis, output pixel ``o`` is
    ``(1 - lam)·x[i0] + lam·x[i1]`` (bilinear) or ``x[floor(o / k)]`` (nearest)."""

    def __init__(self, layer: Upsample, in_shape: Shape, dtype: tf.DType, name: str):
        super().__init__(name=name)
        self.factor, self.nearest = layer.factor, layer.method == "nearest"
        self.axes = []
        for size in in_shape[:2]:
            i0, i1, lam = zip(*layer.taps(size))
            lam_t = tf.constant(np.asarray(lam).reshape(-1, 1, 1), dtype)  # broadcast over (W, C) / (C,)
            self.axes.append((tf.constant(i0), tf.constant(i1), lam_t))

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        if self.nearest:
            return tf.repeat(tf.repeat(x, self.factor, axis=1), self.factor, axis=2)
        for axis, (i0, i1, lam) in zip((1, 2), self.axes):
            w = lam if axis == 1 else tf.reshape(lam, (-1, 1))
            x = (1 - w) * tf.gather(x, i0, axis=axis) + w * tf.gather(x, i1, axis=axis)
        return x


class AvgPoolLayer(tf.Module):
    """The spec's :class:`~gan_backends.spec.AvgPool2D` with ``tf.nn.avg_pool2d``."""

    def __init__(self, layer: AvgPool2D, in_shape: Shape, dtype: tf.DType, name: str):
        super().__init__(name=name)
        self.pool, self.stride = layer.pool, layer.stride
        (top, bottom), (left, right) = layer.pads(in_shape)
        self.paddings = [[0, 0], [top, bottom], [left, right], [0, 0]] if top + bottom + left + right else None
        # TF's 'SAME' is the spec's 'same' without counting the padded zeros: one op.
        self.native_same = self.paddings is not None and layer.padding == "same" and not layer.count_include_pad
        self.rescale = None
        if self.paddings is not None and not self.native_same and not layer.count_include_pad:
            divisors = np.asarray(layer.divisors(in_shape), np.float64)[None, :, :, None]
            self.rescale = tf.constant(layer.pool**2 / divisors, dtype)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        if self.native_same:
            return tf.nn.avg_pool2d(x, self.pool, self.stride, "SAME")
        if self.paddings is not None:
            x = tf.pad(x, self.paddings)
        y = tf.nn.avg_pool2d(x, self.pool, self.stride, "VALID")
        return y if self.rescale is None else y * self.rescale


class GlobalSumPoolLayer(tf.Module):
    """``(N, H, W, C) -> (N, C)``: ``tf.reduce_sum`` over the spatial axes."""

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(x, axis=[1, 2])


def _upsample(layer: Upsample, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    return UpsampleLayer(layer, in_shape, dtype, name)


def _avg_pool(layer: AvgPool2D, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    return AvgPoolLayer(layer, in_shape, dtype, name)


def _global_sum_pool(layer: GlobalSumPool, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    return GlobalSumPoolLayer(name=name)


#: Spec layer type -> builder ``(layer, in_shape, dtype, name, bf16) -> tf.Module`` (no matmul: bf16 does not apply).
RESAMPLE_BUILDERS: dict[type[Layer], Callable[[Any, Shape, tf.DType, str, bool], tf.Module]] = {
    Upsample: _upsample,
    AvgPool2D: _avg_pool,
    GlobalSumPool: _global_sum_pool,
}

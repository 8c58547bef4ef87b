"""The TensorFlow backend's layers: one ``tf.Module`` per spec layer type, and the networks.

Plain ``tf.Module`` + ``tf.Variable`` (TensorFlow's own low-level modules guide) rather than
Keras layers: no dtype policy casts float64 away, no Keras initialiser, momentum or
training-flag semantics to neutralise. Canonical layouts are TensorFlow's own (Dense kernel
``(in, out)``, channels-last NHWC images, Conv2D kernel HWIO, ConvTranspose2D kernel
``(kh, kw, out, in)`` as ``tf.nn.conv2d_transpose`` takes it), so nothing is transposed.

:data:`LAYER_BUILDERS` maps each spec layer type to the function that builds its module, so a
new layer type is one entry here (and :func:`build_layer` names a type that has none).
BatchNorm is a module with its own running-statistics variables; every network call takes
``training`` (batch statistics) and ``update_stats`` (fold them into the running statistics),
and only ``train_step`` passes ``update_stats=True`` (docs/conv-gans.md). Kept apart from the
backend so that the data-parallel engine (:mod:`.parallel`) and the tests reach the modules
without the training machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ...spec import (
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    Layer,
    LeakyReLU,
    ReLU,
    Reshape,
    Residual,
    Shape,
    Sigmoid,
    Tanh,
)
from .attention import ATTENTION_BUILDERS
from .blocks import ResidualLayer, build_residual
from .resample import RESAMPLE_BUILDERS
from .spectral import SpectralNormLayer

#: A builder: ``(layer, in_shape, dtype, name, bf16) -> tf.Module`` for one spec layer type.
LayerBuilder = Callable[[Any, Shape, tf.DType, str, bool], tf.Module]


def _round_bf16(x: tf.Tensor) -> tf.Tensor:
    """Round to bfloat16 and back. The matmul then runs in float32 on bfloat16 values: products of
    two bfloat16 numbers are exact in float32, so this is a bf16 matmul with float32
    accumulation. TF's own bfloat16 MatMul on CPU accumulates in bfloat16 (3e-3 off at k=8),
    unlike torch, XLA and cuBLAS; see docs/framework-differences.md. The casts' gradients round
    the backward matmuls' inputs and outputs the same way. Convolutions use the same emulation."""
    return tf.cast(tf.cast(x, tf.bfloat16), x.dtype)


def _bias_add(y: tf.Tensor, bias: tf.Variable | None) -> tf.Tensor:
    return y if bias is None else tf.nn.bias_add(y, bias)


class DenseLayer(tf.Module):
    def __init__(self, in_features: int, units: int, use_bias: bool, dtype: tf.DType, name: str, bf16: bool = False):
        super().__init__(name=name)
        self.kernel = tf.Variable(tf.zeros((in_features, units), dtype), name="kernel")
        self.bias = tf.Variable(tf.zeros((units,), dtype), name="bias") if use_bias else None
        self.bf16 = bf16

    def __call__(self, x: tf.Tensor, kernel: tf.Tensor | None = None) -> tf.Tensor:
        """``kernel``: applied in place of the variable (spectral norm's ``kernel / σ``)."""
        kernel = self.kernel if kernel is None else kernel
        if self.bf16:  # the spec's bf16 matmul: operands and product bfloat16, bias float32
            y = _round_bf16(tf.matmul(_round_bf16(x), _round_bf16(kernel)))
        else:
            y = tf.matmul(x, kernel)
        return _bias_add(y, self.bias)

    def params(self) -> dict[str, tf.Variable]:
        return {"kernel": self.kernel} | ({} if self.bias is None else {"bias": self.bias})


class Conv2DLayer(tf.Module):
    """Zero padding ``layer.pads(in_shape)`` (never TF's own 'SAME' string: the spec resolves it
    once for every backend), a VALID stride-``s`` cross-correlation, then the bias."""

    def __init__(self, layer: Conv2D, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool = False):
        super().__init__(name=name)
        self.kernel = tf.Variable(
            tf.zeros((layer.kernel, layer.kernel, in_shape[2], layer.filters), dtype), name="kernel"
        )
        self.bias = tf.Variable(tf.zeros((layer.filters,), dtype), name="bias") if layer.use_bias else None
        (top, bottom), (left, right) = layer.pads(in_shape)
        self.paddings = [[0, 0], [top, bottom], [left, right], [0, 0]]
        self.stride = layer.stride
        self.bf16 = bf16

    def __call__(self, x: tf.Tensor, kernel: tf.Tensor | None = None) -> tf.Tensor:
        kernel = self.kernel if kernel is None else kernel  # as Dense's
        if self.bf16:  # as Dense: bf16 operands, float32 accumulation, bf16 product
            y = _round_bf16(tf.nn.conv2d(_round_bf16(x), _round_bf16(kernel), self.stride, self.paddings))
        else:
            y = tf.nn.conv2d(x, kernel, self.stride, self.paddings)
        return _bias_add(y, self.bias)

    def params(self) -> dict[str, tf.Variable]:
        return {"kernel": self.kernel} | ({} if self.bias is None else {"bias": self.bias})


class ConvTranspose2DLayer(tf.Module):
    """The full transposed convolution (``tf.nn.conv2d_transpose``, 'VALID', ``(H - 1)·s + k``
    rows: consistent with the forward VALID conv also when ``k < s``), then the spec's crops:
    rows ``[top, full - bottom)``, a negative ``bottom`` appending zero rows. Explicit slicing
    rather than TF's 'SAME' string keeps torch's ``padding``/``output_padding`` expressible."""

    def __init__(self, layer: ConvTranspose2D, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool = False):
        super().__init__(name=name)
        k, s = layer.kernel, layer.stride
        self.kernel = tf.Variable(tf.zeros((k, k, layer.filters, in_shape[2]), dtype), name="kernel")
        self.bias = tf.Variable(tf.zeros((layer.filters,), dtype), name="bias") if layer.use_bias else None
        self.stride = s
        self.full = ((in_shape[0] - 1) * s + k, (in_shape[1] - 1) * s + k)
        self.filters = layer.filters
        self.crops = layer.crops(in_shape)
        self.bf16 = bf16

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        # A static batch size when the trace knows it, so XLA sees a constant output shape.
        batch = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        output_shape = [batch, self.full[0], self.full[1], self.filters]
        kernel = _round_bf16(self.kernel) if self.bf16 else self.kernel
        y = tf.nn.conv2d_transpose(_round_bf16(x) if self.bf16 else x, kernel, output_shape, self.stride, "VALID")
        if self.bf16:
            y = _round_bf16(y)
        (top, bottom), (left, right) = self.crops
        y = y[:, top : self.full[0] - max(bottom, 0), left : self.full[1] - max(right, 0), :]
        if bottom < 0 or right < 0:  # torch's output_padding: rows/columns no input reaches
            y = tf.pad(y, [[0, 0], [0, max(-bottom, 0)], [0, max(-right, 0)], [0, 0]])
        return _bias_add(y, self.bias)

    def params(self) -> dict[str, tf.Variable]:
        return {"kernel": self.kernel} | ({} if self.bias is None else {"bias": self.bias})


class BatchNormLayer(tf.Module):
    """The spec's BatchNorm (torch conventions, see :class:`~gan_backends.spec.BatchNorm`) with
    TF ops, not ``keras.layers.BatchNormalization``: Keras' momentum is the weight of the OLD
    value, its eps 1e-3, its running variance biased, and its mode follows ``trainable``."""

    def __init__(self, layer: BatchNorm, channels: int, dtype: tf.DType, name: str):
        super().__init__(name=name)
        self.scale = tf.Variable(tf.ones((channels,), dtype), name="scale")
        self.bias = tf.Variable(tf.zeros((channels,), dtype), name="bias")
        self.running_mean = tf.Variable(tf.zeros((channels,), dtype), trainable=False, name="running_mean")
        self.running_var = tf.Variable(tf.ones((channels,), dtype), trainable=False, name="running_var")
        self.spec, self.eps = layer, layer.eps

    def __call__(self, x: tf.Tensor, training: bool = False, update_stats: bool = False) -> tf.Tensor:
        if training:
            mean, var, n = self.batch_moments(x)
            if update_stats:
                self._update(tf.stop_gradient(mean), tf.stop_gradient(var), n)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / tf.sqrt(var + self.eps) * self.scale + self.bias

    def batch_moments(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, int]:
        """The batch's mean and two-pass biased (1/n) variance over every axis but the channels,
        and the count n they are taken over (a data-parallel layer takes them over all replicas)."""
        axes = list(range(x.shape.rank - 1))
        mean = tf.reduce_mean(x, axes)
        return mean, tf.reduce_mean(tf.square(x - mean), axes), int(np.prod(x.shape[:-1]))

    def _update(self, mean: tf.Tensor, var: tf.Tensor, n: int) -> None:
        """The spec's running-statistics update (:meth:`~gan_backends.spec.BatchNorm.running_update`:
        momentum is the weight of the NEW statistic, as in torch; Keras' momentum is 1 - m)."""
        running_mean, running_var = self.spec.running_update(self.running_mean, self.running_var, mean, var, n)
        self.running_mean.assign(running_mean)
        self.running_var.assign(running_var)

    def params(self) -> dict[str, tf.Variable]:
        return {"scale": self.scale, "bias": self.bias}

    def buffers(self) -> dict[str, tf.Variable]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}


class Activation(tf.Module):
    """A parameter-free layer: ``fn`` applied to the input (activations, Reshape, Flatten)."""

    def __init__(self, fn: Callable[[tf.Tensor], tf.Tensor], name: str):
        super().__init__(name=name)
        self.fn = fn

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.fn(x)


def _dense(layer: Dense, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    return DenseLayer(in_shape[0], layer.units, layer.use_bias, dtype, name, bf16)


def _conv(layer: Conv2D, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    return Conv2DLayer(layer, in_shape, dtype, name, bf16)


def _conv_transpose(layer: ConvTranspose2D, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    return ConvTranspose2DLayer(layer, in_shape, dtype, name, bf16)


def _batchnorm(layer: BatchNorm, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    return BatchNormLayer(layer, in_shape[-1], dtype, name)  # always in the spec dtype, also under bf16


def _leaky_relu(layer: LeakyReLU, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    slope = layer.slope
    if dtype == tf.float64:
        # tf.nn.leaky_relu's `alpha` is a float32 op attribute: in float64 the slope 0.2
        # would become 0.2f = 0.200000003 (3.5e-8 off). Here the slope is a Python float.
        return Activation(lambda x: tf.where(x > 0, x, slope * x), name)
    # One fused op and one gradient op (tf.where costs three forward, more backward: 14% of
    # the MLP step in tf.function mode); same values: x > 0 ? x : 0.2f·x, slope at 0.
    return Activation(lambda x: tf.nn.leaky_relu(x, alpha=slope), name)


def _elementwise(fn: Callable[[tf.Tensor], tf.Tensor]) -> LayerBuilder:
    """The builder of a parameter-free layer whose function does not depend on the spec layer."""
    return lambda layer, in_shape, dtype, name, bf16: Activation(fn, name)


def _reshape(layer: Reshape, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    shape = layer.read_shape
    if layer.order:  # (C, H, W) features to the canonical (H, W, C) image
        return Activation(lambda x: tf.transpose(tf.reshape(x, (-1, *shape)), (0, 2, 3, 1)), name)
    return Activation(lambda x: tf.reshape(x, (-1, *shape)), name)


LAYER_BUILDERS: dict[type[Layer], LayerBuilder] = {
    Dense: _dense,
    Conv2D: _conv,
    ConvTranspose2D: _conv_transpose,
    BatchNorm: _batchnorm,
    ReLU: _elementwise(tf.nn.relu),
    LeakyReLU: _leaky_relu,
    Tanh: _elementwise(tf.math.tanh),
    Sigmoid: _elementwise(tf.math.sigmoid),
    Reshape: _reshape,
    Flatten: _elementwise(lambda x: tf.reshape(x, (tf.shape(x)[0], -1))),
    **RESAMPLE_BUILDERS,  # Upsample, AvgPool2D, GlobalSumPool (resample.py)
    **ATTENTION_BUILDERS,  # SelfAttention (attention.py)
    Residual: build_residual,
}


def build_layer(layer: Layer, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool = False) -> tf.Module:
    """The module for ``layer`` on inputs of ``in_shape`` (no batch axis), variables in ``dtype``
    (zeros/ones until the backend loads parameters); ``bf16``: the spec's bf16 matmuls."""
    builder = LAYER_BUILDERS.get(type(layer))
    if builder is None:
        raise NotImplementedError(f"tensorflow backend cannot build {layer.describe()}")
    module = builder(layer, in_shape, dtype, name, bf16)
    sn = getattr(layer, "spectral_norm", None)  # a kernel layer's option: spectral.py
    return module if sn is None else SpectralNormLayer(module, sn, dtype, f"{name}_sn")


#: The modules that take ``training``/``update_stats`` and may hold buffers.
BUFFERED = (BatchNormLayer, SpectralNormLayer, ResidualLayer)


def call_layer(layer: tf.Module, x: tf.Tensor, training: bool, update_stats: bool) -> tf.Tensor:
    """One layer's call in a network or a block's branch: the modes to those that take them."""
    if isinstance(layer, BUFFERED):
        return layer(x, training=training, update_stats=update_stats)
    return layer(x)


class Sequential(tf.Module):
    """One network of the spec (``net``: generator or discriminator) as its layers in order,
    named ``{net}.{index}.{param}`` as the canonical parameter tree names them."""

    def __init__(self, spec: GANSpec, net: str, dtype: tf.DType):
        super().__init__(name=net)
        with self.name_scope:
            self.layers = [
                build_layer(layer, shapes[0], dtype, f"layer{i}", spec.numerics.matmul_precision == "bf16")
                for i, (layer, shapes) in enumerate(zip(spec.layers(net), spec.layer_shapes(net)))
            ]

    def call_layer(self, layer: tf.Module, x: tf.Tensor, training: bool, update_stats: bool) -> tf.Tensor:
        return call_layer(layer, x, training, update_stats)

    def __call__(self, x: tf.Tensor, training: bool = False, update_stats: bool = False) -> tf.Tensor:
        """``training``: BatchNorm on batch statistics; ``update_stats``: and fold them into the
        running statistics (train_step only)."""
        for layer in self.layers:
            x = self.call_layer(layer, x, training, update_stats)
        return x

    def named_variables(self, net: str) -> dict[str, tf.Variable]:
        return {
            f"{net}.{i}.{pname}": var
            for i, layer in enumerate(self.layers)
            if hasattr(layer, "params")
            for pname, var in layer.params().items()
        }

    def named_buffers(self, net: str) -> dict[str, tf.Variable]:
        return {
            f"{net}.{i}.{bname}": var
            for i, layer in enumerate(self.layers)
            if isinstance(layer, BUFFERED)
            for bname, var in layer.buffers().items()
        }

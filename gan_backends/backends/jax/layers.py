"""The spec's layers as ``flax.linen`` modules, and the table that builds them.

:class:`Sequential` is a whole network: it walks the spec's layers and looks each one up in
:data:`LAYER_BUILDERS` (spec layer type -> builder), so adding a layer type is one table entry,
not another branch. Layers with parameters or buffers become submodules named by their spec
index, so the Flax tree is ``{"params": {"0": {"kernel": ...}}, "batch_stats": {"3": {"mean",
"var"}}}`` and maps one to one onto the canonical ``generator.0.kernel`` / ``generator.3.running_mean``
(the backend does that mapping; :data:`BUFFER_NAMES` names the buffers).

Canonical layouts are Flax's own (Dense kernel ``(in, out)``, Conv2D HWIO, ConvTranspose2D
``(kh, kw, out, in)`` as ``lax.conv_transpose(transpose_kernel=True)`` takes it, channels-last
images, :data:`IMAGE_DIMS`). Initialisers are never used: parameters always come from the
canonical tree. The matmul precision policy (including the spec's ``bf16``) is :func:`product`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

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
from .attention import ATTENTION_BUILDERS
from .blocks import build_residual
from .resample import RESAMPLE_BUILDERS
from .spectral import SpectralNormed

#: Flax's names for the buffers (BatchNorm's running statistics, spectral norm's vectors) <->
#: the canonical buffer names.
BUFFER_NAMES = {"running_mean": "mean", "running_var": "var", "sn_u": "sn_u", "sn_v": "sn_v"}
IMAGE_DIMS = ("NHWC", "HWIO", "NHWC")


def product(op: Callable[..., jax.Array], x: jax.Array, kernel: jax.Array, precision: Any) -> jax.Array:
    """``op(x, kernel, precision, preferred_element_type)`` under the spec's precision policy.

    ``"bf16"``: both operands rounded to bfloat16, accumulated in float32, the product rounded
    to bfloat16 by ``reduce_precision``, kept in float32 so the bias and everything after stay
    float32. The rounding is explicit because XLA's CPU compiler, under ``jit``, runs a bf16
    dot/conv whose bf16 result is converted to float32 as a float32 op and drops that product
    rounding (measured with jax 0.10: every output differed from the eager result). Its
    transpose rounds the cotangent the same way, so the backward products see bf16 values too.
    """
    if precision == "bf16":
        y = op(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), None, jnp.float32)
        return jax.lax.reduce_precision(y, exponent_bits=8, mantissa_bits=7).astype(x.dtype)
    return op(x, kernel, precision, None)


def dot(x: jax.Array, kernel: jax.Array, precision: Any, out: Any) -> jax.Array:
    """``jnp.dot`` in :func:`product`'s operand order (the Dense product)."""
    return jnp.dot(x, kernel, precision=precision, preferred_element_type=out)


class Sequential(nn.Module):
    """The spec's layers in order; layers with parameters or buffers are submodules named by
    their spec index. Each layer is built by its entry in :data:`LAYER_BUILDERS`."""

    layers: tuple[Layer, ...]
    dtype: Any
    precision: Any

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False, every_layer: bool = False) -> jax.Array | list[jax.Array]:
        outputs = []
        for i, layer in enumerate(self.layers):
            builder = LAYER_BUILDERS.get(type(layer))
            if getattr(layer, "spectral_norm", None) is not None:  # a kernel layer's option: spectral.py
                builder = _spectral
            if builder is None:
                raise NotImplementedError(f"jax backend cannot build {type(layer).__name__}: {layer.describe()}")
            x = builder(layer, self, str(i))(x, training)
            outputs.append(x)
        return outputs if every_layer else x


class BF16Dense(nn.Module):
    """The spec's bf16 matmul (see :func:`product`): operands and product bfloat16, bias float32
    (``nn.Dense(dtype=bfloat16)`` would add the bias in bfloat16 too). Same parameter names as
    ``nn.Dense``."""

    units: int
    use_bias: bool
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.zeros, (x.shape[-1], self.units), self.dtype)
        y = product(dot, x, kernel, "bf16")
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.units,), self.dtype)
        return y


class _KernelLayer(nn.Module):
    """A convolution of the spec: its ``kernel`` applied by :meth:`op` under the precision
    policy of :func:`product`, then its ``bias``."""

    layer: Conv2D | ConvTranspose2D
    dtype: Any
    precision: Any

    def op(self, in_shape: tuple[int, ...]) -> Callable[..., jax.Array]:
        raise NotImplementedError  # pragma: no cover - each convolution's own

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = self.layer.param_shapes(x.shape[1:])
        kernel = self.param("kernel", nn.initializers.zeros, shape["kernel"], self.dtype)
        y = product(self.op(x.shape[1:]), x, kernel, self.precision)
        if self.layer.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, shape["bias"], self.dtype)
        return y


class Conv(_KernelLayer):
    """:class:`~gan_backends.spec.Conv2D`: the spec's explicit zero padding (never Flax's
    'SAME', which agrees only by convention), a strided correlation, then the bias."""

    def op(self, in_shape: tuple[int, ...]) -> Callable[..., jax.Array]:
        stride, pads = (self.layer.stride, self.layer.stride), self.layer.pads(in_shape)

        def conv(lhs: jax.Array, rhs: jax.Array, precision: Any, out: Any) -> jax.Array:
            return jax.lax.conv_general_dilated(
                lhs, rhs, stride, pads, dimension_numbers=IMAGE_DIMS, precision=precision, preferred_element_type=out
            )

        return conv


class ConvTranspose(_KernelLayer):
    """:class:`~gan_backends.spec.ConvTranspose2D`: ``lax.conv_transpose`` with
    ``transpose_kernel=True`` takes the canonical ``(kh, kw, out, in)`` kernel as it is (read as
    HWIO of the forward conv). Its explicit padding pairs act on the stride-dilated input, so
    ``k - 1 - crop`` per side gives the full output with the spec's crops in one op; a negative
    crop (output_padding) pads more, a crop beyond ``k - 1`` is a negative padding (XLA crops)."""

    def op(self, in_shape: tuple[int, ...]) -> Callable[..., jax.Array]:
        k, stride = self.layer.kernel, (self.layer.stride, self.layer.stride)
        pads = tuple((k - 1 - lo, k - 1 - hi) for lo, hi in self.layer.crops(in_shape))

        def conv_t(lhs: jax.Array, rhs: jax.Array, precision: Any, out: Any) -> jax.Array:
            return jax.lax.conv_transpose(
                lhs,
                rhs,
                stride,
                pads,
                dimension_numbers=IMAGE_DIMS,
                transpose_kernel=True,
                precision=precision,
                preferred_element_type=out,
            )

        return conv_t


class TorchBatchNorm(nn.Module):
    """:class:`~gan_backends.spec.BatchNorm` exactly as the spec writes it. Not ``nn.BatchNorm``:
    that one stores the biased variance only (torch's is unbiased) and normalises as
    ``(x - mean) * rsqrt(var + eps)``. Statistics over every axis but the channels, two-pass
    variance. Running statistics change only when ``batch_stats`` is mutable (``train_step``)."""

    layer: BatchNorm
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, training: bool) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), self.dtype)
        bias = self.param("bias", nn.initializers.zeros, (channels,), self.dtype)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), self.dtype)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (channels,), self.dtype)
        if not training:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            if self.is_mutable_collection("batch_stats"):
                self._update(ra_mean, ra_var, mean, var, x.size // channels)
        return (x - mean) / jnp.sqrt(var + self.layer.eps) * scale + bias

    def _update(self, ra_mean: Any, ra_var: Any, mean: jax.Array, var: jax.Array, n: int) -> None:
        """The spec's momentum update (:meth:`~gan_backends.spec.BatchNorm.running_update`,
        which also refuses an unbiased running variance over fewer than 2 values)."""
        ra_mean.value, ra_var.value = self.layer.running_update(ra_mean.value, ra_var.value, mean, var, n)


# -- the builder table -------------------------------------------------------------------------

#: One layer's forward pass inside :class:`Sequential`: ``(x, training) -> y``.
Apply = Callable[[jax.Array, bool], jax.Array]
#: ``builder(layer, net, name)``: makes the layer's Flax submodule (if it has one) as a child of
#: ``net`` named ``name`` (its spec index) and returns the function applying it. Called inside
#: ``Sequential.__call__`` (``nn.compact``), which is where Flax lets submodules be made.
LayerBuilder = Callable[[Any, Sequential, str], Apply]


def _dense(layer: Dense, net: Sequential, name: str) -> Apply:
    if net.precision == "bf16":
        module: nn.Module = BF16Dense(layer.units, layer.use_bias, net.dtype, name=name)
    else:
        module = nn.Dense(
            layer.units,
            use_bias=layer.use_bias,
            dtype=net.dtype,
            param_dtype=net.dtype,
            precision=net.precision,
            name=name,
        )
    return lambda x, training: module(x)


def _conv(layer: Conv2D, net: Sequential, name: str) -> Apply:
    module = Conv(layer, net.dtype, net.precision, name=name)
    return lambda x, training: module(x)


def _conv_transpose(layer: ConvTranspose2D, net: Sequential, name: str) -> Apply:
    module = ConvTranspose(layer, net.dtype, net.precision, name=name)
    return lambda x, training: module(x)


def _batchnorm(layer: BatchNorm, net: Sequential, name: str) -> Apply:
    return TorchBatchNorm(layer, net.dtype, name=name)


def _spectral(layer: Dense | Conv2D, net: Sequential, name: str) -> Apply:
    return SpectralNormed(layer, net.dtype, net.precision, name=name)


def reshape(layer: Reshape, x: jax.Array) -> jax.Array:
    """The spec's ``Reshape``; ``order="channels_first"`` reads ``(C, H, W)`` features (a torch view)."""
    y = x.reshape(x.shape[0], *layer.read_shape)
    return y.transpose(0, 2, 3, 1) if layer.order else y


def _stateless(fn: Callable[[Any, jax.Array], jax.Array]) -> LayerBuilder:
    """The builder of a layer without parameters or buffers: no submodule, ``fn(layer, x)``."""

    def build(layer: Layer, net: Sequential, name: str) -> Apply:
        return lambda x, training: fn(layer, x)

    return build


LAYER_BUILDERS: dict[type[Layer], LayerBuilder] = {
    Dense: _dense,
    Conv2D: _conv,
    ConvTranspose2D: _conv_transpose,
    BatchNorm: _batchnorm,
    ReLU: _stateless(lambda layer, x: nn.relu(x)),
    # x > 0 (not jax.nn.leaky_relu's x >= 0) so the gradient at 0 is the slope, as in torch.
    LeakyReLU: _stateless(lambda layer, x: jnp.where(x > 0, x, layer.slope * x)),
    Tanh: _stateless(lambda layer, x: jnp.tanh(x)),
    Sigmoid: _stateless(lambda layer, x: nn.sigmoid(x)),
    Reshape: _stateless(reshape),
    Flatten: _stateless(lambda layer, x: x.reshape(x.shape[0], -1)),
    **RESAMPLE_BUILDERS,  # Upsample, AvgPool2D, GlobalSumPool (resample.py)
    **ATTENTION_BUILDERS,  # SelfAttention (attention.py)
    Residual: build_residual,
}

__all__ = [
    "BUFFER_NAMES",
    "IMAGE_DIMS",
    "LAYER_BUILDERS",
    "Apply",
    "BF16Dense",
    "Conv",
    "ConvTranspose",
    "LayerBuilder",
    "Sequential",
    "TorchBatchNorm",
    "dot",
    "product",
]

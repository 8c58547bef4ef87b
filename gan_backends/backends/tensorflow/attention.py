"""TensorFlow module of SAGAN's self-attention block (:class:`~gan_backends.spec.SelfAttention`):
:data:`ATTENTION_BUILDERS`, merged into ``layers.LAYER_BUILDERS``. NHWC; the 1×1 projections are
``tf.nn.conv2d``, the scores and weighted values ``tf.matmul`` over ``(B, N, ·)``, the softmax
``tf.nn.softmax`` over the key positions (it subtracts the row maximum)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from ...spec import Layer, SelfAttention, Shape


class SelfAttentionLayer(tf.Module):
    """``y = x + γ·W_o(softmax_j(f gᵀ) h)`` (the spec's docstring); variables by canonical short name."""

    def __init__(self, layer: SelfAttention, in_shape: Shape, dtype: tf.DType, name: str):
        super().__init__(name=name)
        self.shape = tuple(in_shape)
        self.vars: dict[str, tf.Variable] = {
            pname: tf.Variable(tf.zeros(shape, dtype), name=pname)
            for pname, shape in layer.param_shapes(in_shape).items()
        }
        self.parts = tuple(layer.conv_shapes(in_shape))
        self.use_bias = layer.use_bias

    def _project(self, part: str, x: tf.Tensor) -> tf.Tensor:
        y = tf.nn.conv2d(x, self.vars[f"{part}_kernel"], 1, "VALID")
        return tf.nn.bias_add(y, self.vars[f"{part}_bias"]) if self.use_bias else y

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        h, w, c = self.shape
        f, g, v = (
            tf.reshape(self._project(p, x), (-1, h * w, self.vars[f"{p}_kernel"].shape[-1]))
            for p in ("query", "key", "value")
        )
        beta = tf.nn.softmax(tf.matmul(f, g, transpose_b=True), axis=-1)  # (B, N, N)
        o = tf.reshape(tf.matmul(beta, v), (-1, h, w, v.shape[-1]))
        if "out" in self.parts:
            o = self._project("out", o)
        return x + self.vars["gamma"] * o

    def params(self) -> dict[str, tf.Variable]:
        return dict(self.vars)


def _self_attention(layer: SelfAttention, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    return SelfAttentionLayer(layer, in_shape, dtype, name)  # bf16 does not apply: the spec dtype


#: Spec layer type -> builder ``(layer, in_shape, dtype, name, bf16) -> tf.Module``.
ATTENTION_BUILDERS: dict[type[Layer], Callable[[Any, Shape, tf.DType, str, bool], tf.Module]] = {
    SelfAttention: _self_attention
}


def keras_self_attention(layer: SelfAttention, in_shape: Shape, dtype: str) -> Any:
    """The port's native Keras model's layer: a small custom ``keras.layers.Layer`` whose weights
    are created in the spec's parameter order (``set_weights`` follows it) and whose call is
    :class:`SelfAttentionLayer`'s arithmetic in ``keras.ops``."""
    import keras

    class KerasSelfAttention(keras.layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.w = {
                n: self.add_weight(shape=s, initializer="zeros", name=n)
                for n, s in layer.param_shapes(in_shape).items()
            }

        def call(self, x: Any) -> Any:
            ops = keras.ops
            h, w, c = in_shape
            xs = ops.reshape(x, (-1, h * w, c))

            def project(part: str, v: Any) -> Any:
                y = ops.matmul(v, self.w[f"{part}_kernel"][0, 0])
                return y + self.w[f"{part}_bias"] if layer.use_bias else y

            f, g, v = (project(p, xs) for p in ("query", "key", "value"))
            beta = ops.softmax(ops.matmul(f, ops.transpose(g, (0, 2, 1))), axis=-1)
            o = ops.matmul(beta, v)
            if layer.has_out(in_shape):
                o = project("out", o)
            return ops.reshape(xs + self.w["gamma"] * o, (-1, h, w, c))

    return KerasSelfAttention(dtype=dtype)

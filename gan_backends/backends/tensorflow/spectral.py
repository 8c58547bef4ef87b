"""Spectral normalisation in TensorFlow, written with TF ops (semantics:
:mod:`gan_backends.spec.spectral`).

Not ``keras.layers.SpectralNormalization``: that one stores only ``vector_u`` (``(1, out)``,
TruncatedNormal(0.02) at build), writes ``W / σ`` back into the layer's ``kernel`` in every
training call (so the optimiser then steps the normalised kernel and no σ enters the
gradient), and at inference applies the kernel as stored, without σ (see
docs/framework-differences.md). :class:`SpectralNormLayer` keeps the kernel, divides a copy by
σ on every call, and keeps ``sn_u``/``sn_v`` as non-trainable variables that only
``update_stats=True`` (``train_step``) assigns.
"""

from __future__ import annotations

import tensorflow as tf

from ...spec.spectral import SpectralNormSpec, matrix_shape


def _normalize(x: tf.Tensor, eps: float) -> tf.Tensor:
    """``x / max(‖x‖, eps)`` (torch's ``F.normalize``)."""
    return x / tf.maximum(tf.norm(x), tf.constant(eps, x.dtype))


class SpectralNormLayer(tf.Module):
    """A Dense or Conv2D layer module (:mod:`.layers`) whose kernel is divided by σ before it is
    applied. Its parameters are the inner layer's; its buffers ``sn_u`` ``(out,)``, ``sn_v``
    ``(fan_in,)`` (canonical order: the row-major ``kernel.reshape(-1, out).T``)."""

    def __init__(self, inner: tf.Module, sn: SpectralNormSpec, dtype: tf.DType, name: str):
        super().__init__(name=name)
        self.inner, self.sn = inner, sn
        self.out, fan_in = matrix_shape(tuple(inner.kernel.shape))
        self.sn_u = tf.Variable(tf.zeros((self.out,), dtype), trainable=False, name="sn_u")
        self.sn_v = tf.Variable(tf.zeros((fan_in,), dtype), trainable=False, name="sn_v")

    def __call__(self, x: tf.Tensor, training: bool = False, update_stats: bool = False) -> tf.Tensor:
        kernel = self.inner.kernel
        w = tf.transpose(tf.reshape(kernel, (-1, self.out)))  # (out, fan_in)
        u, v = tf.convert_to_tensor(self.sn_u), tf.convert_to_tensor(self.sn_v)
        if training:
            held = tf.stop_gradient(w)  # u and v are constants of the gradient
            for _ in range(self.sn.n_power_iterations):
                v = _normalize(tf.linalg.matvec(held, u, transpose_a=True), self.sn.eps)
                u = _normalize(tf.linalg.matvec(held, v), self.sn.eps)
            if update_stats:
                self.sn_u.assign(u)
                self.sn_v.assign(v)
        sigma = tf.tensordot(u, tf.linalg.matvec(w, v), 1)
        return self.inner(x, kernel=kernel / sigma)

    def params(self) -> dict[str, tf.Variable]:
        return self.inner.params()

    def buffers(self) -> dict[str, tf.Variable]:
        return {"sn_u": self.sn_u, "sn_v": self.sn_v}

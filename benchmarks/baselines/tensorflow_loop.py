"""TensorFlow baseline: the TF2 DCGAN tutorial's loop (tensorflow.org/tutorials/generative/dcgan)
for the MLP GAN.

Keras ``Sequential`` models of ``Dense`` / ``LeakyReLU(0.2)`` layers (Tanh as the last Dense's
activation), ``keras.losses.BinaryCrossentropy(from_logits=True)``, Keras' ``Adam`` and one
``tf.function`` train step with ``tf.GradientTape`` (option ``jit_compile``: XLA). Departures from
the tutorial, to do exactly our step's work: D is updated first, on a fake drawn outside any tape,
then G on a fresh fake; the G tape's gradient is taken w.r.t. G's variables only, so no D weight
gradients are computed.

Keras' Adam is the epsilon-hat form, a slightly different update from torch's (ours): the same
work, fine for timing; the first step's D loss (before any update) is unaffected.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from . import BETA1, BETA2, D_UNITS, EPS, G_UNITS, LATENT_DIM, LR, SLOPE, dense_weights  # noqa: E402


def build_generator() -> keras.Sequential:
    model = keras.Sequential([keras.Input((LATENT_DIM,))])
    for units in G_UNITS[:-1]:
        model.add(layers.Dense(units))
        model.add(layers.LeakyReLU(negative_slope=SLOPE))
    model.add(layers.Dense(G_UNITS[-1], activation="tanh"))
    return model


def build_discriminator() -> keras.Sequential:
    model = keras.Sequential([keras.Input((G_UNITS[-1],))])
    for units in D_UNITS[:-1]:
        model.add(layers.Dense(units))
        model.add(layers.LeakyReLU(negative_slope=SLOPE))
    model.add(layers.Dense(D_UNITS[-1]))
    return model


def make_step(
    params: dict[str, np.ndarray], batch: Any, *, jit_compile: bool = False, tf32: bool = False
) -> tuple[Callable, Callable]:
    """``tf32``: TensorFloat-32 matmuls on Ampere+ GPUs (process-wide; TF's default is on, our
    float32 specs turn it off), no effect on CPUs."""
    tf.config.experimental.enable_tensor_float_32_execution(tf32)
    generator, discriminator = build_generator(), build_discriminator()
    generator.set_weights([w for pair in dense_weights(params, "generator") for w in pair])
    discriminator.set_weights([w for pair in dense_weights(params, "discriminator") for w in pair])
    cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)
    g_opt = keras.optimizers.Adam(learning_rate=LR, beta_1=BETA1, beta_2=BETA2, epsilon=EPS)
    d_opt = keras.optimizers.Adam(learning_rate=LR, beta_1=BETA1, beta_2=BETA2, epsilon=EPS)
    g_opt.build(generator.trainable_variables)  # slots made now, not inside the traced step
    d_opt.build(discriminator.trainable_variables)

    real, z_d, z_g = (tf.constant(np.asarray(x, np.float32)) for x in (batch.real[0], batch.z_d[0], batch.z_g))

    @tf.function(jit_compile=jit_compile)
    def train_step(real: tf.Tensor, z_d: tf.Tensor, z_g: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        fake = generator(z_d, training=True)
        with tf.GradientTape() as disc_tape:
            real_output = discriminator(real, training=True)
            fake_output = discriminator(fake, training=True)
            d_loss = cross_entropy(tf.ones_like(real_output), real_output) + cross_entropy(
                tf.zeros_like(fake_output), fake_output
            )
        d_grads = disc_tape.gradient(d_loss, discriminator.trainable_variables)
        d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables))

        with tf.GradientTape() as gen_tape:
            fake_output = discriminator(generator(z_g, training=True), training=True)
            g_loss = cross_entropy(tf.ones_like(fake_output), fake_output)
        g_grads = gen_tape.gradient(g_loss, generator.trainable_variables)
        g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))
        return d_loss, g_loss

    def step() -> tuple[tf.Tensor, tf.Tensor]:
        return train_step(real, z_d, z_g)

    def sync(out: Any) -> None:
        tf.test.experimental.sync_devices()

    return step, sync


def losses(out: Any) -> tuple[float, float]:
    """``(d_loss, g_loss)`` of a step's outputs, read on the host."""
    return float(out[0]), float(out[1])

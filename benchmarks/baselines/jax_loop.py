"""JAX baseline: the Flax linen idiom (flax docs' "Getting started" / ``TrainState`` pattern) for
the MLP GAN.

``flax.linen`` modules of ``nn.Dense`` with ``nn.leaky_relu(·, 0.2)`` and ``jnp.tanh``,
``optax.sigmoid_binary_cross_entropy``, ``optax.adam`` (eps 1e-8; optax's Adam is torch's form),
one ``flax.training.train_state.TrainState`` per network, and one ``jax.jit`` of the whole step
(D update on a fake computed outside the differentiated function, then the G update on a fresh
fake through the updated, fixed D) with both states donated on accelerators (on the CPU the
runtime cannot reuse donated buffers and would only warn).

Option ``precision``: the Dense matmul precision (default ``"highest"``, strict float32 as our
float32 specs; JAX's default uses TF32 on Ampere+ GPUs). No effect on CPUs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from . import BETA1, BETA2, D_UNITS, EPS, G_UNITS, LR, SLOPE, dense_weights


class Generator(nn.Module):
    precision: Any = None

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        x = z
        for units in G_UNITS[:-1]:
            x = nn.leaky_relu(nn.Dense(units, precision=self.precision)(x), negative_slope=SLOPE)
        return jnp.tanh(nn.Dense(G_UNITS[-1], precision=self.precision)(x))


class Discriminator(nn.Module):
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for units in D_UNITS[:-1]:
            x = nn.leaky_relu(nn.Dense(units, precision=self.precision)(x), negative_slope=SLOPE)
        return nn.Dense(D_UNITS[-1], precision=self.precision)(x)


def flax_params(weights: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Canonical layers -> linen's tree ``{"Dense_0": {"kernel", "bias"}, ...}`` (same layout)."""
    return {f"Dense_{i}": {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)} for i, (k, b) in enumerate(weights)}


def bce(logits: jax.Array, label: float) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()


def make_step(
    params: dict[str, np.ndarray], batch: Any, *, precision: str | None = "highest"
) -> tuple[Callable, Callable]:
    G, D = Generator(precision), Discriminator(precision)
    tx = functools.partial(optax.adam, LR, b1=BETA1, b2=BETA2, eps=EPS)
    g_state = TrainState.create(apply_fn=G.apply, params=flax_params(dense_weights(params, "generator")), tx=tx())
    d_state = TrainState.create(apply_fn=D.apply, params=flax_params(dense_weights(params, "discriminator")), tx=tx())

    def train_step(g_state: TrainState, d_state: TrainState, real, z_d, z_g):
        fake = g_state.apply_fn({"params": g_state.params}, z_d)

        def d_loss_fn(d_params):
            real_logits = d_state.apply_fn({"params": d_params}, real)
            fake_logits = d_state.apply_fn({"params": d_params}, fake)
            return bce(real_logits, 1.0) + bce(fake_logits, 0.0)

        d_loss, d_grads = jax.value_and_grad(d_loss_fn)(d_state.params)
        d_state = d_state.apply_gradients(grads=d_grads)

        def g_loss_fn(g_params):
            fake = g_state.apply_fn({"params": g_params}, z_g)
            return bce(d_state.apply_fn({"params": d_state.params}, fake), 1.0)

        g_loss, g_grads = jax.value_and_grad(g_loss_fn)(g_state.params)
        g_state = g_state.apply_gradients(grads=g_grads)
        return g_state, d_state, (d_loss, g_loss)

    device = jax.devices()[0]
    donate = (0, 1) if device.platform != "cpu" else ()
    train_step = jax.jit(train_step, donate_argnums=donate)
    g_state, d_state = jax.device_put((g_state, d_state), device)
    inputs = (batch.real[0], batch.z_d[0], batch.z_g)
    real, z_d, z_g = jax.device_put(tuple(np.asarray(x, np.float32) for x in inputs), device)
    states = [g_state, d_state]

    def step():
        out = train_step(states[0], states[1], real, z_d, z_g)
        states[0], states[1] = out[0], out[1]
        return out

    def sync(out: Any) -> None:
        jax.block_until_ready(out)

    return step, sync


def losses(out: Any) -> tuple[float, float]:
    """``(d_loss, g_loss)`` of a step's outputs, read on the host."""
    d_loss, g_loss = out[2]
    return float(d_loss), float(g_loss)

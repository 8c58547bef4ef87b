"""The gallery in JAX (optax losses where a user would reach for them)."""

import math

import jax
import jax.numpy as jnp
import optax


def d_sum(real, fake):
    return (
        optax.sigmoid_binary_cross_entropy(real, jnp.ones_like(real)).sum()
        + optax.sigmoid_binary_cross_entropy(fake, jnp.zeros_like(fake)).sum()
    )


def d_half(real, fake):
    return 0.5 * (jax.nn.softplus(-real).mean() + jax.nn.softplus(fake).mean())


def d_one_sided_smoothing(real, fake):
    return (
        optax.sigmoid_binary_cross_entropy(real, 0.9 * jnp.ones_like(real)).mean()
        + optax.sigmoid_binary_cross_entropy(fake, jnp.zeros_like(fake)).mean()
    )


def d_tfgan_smoothing(real, fake):
    labels = jnp.ones_like(real) * (1 - 0.25) + 0.5 * 0.25
    return optax.sigmoid_binary_cross_entropy(real, labels).mean() + jax.nn.softplus(fake).mean()


def d_smoothing_both(real, fake):
    def smooth(y):
        return y * (1 - 0.2) + 0.5 * 0.2

    return (
        optax.sigmoid_binary_cross_entropy(real, smooth(jnp.ones_like(real))).mean()
        + optax.sigmoid_binary_cross_entropy(fake, smooth(jnp.zeros_like(fake))).mean()
    )


def d_probabilities(real_prob, fake_prob):
    eps = 1e-7
    real_prob, fake_prob = jnp.clip(real_prob, eps, 1 - eps), jnp.clip(fake_prob, eps, 1 - eps)
    return -jnp.log(real_prob).mean() - jnp.log(1 - fake_prob).mean()


def d_ls_no_half(real, fake):
    return optax.l2_loss(real, jnp.ones_like(real)).mean() * 2 + jnp.mean(fake**2)


def d_ls_targets(real, fake):
    return optax.l2_loss(real, jnp.ones_like(real)).mean() + optax.l2_loss(fake, -jnp.ones_like(fake)).mean()


def g_minimax_constant(fake):
    return -jax.nn.softplus(fake).mean() + math.log(4.0)


def g_non_saturating(fake):
    return optax.sigmoid_binary_cross_entropy(fake, jnp.ones_like(fake)).mean()


def d_patch_sum(real, fake):  # per-sample sums over the patch, then a batch mean
    return (
        jax.nn.softplus(-real).reshape(len(real), -1).sum(1).mean()
        + jax.nn.softplus(fake).reshape(len(fake), -1).sum(1).mean()
    )


def _input_grad(critic, real, fake, alpha):
    x = alpha * real + (1 - alpha) * fake
    return jax.grad(lambda x: critic(x).sum())(x)


def gp_norm_axis(critic, real, fake, alpha):
    norm = jnp.linalg.norm(_input_grad(critic, real, fake, alpha), axis=-1)
    return 10.0 * jnp.mean((norm - 1.0) ** 2)


def gp_no_eps(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha)
    norm = jnp.linalg.norm(g.reshape(g.shape[0], -1), axis=1)
    return 10.0 * jnp.mean((norm - 1.0) ** 2)


def gp_one_sided(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha)
    norm = optax.safe_norm(g.reshape(g.shape[0], -1), 0.0, axis=1)
    return 10.0 * jnp.mean(jax.nn.relu(norm - 1.0) ** 2)


def gp_unweighted(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha)
    norm = optax.safe_norm(g.reshape(g.shape[0], -1), 0.0, axis=1)
    return jnp.mean((norm - 1.0) ** 2)


def d_swapped(fake, real):  # the arguments in the other order
    return jax.nn.relu(1.0 - real).mean() + jax.nn.relu(1.0 + fake).mean()


def r1_mean_over_pixels(critic, real):
    g = jax.grad(lambda x: critic(x).sum())(real)
    return 10.0 / 2 * jnp.mean(g**2)


# -- relativistic losses and R2 (the right forms are in tests/test_losscheck_relativistic.py) --


def d_ralsgan_halved(real, fake):  # the RaLSGAN author's code: both losses halved
    return (jnp.mean((real - fake.mean() - 1) ** 2) + jnp.mean((fake - real.mean() + 1) ** 2)) / 2


def d_rasgan_detached(real, fake):  # BasicSR's ESRGAN: the other kind's average detached
    mean_real, mean_fake = jax.lax.stop_gradient(real.mean()), jax.lax.stop_gradient(fake.mean())
    return (
        optax.sigmoid_binary_cross_entropy(real - mean_fake, jnp.ones_like(real)).mean()
        + optax.sigmoid_binary_cross_entropy(fake - mean_real, jnp.zeros_like(fake)).mean()
    )


def g_rasgan_fake_term_only(real, fake):  # G's real-side term left out
    return optax.sigmoid_binary_cross_entropy(fake - real.mean(), jnp.ones_like(fake)).mean()


def d_rasgan_paired(real, fake):  # RSGAN's pairs where the average was meant
    return optax.sigmoid_binary_cross_entropy(real - fake, jnp.ones_like(real)).mean()


def d_rahinge_sum(real, fake):
    return jax.nn.relu(1 - (real - fake.mean())).sum() + jax.nn.relu(1 + (fake - real.mean())).sum()


def _sq_grad_norm(critic, x):
    g = jax.grad(lambda x: critic(x).sum())(x)
    return (g**2).reshape(g.shape[0], -1).sum(1)


def r2_at_real(critic, real, fake, alpha):  # R2 meant, R1's batch taken
    return 10.0 / 2 * _sq_grad_norm(critic, real).mean()


def r3gan_averaged(critic, real, fake, alpha):  # one mean over both batches: (R1 + R2)/2
    return 10.0 / 2 * jnp.concatenate([_sq_grad_norm(critic, real), _sq_grad_norm(critic, fake)]).mean()

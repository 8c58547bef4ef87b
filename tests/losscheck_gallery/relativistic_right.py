"""The relativistic losses, R2, R1 + R2 and a targeted WGAN-GP penalty written right, as users
write them in each framework: ``right_losses(framework)[entry] = (role, loss, fn, loss_params)``."""

from __future__ import annotations

from collections.abc import Callable

Entry = tuple[str, str, Callable, dict | None]


def right_losses(framework: str) -> dict[str, Entry]:
    return {"torch": _torch, "tensorflow": _tensorflow, "jax": _jax}[framework]()


def _entries(d_ra, g_ra, d_rals, g_rals, d_rah, g_rah, d_rp, g_rp, r2, r2_short, r3, r3_short, gp, smoothed):
    return {
        "d_rasgan": ("d", "rasgan", d_ra, None), "g_rasgan": ("g", "rasgan", g_ra, None),
        "d_ralsgan": ("d", "ralsgan", d_rals, None), "g_ralsgan": ("g", "ralsgan", g_rals, None),
        "d_rahinge": ("d", "rahinge", d_rah, None), "g_rahinge": ("g", "rahinge", g_rah, None),
        "d_rpgan": ("d", "rpgan", d_rp, None), "g_rpgan": ("g", "rpgan", g_rp, None),
        "r2": ("penalty", "r2", r2, None), "r2_short": ("penalty", "r2", r2_short, None),
        "r3gan": ("penalty", "r3gan", r3, None), "r3gan_short": ("penalty", "r3gan", r3_short, None),
        "gp_targeted": ("penalty", "wgan-gp", gp, {"penalty_target": 750.0}),
        "d_tfgan_smoothed": ("d", "non_saturating", smoothed, None),
    }  # fmt: skip


def _torch() -> dict[str, Entry]:
    import torch
    import torch.nn.functional as F

    bce = torch.nn.BCEWithLogitsLoss()

    def d_ra(r, f):  # Jolicoeur-Martineau's RaSGAN, as her code writes it
        return bce(r - f.mean(), torch.ones_like(r)) + bce(f - r.mean(), torch.zeros_like(f))

    def g_ra(r, f):
        return bce(r - f.mean(), torch.zeros_like(r)) + bce(f - r.mean(), torch.ones_like(f))

    def d_rals(r, f):
        return torch.mean((r - f.mean() - 1) ** 2) + torch.mean((f - r.mean() + 1) ** 2)

    def g_rals(r, f):
        return torch.mean((r - f.mean() + 1) ** 2) + torch.mean((f - r.mean() - 1) ** 2)

    def d_rah(r, f):
        return F.relu(1 - (r - f.mean())).mean() + F.relu(1 + (f - r.mean())).mean()

    def g_rah(r, f):
        return F.relu(1 + (r - f.mean())).mean() + F.relu(1 - (f - r.mean())).mean()

    def d_rp(r, f):  # R3GAN's: softplus(-(D(x) - D(G(z))))
        return F.softplus(-(r - f)).mean()

    def g_rp(r, f):
        return F.softplus(-(f - r)).mean()

    def sq_norm(critic, x):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return g.pow(2).flatten(1).sum(1)

    def r2(critic, real, fake, alpha):
        return 10.0 / 2 * sq_norm(critic, fake).mean()

    def r2_short(critic, fake):
        return 5.0 * sq_norm(critic, fake).mean()

    def r3(critic, real, fake, alpha):
        return 10.0 / 2 * (sq_norm(critic, real).mean() + sq_norm(critic, fake).mean())

    def r3_short(critic, real, fake):
        return 5.0 * (sq_norm(critic, real).mean() + sq_norm(critic, fake).mean())

    def gp(critic, real, fake, alpha):  # Karras et al.'s target γ = 750
        x = alpha * real + (1 - alpha) * fake
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return 10.0 * (((g.flatten(1).norm(dim=1) - 750.0) / 750.0) ** 2).mean()  # (·)²/γ² overflows float16

    def smoothed(r, f):  # TF-GAN's label_smoothing=0.25: labels·(1 - s) + s/2
        return bce(r, torch.full_like(r, 0.875)) + bce(f, torch.zeros_like(f))

    return _entries(d_ra, g_ra, d_rals, g_rals, d_rah, g_rah, d_rp, g_rp, r2, r2_short, r3, r3_short, gp, smoothed)


def _tensorflow() -> dict[str, Entry]:
    import tensorflow as tf

    bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    mean = tf.reduce_mean

    def d_ra(r, f):
        return bce(tf.ones_like(r), r - mean(f)) + bce(tf.zeros_like(f), f - mean(r))

    def g_ra(r, f):
        return bce(tf.zeros_like(r), r - mean(f)) + bce(tf.ones_like(f), f - mean(r))

    def d_rals(r, f):
        return mean(tf.square(r - mean(f) - 1.0)) + mean(tf.square(f - mean(r) + 1.0))

    def g_rals(r, f):
        return mean(tf.square(r - mean(f) + 1.0)) + mean(tf.square(f - mean(r) - 1.0))

    def d_rah(r, f):
        return mean(tf.nn.relu(1.0 - (r - mean(f)))) + mean(tf.nn.relu(1.0 + (f - mean(r))))

    def g_rah(r, f):
        return mean(tf.nn.relu(1.0 + (r - mean(f)))) + mean(tf.nn.relu(1.0 - (f - mean(r))))

    def d_rp(r, f):
        return mean(tf.math.softplus(-(r - f)))

    def g_rp(r, f):
        return mean(tf.math.softplus(-(f - r)))

    def grad_at(critic, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = critic(x, training=True)
        return tape.gradient(out, x)

    def sq_norm(critic, x):
        g = grad_at(critic, x)
        return tf.reduce_sum(tf.reshape(tf.square(g), (tf.shape(g)[0], -1)), axis=1)

    def r2(critic, real, fake, alpha):
        return 10.0 / 2 * mean(sq_norm(critic, fake))

    def r2_short(critic, fake):
        return 5.0 * mean(sq_norm(critic, fake))

    def r3(critic, real, fake, alpha):
        return 10.0 / 2 * (mean(sq_norm(critic, real)) + mean(sq_norm(critic, fake)))

    def r3_short(critic, real, fake):
        return 5.0 * (mean(sq_norm(critic, real)) + mean(sq_norm(critic, fake)))

    def gp(critic, real, fake, alpha):
        g = grad_at(critic, alpha * real + (1 - alpha) * fake)
        norm = tf.sqrt(tf.reduce_sum(tf.reshape(tf.square(g), (tf.shape(g)[0], -1)), axis=1) + 1e-12)
        return 10.0 * mean(tf.square((norm - 750.0) / 750.0))

    def smoothed(r, f):  # tf.losses.sigmoid_cross_entropy(label_smoothing=0.25) on the real term
        return bce(tf.ones_like(r) * 0.75 + 0.125, r) + bce(tf.zeros_like(f), f)

    return _entries(d_ra, g_ra, d_rals, g_rals, d_rah, g_rah, d_rp, g_rp, r2, r2_short, r3, r3_short, gp, smoothed)


def _jax() -> dict[str, Entry]:
    import jax
    import jax.numpy as jnp
    import optax

    def bce(logits, label):
        return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()

    def d_ra(r, f):
        return bce(r - f.mean(), 1.0) + bce(f - r.mean(), 0.0)

    def g_ra(r, f):
        return bce(r - f.mean(), 0.0) + bce(f - r.mean(), 1.0)

    def d_rals(r, f):
        return jnp.mean((r - f.mean() - 1) ** 2) + jnp.mean((f - r.mean() + 1) ** 2)

    def g_rals(r, f):
        return jnp.mean((r - f.mean() + 1) ** 2) + jnp.mean((f - r.mean() - 1) ** 2)

    def d_rah(r, f):
        return jax.nn.relu(1 - (r - f.mean())).mean() + jax.nn.relu(1 + (f - r.mean())).mean()

    def g_rah(r, f):
        return jax.nn.relu(1 + (r - f.mean())).mean() + jax.nn.relu(1 - (f - r.mean())).mean()

    def d_rp(r, f):
        return jax.nn.softplus(-(r - f)).mean()

    def g_rp(r, f):
        return jax.nn.softplus(-(f - r)).mean()

    def sq_norm(critic, x):
        g = jax.grad(lambda x: critic(x).sum())(x)
        return (g**2).reshape(g.shape[0], -1).sum(1)

    def r2(critic, real, fake, alpha):
        return 10.0 / 2 * sq_norm(critic, fake).mean()

    def r2_short(critic, fake):
        return 5.0 * sq_norm(critic, fake).mean()

    def r3(critic, real, fake, alpha):
        return 10.0 / 2 * (sq_norm(critic, real).mean() + sq_norm(critic, fake).mean())

    def r3_short(critic, real, fake):
        return 5.0 * (sq_norm(critic, real).mean() + sq_norm(critic, fake).mean())

    def gp(critic, real, fake, alpha):
        g = jax.grad(lambda x: critic(x).sum())(alpha * real + (1 - alpha) * fake)
        norm = optax.safe_norm(g.reshape(g.shape[0], -1), 0.0, axis=1)
        return 10.0 * jnp.mean(((norm - 750.0) / 750.0) ** 2)

    def smoothed(r, f):
        return bce(r, 0.875) + bce(f, 0.0)

    return _entries(d_ra, g_ra, d_rals, g_rals, d_rah, g_rah, d_rp, g_rp, r2, r2_short, r3, r3_short, gp, smoothed)

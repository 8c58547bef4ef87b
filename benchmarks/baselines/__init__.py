"""Hand-written training loops of the tutorial MLP GAN, one per framework, written as a user
would from each framework's tutorial: the bar our backends' steps are held against
(``benchmarks/overhead.py``).

Each module exposes ``make_step(params, batch, **options) -> (step, sync)``: the canonical
NumPy parameters (``generator.0.kernel`` ``(in, out)``, ...) are loaded into the framework's
own model, the batch is put on the default device once, ``step()`` runs one training step and
returns its outputs unread, ``sync(out)`` blocks until the device has finished them.

One step is exactly the work of our step for the ``mlp`` preset (n_critic 1): a D update on
``fake = G(z_d[0])`` (no gradient through G), ``d_loss = BCE(D(real), 1) + BCE(D(fake), 0)``,
then a G update on a *fresh* ``G(z_g)`` with ``g_loss = BCE(D(G(z_g)), 1)``, D held fixed (no
weight gradients computed for it). Two G forwards per step, where the tutorials reuse one fake.
"""

from __future__ import annotations

import numpy as np

#: The tutorial MLP GAN: G 100→256→512→1024→784 (LeakyReLU 0.2, Tanh out), D 784→512→256→1.
LATENT_DIM = 100
G_UNITS = (256, 512, 1024, 784)
D_UNITS = (512, 256, 1)
SLOPE = 0.2
LR, BETA1, BETA2, EPS = 2e-4, 0.5, 0.999, 1e-8


def dense_weights(params: dict[str, np.ndarray], net: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``net``'s Dense layers as ``(kernel (in, out), bias)`` float32 pairs, in layer order,
    checked against the tutorial architecture."""
    indices = sorted({int(name.split(".")[1]) for name in params if name.startswith(net + ".")})
    layers = [
        (np.asarray(params[f"{net}.{i}.kernel"], np.float32), np.asarray(params[f"{net}.{i}.bias"], np.float32))
        for i in indices
    ]
    units = G_UNITS if net == "generator" else D_UNITS
    fan_in = LATENT_DIM if net == "generator" else G_UNITS[-1]
    expected = list(zip((fan_in, *units[:-1]), units))
    got = [k.shape for k, _ in layers]
    if got != expected:
        raise ValueError(f"{net}: the baselines hard-code the tutorial MLP {expected}, got kernels {got}")
    return layers

"""PyTorch baseline: the DCGAN tutorial's loop (pytorch.org/tutorials/beginner/dcgan_faces_tutorial)
for the MLP GAN, in its fast form.

``nn.Sequential`` of ``nn.Linear`` / ``nn.LeakyReLU(0.2)`` / ``nn.Tanh``, ``nn.BCEWithLogitsLoss``
with label tensors made once, ``torch.optim.Adam(..., fused=True)`` (the fastest CPU and CUDA
form, as our backend uses), ``zero_grad(set_to_none=True)``. Departures from the tutorial, to do
exactly our step's work: the D update's fake is drawn under ``torch.no_grad()`` (no graph through
G), the G update draws a fresh fake, and D is frozen during it with ``requires_grad_(False)``
(CycleGAN/pix2pix's ``set_requires_grad`` idiom) so no D weight gradients are computed.

Option ``compile``: ``torch.compile`` of G and D (not the optimiser), as our ``compile`` mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from . import BETA1, BETA2, D_UNITS, EPS, G_UNITS, LATENT_DIM, LR, SLOPE, dense_weights


def build_generator() -> nn.Sequential:
    sizes = (LATENT_DIM, *G_UNITS)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        layers.append(nn.LeakyReLU(SLOPE) if i < len(G_UNITS) - 1 else nn.Tanh())
    return nn.Sequential(*layers)


def build_discriminator() -> nn.Sequential:
    sizes = (G_UNITS[-1], *D_UNITS)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(D_UNITS) - 1:
            layers.append(nn.LeakyReLU(SLOPE))
    return nn.Sequential(*layers)


def load(model: nn.Sequential, weights: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Canonical ``(in, out)`` kernels into ``nn.Linear``'s ``(out, in)`` weights."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer, (kernel, bias) in zip(linears, weights, strict=True):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            layer.bias.copy_(torch.from_numpy(bias))


def make_step(params: dict[str, np.ndarray], batch: Any, *, compile: bool = False) -> tuple[Callable, Callable]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    G, D = build_generator(), build_discriminator()
    load(G, dense_weights(params, "generator"))
    load(D, dense_weights(params, "discriminator"))
    G.to(device)
    D.to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS, fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS, fused=True)
    criterion = nn.BCEWithLogitsLoss()
    netG, netD = G, D
    if compile:
        # dynamic=False: G and D share nn.Sequential.forward's code object, so dynamo would take
        # their different input widths for a varying shape and recompile with symbolic sizes;
        # our backend compiles the same way. Each (grad mode, frozen D, batch) is one graph.
        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, limit, max(getattr(config, limit), 64))
        netG, netD = torch.compile(G, dynamic=False), torch.compile(D, dynamic=False)

    real = torch.from_numpy(np.ascontiguousarray(batch.real[0], np.float32)).to(device)
    z_d = torch.from_numpy(np.ascontiguousarray(batch.z_d[0], np.float32)).to(device)
    z_g = torch.from_numpy(np.ascontiguousarray(batch.z_g, np.float32)).to(device)
    ones = torch.ones(real.shape[0], 1, device=device)
    zeros = torch.zeros(real.shape[0], 1, device=device)

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        # (1) D: maximise log D(x) + log(1 - D(G(z)))
        with torch.no_grad():
            fake = netG(z_d)
        opt_d.zero_grad(set_to_none=True)
        d_loss = criterion(netD(real), ones) + criterion(netD(fake), zeros)
        d_loss.backward()
        opt_d.step()
        # (2) G: maximise log D(G(z)), D fixed
        D.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        g_loss = criterion(netD(netG(z_g)), ones)
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)
        return d_loss.detach(), g_loss.detach()

    def sync(out: Any) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step, sync


def losses(out: Any) -> tuple[float, float]:
    """``(d_loss, g_loss)`` of a step's outputs, read on the host."""
    return float(out[0]), float(out[1])

"""The gallery in PyTorch."""

import math

import torch
import torch.nn.functional as F

bce_logits = torch.nn.BCEWithLogitsLoss()
bce = torch.nn.BCELoss()


def d_sum(real, fake):
    return F.binary_cross_entropy_with_logits(
        real, torch.ones_like(real), reduction="sum"
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake), reduction="sum")


def d_half(real, fake):
    return 0.5 * (bce_logits(real, torch.ones_like(real)) + bce_logits(fake, torch.zeros_like(fake)))


def d_one_sided_smoothing(real, fake):
    return bce_logits(real, torch.full_like(real, 0.9)) + bce_logits(fake, torch.zeros_like(fake))


def d_tfgan_smoothing(real, fake):
    smoothing = 0.25
    labels = torch.ones_like(real) * (1 - smoothing) + 0.5 * smoothing
    return bce_logits(real, labels) + bce_logits(fake, torch.zeros_like(fake))


def d_smoothing_both(real, fake):
    s = 0.2
    return bce_logits(real, torch.ones_like(real) * (1 - s) + 0.5 * s) + bce_logits(
        fake, torch.zeros_like(fake) * (1 - s) + 0.5 * s
    )


def d_probabilities(real_prob, fake_prob):  # the DCGAN tutorial: Sigmoid output, BCELoss
    return bce(real_prob, torch.ones_like(real_prob)) + bce(fake_prob, torch.zeros_like(fake_prob))


def d_ls_no_half(real, fake):
    return ((real - 1) ** 2).mean() + (fake**2).mean()


def d_ls_targets(real, fake):  # Mao et al.'s eq. 8 targets (a, b) = (-1, 1)
    return 0.5 * F.mse_loss(real, torch.ones_like(real)) + 0.5 * F.mse_loss(fake, -torch.ones_like(fake))


def g_minimax_constant(fake):
    return -F.softplus(fake).mean() + math.log(4.0)


def g_non_saturating(fake):
    return bce_logits(fake, torch.ones_like(fake))


def d_patch_sum(real, fake):  # per-sample sums over the patch, then a batch mean
    return (
        F.softplus(-real).reshape(len(real), -1).sum(1).mean() + F.softplus(fake).reshape(len(fake), -1).sum(1).mean()
    )


def _input_grad(critic, real, fake, alpha, create_graph=True):
    x = alpha * real + (1 - alpha) * fake
    out = critic(x)
    (g,) = torch.autograd.grad(out, x, torch.ones_like(out), create_graph=create_graph)
    return g


def gp_norm_axis(critic, real, fake, alpha):
    return 10 * ((_input_grad(critic, real, fake, alpha).norm(2, dim=1) - 1) ** 2).mean()


def gp_no_eps(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha).flatten(1)
    return 10 * ((torch.sqrt((g**2).sum(dim=1)) - 1) ** 2).mean()


def gp_one_sided(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha).flatten(1)
    return 10 * (torch.clamp(g.norm(2, dim=1) - 1, min=0) ** 2).mean()


def gp_unweighted(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha).flatten(1)
    return ((g.norm(2, dim=1) - 1) ** 2).mean()


def gp_no_create_graph(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha, create_graph=False).flatten(1)
    return 10 * ((g.norm(2, dim=1) - 1) ** 2).mean()


def d_swapped(fake, real):  # the arguments in the other order
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def r1_mean_over_pixels(critic, real):  # .mean() where the squared norm needs a per-sample sum
    real = real.detach().requires_grad_(True) if not real.requires_grad else real
    out = critic(real)
    (g,) = torch.autograd.grad(out, real, torch.ones_like(out), create_graph=True)
    return 10.0 / 2 * g.pow(2).mean()


# -- relativistic losses and R2 (the right forms are in tests/test_losscheck_relativistic.py) --


def d_ralsgan_halved(real, fake):  # the RaLSGAN author's code: both losses halved
    return (torch.mean((real - fake.mean() - 1) ** 2) + torch.mean((fake - real.mean() + 1) ** 2)) / 2


def d_rasgan_detached(real, fake):  # BasicSR's ESRGAN: the other kind's average detached
    ones, zeros = torch.ones_like(real), torch.zeros_like(fake)
    return bce_logits(real - fake.detach().mean(), ones) + bce_logits(fake - real.detach().mean(), zeros)


def g_rasgan_fake_term_only(real, fake):  # G's real-side term left out
    return bce_logits(fake - real.mean(), torch.ones_like(fake))


def d_rasgan_paired(real, fake):  # RSGAN's pairs where the average was meant
    return bce_logits(real - fake, torch.ones_like(real))


def d_rahinge_sum(real, fake):
    return F.relu(1 - (real - fake.mean())).sum() + F.relu(1 + (fake - real.mean())).sum()


def _sq_grad_norm(critic, x):
    x = x.detach().requires_grad_(True)
    out = critic(x)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return g.pow(2).flatten(1).sum(1)


def r2_at_real(critic, real, fake, alpha):  # R2 meant, R1's batch taken
    return 10.0 / 2 * _sq_grad_norm(critic, real).mean()


def r3gan_averaged(critic, real, fake, alpha):  # one mean over both batches: (R1 + R2)/2
    return 10.0 / 2 * torch.cat([_sq_grad_norm(critic, real), _sq_grad_norm(critic, fake)]).mean()

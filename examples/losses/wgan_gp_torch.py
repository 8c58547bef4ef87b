"""Two WGAN-GP penalties as they are written in PyTorch GAN repositories.

``gradient_penalty_per_pixel`` takes the norm over dim 1 of the NCHW gradient: the channels
only, one norm per pixel (a bug seen in public repositories; on flat MLP inputs it is right,
which is why it survives). ``gradient_penalty`` flattens each sample first.

    gan-backends losscheck examples/losses/wgan_gp_torch.py:gradient_penalty_per_pixel \\
        --framework torch --loss wgan_gp --role penalty
"""

import torch


def _input_grad(critic, real, fake, alpha):
    interpolates = alpha * real + (1 - alpha) * fake
    scores = critic(interpolates)
    (grad,) = torch.autograd.grad(scores, interpolates, torch.ones_like(scores), create_graph=True)
    return grad


def gradient_penalty_per_pixel(critic, real, fake, alpha):
    grad = _input_grad(critic, real, fake, alpha)
    return 10.0 * ((grad.norm(2, dim=1) - 1) ** 2).mean()


def gradient_penalty(critic, real, fake, alpha):
    grad = _input_grad(critic, real, fake, alpha).flatten(start_dim=1)
    return 10.0 * ((grad.norm(2, dim=1) - 1) ** 2).mean()

"""The PyTorch DCGAN tutorial's losses: a discriminator ending in ``nn.Sigmoid`` and ``nn.BCELoss``.

Check them with ``--inputs probabilities`` (losscheck feeds ``sigmoid(logits)``, as that D does):

    gan-backends losscheck examples/losses/dcgan_tutorial_torch.py:discriminator_loss \\
        --framework torch --loss non_saturating --role d --inputs probabilities
"""

import torch
from torch import nn

criterion = nn.BCELoss()


def discriminator_loss(real_prob, fake_prob):
    return criterion(real_prob, torch.ones_like(real_prob)) + criterion(fake_prob, torch.zeros_like(fake_prob))


def generator_loss(fake_prob):
    return criterion(fake_prob, torch.ones_like(fake_prob))

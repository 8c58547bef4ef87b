"""Ready-made specs. ``mlp`` is the GAN every tutorial trains on 28x28 images."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .spec import (
    AdamSpec,
    Dense,
    Flatten,
    GANSpec,
    Layer,
    LeakyReLU,
    LossSpec,
    Numerics,
    Reshape,
    SpecError,
    Tanh,
)

DEFAULT_PRESET = "mlp"


def tutorial_adam() -> AdamSpec:
    """The DCGAN-paper Adam every GAN tutorial copies: lr 2e-4, betas (0.5, 0.999), eps 1e-8."""
    return AdamSpec(lr=2e-4, beta1=0.5, beta2=0.999, eps=1e-8)


def mlp(
    *,
    data_shape: Sequence[int] = (784,),
    latent_dim: int = 100,
    g_hidden: Sequence[int] = (256, 512, 1024),
    d_hidden: Sequence[int] = (512, 256),
    slope: float = 0.2,
    loss: str = "non_saturating",
    d_scale: float = 1.0,
    dtype: str = "float32",
    name: str = "mlp",
) -> GANSpec:
    """The classic fully connected GAN on flattened 28x28 images.

    G: latent -> 256 -> 512 -> 1024 -> 784, LeakyReLU(0.2) between, tanh out.
    D: 784 -> 512 -> 256 -> 1, LeakyReLU(0.2) between, a logit out (no sigmoid: the loss
    works on logits). Both optimised with Adam(2e-4, (0.5, 0.999), eps=1e-8).
    """
    data_shape = tuple(data_shape)
    features = math.prod(data_shape)
    generator: list[Layer] = []
    for width in g_hidden:
        generator += [Dense(units=width), LeakyReLU(slope=slope)]
    generator += [Dense(units=features), Tanh()]
    if len(data_shape) > 1:
        generator.append(Reshape(shape=data_shape))
    discriminator: list[Layer] = []
    if len(data_shape) > 1:
        discriminator.append(Flatten())
    for width in d_hidden:
        discriminator += [Dense(units=width), LeakyReLU(slope=slope)]
    discriminator.append(Dense(units=1))
    return GANSpec(
        name=name,
        data_shape=data_shape,
        latent_dim=latent_dim,
        generator=tuple(generator),
        discriminator=tuple(discriminator),
        loss=LossSpec(name=loss, d_scale=d_scale),  # type: ignore[arg-type]
        g_optimizer=tutorial_adam(),
        d_optimizer=tutorial_adam(),
        numerics=Numerics(dtype=dtype),  # type: ignore[arg-type]
    )


def tiny(**overrides) -> GANSpec:
    """A few-hundred-parameter MLP GAN (8-d latent, 12-d data): fast enough for
    finite-difference gradient checks in float64."""
    kwargs = dict(data_shape=(12,), latent_dim=8, g_hidden=(16,), d_hidden=(10,), name="tiny")
    kwargs.update(overrides)
    return mlp(**kwargs)


PRESETS: dict[str, Callable[..., GANSpec]] = {"mlp": mlp, "tiny": tiny}


def get_preset(name: str, **overrides) -> GANSpec:
    try:
        factory = PRESETS[name]
    except KeyError:
        raise SpecError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
    return factory(**overrides)

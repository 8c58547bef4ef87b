"""Ready-made specs. ``mlp`` is the GAN every tutorial trains on 28x28 images; ``dcgan`` is
Radford et al. 2015 at 64x64x3, with ``dcgan-28`` (MNIST), ``dcgan-32`` (CIFAR) and
``dcgan-small`` (a CPU-test size) beside it. Every preset takes ``loss`` (a name of
:data:`LOSS_PRESETS`), which also sets what that loss's paper trains with."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from .presets_resnet import RESNET_PRESETS
from .spec import (
    AdamSpec,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    InitSpec,
    Layer,
    LeakyReLU,
    LossSpec,
    Numerics,
    OptimizerSpec,
    ReLU,
    Reshape,
    RMSpropSpec,
    SpecError,
    Tanh,
)

DEFAULT_PRESET = "mlp"


def tutorial_adam() -> AdamSpec:
    """The DCGAN-paper Adam every GAN tutorial copies: lr 2e-4, betas (0.5, 0.999), eps 1e-8."""
    return AdamSpec(lr=2e-4, beta1=0.5, beta2=0.999, eps=1e-8)


@dataclasses.dataclass(frozen=True)
class LossPreset:
    """A loss as its paper trains it: the loss, and the optimisers and ``n_critic`` it came with
    (``None`` keeps the preset's own)."""

    loss: LossSpec
    optimizer: OptimizerSpec | None = None
    n_critic: int | None = None

    @property
    def has_penalty(self) -> bool:
        return self.loss.penalty != "none"


#: ``--loss`` names. The Wasserstein ones use their papers' optimisers: RMSprop(5e-5) and
#: n_critic 5 with clipping at 0.01 (Arjovsky et al. 2017, Algorithm 1); Adam(1e-4, 0, 0.9),
#: n_critic 5, λ 10 for WGAN-GP (Gulrajani et al. 2017, Algorithm 1). R1 (γ 10) goes with the
#: non-saturating loss as in Mescheder et al. 2018 and StyleGAN. The relativistic losses
#: (Jolicoeur-Martineau 2018) keep the preset's optimisers, as that paper's DCGAN runs use the
#: DCGAN Adam. ``r3gan`` is the R3GAN baseline's loss (Huang et al. 2025): RpGAN + γ/2·(R1 + R2);
#: γ = 10 as the r1 preset (the paper tunes γ per data set: set ``penalty_weight``), optimisers
#: the preset's own.
LOSS_PRESETS: dict[str, LossPreset] = {
    "non_saturating": LossPreset(LossSpec(name="non_saturating")),
    "minimax": LossPreset(LossSpec(name="minimax")),
    "least_squares": LossPreset(LossSpec(name="least_squares")),
    "hinge": LossPreset(LossSpec(name="hinge")),
    "wgan": LossPreset(
        LossSpec(name="wasserstein", clip_value=0.01), RMSpropSpec(lr=5e-5, alpha=0.99, eps=1e-8), n_critic=5
    ),
    "wgan-gp": LossPreset(
        LossSpec(name="wasserstein", penalty="wgan_gp", penalty_weight=10.0),
        AdamSpec(lr=1e-4, beta1=0.0, beta2=0.9, eps=1e-8),
        n_critic=5,
    ),
    "r1": LossPreset(LossSpec(name="non_saturating", penalty="r1", penalty_weight=10.0)),
    "rasgan": LossPreset(LossSpec(name="rasgan")),
    "ralsgan": LossPreset(LossSpec(name="ralsgan")),
    "rahinge": LossPreset(LossSpec(name="rahinge")),
    "rpgan": LossPreset(LossSpec(name="rpgan")),
    "r3gan": LossPreset(LossSpec(name="rpgan", penalty="r1_r2", penalty_weight=10.0)),
}


def loss_preset(name: str, d_scale: float = 1.0) -> LossPreset:
    try:
        preset = LOSS_PRESETS[name]
    except KeyError:
        raise SpecError(f"unknown loss {name!r}; known: {', '.join(LOSS_PRESETS)}") from None
    return dataclasses.replace(preset, loss=dataclasses.replace(preset.loss, d_scale=d_scale))


def with_loss(spec: GANSpec, name: str) -> GANSpec:
    """``spec`` trained with the loss preset ``name`` (its optimisers and n_critic too); the
    spec's own ``d_scale`` is kept."""
    return GANSpec(**_with_loss(spec.to_fields(), name, spec.loss.d_scale, None))


def _with_loss(spec_kwargs: dict, loss: str, d_scale: float, n_critic: int | None) -> dict:
    preset = loss_preset(loss, d_scale)
    spec_kwargs["loss"] = preset.loss
    if preset.optimizer is not None:
        spec_kwargs["g_optimizer"] = spec_kwargs["d_optimizer"] = preset.optimizer
    n_critic = preset.n_critic if n_critic is None else n_critic
    if n_critic is not None:
        spec_kwargs["n_critic"] = n_critic
    return spec_kwargs


def _tutorial_gan(
    name: str,
    data_shape: tuple[int, ...],
    latent_dim: int,
    generator: list,
    discriminator: list,
    dtype: str,
    loss: str,
    d_scale: float,
    n_critic: int | None,
    **fields,
) -> GANSpec:
    """A preset's networks with the tutorials' Adam on both and the named loss preset."""
    kwargs = dict(
        name=name,
        data_shape=data_shape,
        latent_dim=latent_dim,
        generator=tuple(generator),
        discriminator=tuple(discriminator),
        g_optimizer=tutorial_adam(),
        d_optimizer=tutorial_adam(),
        numerics=Numerics(dtype=dtype),  # type: ignore[arg-type]
        **fields,
    )
    return GANSpec(**_with_loss(kwargs, loss, d_scale, n_critic))


def mlp(
    *,
    data_shape: Sequence[int] = (784,),
    latent_dim: int = 100,
    g_hidden: Sequence[int] = (256, 512, 1024),
    d_hidden: Sequence[int] = (512, 256),
    slope: float = 0.2,
    loss: str = "non_saturating",
    d_scale: float = 1.0,
    n_critic: int | None = None,
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
    # A relativistic loss only sees logit differences: an output bias would get no gradient.
    discriminator.append(Dense(units=1, use_bias=not loss_preset(loss).loss.relativistic))
    return _tutorial_gan(name, data_shape, latent_dim, generator, discriminator, dtype, loss, d_scale, n_critic)


def tiny(**overrides) -> GANSpec:
    """A few-hundred-parameter MLP GAN (8-d latent, 12-d data): fast enough for
    finite-difference gradient checks in float64."""
    kwargs = dict(data_shape=(12,), latent_dim=8, g_hidden=(16,), d_hidden=(10,), name="tiny")
    kwargs.update(overrides)
    return mlp(**kwargs)


def mlp_2d(**overrides) -> GANSpec:
    """The MLP GAN for 2-D toy data (the 8-mode ring, the 25-mode grid): G 16 -> 128 -> 128 -> 2
    with a linear output (the data keeps its own scale), D 2 -> 128 -> 128 -> 1, Adam(1e-3,
    (0.5, 0.999)) as the toy-data literature's short runs use."""
    kwargs = dict(data_shape=(2,), latent_dim=16, g_hidden=(128, 128), d_hidden=(128, 128), name="mlp-2d")
    kwargs.update(overrides)
    spec = mlp(**kwargs)
    adam = dataclasses.replace(tutorial_adam(), lr=1e-3)
    return spec.replace(generator=spec.generator[:-1], g_optimizer=adam, d_optimizer=adam)


def _doublings(size: int) -> tuple[int, int]:
    """(start, n): ``size = start * 2**n`` with the smallest start >= 4 reached by halving."""
    start, n = size, 0
    while start % 2 == 0 and start // 2 >= 4:
        start, n = start // 2, n + 1
    if n == 0:
        raise SpecError(
            f"dcgan needs an image size that halves at least once to >= 4 (8, 16, 28, 32, 64...), got {size}"
        )
    return start, n


def dcgan(
    *,
    image_size: int = 64,
    channels: int = 3,
    latent_dim: int = 100,
    g_features: int = 64,
    d_features: int = 64,
    slope: float = 0.2,
    loss: str = "non_saturating",
    d_scale: float = 1.0,
    n_critic: int | None = None,
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
    dtype: str = "float32",
    name: str = "dcgan",
) -> GANSpec:
    """DCGAN (Radford et al. 2015) as the PyTorch DCGAN tutorial writes it, 64x64x3 by default.

    G: z as a 1x1 image -> ConvTranspose(k=start, s=1, valid) to start x start, then
    ConvTranspose(k=4, s=2, p=1) doublings to ``image_size``; BatchNorm + ReLU after each but
    the last, tanh out; channels g_features*2^(n-1) ... g_features, then ``channels``.
    D: Conv(k=4, s=2, p=1) halvings with LeakyReLU(0.2), BatchNorm on all but the first, then
    Conv(k=start, s=1, valid) to one logit. No bias before a BatchNorm (it would only drift).
    ``start`` is the size reached by halving ``image_size`` down to >= 4 (4 for 64 and 32, 7 for
    28). Weights N(0, 0.02), BatchNorm scale N(1, 0.02); Adam(2e-4, (0.5, 0.999)).
    With a gradient penalty the critic has no BatchNorm (Gulrajani et al. 2017, section 4), and
    its convolutions get biases.
    """
    start, n = _doublings(image_size)
    d_batchnorm = not loss_preset(loss).has_penalty

    def bn() -> BatchNorm:
        return BatchNorm(momentum=bn_momentum, eps=bn_eps)

    generator: list[Layer] = [Reshape(shape=(1, 1, latent_dim))]
    width = g_features * 2 ** (n - 1)
    generator += [ConvTranspose2D(filters=width, kernel=start, stride=1, padding="valid", use_bias=False), bn(), ReLU()]
    for _ in range(n - 1):
        width //= 2
        generator += [ConvTranspose2D(filters=width, kernel=4, stride=2, padding=1, use_bias=False), bn(), ReLU()]
    generator += [ConvTranspose2D(filters=channels, kernel=4, stride=2, padding=1, use_bias=False), Tanh()]

    discriminator: list[Layer] = [
        Conv2D(filters=d_features, kernel=4, stride=2, padding=1, use_bias=not d_batchnorm),
        LeakyReLU(slope=slope),
    ]
    width = d_features
    for _ in range(n - 1):
        width *= 2
        discriminator.append(Conv2D(filters=width, kernel=4, stride=2, padding=1, use_bias=not d_batchnorm))
        discriminator += [bn(), LeakyReLU(slope=slope)] if d_batchnorm else [LeakyReLU(slope=slope)]
    # A relativistic loss only sees logit differences: an output bias would get no gradient.
    out_bias = not d_batchnorm and not loss_preset(loss).loss.relativistic
    discriminator += [Conv2D(filters=1, kernel=start, stride=1, padding="valid", use_bias=out_bias), Flatten()]
    shape, init = (image_size, image_size, channels), InitSpec(scheme="normal", std=0.02)
    return _tutorial_gan(name, shape, latent_dim, generator, discriminator, dtype, loss, d_scale, n_critic, init=init)


def dcgan_28(**overrides) -> GANSpec:
    """DCGAN at 28x28x1 (MNIST): 7x7 start, two doublings."""
    return dcgan(**{"image_size": 28, "channels": 1, "name": "dcgan-28", **overrides})


def dcgan_32(**overrides) -> GANSpec:
    """DCGAN at 32x32x3 (CIFAR-10): 4x4 start, three doublings."""
    return dcgan(**{"image_size": 32, "channels": 3, "name": "dcgan-32", **overrides})


def dcgan_small(**overrides) -> GANSpec:
    """DCGAN at 16x16x1 with 8 features and a 16-d latent: every layer type, CPU-test fast."""
    kwargs = dict(image_size=16, channels=1, latent_dim=16, g_features=8, d_features=8, name="dcgan-small")
    return dcgan(**{**kwargs, **overrides})


PRESETS: dict[str, Callable[..., GANSpec]] = {
    "mlp": mlp,
    "mlp-2d": mlp_2d,
    "tiny": tiny,
    "dcgan": dcgan,
    "dcgan-28": dcgan_28,
    "dcgan-32": dcgan_32,
    "dcgan-small": dcgan_small,
    **RESNET_PRESETS,
}


def get_preset(name: str, **overrides) -> GANSpec:
    try:
        factory = PRESETS[name]
    except KeyError:
        raise SpecError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
    return factory(**overrides)


def load_spec(name_or_path: str, loss: str | None = None) -> GANSpec:
    """A preset name, or the path of a spec JSON file; ``loss`` a name of ``LOSS_PRESETS``
    (a preset is rebuilt for it, so e.g. dcgan's critic drops BatchNorm for a penalty)."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise SpecError(f"spec file {name_or_path!r} " + ("is a folder" if path.is_dir() else "does not exist"))
        gan = GANSpec.load(path)
        return with_loss(gan, loss) if loss else gan
    return get_preset(name_or_path, **({"loss": loss} if loss else {}))
